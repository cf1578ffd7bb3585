"""``volseg demo``: the --quick run end to end (outputs exist and are non-trivial)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from volseg.errors import ConfigError

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
    # one progress display per step: the epoch bar and its summary line, no logging INFO lines beside them
    console = res.stdout + res.stderr
    assert " - INFO - " not in console and "Epoch[" not in console and "Engine run" not in console, console[-3000:]
    assert console.count("epoch 6/6: loss") == 1
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


def test_demo_refuses_a_foreign_folder(tmp_path: Path) -> None:
    from volseg.demo import run_demo

    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not a volseg demo folder"):
        run_demo(tmp_path, quick=True)
    assert (tmp_path / "mine.txt").read_text() == "keep"
