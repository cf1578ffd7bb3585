"""Hostile inputs built in fixtures, and a runner for ``volseg`` in a subprocess under memory limits."""
from __future__ import annotations

import gzip
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import pytest

from tests.conftest import sitk_write_series

# `python -m volseg` that writes its own peak RSS (VmHWM, reset at exec; ru_maxrss of a forked child
# starts at the parent's size) to $VOLSEG_TEST_HWM when it exits
_MAIN = ("import atexit, os, sys\n"
         "def hwm():\n"
         "    with open('/proc/self/status') as f, open(os.environ['VOLSEG_TEST_HWM'], 'w') as out:\n"
         "        out.write(next(ln.split()[1] for ln in f if ln.startswith('VmHWM:')))\n"
         "atexit.register(hwm)\n"
         "from volseg.cli import main\n"
         "sys.exit(main(sys.argv[1:]))\n")
VOLSEG = [sys.executable, "-c", _MAIN]
CAP_MB = 1024  # address-space limit of the reader subprocess (the hostile files claim 16 GB)
RSS_MB = 200  # peak resident memory a refusal may use (they take ~50 MB)


@dataclass
class Run:
    rc: int
    out: str
    err: str
    maxrss_mb: float

    @property
    def err_lines(self) -> list:
        return [ln for ln in self.err.splitlines() if ln.strip()]


