"""Each hostile input of issue 12, through the CLI in a subprocess under a memory cap: exit 1, exactly
one stderr line naming the file and the problem, no traceback, no output, no temporary left."""
from __future__ import annotations

import numpy as np
import pytest

from tests.robustness.conftest import RSS_MB, leftovers, run_volseg


def _one_clean_line(run, path, expect: str) -> str:
    assert run.rc == 1, (run.rc, run.err)
    assert len(run.err_lines) == 1, run.err
    line = run.err_lines[0]
    assert line.startswith("volseg: error: ") and "Traceback" not in run.err
    assert str(path) in line and expect in line, line
    return line


def test_info_refuses(hostile):
    name, path, expect = hostile
    run = run_volseg(["info", path])
    _one_clean_line(run, path, expect)
    assert run.out == ""
    assert run.maxrss_mb < RSS_MB, f"{name}: {run.maxrss_mb:.0f} MB"


def test_convert_refuses_and_writes_nothing(hostile, tmp_path):
    name, path, expect = hostile
    out = tmp_path / "out"
    out.mkdir()
    run = run_volseg(["convert", path, out / "x.nii.gz"])
    _one_clean_line(run, path, expect)
    assert leftovers(out) == []
    assert run.maxrss_mb < RSS_MB, f"{name}: {run.maxrss_mb:.0f} MB"


def test_nan_to_replaces_with_one_warning(tmp_path):
    from tests.robustness.conftest import READER_CASES

    src = READER_CASES["nan_blocks"][0](tmp_path)
    out = tmp_path / "fixed.nii.gz"
    run = run_volseg(["convert", src, out, "--nan-to", "-1000"])
    assert run.rc == 0, run.err
    warnings = [ln for ln in run.err_lines if "NaN/Inf" in ln]
    assert len(warnings) == 1 and "replaced 24 NaN/Inf voxels" in warnings[0] and str(src) in warnings[0]
    import nibabel as nib

    data = np.asarray(nib.load(str(out)).dataobj)
    assert np.isfinite(data).all() and int((data == -1000).sum()) == 24


def test_info_warns_once_per_bad_slice(tmp_path, small_volume):
    """A series folder with a stray non-DICOM file: `info` prints the skip warning once (it scanned twice)."""
    from tests.conftest import sitk_write_series

    d = tmp_path / "series"
    sitk_write_series(small_volume, d, (0.7, 0.8, 2.5), (0, 0, 0), np.eye(3))
    (d / "notes.txt").write_text("not dicom")
    (d / "zero.dcm").write_bytes(b"")
    run = run_volseg(["info", d])
    assert run.rc == 0, run.err
    skipped = [ln for ln in run.err_lines if "skipped" in ln]
    assert len(skipped) == 1 and "zero.dcm (empty)" in skipped[0], run.err


@pytest.mark.parametrize("limit,ok", [("100", False), ("100000", True)])
def test_voxel_limit_env(tmp_path, limit, ok):
    from tests.robustness.conftest import _nifti, ct

    src = _nifti(tmp_path / "ct.nii.gz", ct((24, 20, 16)))
    run = run_volseg(["info", src], env={"VOLSEG_MAX_VOXELS": limit})
    if ok:
        assert run.rc == 0, run.err
    else:
        _one_clean_line(run, src, "more than the limit of 100 (set VOLSEG_MAX_VOXELS")
