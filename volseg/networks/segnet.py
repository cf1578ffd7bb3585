"""``segnet``: encoder-decoder whose decoder upsamples by max-unpooling with the encoder's indices.

Each encoder level: ``convs`` x (conv3x3-norm-ReLU), then max pooling that keeps its argmax
indices; each decoder level: max-unpooling with those indices (sparse, non-learned upsampling,
so boundaries come from where the maxima were), then convs. ``output_size`` in unpooling restores
odd sizes exactly, so any input size works.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import nn

from volseg.networks.blocks import ConvNormAct, conv_nd, max_pool_nd


def max_unpool(x: torch.Tensor, indices: torch.Tensor, size: List[int]) -> torch.Tensor:
    """Max-unpooling: place each value of ``x`` ``(B, C, *s)`` at its pooling argmax in a zero map of ``size``.

    Same result as ``nn.MaxUnpool{2,3}d`` with ``output_size``, written with ``scatter`` so it
    also exports to ONNX (``ScatterElements``) and TorchScript.
    """
    b, c = x.shape[0], x.shape[1]
    n = 1
    for s in size:
        n *= s
    out = x.new_zeros([b, c, n])
    out = out.scatter(2, indices.flatten(2), x.flatten(2))
    return out.view([b, c] + list(size))


def _stack(spatial_dims: int, cin: int, cout: int, n: int, norm: str) -> nn.Sequential:
    return nn.Sequential(*[ConvNormAct(spatial_dims, cin if i == 0 else cout, cout, 3, norm=norm) for i in range(n)])


class SegNet(nn.Module):
    """SegNet for ``(B, C, H, W[, D])``; logits at the input size.

    Args:
        channels: encoder widths per level (the decoder mirrors them).
        convs_per_level: 3x3 convolutions per level (the original uses 2-3).
    """

    encoder_prefixes = ("encoder",)  # see volseg.networks.parts

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        channels: Sequence[int] = (16, 32, 64, 128),
        convs_per_level: int = 2,
        norm: str = "instance",
    ):
        super().__init__()
        self.encoder = nn.ModuleList()
        prev = in_channels
        for c in channels:
            self.encoder.append(_stack(spatial_dims, prev, c, convs_per_level, norm))
            prev = c
        self.pool = max_pool_nd(spatial_dims)(2, stride=2, return_indices=True)
        outs = list(channels[-2::-1]) + [channels[0]]
        self.decoder = nn.ModuleList()
        for c in outs:
            self.decoder.append(_stack(spatial_dims, prev, c, convs_per_level, norm))
            prev = c
        self.head = conv_nd(spatial_dims)(prev, out_channels, 1)

    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[Tuple[torch.Tensor, List[int]]]]:
        """Features at the deepest level and, per level, (pooling indices, pre-pooling size)."""
        saved: List[Tuple[torch.Tensor, List[int]]] = []
        for block in self.encoder:
            x = block(x)
            size = list(x.shape[2:])
            x, idx = self.pool(x)
            saved.append((idx, size))
        return x, saved

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, saved = self.encode(x)
        for i, block in enumerate(self.decoder):  # zipping a ModuleList with a list does not script
            idx, size = saved[-1 - i]
            x = block(max_unpool(x, idx, size))
        return self.head(x)