def run_volseg(args: Sequence[str], cap_mb: int = CAP_MB, umask: Optional[int] = None, fsize: Optional[int] = None,
               env: Optional[Dict[str, str]] = None, prefix: Sequence[str] = (), timeout: float = 120) -> Run:
    """``python -m volseg ARGS`` with RLIMIT_AS = ``cap_mb`` (and optionally a umask, a file size limit
    with SIGXFSZ ignored so writes fail with EFBIG, a command ``prefix``); returns rc, output, peak RSS."""

    def pre() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap_mb << 20, cap_mb << 20))
        if umask is not None:
            os.umask(umask)
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    e = dict(os.environ, **(env or {}))
    e.setdefault("OMP_NUM_THREADS", "1")
    if fsize is not None:  # coverage's own data file would hit the file size limit too
        for k in ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START"):
            e.pop(k, None)
    hwm = Path(tempfile.mkdtemp(prefix="volseg-hwm-")) / "kb"
    e["VOLSEG_TEST_HWM"] = str(hwm)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, open(os.devnull, "rb") as devnull:
        p = subprocess.Popen([*prefix, *VOLSEG, *map(str, args)], stdin=devnull, stdout=out, stderr=err, preexec_fn=pre,
                             env=e, restore_signals=fsize is None)
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        try:
            p.wait()
        finally:
            timer.cancel()
        out.seek(0)
        err.seek(0)
        peak = float(hwm.read_text()) / 1024 if hwm.is_file() else float("nan")
        shutil.rmtree(hwm.parent, ignore_errors=True)
        return Run(p.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"), peak)


def unprivileged() -> list:
    """A command prefix under which file permissions apply: root without CAP_DAC_OVERRIDE (setpriv)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv (util-linux) is not installed: permissions cannot apply")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-all", "--"]


def leftovers(folder: Path) -> list:
    """Everything in ``folder`` (temporaries included) -- a refused command must leave it empty."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------ hostile files


def _nifti(path: Path, data: np.ndarray, affine: Optional[np.ndarray] = None, sform: Optional[np.ndarray] = None,
           sform_code: int = 1, qform_code: int = 1, pixdim: Optional[Sequence[float]] = None) -> Path:
    """A NIfTI written field by field (nibabel would otherwise repair the header from an affine)."""
    import nibabel as nib

    affine = np.diag([0.8, 0.9, 2.0, 1.0]) if affine is None else affine
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(data.dtype)
    hdr.set_qform(affine, code=qform_code)
    hdr.set_sform(affine, code=sform_code)
    if sform is not None:
        hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = sform[0], sform[1], sform[2]
    nib.save(nib.Nifti1Image(data, None, header=hdr), str(path))
    if pixdim is not None:  # patched in the bytes: nibabel "fixes" zero pixdim when saving
        raw = bytearray(gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes())
        raw[80:80 + 4 * len(pixdim)] = np.asarray(pixdim, "<f4").tobytes()
        path.write_bytes(gzip.compress(bytes(raw)) if path.name.endswith(".gz") else bytes(raw))
    back = nib.load(str(path)).header
    assert int(back["sform_code"]) == sform_code and int(back["qform_code"]) == qform_code
    return path


def ct(shape: Tuple[int, int, int] = (24, 20, 16)) -> np.ndarray:
    rng = np.random.default_rng(1)
    return (rng.normal(-300, 400, size=shape)).astype(np.float32)


def huge_claim_nifti(path: Path, n: int = 2000) -> Path:
    """A header claiming n^3 int16 voxels (2000: 16 GB) followed by a few bytes of data."""
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape((n, n, n))
    hdr.set_data_dtype(np.int16)
    hdr.set_sform(np.eye(4), code=1)
    raw = hdr.binaryblock + b"\0" * 4 + b"\1\0" * 500
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def huge_claim_nrrd(path: Path, n: int = 2000) -> Path:
    header = (f"NRRD0004\ntype: int16\ndimension: 3\nsizes: {n} {n} {n}\nencoding: gzip\nendian: little\n"
              "space: left-posterior-superior\nspace directions: (1,0,0) (0,1,0) (0,0,1)\n"
              "space origin: (0,0,0)\n\n")
    path.write_bytes(header.encode() + gzip.compress(b"\0" * 4096))
    return path


def huge_claim_mha(path: Path, n: int = 2000) -> Path:
    header = (f"ObjectType = Image\nNDims = 3\nDimSize = {n} {n} {n}\nElementType = MET_SHORT\n"
              "ElementSpacing = 1 1 1\nBinaryData = True\nBinaryDataByteOrderMSB = False\nElementDataFile = LOCAL\n")
    path.write_bytes(header.encode() + b"\0" * 1024)
    return path


def huge_claim_png(path: Path, n: int = 100000) -> Path:
    """A real PNG whose IHDR is patched to claim n x n pixels."""
    import struct
    import zlib

    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    raw = bytearray(path.read_bytes())
    ihdr = raw.index(b"IHDR")
    raw[ihdr + 4:ihdr + 12] = struct.pack(">II", n, n)
    raw[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(raw[ihdr:ihdr + 17])))
    path.write_bytes(bytes(raw))
    return path


def huge_claim_dicom(path: Path, tmp: Path, n: int = 60000) -> Path:
    import pydicom

    vol = np.zeros((8, 8, 1), np.int16)
    f = sitk_write_series(vol, tmp, (1, 1, 1), (0, 0, 0), np.eye(3))[0]
    ds = pydicom.dcmread(f)
    ds.Rows, ds.Columns = n, n
    ds.save_as(path)
    return path


def dicom_series_with_odd_spacing(folder: Path, odd: int) -> Path:
    """A 6-slice CT series where slice ``odd`` (0 = first, 3 = middle) has another PixelSpacing."""
    import pydicom

    vol = (np.arange(12 * 10 * 6).reshape(12, 10, 6) % 300).astype(np.int16)
    files = sitk_write_series(vol, folder, (0.7, 0.7, 2.5), (0, 0, 0), np.eye(3))
    ds = pydicom.dcmread(files[odd])
    ds.PixelSpacing = [0.9, 0.9]
    ds.save_as(files[odd])
    return folder


