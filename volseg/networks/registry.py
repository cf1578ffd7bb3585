"""Network registry: names -> factories, importable without torch.

``list_networks()`` and ``describe_networks()`` only read this table, so ``volseg --help`` and
``volseg networks`` stay instant; :func:`resolve` imports a family on first use.
"""
from __future__ import annotations

import importlib
from typing import Callable, Dict, List, Tuple

from volseg.errors import ConfigError

# name -> ("module:factory", one-line description)
NETWORKS: Dict[str, Tuple[str, str]] = {
    "unet": (
        "volseg.networks.unet:UNet",
        "residual U-Net (MONAI UNet, instance norm); defaults sized for 96^3 CT patches",
    ),
    "unet_classic": (
        "volseg.networks.unet_classic:UNetClassic",
        "the classic lung-tumour U-Net (64-128-256-512, bottleneck 1024, dropout, transposed-conv up)",
    ),
    "deeplab": (
        "volseg.networks.deeplab:DeepLabV3Plus",
        "DeepLabV3+-style: residual atrous encoder (output stride 8/16), ASPP, low-level decoder fusion",
    ),
    "segnet": (
        "volseg.networks.segnet:SegNet",
        "SegNet: encoder-decoder upsampling by max-unpooling with the encoder's pooling indices",
    ),
    "fcn": (
        "volseg.networks.fcn:FCN8s",
        "FCN-8s: fully convolutional encoder, class scores at strides 8/16/32 fused by addition",
    ),
}


def list_networks() -> List[str]:
    """Registered network names, sorted."""
    return sorted(NETWORKS)


def describe_networks() -> Dict[str, str]:
    """Name -> one-line description."""
    return {name: NETWORKS[name][1] for name in list_networks()}


def resolve(name: str) -> Callable:
    """The factory (class) registered under ``name``; unknown names list the valid ones."""
    if name not in NETWORKS:
        raise ConfigError(f"unknown network {name!r}; valid names: {', '.join(list_networks())}")
    module, attr = NETWORKS[name][0].split(":")
    return getattr(importlib.import_module(module), attr)
