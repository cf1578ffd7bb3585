"""`volseg predict` under hostile conditions (issue 12), with the tiny fixed-weight bundle.

Tests running predict in a subprocess are ``slow`` (torch start-up). Covered: output
validation before the model loads, one atomic group per case, ``--nan-to``, float32 probabilities
(NIfTI-1 has no float16), temporaries of killed runs swept, a full disk named.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import expected_labels, make_bundle, write_nifti
from tests.robustness.conftest import leftovers, run_volseg, unprivileged

CAP_MB = 8192  # torch reserves address space generously


@pytest.fixture(scope="module")
def ct(phantom, tmp_path_factory) -> Path:  # noqa: F811
    path = tmp_path_factory.mktemp("ct") / "ct.nii.gz"
    hu = np.rint(phantom.image[0].numpy()).astype(np.int16)
    return write_nifti(path, hu, np.diag([6.0, 7.0, 9.0, 1.0]))


@pytest.fixture
def broken_bundle(tmp_path) -> Path:
    """A bundle whose weights cannot load: any refusal naming the output proves it came first."""
    b = make_bundle(tmp_path / "broken_bundle")
    (b / "models" / "model.pt").write_bytes(b"not a checkpoint")
    return b


def _predict(*args, **kw):
    return run_volseg(["predict", *map(str, args), "--backend", "eager", "--quiet"], cap_mb=CAP_MB, **kw)


def _main(capsys, *args):
    """``volseg predict ARGS`` in this process (no torch start-up per test): a Run with rc and stderr."""
    from tests.robustness.conftest import Run
    from volseg.cli import main

    rc = main(["predict", *map(str, args), "--backend", "eager", "--quiet"])
    cap = capsys.readouterr()
    return Run(rc, cap.out, cap.err, 0.0)


def _one_line(run, *fragments) -> str:
    assert run.rc == 1, run.err
    assert len(run.err_lines) == 1 and "Traceback" not in run.err, run.err
    for f in fragments:
        assert str(f) in run.err_lines[0], run.err_lines[0]
    return run.err_lines[0]


def test_unknown_output_suffix_refused_before_model_load(ct, broken_bundle, tmp_path, capsys):
    run = _main(capsys, "-i", ct, "-o", tmp_path / "x.txt", "-m", broken_bundle)
    _one_line(run, tmp_path / "x.txt", ".nii.gz", ".seg.dcm")
    assert not (tmp_path / "x.txt").exists()


@pytest.mark.slow  # a predict subprocess (torch start-up)
def test_read_only_output_refused_before_model_load(ct, broken_bundle, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    run = _predict("-i", ct, "-o", ro / "mask.nii.gz", "-m", broken_bundle, prefix=unprivileged())
    _one_line(run, ro / "mask.nii.gz", "permission denied")
    assert leftovers(ro) == []


def test_output_inside_input_series_refused_before_model_load(phantom, broken_bundle, tmp_path, capsys):  # noqa: F811
    from volseg.io import write_dicom_series

    series = tmp_path / "series"
    write_dicom_series(phantom.image, series)
    before = leftovers(series)
    run = _main(capsys, "-i", series, "-o", series / "mask.nii.gz", "-m", broken_bundle)
    _one_line(run, series / "mask.nii.gz", "inside the input folder")
    assert leftovers(series) == before


def test_output_equal_to_input_refused_before_model_load(ct, broken_bundle, tmp_path, capsys):
    copy = tmp_path / "ct.nii.gz"
    copy.write_bytes(ct.read_bytes())
    run = _main(capsys, "-i", copy, "-o", copy, "-m", broken_bundle)
    _one_line(run, copy, "refusing to overwrite an input")
    assert copy.read_bytes() == ct.read_bytes()


# a predict run whose second atomic write hangs (after writing its temporary) until killed
_HANG = """
import sys, time
import volseg._atomic as a
real, calls = a._finish, []
def finish(tmp, final):
    calls.append(final)
    if len(calls) == 2:
        print("hanging", flush=True)
        time.sleep(600)
    return real(tmp, final)
