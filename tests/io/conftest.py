"""Fixtures for volseg.io tests: tiny synthetic volumes and DICOM series written by SimpleITK."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pytest

ORIENTATIONS = {
    # name: RAS direction cosines (columns = index axes i, j, k)
    "RAS": np.eye(3),
    "LPS": np.diag([-1.0, -1.0, 1.0]),
    "LSA": np.array([[-1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]]),  # coronal: i->L, j->S, k->A
    "oblique": None,  # filled below
}


def _oblique() -> np.ndarray:
    a, b = np.radians(17.0), np.radians(-23.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx @ np.diag([-1.0, -1.0, 1.0])


ORIENTATIONS["oblique"] = _oblique()


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


@pytest.fixture
def sitk_series(tmp_path, small_volume):
    """A 6-slice LPS CT series written by SimpleITK with shuffled file names; returns (dir, volume, affine RAS)."""
    spacing, origin = (0.7, 0.8, 2.5), (-40.0, -30.0, 100.0)
    d = tmp_path / "series"
    sitk_write_series(small_volume, d, spacing, origin, np.eye(3), file_order=[3, 0, 5, 1, 4, 2])
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.array(
        [[0.7, 0, 0, -40.0], [0, 0.8, 0, -30.0], [0, 0, 2.5, 100.0], [0, 0, 0, 1]])
    return d, small_volume, affine
