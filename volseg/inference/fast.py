"""Deprecated entry point, kept until the predictor calls :func:`volseg.inference.backends.make_forward`."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from torch import nn


def optimize_for_inference(model: nn.Module, roi_size: Optional[Sequence[int]] = None, device: Any = "cpu",
                           backend: str = "auto", amp: bool = True, sw_batch_size: int = 4) -> Any:
    """``make_forward(model, (sw_batch_size, C, *roi_size), device, ...)``; the old ``compiled`` is ``auto``
    (no per-process compile) and ``amp`` means ``precision="auto"`` (fp16 on CUDA, fp32 on CPU)."""
    from volseg.inference.backends import make_forward, window_shape

    window = window_shape(model, sw_batch_size, roi_size or ())
    return make_forward(model, window, device, backend={"compiled": "auto"}.get(backend, backend),
                        precision="auto" if amp else "fp32")
