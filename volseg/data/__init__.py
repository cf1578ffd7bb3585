"""Data for volseg: synthetic CT phantoms, real samples (pyradiomics), datalists, PNG helpers.

Names are re-exported lazily (PEP 562) so ``import volseg.data`` never fails and stays light.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "make_phantom": "volseg.data.phantom",
    "write_phantom_dataset": "volseg.data.phantom",
    "Phantom": "volseg.data.phantom",
    "PHANTOM_LABELS": "volseg.data.phantom",
    "fetch_samples": "volseg.data.samples",
    "SAMPLE_FILES": "volseg.data.samples",
    "default_cache_dir": "volseg.data.samples",
    "load_datalist": "volseg.data.datalist",
    "read_png": "volseg.data.png",
    "load_png_label": "volseg.data.png",
    "rgb_to_labels": "volseg.data.png",
    "labels_to_rgb": "volseg.data.png",
    "parse_palette": "volseg.data.png",
    "pair_png_folders": "volseg.data.png",
    "find_png_folders": "volseg.data.png",
    "volume_to_png_slices": "volseg.data.png_slices",
    "window_to_uint8": "volseg.data.png_slices",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'volseg.data' has no attribute {name!r}")
