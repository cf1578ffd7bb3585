"""The training bundles through MONAI's own runner (subprocess), run_bundle, resume, DDP and evaluate."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.conftest import BUNDLES, REPO, TINY, overrides_args, run_monai_bundle

NAMES = ["ct_unet3d", "ct_deeplab3d", "mri_unet3d"]


def tiny(name: str, **kw) -> dict:
    """TINY overrides fitted to the bundle (deeplab takes 5 stage widths; the MRI toy data is at 4 mm)."""
    over = dict(TINY, **kw)
    if name == "ct_deeplab3d":
        over["channels"] = [8, 8, 16, 16, 32]
    if name.startswith("mri"):
        over["pixdim"] = [4.0, 4.0, 4.0]
    return over


def _rows(path: Path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_outputs(out: Path, epochs: int) -> list:
    assert (out / "models" / "model.pt").is_file() and (out / "models" / "checkpoint_last.pt").is_file()
    assert (out / "logs" / "curves.png").stat().st_size > 1000
    assert list((out / "logs").glob("events.out.tfevents.*"))
    rows = _rows(out / "logs" / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1))
    return rows


@pytest.mark.parametrize("name", NAMES)
def test_bundle_files_follow_spec(name):
    root = BUNDLES / name
    for rel in ("LICENSE", "configs/metadata.json", "configs/train.json", "configs/evaluate.json",
                "configs/multi_gpu_train.json", "configs/logging.conf", "docs/README.md"):
        assert (root / rel).is_file(), rel
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    for key in ("version", "changelog", "monai_version", "pytorch_version", "numpy_version",
                "required_packages_version", "task", "description", "authors", "copyright", "network_data_format"):
        assert key in meta, key
    assert meta["version"] in meta["changelog"]
    assert "Apache License" in (root / "LICENSE").read_text()
    readme = (root / "docs" / "README.md").read_text()
    assert f"--config_file bundles/{name}/configs/train.json" in readme and "torchrun --nproc_per_node=2" in readme


@pytest.mark.parametrize("name", NAMES)
def test_training_properties_resolve(name, ct_dataset, mri_dataset, tmp_path):
    from monai.bundle import ConfigWorkflow

    data = mri_dataset if name.startswith("mri") else ct_dataset
    wf = ConfigWorkflow(config_file=str(BUNDLES / name / "configs" / "train.json"), workflow_type="train",
                        bundle_root=str(BUNDLES / name), dataset_dir=str(data), output_dir=str(tmp_path), **tiny(name))
    wf.initialize()
    assert not wf.check_properties()
    p = wf.parser
    assert p.get_parsed_content("train#trainer#max_epochs") == 2
    assert type(p.get_parsed_content("train#trainer")).__name__ == "SupervisedTrainer"
    assert len(p.get_parsed_content("train#dataset")) == 2
    assert type(p.get_parsed_content("train#inferer")).__name__ == "SimpleInferer"
    assert type(p.get_parsed_content("validate#evaluator")).__name__ == "SupervisedEvaluator"
    assert wf.train_dataset_data is not None


@pytest.fixture(scope="module")
def trained_ct(ct_dataset, tmp_path_factory):
    """ct_unet3d trained 2 epochs by the issue's first command (run training + meta_file)."""
    out = tmp_path_factory.mktemp("ct_run")
    proc = run_monai_bundle(["training", "--meta_file", "bundles/ct_unet3d/configs/metadata.json",
                             "--config_file", "bundles/ct_unet3d/configs/train.json", "--dataset_dir", str(ct_dataset),
                             "--output_dir", str(out)] + overrides_args(TINY))
    return out, proc


@pytest.mark.bundle
def test_ct_unet3d_trains_via_monai_bundle(trained_ct):
    out, proc = trained_ct
    rows = _check_outputs(out, 2)
    for r in rows:  # one validation case with both labels: MONAI's MeanDice is the mean of the two Dice
        assert 0.0 <= float(r["dice_lung"]) <= 1.0 and 0.0 <= float(r["dice_lesion"]) <= 1.0
        assert float(r["val_mean_dice"]) == pytest.approx((float(r["dice_lung"]) + float(r["dice_lesion"])) / 2,
                                                          abs=1e-5)
    assert "M params" in proc.stdout


