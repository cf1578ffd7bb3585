"""Data for volseg: synthetic CT phantoms, real samples (pyradiomics), datalists, PNG datasets.

Names are re-exported lazily (PEP 562) so ``import volseg.data`` never fails and stays light.
"""
from __future__ import annotations

from volseg._lazy import lazy_getattr

_LAZY = {
    "make_phantom": "volseg.data.phantom",
    "write_phantom_dataset": "volseg.data.phantom",
    "Phantom": "volseg.data.phantom",
    "PHANTOM_LABELS": "volseg.data.phantom",
    "fetch_samples": "volseg.data.samples",
    "SAMPLE_FILES": "volseg.data.samples",
    "default_cache_dir": "volseg.data.samples",
    "load_datalist": "volseg.data.datalist",
    "pair_png_folders": "volseg.data.png",
    "find_png_folders": "volseg.data.png",
    "png_split": "volseg.data.png",
    "volume_to_png_slices": "volseg.data.png_slices",
    "window_to_uint8": "volseg.data.png_slices",
}

__all__ = list(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
