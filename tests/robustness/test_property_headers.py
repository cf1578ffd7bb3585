"""Property: whatever is written in the header fields of a valid NIfTI, NRRD or DICOM file, reading it
gives either a correct volume or a clean volseg error (InputError/ConfigError), never another exception.

Deterministic (``derandomize=True``): the same mutations every run. A volume that loads is compared
with an independent reader (nibabel, pynrrd) when that reader accepts the file too.
"""
from __future__ import annotations

import copy
import gzip
import io
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from volseg.errors import VolsegError
from volseg.io.readers import read_image

PROPERTY = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
LIMIT = 10**6  # voxel limit for these reads: a mutated header must never allocate more
SHAPE = (6, 5, 4)
FLOATS = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 2.5, 1e-30, 1e30, -7.0, math.nan, math.inf, -math.inf, 3e38])
INTS = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, -1, -2, 16, 255, 256, 1000, 32767, -32768])


def _volume() -> np.ndarray:
    return (np.arange(np.prod(SHAPE)).reshape(SHAPE) * 7 - 50).astype(np.int16)


def _read(path: Path):
    """read_image, allowing only volseg errors; returns the image or None."""
    try:
        img = read_image(path, max_voxels=LIMIT)
    except VolsegError as exc:
        assert "\n" not in str(exc) and str(exc).strip(), repr(exc)
        event(f"refused: {exc.message.split('(')[0].split(':')[0][:40]}")
        return None
    event("read")
    arr = img.array
    assert arr.dtype == np.float32 and np.isfinite(arr).all() and arr.size <= LIMIT
    aff = np.asarray(img.affine)
    assert np.isfinite(aff).all() and abs(np.linalg.det(aff)) > 0
    return img


# ------------------------------------------------------------------ NIfTI

NIFTI_FIELDS = {
    "dim": st.tuples(st.integers(0, 7), INTS), "pixdim": st.tuples(st.integers(0, 7), FLOATS),
    "datatype": st.sampled_from([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 2304, 7, 999]),
    "bitpix": INTS, "vox_offset": FLOATS, "scl_slope": FLOATS, "scl_inter": FLOATS,
    "qform_code": INTS, "sform_code": INTS, "quatern_b": FLOATS, "quatern_c": FLOATS, "quatern_d": FLOATS,
    "qoffset_x": FLOATS, "srow_x": st.tuples(st.integers(0, 3), FLOATS), "srow_y": st.tuples(st.integers(0, 3), FLOATS),
    "srow_z": st.tuples(st.integers(0, 3), FLOATS), "sizeof_hdr": INTS,
}


def _nifti_bytes() -> bytes:
    import nibabel as nib

    aff = np.array([[-0.8, 0, 0, 10], [0, 0.9, 0, -20], [0, 0, 2.0, 30], [0, 0, 0, 1]])
    img = nib.Nifti1Image(_volume(), aff)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    return img.to_bytes()


@PROPERTY
@given(mutations=st.lists(st.sampled_from(sorted(NIFTI_FIELDS)).flatmap(
    lambda f: st.tuples(st.just(f), NIFTI_FIELDS[f])), min_size=1, max_size=3), gz=st.booleans())
def test_nifti_header_mutations(mutations, gz):
    import nibabel as nib

    raw = _nifti_bytes()
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(raw), check=False)
    for field, value in mutations:
        with np.errstate(all="ignore"):
            if isinstance(value, tuple):
                arr = hdr[field]
                arr[value[0]] = value[1]
                hdr[field] = arr
            else:
                hdr[field] = value
    data = hdr.binaryblock + raw[len(hdr.binaryblock):]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / ("m.nii.gz" if gz else "m.nii")
        path.write_bytes(gzip.compress(data) if gz else data)
        img = _read(path)
        if img is None:
            return
        try:
            ref = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)
        except Exception:  # noqa: BLE001 - the independent reader refuses it: invariants only
            return
        if ref.ndim == 3:
            np.testing.assert_array_equal(img.array[0], ref)


# ------------------------------------------------------------------ NRRD

NRRD_FIELDS = {
    "type": ["int16", "short", "uint8", "float", "double", "int64", "block", "nonsense", ""],
    "dimension": ["3", "2", "4", "0", "-1", "99", "x"],
    "sizes": ["6 5 4", "6 5", "0 5 4", "-6 5 4", "60000 60000 60000", "6 5 4 3", "a b c", "2000 2000 2000"],
    "encoding": ["raw", "gzip", "bzip2", "ascii", "hex", "zip", "nonsense"],
    "endian": ["little", "big", "middle"],
    "space directions": ["(0.8,0,0) (0,0.9,0) (0,0,2)", "(0,0,0) (0,0.9,0) (0,0,2)", "(nan,0,0) (0,1,0) (0,0,1)",
                         "(1,0,0) (1,0,0) (0,0,1)", "(inf,0,0) (0,1,0) (0,0,1)", "none (0,1,0) (0,0,1)", "garbage"],
    "space origin": ["(10,-20,30)", "(nan,0,0)", "(inf,inf,inf)", "()", "x"],
    "space": ["left-posterior-superior", "right-anterior-superior", "scanner-xyz", "bogus"],
}


