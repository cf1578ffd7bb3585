"""Helpers for the inference tests: a non-RAS grid and world points of masks (volseg-free, and by SimpleITK).

The threshold "model" bundle (``make_bundle``, ``bundle3d``, ``phantom``) is shared: ``tests/conftest.py``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

# an oblique-free but fully permuted and flipped grid (axes i->A, j->R, k->I) with anisotropic spacing
NON_RAS = np.array([[0.0, 7.0, 0.0, -80.0],
                    [-6.0, 0.0, 0.0, 95.0],
                    [0.0, 0.0, -9.0, 40.0],
                    [0.0, 0.0, 0.0, 1.0]])


def world_points(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Sorted world coordinates (mm, rounded to 1e-3) of the non-zero voxels of ``mask`` under ``affine``."""
    idx = np.argwhere(mask > 0).astype(np.float64)
    pts = idx @ affine[:3, :3].T + affine[:3, 3]
    pts = np.round(pts, 3)
    return pts[np.lexsort(pts.T[::-1])]


def sitk_world_points(path: Path, selector) -> np.ndarray:
    """World points in RAS mm of the voxels of a SimpleITK-read image (file or DICOM folder) where
    ``selector(array)`` is true (array in x, y, z order)."""
    import SimpleITK as sitk

    p = Path(path)
    if p.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(p)))
        img = reader.Execute()
    else:
        img = sitk.ReadImage(str(p))
    arr = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
    d = np.array(img.GetDirection()).reshape(3, 3)
    sp = np.array(img.GetSpacing())
    o = np.array(img.GetOrigin())
    idx = np.argwhere(selector(arr)).astype(np.float64)
    lps = idx @ (d * sp).T + o
    pts = np.round(lps * np.array([-1.0, -1.0, 1.0]), 3)
    return pts[np.lexsort(pts.T[::-1])]

