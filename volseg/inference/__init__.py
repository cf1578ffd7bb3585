"""Prediction: sliding-window / slice-by-slice inference, post-processing, stats, overlays, evaluation.

Imported lazily so ``import volseg.inference`` stays light::

    from volseg.inference import predict, Predictor, sliding_window_segment, evaluate
"""
from __future__ import annotations

from volseg._lazy import lazy_getattr

_LAZY = {
    "sliding_window_segment": "volseg.inference.streaming",
    "plan_windows": "volseg.inference.streaming",
    "segment_tensor": "volseg.inference.core",
    "make_inferer": "volseg.inference.core",
    "keep_largest_component": "volseg.inference.core",
    "argmax_labels": "volseg.inference.core",
    "ThresholdNet": "volseg.inference.toy",
    "Predictor": "volseg.inference.predictor",
    "predict": "volseg.inference.predictor",
    "find_cases": "volseg.inference.cases",
    "shard": "volseg.inference.cases",
    "label_stats": "volseg.inference.report",
    "save_overlay": "volseg.inference.report",
    "evaluate": "volseg.inference.evaluation",
    "evaluate_case": "volseg.inference.evaluation",
    "make_forward": "volseg.inference.backends",
    "optimize_for_inference": "volseg.inference.fast",
}

__all__ = list(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
