"""Family-specific checks: the classic U-Net's exact design, SegNet's index reuse, DeepLab's atrous ASPP."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from volseg.networks import create_network
from volseg.networks.deeplab import ASPP


def test_unet_classic_parameter_count_matches_reference() -> None:
    net = create_network("unet_classic", spatial_dims=2, in_channels=1, out_channels=3, base_channels=64)
    assert sum(p.numel() for p in net.parameters()) == 31_030_723


def test_unet_classic_layer_sequence() -> None:
    net = create_network("unet_classic", spatial_dims=2, in_channels=1, out_channels=3, base_channels=64)
    layers = []
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            layers.append(f"conv{m.kernel_size[0]}x{m.kernel_size[1]}:{m.in_channels}->{m.out_channels}")
        elif isinstance(m, nn.ConvTranspose2d):
            layers.append(f"up{m.kernel_size[0]}x{m.kernel_size[1]}s{m.stride[0]}:{m.in_channels}->{m.out_channels}")
        elif isinstance(m, nn.Dropout):
            layers.append(f"drop{m.p}")
    expected = [
        "conv3x3:1->64", "drop0.1", "conv3x3:64->64",
        "conv3x3:64->128", "drop0.1", "conv3x3:128->128",
        "conv3x3:128->256", "drop0.2", "conv3x3:256->256",
        "conv3x3:256->512", "drop0.2", "conv3x3:512->512",
        "conv3x3:512->1024", "drop0.3", "conv3x3:1024->1024",
        "up2x2s2:1024->512", "up2x2s2:512->256", "up2x2s2:256->128", "up2x2s2:128->64",
        "conv3x3:1024->512", "drop0.2", "conv3x3:512->512",
        "conv3x3:512->256", "drop0.2", "conv3x3:256->256",
        "conv3x3:256->128", "drop0.1", "conv3x3:128->128",
        "conv3x3:128->64", "drop0.1", "conv3x3:64->64",
        "conv1x1:64->3",
    ]
    assert layers == expected
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    assert pools and all(p.kernel_size == 2 for p in pools)
    relus = [m for m in net.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 18


def test_unet_classic_he_normal_init() -> None:
    torch.manual_seed(0)
    net = create_network("unet_classic", spatial_dims=2, base_channels=64)
    conv = net.encoder[3][3]  # 512 -> 512, fan_in 4608
    std = conv.weight.std().item()
    assert abs(std - (2.0 / (512 * 9)) ** 0.5) < 0.002
    assert torch.count_nonzero(conv.bias) == 0


@pytest.mark.parametrize("dims", [2, 3])
def test_segnet_decoder_uses_pooling_indices(dims: int) -> None:
    torch.manual_seed(0)
    net = create_network("segnet", spatial_dims=dims, channels=(4, 8)).eval()
    x = torch.randn(1, 1, *([16] * dims))
    captured = {}
    first_decoder_conv = net.decoder[0][0][0]

    def keep_input(module, args, out) -> None:
        captured["unpooled"] = args[0]

    hook = first_decoder_conv.register_forward_hook(keep_input)
    with torch.no_grad():
        y = net(x)
    hook.remove()
    unpooled = captured["unpooled"]
    # sparse: exactly one non-zero per 2^dims window (the argmax position), zeros elsewhere
    windows = unpooled.numel() / 2 ** dims
    assert torch.count_nonzero(unpooled) <= windows
    assert torch.count_nonzero(unpooled) >= 0.9 * windows
    # and the output depends on the indices: permuting them changes the result
    with torch.no_grad():
        deep, saved = net.encode(x)
        idx, size = saved[-1]
        from volseg.networks.segnet import max_unpool

        a = max_unpool(deep, idx, size)
        b = max_unpool(deep, torch.flip(idx, dims=[-1]), size)
    assert not torch.equal(a, b)
    assert y.shape[2:] == x.shape[2:]


@pytest.mark.parametrize("output_stride,expected", [(16, {2}), (8, {2, 4})])
def test_deeplab_uses_dilation_and_aspp(output_stride: int, expected: set) -> None:
    net = create_network("deeplab", spatial_dims=3, output_stride=output_stride, atrous_rates=(3, 5, 7))
    aspp = [m for m in net.modules() if isinstance(m, ASPP)]
    assert len(aspp) == 1 and aspp[0].rates == (3, 5, 7)
    aspp_dil = sorted({int(m.dilation[0]) for m in aspp[0].modules() if isinstance(m, nn.Conv3d)})
    assert aspp_dil == [1, 3, 5, 7]
    encoder = [net.stage3, net.stage4]
    enc_dil = {int(m.dilation[0]) for s in encoder for m in s.modules() if isinstance(m, nn.Conv3d)} - {1}
    assert enc_dil == expected
    assert isinstance(aspp[0].pooling[0], nn.AdaptiveAvgPool3d)
    # the encoder's output stride is what was asked for
    feats = net.stage4(net.stage3(net.stage2(net.stage1(net.stem(torch.zeros(1, 1, 64, 64, 64))))))
    assert feats.shape[2] == 64 // output_stride


def test_deeplab_rejects_bad_output_stride() -> None:
    from volseg.errors import ConfigError

    with pytest.raises(ConfigError, match="8 or 16"):
        create_network("deeplab", output_stride=32)


def test_fcn_fuses_three_scales() -> None:
    net = create_network("fcn", spatial_dims=2, channels=(4, 4, 8, 8, 8), fc_channels=8)
    assert {"score_fr", "score_pool4", "score_pool3"} <= {n for n, _ in net.named_children()}
    y = net(torch.randn(1, 1, 40, 36))
    assert y.shape == (1, 2, 40, 36)
