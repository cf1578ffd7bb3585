"""One parametrised tester for every (network, spatial_dims): shape, gradients, odd sizes,
determinism, export, and overfitting a tiny blob image."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from volseg.errors import ConfigError
from volseg.networks import create_network, export_onnx, export_torchscript, list_networks, model_summary

# reduced widths so every case runs in well under a second on CPU
SMALL = {
    "unet": dict(channels=(4, 8, 16), strides=(2, 2), num_res_units=1),
    "unet_classic": dict(base_channels=4, encoder_dropout=(0, 0, 0, 0), bottleneck_dropout=0.0,
                         decoder_dropout=(0, 0, 0, 0)),
    "deeplab": dict(channels=(4, 8, 8, 16, 16), aspp_channels=8, low_level_channels=4, dropout=0.0),
    "segnet": dict(channels=(4, 8, 16)),
    "fcn": dict(channels=(4, 8, 8, 16, 16), fc_channels=16, dropout=0.0),
}
# FCN-8s predicts at stride 8 and learns its 8x upsampling: it needs a few more steps
STEPS = {"fcn": 80}
CASES = [(name, dims) for name in sorted(SMALL) for dims in (2, 3)]
IDS = [f"{n}-{d}d" for n, d in CASES]


def build(name: str, dims: int, out_channels: int = 2, **extra):
    return create_network(name, spatial_dims=dims, in_channels=1, out_channels=out_channels, **{**SMALL[name], **extra})


def test_registry_covers_all_families() -> None:
    assert set(list_networks()) == set(SMALL)


@pytest.mark.parametrize("name,dims", CASES, ids=IDS)
class TestNetwork:
    def test_forward_shape_even_and_odd(self, name: str, dims: int) -> None:
        torch.manual_seed(0)
        net = build(name, dims, out_channels=3).eval()
        for size in (32, 37) if dims == 2 else (32, 21):
            x = torch.randn(2, 1, *([size] * (dims - 1)), size + 3)
            with torch.no_grad():
                y = net(x)
            assert y.shape == (2, 3) + tuple(x.shape[2:])
            assert torch.isfinite(y).all()

    def test_backward_reaches_every_parameter(self, name: str, dims: int) -> None:
        torch.manual_seed(0)
        net = build(name, dims).train()
        x = torch.randn(2, 1, *([32] * dims))
        net(x).square().mean().backward()
        missing = [k for k, p in net.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
        assert missing == []

    def test_seeded_determinism(self, name: str, dims: int) -> None:
        x = torch.randn(1, 1, *([32] * dims))
        outs = []
        for _ in range(2):
            torch.manual_seed(123)
            net = build(name, dims).eval()
            with torch.no_grad():
                outs.append(net(x))
        assert torch.equal(outs[0], outs[1])

    def test_export_round_trips(self, name: str, dims: int, tmp_path) -> None:
        torch.manual_seed(0)
        net = build(name, dims).eval()
        x = torch.randn(1, 1, *([32] * dims))
        assert export_torchscript(net, tmp_path / "net.ts", x) <= 1e-4
        assert export_onnx(net, tmp_path / "net.onnx", x) <= 1e-4
        assert (tmp_path / "net.ts").stat().st_size > 0 and (tmp_path / "net.onnx").stat().st_size > 0

    def test_scripts_for_any_input_size(self, name: str, dims: int) -> None:
        torch.manual_seed(0)
        net = build(name, dims, out_channels=3).eval()
        scripted = torch.jit.script(net)
        for size in (32, 37) if dims == 2 else (32, 21):  # 37 and 21 need padding and cropping back
            x = torch.randn(2, 1, *([size] * (dims - 1)), size + 3)
            with torch.no_grad():
                torch.testing.assert_close(scripted(x), net(x), rtol=0, atol=1e-6)

    @pytest.mark.slow
    def test_overfits_a_blob(self, name: str, dims: int) -> None:
        torch.manual_seed(0)
        size = 32 if dims == 2 else 24
        grid = torch.stack(torch.meshgrid(*[torch.arange(size, dtype=torch.float32)] * dims, indexing="ij"))
        centre = torch.tensor([size * 0.45] * dims).view(-1, *[1] * dims)
        label = ((grid - centre).square().sum(0) < (size * 0.25) ** 2).long()
        image = (label.float() * 2 - 1 + 0.3 * torch.randn(label.shape))[None, None]
        net = build(name, dims).train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        loss_fn = torch.nn.CrossEntropyLoss()
        for _ in range(STEPS.get(name, 60)):
            opt.zero_grad()
            loss_fn(net(image), label[None]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            pred = net(image).argmax(1)[0]
        inter = ((pred == 1) & (label == 1)).sum().item()
        dice = 2 * inter / ((pred == 1).sum().item() + (label == 1).sum().item())
        assert dice > 0.9, f"{name} {dims}D Dice {dice:.3f}"


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ConfigError) as err:
        create_network("resnet", spatial_dims=3)
    for name in SMALL:
        assert name in str(err.value)
    assert isinstance(err.value, ConfigError)


def test_unknown_option_lists_valid_options() -> None:
    with pytest.raises(ConfigError, match="valid options: .*output_stride"):
        create_network("deeplab", spatial_dims=3, outputstride=8)


def test_listing_names_does_not_import_torch() -> None:
    code = "import sys; from volseg.networks.registry import list_networks; list_networks(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", errors="replace", check=True)
    assert out.stdout.strip() == "False"


def test_bundle_style_config_builds_network() -> None:
    from monai.bundle import ConfigParser

    parser = ConfigParser({"network_def": {"_target_": "volseg.networks.create_network", "name": "segnet",
                                           "spatial_dims": 2, "out_channels": 4, "channels": [4, 8]}})
    net = parser.get_parsed_content("network_def")
    assert net(torch.zeros(1, 1, 16, 16)).shape == (1, 4, 16, 16)


def test_model_summary_counts_a_conv_by_hand() -> None:
    net = torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3, padding=1), torch.nn.ConvTranspose3d(4, 1, 2, stride=2))
    s = model_summary(net, (1, 2, 8, 8, 8))
    conv = 8 ** 3 * 4 * 2 * 27
    tconv = 8 ** 3 * 4 * 1 * 8
    assert s["macs"] == conv + tconv
    assert s["params"] == (2 * 4 * 27 + 4) + (4 * 1 * 8 + 1)


def test_unet_default_matches_the_monai_baseline() -> None:
    net = create_network("unet")
    s = model_summary(net, (1, 1, 96, 96, 96))
    assert s["params"] == 4_806_481
    assert abs(s["gflop"] - 10.24) < 0.01
