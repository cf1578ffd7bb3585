"""Small pieces every inference path shares: device resolution (also the training bundles') and mirrored
test-time augmentation."""
from __future__ import annotations

import itertools
import os
from typing import Callable, Union

import torch

DeviceLike = Union[str, torch.device, None]


def resolve_device(device: DeviceLike = "auto") -> torch.device:
    """The one device resolver of volseg (inference and the training bundles' ``volseg.training.resolve_device``).

    ``"auto"`` (or ``None``) -> CUDA when available, else CPU; under torchrun (``LOCAL_RANK`` set)
    this rank's ``cuda:LOCAL_RANK``. Any torch device string or ``torch.device`` passes, case
    insensitive. Raises ``ConfigError`` for an unknown name or CUDA without a CUDA device.
    """
    from volseg.errors import ConfigError

    name = str(device if device is not None else "auto").strip().lower()
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        rank = os.environ.get("LOCAL_RANK")
        return torch.device("cuda" if rank is None else f"cuda:{int(rank)}")
    try:
        dev = device if isinstance(device, torch.device) else torch.device(name)
    except RuntimeError:
        raise ConfigError(f"invalid device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {str(device)!r} requested but no CUDA device is available")
    return dev


def mirror_tta(network: Callable, spatial_dims: int, probabilities: bool = False) -> Callable:
    """Wrap ``network`` so it returns its logits averaged over all ``2**spatial_dims`` mirrorings
    of the spatial axes (each output flipped back). ``probabilities=True`` appends the mean softmax
    probabilities of the passes: ``(N, 2L, ...)``, logits first (for predictive uncertainty)."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        axes = list(range(2, 2 + spatial_dims))
        total = probs = None
        n = 0
        for k in range(len(axes) + 1):
            for flip in itertools.combinations(axes, k):
                xi = torch.flip(x, flip) if flip else x
                p = network(xi).float()
                p = torch.flip(p, flip) if flip else p
                total = p if total is None else total + p
                if probabilities:
                    sp = torch.softmax(p, dim=1)
                    probs = sp if probs is None else probs + sp
                n += 1
        return total / n if not probabilities else torch.cat([total / n, probs / n], dim=1)

    return forward


def enable_mc_dropout(network: torch.nn.Module) -> int:
    """Put the dropout layers of ``network`` (in eval mode otherwise) in training mode, so each pass
    samples a different sub-network (Monte Carlo dropout). Returns how many layers with p > 0."""
    n = 0
    for m in network.modules():
        if isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d, torch.nn.Dropout3d, torch.nn.AlphaDropout)) and m.p > 0:
            m.train()
            n += 1
    return n
