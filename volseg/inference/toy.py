"""A fixed-weight "model" whose output is known exactly: thresholds the first input channel.

Used for tests and demos of the inference path (geometry checks need a mask known in advance).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class ThresholdNet(nn.Module):
    """Logits ``(N, L+1, *spatial)`` from ``(N, C, *spatial)``: label ``l`` where ``x[:, 0] > thresholds[l-1]``.

    ``thresholds`` increasing (input units, e.g. HU), so the argmax is the number of thresholds
    exceeded. ``spatial_dims`` 2 or 3 (only checked), ``in_channels`` is checked against the input.
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, thresholds: Sequence[float] = (0.0,),
                 gain: float = 10.0):
        super().__init__()
        self.spatial_dims = int(spatial_dims)
        self.in_channels = int(in_channels)
        t = torch.as_tensor(list(thresholds), dtype=torch.float32)
        # buffer so it travels with the state_dict (and load_state_dict checks it)
        self.register_buffer("thresholds", t)
        self.gain = float(gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise RuntimeError(
                f"ThresholdNet expects (N, {self.in_channels}, {self.spatial_dims} spatial dims), got {tuple(x.shape)}"
            )
        v = x[:, :1].float()
        steps = torch.sigmoid((v - self.thresholds.view(1, -1, *([1] * self.spatial_dims))) * self.gain)
        # logit of label l = sum of the first l steps, so argmax = count of thresholds exceeded
        zero = torch.zeros_like(v)
        return torch.cat([zero, torch.cumsum(steps * 2.0 - 1.0, dim=1)], dim=1)