a._finish = finish
from volseg.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _killed_predict(args) -> None:
    p = subprocess.Popen([sys.executable, "-c", _HANG, "predict", *map(str, args), "--backend", "eager", "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert p.stdout.readline().strip() == "hanging"
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        p.stdout.close()


@pytest.mark.slow  # a predict subprocess (torch start-up)
def test_kill_9_temporaries_swept_by_next_run(ct, bundle3d, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    _killed_predict(["-i", ct, "-o", out, "-m", bundle3d, "--stats"])
    assert any(".vstmp-" in n for n in leftovers(out)), leftovers(out)  # SIGKILL: nothing cleaned up
    run = _predict("-i", ct, "-o", out, "-m", bundle3d, "--stats")
    assert run.rc == 0, run.err
    assert leftovers(out) == ["ct.nii.gz", "ct_stats.csv", "ct_stats.json"]


@pytest.mark.slow  # a predict subprocess (torch start-up)
def test_kill_9_during_rerun_keeps_previous_case_outputs(ct, bundle3d, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    out.mkdir()
    old = {"ct.nii.gz": b"old mask", "ct_stats.csv": b"old stats", "ct_stats.json": b"{}"}
    for name, data in old.items():
        (out / name).write_bytes(data)
    _killed_predict(["-i", ct, "-o", out, "-m", bundle3d, "--stats"])
    assert {n: (out / n).read_bytes() for n in old} == old  # nothing of the new case renamed yet


def test_failed_rerun_keeps_previous_case_outputs(ct, bundle3d, tmp_path, monkeypatch):  # noqa: F811
    import volseg
    from volseg.inference import report

    out = tmp_path / "out"
    volseg.predict(ct, out, model=bundle3d, backend="eager", stats=True, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise OSError("overlay failed")

    monkeypatch.setattr(report, "save_overlay", broken)
    with pytest.raises(OSError, match="overlay failed"):
        volseg.predict(ct, out, model=bundle3d, backend="eager", stats=True, overlay=True, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.slow  # a predict subprocess (torch start-up)
def test_full_disk_names_the_output(ct, bundle3d, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    run = _predict("-i", ct, "-o", out / "mask.nii", "-m", bundle3d, fsize=16 << 10)
    line = _one_line(run, out / "mask.nii", "no space left")
    assert ".vstmp" not in line
    assert leftovers(out) == []


@pytest.fixture(scope="module")
def nan_ct(phantom, tmp_path_factory) -> Path:  # noqa: F811
    hu = np.rint(phantom.image[0].numpy()).astype(np.float32)
    hu[5, 5, 5] = np.nan
    hu[10:12, 10:12, 3:5] = np.inf
    path = tmp_path_factory.mktemp("nan") / "nan_ct.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.diag([6.0, 7.0, 9.0, 1.0])), str(path))
    return path


def test_nan_input_refused_by_default(nan_ct, bundle3d, tmp_path, capsys):  # noqa: F811
    run = _main(capsys, "-i", nan_ct, "-o", tmp_path / "m.nii.gz", "-m", bundle3d)
    _one_line(run, nan_ct, "9 NaN/Inf voxels", "--nan-to")
    assert not (tmp_path / "m.nii.gz").exists()


def test_nan_to_replaces_before_inference(nan_ct, bundle3d, tmp_path):  # noqa: F811
    out = tmp_path / "m.nii.gz"
    run = _predict("-i", nan_ct, "-o", out, "-m", bundle3d, "--nan-to", "-1000")
    assert run.rc == 0, run.err
    assert len([ln for ln in run.err_lines if "NaN/Inf" in ln]) == 1
    hu = np.asarray(nib.load(str(nan_ct)).dataobj).copy()
    hu[~np.isfinite(hu)] = -1000
    np.testing.assert_array_equal(np.asarray(nib.load(str(out)).dataobj), expected_labels(hu))


def test_float32_probabilities(ct, bundle3d, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "out"
    run = _main(capsys, "-i", ct, "-o", out, "-m", bundle3d, "--save-probabilities", "float32")
    assert run.rc == 0, run.err
    prob = nib.load(str(out / "ct_prob.nii.gz"))
    p = np.asarray(prob.dataobj, dtype=np.float32)
    assert p.shape[-1] == 3 and np.allclose(p.sum(-1), 1.0, atol=2e-2)
