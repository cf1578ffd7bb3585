"""Data for volseg: synthetic CT phantoms, real samples (pyradiomics), datalists, PNG helpers.

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


__getattr__ = lazy_getattr(__name__, _LAZY)
