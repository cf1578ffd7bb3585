"""Tiny synthetic datasets for the training tests (deterministic seeds)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
# tiny settings: 2 cases train, 1 validates, 24^3 patches at 6 mm, an 8-16-32 U-Net
TINY = {"max_epochs": 2, "val_interval": 1, "roi_size": [24, 24, 24], "pixdim": [6.0, 6.0, 6.0],
        "channels": [8, 16, 32], "num_samples": 1, "batch_size": 2, "device": "cpu", "cache_rate": 1.0}


@pytest.fixture(scope="session")
def ct_dataset(tmp_path_factory) -> Path:
    """MSD folder: 3 CT phantoms (48x48x32 voxels at 3x3x4.5 mm), labels 0/1 lung/2 lesion."""
    from volseg.data import write_phantom_dataset

    return write_phantom_dataset(tmp_path_factory.mktemp("ct") / "ds", 3, seed=0, progress=False,
                                 shape=(48, 48, 32), spacing=(3.0, 3.0, 4.5))


@pytest.fixture(scope="session")
def mri_dataset(tmp_path_factory) -> Path:
    """nnU-Net folder: 3 MR-like volumes (background 0, tissue ~N(300, 40)) with one tumour label."""
    import nibabel as nib

    root = tmp_path_factory.mktemp("mri") / "ds"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    zz, yy, xx = np.meshgrid(*[np.arange(24)] * 3, indexing="ij")
    for i in range(3):
        c = rng.integers(9, 15, 3)
        body = ((xx - 12) ** 2 + (yy - 12) ** 2 + (zz - 12) ** 2) < 10 ** 2
        tum = ((xx - c[0]) ** 2 + (yy - c[1]) ** 2 + (zz - c[2]) ** 2) < 4 ** 2
        img = np.where(body, rng.normal(300, 40, body.shape), 0) + 400 * tum
        nib.save(nib.Nifti1Image(img.astype(np.float32), affine), str(root / "imagesTr" / f"mr_{i}_0000.nii.gz"))
        nib.save(nib.Nifti1Image(tum.astype(np.uint8), affine), str(root / "labelsTr" / f"mr_{i}.nii.gz"))
    return root


def overrides_args(over: dict) -> List[str]:
    args: List[str] = []
    for k, v in over.items():
        args += [f"--{k}", v if isinstance(v, str) else json.dumps(v)]
    return args


def run_monai_bundle(args: List[str], cwd: Path = REPO, timeout: int = 300,
                     launcher: List[str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = (launcher or [sys.executable]) + ["-m", "monai.bundle", "run"] + args
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, encoding="utf-8", errors="replace", timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc
