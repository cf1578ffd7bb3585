"""volseg evaluate: Dice / HD95 / MSD in mm on masks whose answers are known by construction."""
from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest


def _box(shape, lo, hi, label=1):
    m = np.zeros(shape, np.uint8)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = label
    return m


def test_evaluate_case_known_values():
    from volseg.inference.evaluation import evaluate_case

    ref = _box((30, 30, 30), (10, 10, 10), (20, 20, 20))
    pred = _box((30, 30, 30), (12, 10, 10), (22, 20, 20))  # shifted 2 voxels along x
    rows = evaluate_case(pred, ref, labels=[1, 2], spacing=(3.0, 1.0, 1.0))
    r1, r2 = rows
    assert r1["dice"] == pytest.approx(2 * 800 / 2000)
    assert r1["hd95_mm"] == pytest.approx(6.0)  # 2 voxels x 3 mm
    assert 0 < r1["msd_mm"] < 6.0
    assert r2 == {"label": 2, "pred_voxels": 0, "ref_voxels": 0, "dice": 1.0, "hd95_mm": 0.0, "msd_mm": 0.0}
    same = evaluate_case(ref, ref, labels=[1], spacing=(3.0, 1.0, 1.0))[0]
    assert same["dice"] == 1.0 and same["hd95_mm"] == 0.0 and same["msd_mm"] == 0.0


def test_cli_evaluate_folders(tmp_path):
    aff = np.diag([2.0, 2.0, 5.0, 1.0])
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref").mkdir()
    ref = _box((20, 20, 10), (5, 5, 2), (15, 15, 8))
    for name, shift in (("a", 0), ("b", 1)):
        nib.save(nib.Nifti1Image(ref, aff), str(tmp_path / "ref" / f"{name}.nii.gz"))
        nib.save(nib.Nifti1Image(np.roll(ref, shift, axis=0), aff), str(tmp_path / "pred" / f"{name}.nii.gz"))
    out = tmp_path / "metrics.csv"
    res = subprocess.run([sys.executable, "-m", "volseg", "evaluate", "--pred", str(tmp_path / "pred"), "--ref",
                          str(tmp_path / "ref"), "-o", str(out)], capture_output=True, encoding="utf-8", errors="replace")
    assert res.returncode == 0, res.stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith("case,label,pred_voxels,ref_voxels,dice,hd95_mm,msd_mm") and len(lines) == 3
    b = lines[2].split(",")
    assert b[0] == "b" and float(b[5]) == pytest.approx(2.0)  # 1 voxel x 2 mm
    assert (tmp_path / "metrics_summary.csv").is_file() and "Dice" in res.stdout


def test_evaluate_rejects_other_grid(tmp_path):
    from volseg.errors import InputError
    from volseg.inference.evaluation import evaluate

    m = _box((10, 10, 10), (2, 2, 2), (6, 6, 6))
    nib.save(nib.Nifti1Image(m, np.eye(4)), str(tmp_path / "p.nii.gz"))
    nib.save(nib.Nifti1Image(m, np.diag([1.0, 1.0, 2.0, 1.0])), str(tmp_path / "r.nii.gz"))
    with pytest.raises(InputError, match="affine differs"):
        evaluate(tmp_path / "p.nii.gz", tmp_path / "r.nii.gz")
    nib.save(nib.Nifti1Image(m, np.eye(4)), str(tmp_path / "r.nii.gz"))
    res = evaluate(tmp_path / "p.nii.gz", tmp_path / "r.nii.gz", tmp_path / "eval")
    assert res["mean_dice"] == 1.0 and res["cases"][0]["case"] == "r"
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["evaluation.csv", "evaluation_summary.csv"]
