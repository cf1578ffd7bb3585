"""Image I/O with exact world geometry: readers, writers, DICOM series and DICOM SEG.

All images are channel-first ``MetaTensor`` s whose ``affine`` maps voxel indices to RAS+ mm.
Submodules are imported lazily so ``import volseg.io`` stays light.
"""
from __future__ import annotations

from volseg._lazy import lazy_getattr

_LAZY = {
    "load_volume": "volseg.io.readers",
    "load_png": "volseg.io.readers",
    "read_png_gray": "volseg.io.png",
    "load_png_label": "volseg.io.png",
    "save_label_png": "volseg.io.png",
    "bundle_palette": "volseg.io.png",
    "parse_palette": "volseg.io.png",
    "labels_to_rgb": "volseg.io.png",
    "rgb_to_labels": "volseg.io.png",
    "DEFAULT_PALETTE": "volseg.io.png",
    "save_mask": "volseg.io.writers",
    "save_volume": "volseg.io.writers",
    "mask_dtype": "volseg.io.writers",
    "nifti_image": "volseg.io.writers",
    "write_csv": "volseg.io.tables",
    "load_dicom": "volseg.io.dicom",
    "find_dicom_series": "volseg.io.dicom",
    "write_dicom_series": "volseg.io.dicom_write",
    "write_dicom_seg": "volseg.io.dicom_write",
    "describe": "volseg.io.summary",
    "affine_from_itk": "volseg.io._geometry",
    "itk_from_affine": "volseg.io._geometry",
    "orientation_code": "volseg.io._geometry",
}

__all__ = list(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
