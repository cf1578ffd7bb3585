"""Rescale slope/intercept: stored values -> HU as pydicom's ``apply_modality_lut`` and dcm2niix
compute them, for classic series (one rescale for the series, and a different one per slice) and
Enhanced multi-frame files (shared and per-frame Pixel Value Transformation); and the writer's
rescale of non-integer images, within the precision its RescaleSlope declares.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import List, Sequence

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from tests.conftest import require_tool, sitk_write_series
from volseg.io import load_volume, write_dicom_series

# one rescale for the whole series, and one per slice (slice k of 6)
RESCALES = {
    "uniform": ([0.5] * 6, [-1024.0] * 6),
    "per_slice": ([1.0, 0.5, 2.0, 0.25, 1.5, 0.75], [-1024.0, -1000.0, -2048.0, 0.0, -1024.5, 17.25]),
}


def _stored() -> np.ndarray:
    """Stored (raw) int16 values ``(X, Y, Z) = (12, 10, 6)``, different along every axis."""
    x, y, z = np.meshgrid(np.arange(12), np.arange(10), np.arange(6), indexing="ij")
    return (x * 37 + y * 211 + z * 5 + 100).astype(np.int16)


def _series(folder: Path, slopes: Sequence[float], intercepts: Sequence[float]) -> List[Path]:
    """A 6-slice CT series (SimpleITK writer, shuffled file names) whose slice ``k`` stores
    ``_stored()[..., k]`` with RescaleSlope ``slopes[k]`` / RescaleIntercept ``intercepts[k]``.
    Returns the files in slice order."""
    files = sitk_write_series(_stored(), folder, (0.7, 0.8, 2.5), (-40.0, -30.0, 100.0), np.eye(3),
                              file_order=[3, 0, 5, 1, 4, 2])
    for f, m, b in zip(files, slopes, intercepts):
        ds = pydicom.dcmread(f)
        ds.RescaleSlope, ds.RescaleIntercept = m, b
        ds.save_as(f)
    return files


def _pydicom_volume(files: Sequence[Path]) -> np.ndarray:
    """``(X, Y, Z)`` float: pydicom's modality LUT applied to each file, stacked in slice order."""
    out = []
    for f in files:
        ds = pydicom.dcmread(f)
        out.append(np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64).T)
    return np.stack(out, axis=-1)


def _enhanced(files: Sequence[Path], path: Path) -> Path:
    import highdicom as hd

    legacy = [pydicom.dcmread(f) for f in files]
    mf = hd.legacy.LegacyConvertedEnhancedCTImage(legacy, series_instance_uid=hd.UID(), series_number=9,
                                                  sop_instance_uid=hd.UID(), instance_number=1)
    mf.save_as(str(path))
    return path


def _pydicom_frames(path: Path) -> np.ndarray:
    """``(frames, rows, cols)``: pydicom's modality LUT per frame, with the frame's own Pixel Value
    Transformation item (per-frame, else shared) as the dataset it reads the rescale from."""
    ds = pydicom.dcmread(path)
    shared = ds.SharedFunctionalGroupsSequence[0]
    out = []
    for frame, group in zip(ds.pixel_array, ds.PerFrameFunctionalGroupsSequence):
        item = (group if "PixelValueTransformationSequence" in group else shared).PixelValueTransformationSequence[0]
        out.append(np.asarray(apply_modality_lut(frame, item), dtype=np.float64))
    return np.stack(out)


