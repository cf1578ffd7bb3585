"""Shared pytest settings, fixtures and helpers used by several test areas: writers independent of
volseg (nibabel, SimpleITK), a tiny int16 volume, and a fixed-weight threshold "model" bundle with a
CT phantom. Area-specific fixtures live in tests/<area>/conftest.py."""
from __future__ import annotations

import json
import locale
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pytest


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch

        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


def require_tool(name: str) -> str:
    """Return the path of an outside tool or skip the test with a reason."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package; .ci/run installs it)")
    return path


def write_nifti(path: Path, array: Any, affine: Any, dtype: Optional[Any] = np.int16) -> Path:
    """A NIfTI written by nibabel alone (independent of volseg's writers): qform = sform = ``affine``
    (codes 1). ``dtype`` int16 (CT in HU) by default; ``None`` keeps the array's."""
    import nibabel as nib

    arr = np.asarray(array) if dtype is None else np.asarray(array).astype(dtype)
    aff = np.asarray(affine, dtype=np.float64)
    img = nib.Nifti1Image(arr, aff)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    nib.save(img, str(path))
    return Path(path)


def sitk_write_series(volume_xyz: np.ndarray, out_dir: Path, spacing: Sequence[float], origin_lps: Sequence[float],
                      direction_lps: np.ndarray, series_uid: Optional[str] = None, modality: str = "CT",
                      description: str = "sitk test", positions: Optional[Sequence[np.ndarray]] = None,
                      file_order: Optional[Sequence[int]] = None) -> list:
    """Write an int16 volume (X, Y, Z) as a DICOM series with SimpleITK (an independent writer).

    ``positions`` overrides each slice's ImagePositionPatient (LPS mm) to build bad series;
    ``file_order`` permutes file names so name order differs from slice order.
    """
    import SimpleITK as sitk
    from pydicom.uid import generate_uid

    out_dir.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(np.transpose(volume_xyz.astype(np.int16), (2, 1, 0)))
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([float(o) for o in origin_lps])
    d = np.asarray(direction_lps, dtype=np.float64)
    img.SetDirection(d.ravel().tolist())
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = series_uid or generate_uid()
    study_uid = "1.2.826.0.1.3680043.8.498.1"
    frame_uid = "1.2.826.0.1.3680043.8.498.2"
    iop = "\\".join(f"{v:.10f}" for v in (*d[:, 0], *d[:, 1]))
    nz = volume_xyz.shape[2]
    order = list(file_order) if file_order is not None else list(range(nz))
    files = []
    for k in range(nz):
        sl = img[:, :, k]
        pos = np.asarray(img.TransformIndexToPhysicalPoint((0, 0, k))) if positions is None else positions[k]
        tags = {
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0008|0018": generate_uid(), "0008|0060": modality,
            "0010|0010": "TEST^SITK", "0010|0020": "SITK1", "0020|000d": study_uid, "0020|000e": series_uid,
            "0020|0052": frame_uid, "0008|103e": description, "0020|0011": "1", "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in pos), "0020|0037": iop,
            "0028|1053": "1", "0028|1052": "0", "0008|0020": "20240101", "0008|0030": "120000",
            "0008|0021": "20240101", "0008|0031": "120000", "0020|0012": "1", "0008|0070": "SimpleITK", "0018|0050": f"{spacing[2]:.6f}",
        }
        for key, val in tags.items():
            sl.SetMetaData(key, val)
        path = out_dir / f"slice_{order[k]:03d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(sl)
        files.append(path)
    return files


@pytest.fixture
def small_volume() -> np.ndarray:
    """A deterministic int16 (X, Y, Z) = (12, 10, 6) ramp plus noise, in HU-like values."""
    rng = np.random.default_rng(0)
    x, y, z = np.meshgrid(np.arange(12), np.arange(10), np.arange(6), indexing="ij")
    return (x * 10 + y * 100 + z * 1000 - 1000 + rng.integers(0, 5, size=x.shape)).astype(np.int16)


# HU thresholds of the fixed model: label 1 = soft tissue and denser (> -500 HU), 2 = bone (> 300 HU)
THRESHOLDS = (-500.0, 300.0)
SHAPE = (40, 36, 20)


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


@pytest.fixture(autouse=True)
def _restore_locale():
    """Put the process locale back after each test: SimpleITK's GDCM DICOM writer (the independent
    writer of ``sitk_write_series``) sets it to "C", and without UTF-8 mode later tests that open
    text with the locale's encoding (torch's AOTInductor build) would read ASCII."""
    saved = locale.setlocale(locale.LC_ALL)
    yield
    if locale.setlocale(locale.LC_ALL) != saved:
        locale.setlocale(locale.LC_ALL, saved)

