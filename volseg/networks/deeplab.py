"""``deeplab``: DeepLabV3+-style network for 2D and 3D.

Residual encoder (stem stride 2, then stages at strides 4, 8, 16) whose last stages trade
stride for dilation to keep output stride 16 or 8; ASPP (1x1 branch, three atrous 3x3 branches,
global-pooling branch); a decoder that fuses upsampled ASPP features with the stride-4
low-level features; logits interpolated back to the input size (any input size works).
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from volseg.errors import ConfigError
from volseg.networks.blocks import ConvNormAct, adaptive_avg_pool_nd, conv_nd, norm_nd


class ResidualBlock(nn.Module):
    """Two 3x3 convs with a projected shortcut when shape changes; ``dilation`` for atrous stages."""

    def __init__(self, spatial_dims: int, cin: int, cout: int, stride: int = 1, dilation: int = 1, norm: str = "instance"):
        super().__init__()
        self.conv1 = ConvNormAct(spatial_dims, cin, cout, 3, stride=stride, dilation=dilation, norm=norm)
        self.conv2 = ConvNormAct(spatial_dims, cout, cout, 3, dilation=dilation, norm=norm, act=False)
        self.shortcut = (
            nn.Identity() if stride == 1 and cin == cout
            else ConvNormAct(spatial_dims, cin, cout, 1, stride=stride, norm=norm, act=False)
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, one atrous 3x3 per rate, image pooling; concat -> 1x1."""

    def __init__(self, spatial_dims: int, cin: int, cout: int, rates: Sequence[int], norm: str = "instance", dropout: float = 0.1):
        super().__init__()
        self.rates = tuple(int(r) for r in rates)
        self.branches = nn.ModuleList([ConvNormAct(spatial_dims, cin, cout, 1, norm=norm)])
        for r in self.rates:
            self.branches.append(ConvNormAct(spatial_dims, cin, cout, 3, dilation=r, norm=norm))
        # image pooling: one value per channel, so no instance/batch norm (undefined on 1 voxel)
        self.pooling = nn.Sequential(
            adaptive_avg_pool_nd(spatial_dims)(1), conv_nd(spatial_dims)(cin, cout, 1), nn.ReLU(inplace=True)
        )
        self.project = nn.Sequential(
            ConvNormAct(spatial_dims, cout * (len(self.rates) + 2), cout, 1, norm=norm), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        pooled = self.pooling(x)
        outs.append(pooled.expand_as(outs[0]))
        return self.project(torch.cat(outs, dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ for ``(B, C, H, W[, D])`` inputs of any size; returns logits at the input size.

    Args:
        channels: widths of stem and the four encoder stages (strides 2, 4, 8, 16).
        output_stride: 16 (stage 4 dilated 2) or 8 (stages 3 and 4 dilated 2 and 4).
        atrous_rates: ASPP dilation rates (three); the DeepLab defaults (6, 12, 18) suit 2D
            output stride 16; smaller rates suit small 3D patches.
        aspp_channels / low_level_channels: decoder widths.
    """

    encoder_prefixes = ("stem", "stage1", "stage2", "stage3", "stage4")  # see volseg.networks.parts

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        output_stride: int = 16,
        atrous_rates: Sequence[int] = (2, 4, 6),
        aspp_channels: int = 64,
        low_level_channels: int = 24,
        norm: str = "instance",
        dropout: float = 0.1,
    ):
        super().__init__()
        if output_stride not in (8, 16):
            raise ConfigError(f"deeplab output_stride must be 8 or 16, got {output_stride}")
        if len(channels) != 5:
            raise ConfigError(f"deeplab channels needs 5 widths (stem + 4 stages), got {len(channels)}")
        if len(atrous_rates) != 3:
            raise ConfigError(f"deeplab atrous_rates needs 3 rates, got {len(atrous_rates)}")
        self.output_stride = output_stride
        c0, c1, c2, c3, c4 = channels
        s3, d3, d4 = (2, 1, 2) if output_stride == 16 else (1, 2, 4)
        self.stem = nn.Sequential(
            ConvNormAct(spatial_dims, in_channels, c0, 3, stride=2, norm=norm),
            ConvNormAct(spatial_dims, c0, c0, 3, norm=norm),
        )
        self.stage1 = ResidualBlock(spatial_dims, c0, c1, stride=2, norm=norm)  # stride 4: low-level
        self.stage2 = ResidualBlock(spatial_dims, c1, c2, stride=2, norm=norm)  # stride 8
        self.stage3 = ResidualBlock(spatial_dims, c2, c3, stride=s3, dilation=d3, norm=norm)
        self.stage4 = ResidualBlock(spatial_dims, c3, c4, stride=1, dilation=d4, norm=norm)
        self.aspp = ASPP(spatial_dims, c4, aspp_channels, atrous_rates, norm=norm, dropout=dropout)
        self.low_level = ConvNormAct(spatial_dims, c1, low_level_channels, 1, norm=norm)
        self.decoder = nn.Sequential(
            ConvNormAct(spatial_dims, aspp_channels + low_level_channels, aspp_channels, 3, norm=norm),
            ConvNormAct(spatial_dims, aspp_channels, aspp_channels, 3, norm=norm),
        )
        self.head = conv_nd(spatial_dims)(aspp_channels, out_channels, 1)
        self._mode = "bilinear" if spatial_dims == 2 else "trilinear"

    def dilations(self) -> List[int]:
        """Dilation rates of every convolution, in module order (for inspection and tests)."""
        return [int(m.dilation[0]) for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]

    def _up(self, x: torch.Tensor, size: List[int]) -> torch.Tensor:
        return F.interpolate(x, size=size, mode=self._mode, align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        low = self.stage1(self.stem(x))
        deep = self.aspp(self.stage4(self.stage3(self.stage2(low))))
        fused = torch.cat([self._up(deep, low.shape[2:]), self.low_level(low)], dim=1)
        return self._up(self.head(self.decoder(fused)), size)


__all__ = ["DeepLabV3Plus", "ASPP", "ResidualBlock", "norm_nd"]