def _nrrd_bytes(fields: dict) -> bytes:
    vol = _volume()
    lines = ["NRRD0004"] + [f"{k}: {v}" for k, v in fields.items() if v is not None]
    enc = fields.get("encoding")
    payload = vol.tobytes(order="F")
    if fields.get("endian") == "big":
        payload = vol.astype(">i2").tobytes(order="F")
    if enc == "gzip":
        payload = gzip.compress(payload)
    elif enc == "ascii":
        payload = " ".join(str(int(v)) for v in vol.ravel(order="F")).encode()
    return ("\n".join(lines) + "\n\n").encode() + payload


@PROPERTY
@given(mutations=st.lists(st.sampled_from(sorted(NRRD_FIELDS)).flatmap(
    lambda f: st.tuples(st.just(f), st.sampled_from([*NRRD_FIELDS[f], None]))), min_size=1, max_size=3))
def test_nrrd_header_mutations(mutations):
    import nrrd

    fields = {"type": "int16", "dimension": "3", "space": "left-posterior-superior", "sizes": "6 5 4",
              "space directions": "(0.8,0,0) (0,0.9,0) (0,0,2)", "endian": "little", "encoding": "raw",
              "space origin": "(10,-20,30)"}
    fields.update(mutations)  # None drops the field
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.nrrd"
        path.write_bytes(_nrrd_bytes(fields))
        img = _read(path)
        if img is None:
            return
        try:
            ref, _ = nrrd.read(str(path))
        except Exception:  # noqa: BLE001
            return
        if ref.ndim == 3 and img.array.shape[1:] == ref.shape:
            np.testing.assert_array_equal(img.array[0], ref.astype(np.float32))


# ------------------------------------------------------------------ DICOM

DICOM_TAGS = {
    "Rows": INTS, "Columns": INTS, "BitsAllocated": INTS, "BitsStored": INTS, "HighBit": INTS,
    "PixelRepresentation": INTS, "SamplesPerPixel": INTS, "NumberOfFrames": INTS,
    "PixelSpacing": st.lists(FLOATS, min_size=0, max_size=3),
    "ImageOrientationPatient": st.lists(FLOATS, min_size=0, max_size=7),
    "ImagePositionPatient": st.lists(FLOATS, min_size=0, max_size=4),
    "RescaleSlope": FLOATS, "RescaleIntercept": FLOATS, "SliceThickness": FLOATS,
    "PhotometricInterpretation": st.sampled_from(["MONOCHROME2", "MONOCHROME1", "RGB", "PALETTE COLOR", ""]),
    "SeriesInstanceUID": st.sampled_from(["1.2.3", "", "1.2.3.4.5.6.7.8.9"]),
}


@pytest.fixture(scope="module")
def dicom_slices(tmp_path_factory):
    import pydicom

    from tests.conftest import sitk_write_series

    d = tmp_path_factory.mktemp("dicom_template")
    files = sitk_write_series(_volume(), d, (0.8, 0.9, 2.0), (10, -20, 30), np.eye(3))
    return [pydicom.dcmread(f) for f in files]


def _dicom_value(tag: str, value):
    if isinstance(value, list):
        return [f"{v:g}" if math.isfinite(v) else str(v) for v in value]
    if isinstance(value, float):
        return f"{value:g}" if math.isfinite(value) else str(value)
    return value


@PROPERTY
@given(mutations=st.lists(st.tuples(st.integers(0, SHAPE[2] - 1), st.sampled_from(sorted(DICOM_TAGS)).flatmap(
    lambda t: st.tuples(st.just(t), DICOM_TAGS[t]))), min_size=1, max_size=3), drop=st.booleans())
def test_dicom_header_mutations(dicom_slices, mutations, drop):
    import pydicom

    slices = [copy.deepcopy(ds) for ds in dicom_slices]
    for k, (tag, value) in mutations:
        if drop and tag in slices[k]:
            delattr(slices[k], tag)
            continue
        try:
            setattr(slices[k], tag, _dicom_value(tag, value))
        except (ValueError, TypeError, OverflowError):
            return
    with tempfile.TemporaryDirectory() as d:
        for i, ds in enumerate(slices):
            try:
                ds.save_as(Path(d) / f"s{i}.dcm", enforce_file_format=False)
            except (ValueError, TypeError, OverflowError, pydicom.errors.InvalidDicomError, Exception):
                return
        img = _read(Path(d))
        if img is not None:
            assert img.array.ndim == 4 and img.array.shape[0] == 1
