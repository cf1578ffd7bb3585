"""Prediction: a bundle's inference definition executed streamed, post-processing, stats, overlays, evaluation.

Imported lazily so ``import volseg.inference`` stays light::

    from volseg.inference import predict, Predictor, StreamingInferer, evaluate
"""
from __future__ import annotations

from volseg._lazy import lazy_getattr

_LAZY = {
    "StreamingInferer": "volseg.inference.sliding",
    "WindowSpec": "volseg.inference.sliding",
    "blend_slabs": "volseg.inference.sliding",
    "plan_windows": "volseg.inference.sliding",
    "inverse_axis_maps": "volseg.inference.invert",
    "read_chain": "volseg.inference.engine",
    "run_chain": "volseg.inference.engine",
    "mirror_tta": "volseg.inference.core",
    "resolve_device": "volseg.inference.core",
    "ThresholdNet": "volseg.inference.toy",
    "Predictor": "volseg.inference.predictor",
    "predict": "volseg.inference.batch",
    "save_probabilities": "volseg.inference.batch",
    "find_cases": "volseg.inference.cases",
    "shard": "volseg.inference.cases",
    "label_stats": "volseg.inference.report",
    "save_overlay": "volseg.inference.report",
    "evaluate": "volseg.inference.evaluation",
    "evaluate_case": "volseg.inference.evaluation",
    "make_forward": "volseg.inference.backends",
}

__all__ = list(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
