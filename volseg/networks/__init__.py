"""Segmentation networks behind one registry; every family takes ``spatial_dims`` (2 or 3).

>>> from volseg.networks import create_network
>>> net = create_network("deeplab", spatial_dims=3, in_channels=1, out_channels=3)

Inputs are ``(B, C, H, W[, D])``; outputs are logits ``(B, out_channels, H, W[, D])`` at the
input's spatial size (sizes that are not a multiple of the network's total stride are padded
and cropped back).
"""
from __future__ import annotations

import inspect
from typing import Any

from volseg.errors import ConfigError
from volseg.networks.registry import describe_networks, list_networks, resolve
from volseg._lazy import lazy_getattr

__all__ = [
    "create_network",
    "list_networks",
    "describe_networks",
    "model_summary",
    "export_torchscript",
    "export_onnx",
]

_LAZY = {
    "model_summary": "volseg.networks.summary",
    "export_torchscript": "volseg.networks.export",
    "export_onnx": "volseg.networks.export",
}

__getattr__ = lazy_getattr(__name__, _LAZY)


def create_network(name: str, spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 2, **kwargs: Any):
    """Build the network registered as ``name`` (see :func:`list_networks`).

    Args:
        name: registry name, e.g. ``"unet"``, ``"deeplab"``, ``"segnet"``, ``"fcn"``, ``"unet_classic"``.
        spatial_dims: 2 for slices ``(B, C, H, W)``, 3 for volumes ``(B, C, H, W, D)``.
        in_channels: input channels (modalities).
        out_channels: classes including background (logits, no softmax).
        kwargs: family-specific options; unknown ones raise :class:`ConfigError` listing valid ones.
    """
    factory = resolve(name)
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    params = inspect.signature(factory.__init__).parameters
    valid = [p for p in params if p not in ("self", "spatial_dims", "in_channels", "out_channels")]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ConfigError(f"network {name!r} does not take {', '.join(unknown)}; valid options: {', '.join(valid)}")
    return factory(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **kwargs)
