"""Which parameters of a network form its encoder, and its total stride.

The **encoder** is the down path that turns the image into features, bottleneck included; the
rest (decoder, up path, heads, ASPP) is what a new task re-learns first. Per family:

======================  ===============================================================
family                  encoder
======================  ===============================================================
``unet`` (MONAI UNet)   every down block and the bottom block (``model.0``,
                        ``model.1.submodule.0``, ... and the innermost ``submodule``);
                        the up blocks (``...2``) are decoder. Also a plain MONAI ``UNet``
                        (model-zoo bundles).
``unet_classic``        ``encoder.*`` and ``bottleneck.*``
``deeplab``             ``stem.*`` and ``stage1-4.*`` (the residual backbone; ASPP,
                        low-level projection, decoder and head are not)
``segnet``              ``encoder.*``
``fcn``                 ``stages.*`` and ``fc.*`` (fc6/fc7)
======================  ===============================================================

Families declare theirs as a class attribute ``encoder_prefixes``; MONAI's recursive UNet is
walked by name.
"""
from __future__ import annotations

import math
from typing import List

import torch

from volseg.errors import ConfigError


def _monai_unet_encoder(name: str) -> bool:
    """MONAI UNet names: ``model.<0 down | 1.submodule.<...> | 2 up>``, recursively; the innermost
    ``submodule`` that is not a ``(down, skip, up)`` triple is the bottom block."""
    rest = name[len("model."):]
    while rest.startswith("1.submodule."):
        rest = rest[len("1.submodule."):]
    if rest.startswith("0."):
        return True
    if rest.startswith("2."):
        return False
    return True  # the bottom block (its own parameter names: conv..., residual...)


def _is_monai_unet(network: torch.nn.Module) -> bool:
    from monai.networks.nets import UNet

    return isinstance(network, UNet)


def encoder_parameter_names(network: torch.nn.Module) -> List[str]:
    """Names (as in ``named_parameters()``) of the encoder's parameters (module docstring).

    Raises ``ConfigError`` for a network without an encoder definition.
    """
    names = [n for n, _ in network.named_parameters()]
    prefixes = getattr(network, "encoder_prefixes", None)
    if prefixes:
        return [n for n in names if n.split(".")[0] in prefixes]
    if _is_monai_unet(network):
        return [n for n in names if _monai_unet_encoder(n)]
    raise ConfigError(f"no encoder definition for {type(network).__name__}; --freeze-encoder supports the "
                      "volseg families (unet, unet_classic, deeplab, segnet, fcn) and MONAI's UNet")


def network_stride(network: torch.nn.Module) -> int:
    """Total down-sampling factor: patch sizes that are multiples of it need no padding.

    ``size_multiple`` where the family pads to it (unet, unet_classic, fcn), ``output_stride``
    (deeplab), 2 per pooling level (segnet), ``prod(strides)`` (MONAI UNet); 1 if unknown.
    """
    for attr in ("size_multiple", "output_stride"):
        if isinstance(getattr(network, attr, None), int):
            return int(getattr(network, attr))
    from volseg.networks.segnet import SegNet

    if isinstance(network, SegNet):
        return 2 ** len(network.encoder)
    if _is_monai_unet(network):
        return int(math.prod(int(s) for s in network.strides))
    return 1