READER_CASES = {
    # name: (builder(tmp) -> path, what the one stderr line must say)
    "nan_voxel": (lambda t: _nifti(t / "nan1.nii.gz", _with_nan(ct(), [(3, 4, 5)])), "1 NaN/Inf voxel of"),
    "nan_blocks": (lambda t: _nifti(t / "nanblocks.nii.gz", _with_blocks(ct())), "NaN/Inf voxels"),
    "all_nan": (lambda t: _nifti(t / "allnan.nii.gz", np.full((8, 8, 8), np.nan, np.float32)), "512 NaN/Inf voxels"),
    "huge_nii_gz": (lambda t: huge_claim_nifti(t / "huge.nii.gz"), "2000 x 2000 x 2000"),
    "huge_nii": (lambda t: huge_claim_nifti(t / "huge.nii"), "2000 x 2000 x 2000"),
    "huge_nrrd": (lambda t: huge_claim_nrrd(t / "huge.nrrd"), "2000 x 2000 x 2000"),
    "huge_mha": (lambda t: huge_claim_mha(t / "huge.mha"), "2000 x 2000 x 2000"),
    "huge_png": (lambda t: huge_claim_png(t / "huge.png"), "100000 x 100000"),
    "huge_dcm": (lambda t: huge_claim_dicom(t / "huge.dcm", t / "src"), "60000 x 60000"),
    # within the voxel limit, but more than the file can hold (uncompressed) or expand to (deflate)
    "big_nii_gz": (lambda t: huge_claim_nifti(t / "big.nii.gz", 1000), "expand to at most"),
    "big_nii": (lambda t: huge_claim_nifti(t / "big.nii", 1000), "the file holds only"),
    "big_nrrd": (lambda t: huge_claim_nrrd(t / "big.nrrd", 1000), "expand to at most"),
    "big_mha": (lambda t: huge_claim_mha(t / "big.mha", 1000), "the file holds only"),
    "big_png": (lambda t: huge_claim_png(t / "big.png", 30000), "expand to at most"),
    "big_dcm": (lambda t: huge_claim_dicom(t / "big.dcm", t / "src", 20000), "the file holds only"),
    "dicom_spacing_first": (lambda t: dicom_series_with_odd_spacing(t / "first", 0), "PixelSpacing differs"),
    "dicom_spacing_middle": (lambda t: dicom_series_with_odd_spacing(t / "middle", 3), "PixelSpacing differs"),
    "nan_affine": (lambda t: _nifti(t / "nanaff.nii.gz", ct(), sform=_nan_affine(), qform_code=0),
                   "invalid sform (non-finite"),
    "zero_sform": (lambda t: _nifti(t / "zerosform.nii.gz", ct(), sform=np.zeros((4, 4)), qform_code=0),
                   "invalid sform (all zeros"),
    "zero_pixdim": (lambda t: _nifti(t / "zeropix.nii.gz", ct(), sform_code=0, qform_code=0, pixdim=(0, 0, 0)),
                    "invalid voxel size (pixdim)"),
    "zero_byte_dcm": (lambda t: _empty(t / "empty.dcm"), "empty file"),
}


def _with_nan(a: np.ndarray, where: Sequence[Tuple[int, int, int]]) -> np.ndarray:
    for idx in where:
        a[idx] = np.nan
    return a


def _with_blocks(a: np.ndarray) -> np.ndarray:
    a[2:4, 2:4, 2:4] = np.nan
    a[10:12, 5:7, 8:10] = np.inf
    a[20:22, 15:17, 12:14] = -np.inf
    return a


def _nan_affine() -> np.ndarray:
    a = np.diag([0.8, 0.9, 2.0, 1.0])
    a[0, 1] = np.nan
    return a


def _empty(p: Path) -> Path:
    p.write_bytes(b"")
    return p


@pytest.fixture(params=sorted(READER_CASES))
def hostile(request, tmp_path) -> Tuple[str, Path, str]:
    """(case name, hostile file or folder, expected message fragment)."""
    build, expect = READER_CASES[request.param]
    src = tmp_path / "in"
    src.mkdir()
    return request.param, build(src), expect
