"""``unet_classic``: the reference 2D lung-tumour U-Net, layer for layer (and its 3D twin).

Per level: conv3x3-ReLU, dropout, conv3x3-ReLU (He-normal init); 2x max pooling down;
2x stride-2 transposed convolutions up; skip concatenation; 1x1 head (logits, softmax in the
loss). Widths ``base * (1, 2, 4, 8)`` and bottleneck ``base * 16``; at ``base_channels=64``, 2D,
1 input, 3 classes: 31,030,723 parameters, as the reference.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from volseg.networks.blocks import conv_nd, conv_transpose_nd, crop_to, he_init, max_pool_nd, pad_to_multiple


class DoubleConv(nn.Sequential):
    """conv3x3 -> ReLU -> dropout -> conv3x3 -> ReLU."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, dropout: float):
        conv = conv_nd(spatial_dims)
        super().__init__(
            conv(in_channels, out_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Dropout(float(dropout)),  # a float p, as TorchScript requires
            conv(out_channels, out_channels, 3, padding=1),
            nn.ReLU(inplace=True),
        )


class UNetClassic(nn.Module):
    """Classic U-Net. Input ``(B, C, H, W[, D])``, any size (padded to a multiple of 16, cropped back)."""

    encoder_prefixes = ("encoder", "bottleneck")  # see volseg.networks.parts

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 3,
        base_channels: int = 64,
        encoder_dropout: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
        bottleneck_dropout: float = 0.3,
        decoder_dropout: Sequence[float] = (0.2, 0.2, 0.1, 0.1),
    ):
        super().__init__()
        widths = [base_channels * m for m in (1, 2, 4, 8)]
        self.size_multiple = 16
        self.encoder = nn.ModuleList()
        prev = in_channels
        for w, p in zip(widths, encoder_dropout):
            self.encoder.append(DoubleConv(spatial_dims, prev, w, p))
            prev = w
        self.pool = max_pool_nd(spatial_dims)(2)
        self.bottleneck = DoubleConv(spatial_dims, prev, base_channels * 16, bottleneck_dropout)
        prev = base_channels * 16
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for w, p in zip(reversed(widths), decoder_dropout):
            self.up.append(conv_transpose_nd(spatial_dims)(prev, w, 2, stride=2))
            self.decoder.append(DoubleConv(spatial_dims, 2 * w, w, p))
            prev = w
        self.head = conv_nd(spatial_dims)(prev, out_channels, 1)
        he_init(self)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for i, (up, block) in enumerate(zip(self.up, self.decoder)):  # ModuleLists only: TorchScript
            x = block(torch.cat([up(x), skips[-1 - i]], dim=1))
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xp, sizes = pad_to_multiple(x, self.size_multiple)
        return crop_to(self._forward(xp), sizes)
