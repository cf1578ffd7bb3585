"""Many cases per call: torchrun sharding and the background loader."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import expected_labels

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("n, world", [(4, 2), (7, 3), (2, 4), (0, 2)])
def test_shards_are_disjoint_and_complete(n, world):
    from volseg.inference.cases import shard

    items = list(range(n))
    parts = [shard(items, r, world) for r in range(world)]
    flat = sorted(x for p in parts for x in p)
    assert flat == items


def test_torchrun_two_processes_four_cases(bundle3d, phantom, tmp_path):
    hu = np.rint(phantom.image[0].numpy()).astype(np.int16)
    data = tmp_path / "in"
    data.mkdir()
    for i in range(4):
        aff = np.diag([2.0 + i, 3.0, 4.0, 1.0])
        nib.save(nib.Nifti1Image(hu, aff), str(data / f"case{i}.nii.gz"))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "volseg", "predict", "-i", str(data),
                          "-o", str(out), "-m", str(bundle3d), "--backend", "eager", "--quiet", "--device", "cpu"],
                         capture_output=True, encoding="utf-8", errors="replace", env=env, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"case{i}.nii.gz" for i in range(4)]
    for i in range(4):
        m = nib.load(str(out / f"case{i}.nii.gz"))
        np.testing.assert_allclose(m.affine, np.diag([2.0 + i, 3.0, 4.0, 1.0]))
        np.testing.assert_array_equal(np.asarray(m.dataobj), expected_labels(hu))
    # each rank reported its own two cases
    assert res.stdout.count("wrote 2 case(s)") == 2


def test_library_batch_reuses_one_predictor(bundle3d, phantom, tmp_path, monkeypatch):
    import volseg
    from volseg.inference import predictor as pmod

    hu = np.rint(phantom.image[0].numpy()).astype(np.int16)
    for i in range(3):
        nib.save(nib.Nifti1Image(hu, np.diag([2.0, 3.0, 4.0 + i, 1.0])), str(tmp_path / f"c{i}.nii.gz"))
    built = []
    real_init = pmod.Predictor.__init__

    def counting_init(self, *a, **k):
        built.append(1)
        real_init(self, *a, **k)

    monkeypatch.setattr(pmod.Predictor, "__init__", counting_init)
    res = volseg.predict([tmp_path / f"c{i}.nii.gz" for i in range(3)], tmp_path / "o", model=bundle3d,
                         backend="eager", progress=False)
    assert sorted(res) == ["c0", "c1", "c2"] and len(built) == 1