@pytest.mark.bundle
@pytest.mark.parametrize("name", ["ct_deeplab3d", "mri_unet3d"])
def test_other_bundles_train_default_run_id(name, ct_dataset, mri_dataset, tmp_path):
    data = mri_dataset if name.startswith("mri") else ct_dataset
    over = tiny(name, max_epochs=1)
    run_monai_bundle(["--config_file", f"bundles/{name}/configs/train.json", "--dataset_dir", str(data),
                      "--output_dir", str(tmp_path)] + overrides_args(over))
    _check_outputs(tmp_path, 1)


@pytest.mark.bundle
def test_evaluate_writes_per_case_dice(trained_ct, ct_dataset):
    out, _ = trained_ct
    cfgs = json.dumps(["bundles/ct_unet3d/configs/train.json", "bundles/ct_unet3d/configs/evaluate.json"])
    run_monai_bundle(["evaluating", "--config_file", cfgs, "--dataset_dir", str(ct_dataset), "--output_dir", str(out)]
                     + overrides_args(TINY))
    rows = _rows(out / "eval" / "dice_per_case.csv")
    assert len(rows) == 1 and rows[0]["case"].endswith(".nii.gz")
    assert {"dice_lung", "dice_lesion", "mean_dice"} <= set(rows[0])
    # models/model.pt is the best epoch's: evaluating it on the validation case gives that epoch's Dice
    history = _rows(out / "logs" / "metrics.csv")
    best = max(history, key=lambda r: float(r["val_mean_dice"]))
    for key in ("dice_lung", "dice_lesion"):
        assert float(rows[0][key]) == pytest.approx(float(best[key]), abs=1e-4), key
    assert float(rows[0]["mean_dice"]) == pytest.approx((float(rows[0]["dice_lung"]) + float(rows[0]["dice_lesion"])) / 2,
                                                        abs=1e-5)


def test_same_seed_same_model(ct_dataset, tmp_path):
    """ct_unet3d at tiny settings, twice with one seed: identical model.pt tensors (random crops, shuffling,
    initialisation all seeded); a second seed gives another model."""
    import torch

    from volseg.training import run_bundle

    over = dict(TINY, max_epochs=1)
    paths = [run_bundle(BUNDLES / "ct_unet3d", ct_dataset, output_dir=tmp_path / name,
                        overrides=dict(over, seed=seed))["model_path"] for name, seed in (("a", 5), ("b", 5), ("c", 6))]
    a, b, c = (torch.load(p, weights_only=True) for p in paths)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_resume_keeps_epochs_and_history(ct_dataset, tmp_path):
    import torch

    from volseg.training import run_bundle

    over = dict(TINY, max_epochs=2, val_interval=1)
    first = run_bundle(BUNDLES / "ct_unet3d", ct_dataset, output_dir=tmp_path, overrides=over)
    assert first["epochs"] == 2
    second = run_bundle(BUNDLES / "ct_unet3d", ct_dataset, output_dir=tmp_path,
                        overrides=dict(over, max_epochs=3, resume=True))
    assert second["epochs"] == 3
    assert [h["epoch"] for h in second["history"]] == [1, 2, 3]
    assert second["history"][:2] == first["history"]
    rows = _check_outputs(tmp_path, 3)
    assert [float(r["loss"]) for r in rows[:2]] == pytest.approx([h["loss"] for h in first["history"]], rel=1e-4)
    ckpt = torch.load(tmp_path / "models" / "checkpoint_last.pt", weights_only=True)
    assert ckpt["epoch"] == 3 and {"model", "optimizer", "scheduler", "history"} <= set(ckpt)
    assert ckpt["optimizer"]["state"], "the optimizer's moments are checkpointed"
    # the best over all epochs, those before the resume included (test_resume.py checks model.pt)
    scores = [h["val_mean_dice"] for h in second["history"]]
    assert second["best_metric"] == pytest.approx(max(scores))
    assert second["best_epoch"] == 1 + scores.index(max(scores))


def test_early_stopping(ct_dataset, tmp_path):
    from volseg.training import run_bundle

    res = run_bundle(BUNDLES / "ct_unet3d", ct_dataset, output_dir=tmp_path,
                     overrides=dict(TINY, max_epochs=6, learning_rate=0.0, patience=1, min_delta=0.5))
    assert res["epochs"] == 2  # epoch 1 sets the best, epoch 2 does not beat it by 0.5


@pytest.mark.bundle
def test_torchrun_two_process_gloo(ct_dataset, tmp_path):
    cfgs = json.dumps(["bundles/ct_unet3d/configs/train.json", "bundles/ct_unet3d/configs/multi_gpu_train.json"])
    proc = run_monai_bundle(["training", "--config_file", cfgs, "--dataset_dir", str(ct_dataset),
                             "--output_dir", str(tmp_path)] + overrides_args(TINY),
                            launcher=[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                                      "--master_port=29533"])
    _check_outputs(tmp_path, 2)
    assert proc.stdout.count("epoch 2/2: loss") == 1  # rank 0 logs alone


def test_cli_train_and_errors(ct_dataset, tmp_path):
    from volseg.cli import main

    args = ["train", str(BUNDLES / "ct_unet3d"), "--dataset-dir", str(ct_dataset), "--output-dir", str(tmp_path)]
    over = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in dict(TINY, max_epochs=1).items()]
    assert main(args + over) == 0
    assert (tmp_path / "models" / "model.pt").is_file()
    bad = tmp_path / "bad"
    shutil.copytree(ct_dataset, bad)
    (bad / "imagesTr" / "case_000.nii.gz").unlink()
    (bad / "labelsTr" / "case_001.nii.gz").write_bytes(b"junk")
    proc = subprocess.run([sys.executable, "-m", "volseg", "train", str(BUNDLES / "ct_unet3d"), "--dataset-dir", str(bad),
                           "--output-dir", str(tmp_path / "o2"), "max_epochs=1"], cwd=REPO, capture_output=True,
                          encoding="utf-8", errors="replace", timeout=120)
    assert proc.returncode != 0
    assert "2 bad datalist entries" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o2").exists()


@pytest.mark.slow
def test_phantom_dice_above_0_8(tmp_path):
    """ct_unet3d at reduced size on 8 phantoms (3 mm, 48^3 patches, 8-16-32-64 U-Net, 30 epochs)."""
    from volseg.data import write_phantom_dataset
    from volseg.training import run_bundle

    data = write_phantom_dataset(tmp_path / "ds", 8, progress=False)
    res = run_bundle(BUNDLES / "ct_unet3d", data, output_dir=tmp_path / "run", overrides=PHANTOM_OVERRIDES)
    assert res["best_metric"] > 0.8
    last = [h for h in res["history"] if "dice_lesion" in h][-1]
    assert last["dice_lung"] > 0.8 and last["dice_lesion"] > 0.6


PHANTOM_OVERRIDES = {"max_epochs": 30, "val_interval": 5, "roi_size": [48, 48, 48], "pixdim": [3.0, 3.0, 3.0],
                     "channels": [8, 16, 32, 64], "learning_rate": 0.003, "batch_size": 2, "num_samples": 2,
                     "device": "cpu", "seed": 0, "cache_rate": 1.0}


@pytest.mark.bundle
def test_runner_output_folder_is_a_bundle_that_predicts_as_the_runner_does(trained_ct, ct_dataset, tmp_path):
    """Training through python -m monai.bundle run writes the run's configs into output_dir (the
    BundleExport handler); that folder then gives the same mask through the runner and volseg predict."""
    import nibabel as nib
    import numpy as np

    import volseg

    out, _ = trained_ct
    cfg = json.loads((out / "configs" / "inference.json").read_text())
    assert cfg["channels"] == TINY["channels"] and cfg["roi_size"] == TINY["roi_size"]
    assert cfg["inferer"]["_target_"] == "volseg.inference.StreamingInferer"
    image = sorted((ct_dataset / "imagesTr").glob("*.nii.gz"))[0]
    run_monai_bundle(["--config_file", str(out / "configs" / "inference.json"), "--dataset_dir", str(image),
                      "--output_dir", str(tmp_path / "runner"), "--device", "$torch.device('cpu')",
                      "--model_path", str(out / "models" / "model.pt")])
    ref = np.asarray(nib.load(str(next((tmp_path / "runner" / "predictions").glob("*.nii.gz")))).dataobj)
    got = volseg.predict(image, tmp_path / "v.nii.gz", model=out, backend="eager", progress=False)[0].numpy()
    assert got.shape == ref.shape and (got == ref).mean() >= 0.9999
