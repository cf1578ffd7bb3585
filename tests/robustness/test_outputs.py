"""Outputs: umask-honouring modes, refusals before any work (read-only folder, `-o x.txt`, output inside
the input series, output = input), full disk, and temporaries of killed runs swept by the next write."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.robustness.conftest import _nifti, ct, huge_claim_nifti, leftovers, run_volseg, unprivileged


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def scan(tmp_path) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    return _nifti(src / "ct.nii.gz", np.round(ct()))


@pytest.mark.parametrize("umask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_umask_is_honoured(tmp_path, scan, umask, file_mode, dir_mode):
    out = tmp_path / "new" / "sub" / "ct.nrrd"
    assert run_volseg(["convert", scan, out], umask=umask).rc == 0
    assert _mode(out) == file_mode and _mode(out.parent) == dir_mode and _mode(out.parent.parent) == dir_mode
    slices = tmp_path / "slices"
    assert run_volseg(["convert", scan, slices, "--to", "png-slices"], umask=umask).rc == 0
    assert _mode(slices) == dir_mode
    assert {_mode(p) for p in slices.rglob("*") if p.is_file()} == {file_mode}
    assert {_mode(p) for p in slices.rglob("*") if p.is_dir()} <= {dir_mode}


def test_atomic_path_honours_umask_for_torch_save(tmp_path):
    """Trained model.pt / configs go through atomic_path: 0644 under umask 0022 (mkstemp made 0600)."""
    import torch

    from volseg._atomic import atomic_path

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "models" / "model.pt") as tmp:
            torch.save({"w": torch.zeros(2)}, tmp)
        with atomic_path(tmp_path / "configs" / "inference.json") as tmp:
            tmp.write_text("{}")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "models" / "model.pt") == 0o644
    assert _mode(tmp_path / "configs" / "inference.json") == 0o644
    assert _mode(tmp_path / "models") == 0o755


def _one_line(run, *fragments):
    assert run.rc == 1, run.err
    assert len(run.err_lines) == 1 and "Traceback" not in run.err, run.err
    for f in fragments:
        assert str(f) in run.err_lines[0], run.err_lines[0]
    return run.err_lines[0]


def test_read_only_folder_refused_before_reading(tmp_path):
    """The output check runs first: a hostile (16 GB) input is never opened when the output cannot be written."""
    src = huge_claim_nifti(tmp_path / "huge.nii.gz")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    run = run_volseg(["convert", src, ro / "x.nii.gz"], prefix=unprivileged())
    line = _one_line(run, ro / "x.nii.gz", "permission denied")
    assert "2000" not in line
    assert leftovers(ro) == []


def test_unknown_suffix_refused(tmp_path, scan):
    run = run_volseg(["convert", scan, tmp_path / "x.txt"])
    _one_line(run, tmp_path / "x.txt", "unknown volume file type '.txt'", ".nii.gz", ".nrrd")
    assert not (tmp_path / "x.txt").exists()
    run = run_volseg(["convert", scan, tmp_path / "x.txt", "--to", "png-slices"])
    _one_line(run, "a folder is expected here")
    assert not (tmp_path / "x.txt").exists()


def test_output_inside_input_series_refused(tmp_path, small_volume):
    from tests.conftest import sitk_write_series

    d = tmp_path / "series"
    sitk_write_series(small_volume, d, (0.7, 0.8, 2.5), (0, 0, 0), np.eye(3))
    before = leftovers(d)
    run = run_volseg(["convert", d, d / "mask.nii.gz"])
    _one_line(run, d / "mask.nii.gz", "inside the input folder")
    assert leftovers(d) == before


def test_output_is_input_refused(scan):
    before = scan.read_bytes()
    _one_line(run_volseg(["convert", scan, scan]), scan, "refusing to overwrite an input")
    assert scan.read_bytes() == before


def test_full_disk_names_the_output(tmp_path):
    """A write that fails for lack of space (here: a 64 KB file size limit, EFBIG) is one line naming the
    final path, not a temporary, and leaves nothing behind."""
    src = tmp_path / "in"
    src.mkdir()
    scan = _nifti(src / "noise.nii.gz", np.random.default_rng(0).normal(size=(64, 64, 32)).astype(np.float32))
    out = tmp_path / "out"
    out.mkdir()
    run = run_volseg(["convert", scan, out / "big.nii"], fsize=64 << 10)
    line = _one_line(run, out / "big.nii", "no space left")
    assert ".vstmp" not in line and ".tmp" not in line
    assert leftovers(out) == []


_HANG_IN_WRITE = """
import sys, time
from volseg._atomic import atomic_group, atomic_path
folder = sys.argv[1]
with atomic_group():
    with atomic_path(folder + "/a.nii.gz") as tmp:
        tmp.write_bytes(b"partial")
    with atomic_path(folder + "/b_stats.csv") as tmp:
        tmp.write_text("x")
        print("writing", flush=True)
        time.sleep(600)
"""


def test_killed_run_leaves_no_temporary_after_next_write(tmp_path, scan):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.nii.gz").write_bytes(b"old mask")
    p = subprocess.Popen([sys.executable, "-c", _HANG_IN_WRITE, str(out)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    p.stdout.close()
    names = leftovers(out)
    assert len([n for n in names if ".vstmp-" in n]) == 2, names  # SIGKILL: nothing could clean up
    assert (out / "a.nii.gz").read_bytes() == b"old mask"  # the group never renamed
    assert run_volseg(["convert", scan, out / "ct.nii.gz"]).rc == 0
    assert leftovers(out) == ["a.nii.gz", "ct.nii.gz"]


def test_sweep_keeps_live_and_recent_temporaries(tmp_path):
    from volseg._atomic import STALE_AFTER_S, _tmp_name, sweep_temporaries

    mine = _tmp_name(tmp_path / "mine.nii.gz")
    mine.write_bytes(b"")
    foreign = tmp_path / ".x.nii.gz.vstmp-ffffff-1-0123abcd.tmp.nii.gz"  # another host, recent
    foreign.write_bytes(b"")
    old = tmp_path / ".y.nii.gz.vstmp-ffffff-1-0123abcd.tmp.nii.gz"  # another host, stale
    old.write_bytes(b"")
    t = time.time() - STALE_AFTER_S - 60
    os.utime(old, (t, t))
    other = tmp_path / ".z.tmp.nii.gz"  # not ours: never touched
    other.write_bytes(b"")
    legacy = tmp_path / ".mask.nii.gz.k2j4x_9a.tmp.nii.gz"  # mkstemp name of older volseg versions
    legacy.write_bytes(b"")
    legacy_new = tmp_path / ".m.nii.gz.abcdefgh.tmp.nii.gz"
    legacy_new.write_bytes(b"")
    os.utime(legacy, (t, t))
    os.utime(other, (t, t))
    assert sorted(sweep_temporaries(tmp_path)) == sorted([old, legacy])
    assert mine.exists() and foreign.exists() and other.exists() and legacy_new.exists()
