"""``volseg demo``: bundle lookup and the --quick run end to end (outputs exist and are non-trivial)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from volseg.demo import _mean_dice, find_bundle
from volseg.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
def test_find_bundle_and_clear_error() -> None:
    assert find_bundle("lung_png2d") == REPO / "bundles" / "lung_png2d"
    with pytest.raises(ConfigError, match=r"bundle 'nope' not found .*available: .*lung_png2d"):
        find_bundle("nope")


def test_mean_dice_reads_evaluation_forms() -> None:
    assert _mean_dice({"mean_dice": 0.9}) == 0.9
    assert _mean_dice([{"dice": 0.8}, {"dice": 1.0}, {"dice": None}]) == pytest.approx(0.9)
    with pytest.raises(ConfigError):
        _mean_dice(3)


def test_demo_quick_end_to_end(tmp_path: Path) -> None:
    import nibabel as nib
    import numpy as np

    out = tmp_path / "demo"
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONWARNINGS="ignore")
    res = subprocess.run([sys.executable, "-m", "volseg", "demo", "--quick", "--out", str(out)],
                         capture_output=True, encoding="utf-8", errors="replace", timeout=300, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    m = re.search(r"Dice on the held-out case: ([0-9.]+)", res.stdout)
    assert m, res.stdout
    summary = json.loads((out / "demo_summary.json").read_text())
    files = summary["files"]
    for what in ("trained model", "training curves", "NIfTI mask", "DICOM SEG", "overlay PNG", "stats",
                 "evaluation table", "held-out phantom (DICOM series)"):
        assert what in files and Path(files[what]).stat().st_size > 0, what
        assert files[what] in res.stdout
    mask = nib.load(files["NIfTI mask"])
    assert mask.get_data_dtype() in (np.uint8, np.uint16) and np.asarray(mask.dataobj).any()
    truth = nib.load(files["held-out truth"])
    np.testing.assert_allclose(mask.affine, truth.affine, atol=1e-4)
    assert mask.shape == truth.shape


def test_hold_out_last_case_both_layouts(tmp_path: Path) -> None:
    from volseg.demo import hold_out_last

    ds = tmp_path / "msd"
    (ds / "imagesTr").mkdir(parents=True)
    (ds / "labelsTr").mkdir()
    for i in range(3):
        (ds / "imagesTr" / f"c{i}.nii.gz").write_text("i")
        (ds / "labelsTr" / f"c{i}.nii.gz").write_text("l")
    cases = [{"image": f"imagesTr/c{i}.nii.gz", "label": f"labelsTr/c{i}.nii.gz"} for i in range(3)]
    (ds / "dataset.json").write_text(json.dumps({"training": cases, "numTraining": 3}))
    held = hold_out_last(ds, tmp_path / "held")
    meta = json.loads((ds / "dataset.json").read_text())
    assert meta["numTraining"] == 2 and cases[2] not in meta["training"]
    assert held["image"].read_text() == "i" and held["truth"].read_text() == "l"
    assert not (ds / "imagesTr" / "c2.nii.gz").exists()
    (ds / "dataset.json").unlink()
    held = hold_out_last(ds, tmp_path / "held2")
    assert held["image"].name == "image_c1.nii.gz" and sorted(p.name for p in (ds / "imagesTr").iterdir()) == ["c0.nii.gz"]


def test_demo_refuses_a_foreign_folder(tmp_path: Path) -> None:
    from volseg.demo import run_demo

    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not a volseg demo folder"):
        run_demo(tmp_path, quick=True)
    assert (tmp_path / "mine.txt").read_text() == "keep"
