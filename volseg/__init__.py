"""volseg: 3D medical image segmentation on MONAI.

The public API is imported lazily so that ``import volseg`` (and ``volseg --help``)
does not pull in torch or MONAI::

    from volseg import load_volume, save_mask, create_network, predict
"""
from __future__ import annotations

from volseg._lazy import lazy_getattr

__version__ = "0.1.0"

_LAZY = {
    "load_volume": "volseg.io",
    "save_mask": "volseg.io",
    "save_volume": "volseg.io",
    "write_dicom_seg": "volseg.io",
    "create_network": "volseg.networks",
    "list_networks": "volseg.networks",
    "predict": "volseg.inference",
    "Predictor": "volseg.inference",
    "evaluate": "volseg.inference",
    "VolsegError": "volseg.errors",
}

__all__ = ["__version__", *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY)