def _canonical(arr: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return nib.as_closest_canonical(nib.Nifti1Image(np.asarray(arr, dtype=np.float32), affine)).get_fdata()


def _dcm2niix(src: Path, out: Path) -> nib.Nifti1Image:
    exe = require_tool("dcm2niix")
    out.mkdir()
    subprocess.run([exe, "-z", "y", "-f", "ref", "-o", str(out), str(src)], check=True, capture_output=True)
    return nib.load(str(out / "ref.nii.gz"))


@pytest.mark.parametrize("kind", sorted(RESCALES))
def test_classic_series_rescale_matches_pydicom(kind, tmp_path):
    files = _series(tmp_path / "s", *RESCALES[kind])
    img = load_volume(tmp_path / "s")
    expected = _pydicom_volume(files)
    slopes, intercepts = RESCALES[kind]
    # the fixture really is rescaled: stored values differ from HU by each slice's own slope/intercept
    np.testing.assert_allclose(expected, _stored() * np.array(slopes) + np.array(intercepts))
    np.testing.assert_array_equal(img[0].numpy(), expected.astype(np.float32))


@pytest.mark.parametrize("kind", sorted(RESCALES))
def test_enhanced_multiframe_rescale_matches_pydicom(kind, tmp_path):
    files = _series(tmp_path / "s", *RESCALES[kind])
    enh = _enhanced(files, tmp_path / "enh.dcm")
    ds = pydicom.dcmread(enh)
    per_frame = "PixelValueTransformationSequence" in ds.PerFrameFunctionalGroupsSequence[0]
    assert per_frame == (kind == "per_slice")  # shared group for one rescale, per-frame groups otherwise
    img = load_volume(enh)
    frames = _pydicom_frames(enh)
    order = img.meta["frame_order"]  # frame index of each slice k
    np.testing.assert_array_equal(img[0].numpy(), np.transpose(frames[order], (2, 1, 0)).astype(np.float32))
    np.testing.assert_array_equal(img[0].numpy(), _pydicom_volume(files).astype(np.float32))


@pytest.mark.tools
@pytest.mark.parametrize("kind", sorted(RESCALES))
def test_classic_series_rescale_matches_dcm2niix(kind, tmp_path):
    _series(tmp_path / "s", *RESCALES[kind])
    ref = _dcm2niix(tmp_path / "s", tmp_path / "n")
    img = load_volume(tmp_path / "s")
    np.testing.assert_allclose(_canonical(img[0].numpy(), img.affine.numpy()), _canonical(ref.get_fdata(), ref.affine))


@pytest.mark.tools
def test_enhanced_multiframe_shared_rescale_matches_dcm2niix(tmp_path):
    """dcm2niix (1.0.20220720) applies a shared rescale; with per-frame rescales it keeps one for all
    frames, so it is the reference for the shared case only (pydicom covers per-frame above)."""
    files = _series(tmp_path / "s", *RESCALES["uniform"])
    enh = _enhanced(files, tmp_path / "enh.dcm")
    ref = _dcm2niix(enh, tmp_path / "n")
    img = load_volume(enh)
    np.testing.assert_allclose(_canonical(img[0].numpy(), img.affine.numpy()), _canonical(ref.get_fdata(), ref.affine))


def _float_image(values: np.ndarray):
    import torch
    from monai.data import MetaTensor

    return MetaTensor(torch.from_numpy(values)[None], affine=np.diag([-0.9, -0.9, 2.0, 1.0]))


@pytest.mark.parametrize("what", ["fractional_hu", "small_range", "beyond_int16", "constant"])
def test_writer_rescale_round_trip_within_declared_precision(what, tmp_path):
    """Non-integer images (or integers past int16) are stored with a slope/intercept: read back by
    volseg and by pydicom, every voxel is within half a RescaleSlope of the original."""
    rng = np.random.default_rng(7)
    shape = (9, 7, 5)
    values = {
        "fractional_hu": rng.uniform(-1000.0, 2500.0, shape),
        "small_range": rng.uniform(0.25, 0.75, shape),  # e.g. an MR map in [0, 1]
        "beyond_int16": rng.integers(-5000, 90000, shape).astype(np.float64),
        "constant": np.full(shape, 12.375),
    }[what].astype(np.float32)
    files = write_dicom_series(_float_image(values), tmp_path / "w", modality="MR")
    slopes = {float(pydicom.dcmread(f).RescaleSlope) for f in files}
    assert len(slopes) == 1
    slope = slopes.pop()
    assert slope <= max(float(np.ptp(values)) / 30000, 1e-6)  # the int16 range is used, not a coarse step
    tol = slope / 2 * (1 + 1e-6) + 1e-6 * max(1.0, float(np.abs(values).max()))  # + float32 of the value
    np.testing.assert_allclose(_pydicom_volume(files), values, rtol=0, atol=tol)
    back = load_volume(tmp_path / "w")
    np.testing.assert_allclose(back[0].numpy(), values, rtol=0, atol=tol)
