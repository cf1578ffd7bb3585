"""``fcn``: FCN-8s-style fully convolutional network for 2D and 3D.

A VGG-like encoder of five pooling stages (stride 32) with ``fc6``/``fc7`` as convolutions;
class scores from ``fc7`` (stride 32), ``pool4`` (stride 16) and ``pool3`` (stride 8); the coarse
score is upsampled 2x and added to the next, twice, and the fused stride-8 score is upsampled 8x
(learned transposed convolutions, or interpolation with ``upsample="interp"``). Inputs are padded
to a multiple of 32 and cropped back.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from volseg.errors import ConfigError
from volseg.networks.blocks import ConvNormAct, conv_nd, conv_transpose_nd, crop_to, max_pool_nd, pad_to_multiple


def _bilinear_upsampler(spatial_dims: int, channels: int, factor: int) -> nn.Module:
    """Transposed conv (kernel 2f, stride f, padding f/2: output = f x input) set to bi/trilinear upsampling."""
    up = conv_transpose_nd(spatial_dims)(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    k = 2 * factor
    centre = (k - 1) / 2.0
    ramp = 1 - (torch.arange(k, dtype=torch.float32) - centre).abs() / factor
    kernel = ramp
    for _ in range(spatial_dims - 1):
        kernel = kernel[..., None] * ramp
    with torch.no_grad():
        up.weight.zero_()
        for c in range(channels):
            up.weight[c, c] = kernel
    return up


def _interpolator(spatial_dims: int, channels: int, factor: int) -> nn.Module:
    """Bi/trilinear upsampling by ``factor`` (``align_corners=False``); ``channels`` is unused."""
    return nn.Upsample(scale_factor=factor, mode="bilinear" if spatial_dims == 2 else "trilinear", align_corners=False)


class FCN8s(nn.Module):
    """FCN-8s. Input ``(B, C, H, W[, D])``; logits at the input size.

    Args:
        channels: widths of the five encoder stages (pools after each).
        fc_channels: width of the fc6/fc7 convolutions.
        upsample: ``"deconv"`` (learned transposed convs) or ``"interp"`` (bi/trilinear).
    """

    encoder_prefixes = ("stages", "fc")  # see volseg.networks.parts

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        channels: Sequence[int] = (16, 32, 64, 128, 128),
        fc_channels: int = 256,
        upsample: str = "deconv",
        norm: str = "instance",
        dropout: float = 0.1,
    ):
        super().__init__()
        if len(channels) != 5:
            raise ConfigError(f"fcn channels needs 5 widths, got {len(channels)}")
        if upsample not in ("deconv", "interp"):
            raise ConfigError(f"fcn upsample must be 'deconv' or 'interp', got {upsample!r}")
        self.size_multiple = 32
        self.upsample = upsample
        convs = [1, 1, 2, 2, 2]
        self.stages = nn.ModuleList()
        prev = in_channels
        for c, n in zip(channels, convs):
            layers = [ConvNormAct(spatial_dims, prev if i == 0 else c, c, 3, norm=norm) for i in range(n)]
            self.stages.append(nn.Sequential(*layers, max_pool_nd(spatial_dims)(2)))
            prev = c
        # fc6/fc7 work at stride 32, often a single voxel: no normalisation there (as in FCN)
        self.fc = nn.Sequential(
            ConvNormAct(spatial_dims, prev, fc_channels, 3, norm="none"), nn.Dropout(dropout),
            ConvNormAct(spatial_dims, fc_channels, fc_channels, 1, norm="none"), nn.Dropout(dropout),
        )
        conv = conv_nd(spatial_dims)
        self.score_fr = conv(fc_channels, out_channels, 1)
        self.score_pool4 = conv(channels[3], out_channels, 1)
        self.score_pool3 = conv(channels[2], out_channels, 1)
        # as in FCN: kernel 2f, stride f (overlapping), initialised to bilinear interpolation;
        # "interp": parameter-free bi/trilinear interpolation modules under the same names
        up = _bilinear_upsampler if upsample == "deconv" else _interpolator
        self.up2_fr = up(spatial_dims, out_channels, 2)
        self.up2_pool4 = up(spatial_dims, out_channels, 2)
        self.up8 = up(spatial_dims, out_channels, 8)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        pool3, pool4 = feats[2], feats[3]
        score = self.score_fr(self.fc(x))
        score = self.up2_fr(score) + self.score_pool4(pool4)
        score = self.up2_pool4(score) + self.score_pool3(pool3)
        return self.up8(score)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xp, sizes = pad_to_multiple(x, self.size_multiple)
        return crop_to(self._forward(xp), sizes)
