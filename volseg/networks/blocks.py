"""Building blocks shared by the network families, for 2D and 3D alike."""
from __future__ import annotations

import math
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from volseg.errors import ConfigError


def conv_nd(spatial_dims: int) -> type:
    return {2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]


def conv_transpose_nd(spatial_dims: int) -> type:
    return {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[spatial_dims]


def max_pool_nd(spatial_dims: int) -> type:
    return {2: nn.MaxPool2d, 3: nn.MaxPool3d}[spatial_dims]


def adaptive_avg_pool_nd(spatial_dims: int) -> type:
    return {2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[spatial_dims]


def norm_nd(kind: str, spatial_dims: int, channels: int) -> nn.Module:
    """``"batch"``, ``"instance"`` (affine), ``"group"`` (8 groups or fewer) or ``"none"``."""
    kind = kind.lower()
    if kind == "batch":
        return {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[spatial_dims](channels)
    if kind == "instance":
        return {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[spatial_dims](channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"unknown norm {kind!r}; valid: batch, instance, group, none")


class ConvNormAct(nn.Sequential):
    """Conv (no bias when normalised) -> norm -> ReLU, 'same' padding for odd kernels."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        norm: str = "instance",
        act: bool = True,
    ):
        pad = dilation * (kernel_size - 1) // 2
        layers = [
            conv_nd(spatial_dims)(
                in_channels, out_channels, kernel_size, stride=stride, padding=pad, dilation=dilation,
                bias=norm == "none",
            ),
            norm_nd(norm, spatial_dims, out_channels),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> Tuple[torch.Tensor, List[int]]:
    """Zero-pad the spatial dims of ``x`` (B, C, *S) at the far end up to a multiple; return the original sizes.

    Written for TorchScript (no callables, no generators), so the networks that use it script.
    """
    sizes: List[int] = []
    flat: List[int] = []
    padded = False
    for s in x.shape[2:]:
        sizes.append(int(s))
    for s in sizes[::-1]:
        p = (multiple - s % multiple) % multiple
        padded = padded or p > 0
        flat += [0, p]
    if padded:
        x = F.pad(x, flat)
    return x, sizes


def crop_to(x: torch.Tensor, sizes: List[int]) -> torch.Tensor:
    """Crop the spatial dims of ``x`` back to ``sizes`` (inverse of :func:`pad_to_multiple`)."""
    for d, s in enumerate(sizes):
        if x.shape[d + 2] != s:
            x = x.narrow(d + 2, 0, s)
    return x


def he_init(module: nn.Module) -> None:
    """He-normal (fan-in, ReLU) weights and zero biases for every conv / transposed conv."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
