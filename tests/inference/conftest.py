"""Fixtures for the inference tests: a fixed-weight threshold "model" bundle and tiny CT volumes."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

# HU thresholds of the fixed model: label 1 = soft tissue and denser (> -500 HU), 2 = bone (> 300 HU)
THRESHOLDS = (-500.0, 300.0)
SHAPE = (40, 36, 20)
# an oblique-free but fully permuted and flipped grid (axes i->A, j->R, k->I) with anisotropic spacing
NON_RAS = np.array([[0.0, 7.0, 0.0, -80.0],
                    [-6.0, 0.0, 0.0, 95.0],
                    [0.0, 0.0, -9.0, 40.0],
                    [0.0, 0.0, 0.0, 1.0]])


def make_bundle(root: Path, spatial_dims: int = 3, in_channels: int = 1, roi: Sequence[int] = (32, 32, 16),
                orientation: bool = True, spacing: Sequence[float] = ()) -> Path:
    """A bundle folder whose network is volseg.inference.ThresholdNet with known weights."""
    import torch

    from volseg.inference.toy import ThresholdNet

    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "models").mkdir(exist_ok=True)
    transforms = []
    if orientation:
        transforms.append({"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"})
    if spacing:
        transforms.append({"_target_": "Spacingd", "keys": "image", "pixdim": list(spacing), "mode": "bilinear"})
    transforms.append({"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"})
    cfg = {
        "imports": ["$import torch"],
        "bundle_root": str(root),
        "device": "$torch.device('cpu')",
        "roi_size": list(roi),
        "labels": {"1": "tissue", "2": "bone"},
        "network_def": {"_target_": "volseg.inference.toy.ThresholdNet", "spatial_dims": spatial_dims,
                        "in_channels": in_channels, "thresholds": list(THRESHOLDS)},
        "preprocessing": {"_target_": "Compose", "transforms": transforms},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": "@roi_size", "overlap": 0.25,
                    "sw_batch_size": 2, "mode": "gaussian"},
    }
    (root / "configs" / "inference.json").write_text(json.dumps(cfg, indent=1))
    net = ThresholdNet(spatial_dims, in_channels, THRESHOLDS)
    torch.save({"model": net.state_dict()}, root / "models" / "model.pt")
    return root


@pytest.fixture(scope="session")
def bundle3d(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle3d"))


@pytest.fixture(scope="session")
def phantom():
    from volseg.data import make_phantom

    return make_phantom(shape=SHAPE, spacing=(6.0, 7.0, 9.0), seed=3, n_lesions=1)


def expected_labels(hu: np.ndarray) -> np.ndarray:
    """The mask the threshold model must produce, computed independently from HU values."""
    return (hu > THRESHOLDS[0]).astype(np.uint8) + (hu > THRESHOLDS[1]).astype(np.uint8)


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

