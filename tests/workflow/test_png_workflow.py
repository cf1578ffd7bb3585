"""The 2D PNG workflow: the lung_png2d bundle through ``run_bundle`` (MONAI ``SupervisedTrainer`` +
volseg handlers) on small synthetic PNG pairs (three classes, blue tumour)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from volseg.data.png import group_key, png_split, split_cases, split_groups
from volseg.errors import InputError
from volseg.training import recipe_config_files, run_bundle

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "lung_png2d"
SMALL_NET = {"_target_": "monai.networks.nets.UNet", "spatial_dims": 2, "in_channels": 1,
             "out_channels": "@num_classes", "channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1}
TINY = {"network_def": SMALL_NET, "roi_size": [32, 32], "batch_size": 4, "device": "cpu", "learning_rate": 5e-3,
        "patience_steps": 0}


def test_split_is_seeded_60_20_20() -> None:
    items = list(range(20))
    a = split_cases(items, seed=42)
    assert [len(p) for p in a] == [12, 4, 4]
    assert split_cases(items, seed=42) == a and split_cases(items, seed=1) != a
    assert sorted(sum(a, [])) == items


def test_split_by_patient_keeps_slices_together() -> None:
    pairs = [{"name": f"p{p}_z{z:04d}"} for p in range(5) for z in range(4)]
    parts = split_groups(pairs, seed=42, split_by="prefix")
    owners = [{group_key(x["name"], "prefix") for x in part} for part in parts]
    assert [len(o) for o in owners] == [3, 1, 1] and not (owners[0] & owners[2]) and not (owners[1] & owners[2])
    assert group_key("ct/a/x_1", "folder") == "ct/a" and group_key("ct/a/x_1", "prefix") == "ct/a/x"
    with pytest.raises(InputError, match="only 1 group"):
        split_groups(pairs[:4], split_by="prefix")


def test_png_workflow_end_to_end(png_dataset: Path, tmp_path: Path) -> None:
    """Default recipe (Dice + CE, early stopping on validation mean Dice): outputs, curves and test metrics."""
    out = tmp_path / "run"
    res = run_bundle(BUNDLE, png_dataset, output_dir=out, overrides=dict(TINY, max_epochs=25, patience=4, n_samples=3))
    for key in ("model_path", "checkpoint", "metrics_csv", "curves"):
        assert Path(res[key]).is_file(), key
    with open(res["metrics_csv"]) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == res["epochs"]
    assert set(rows[0]) >= {"loss", "train_accuracy", "val_loss", "val_accuracy", "val_mean_dice", "dice_tumour",
                            "dice_lung", "lr"}
    test = json.loads((out / "eval" / "test_metrics.json").read_text())
    assert test == res["test_metrics"]
    assert test["split"] == "test" and test["n_images"] == 4
    assert test["accuracy"] > 0.9, test
    assert test["dice"]["tumour"] > 0.5 and test["dice"]["lung"] > 0.8, test
    for name in ("logs/curves.png", "eval/samples.png"):
        with Image.open(out / name) as im:
            assert im.size[0] > 500, name
    ckpt = torch.load(res["checkpoint"], weights_only=True)
    assert {"model", "optimizer", "scheduler", "history"} <= set(ckpt)
    assert ckpt["scheduler"]["last_epoch"] == res["epochs"]
    exported = json.loads((out / "configs" / "inference.json").read_text())  # the run is a bundle of its own
    assert exported["roi_size"] == [32, 32] and exported["bundle_root"] == str(out.resolve())


def _test_loss(model_path: str, dataset: Path) -> float:
    """Cross-entropy of ``model_path`` on the seeded test split, per image then averaged (as the evaluator)."""
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    from volseg.transforms.png2d import png2d_transforms

    net = UNet(2, 1, 3, channels=(8, 16, 32), strides=(2, 2), num_res_units=1)
    net.load_state_dict(torch.load(model_path, weights_only=True))
    xform = png2d_transforms("val", (32, 32), 3)
    loss = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=0.0)
    net.eval()
    vals = []
    with torch.no_grad():
        for pair in png_split(dataset, seed=42)["test"]:
            d = xform(pair)
            vals.append(float(loss(net(d["image"][None]), d["label"][None])))
    return float(np.mean(vals))


def test_seed_recipe_stops_on_validation_loss_and_tests_the_best_weights(png_dataset: Path, tmp_path: Path) -> None:
    """The tutorial's recipe: CE, early stopping on validation loss (lower is better); min_delta makes late
    small gains not count, so training stops early, and the test runs on the best epoch's weights."""
    res = run_bundle(BUNDLE, png_dataset, output_dir=tmp_path / "es", config_files=recipe_config_files(BUNDLE, "seed"),
                     overrides=dict(TINY, max_epochs=30, min_delta=0.02, n_samples=0, median_kernel=3))
    val = [r["val_loss"] for r in res["history"]]
    assert res["key_metric"] == "val_loss" and res["epochs"] < 30
    assert res["epochs"] == res["best_epoch"] + 3  # patience 3
    assert res["best_metric"] == pytest.approx(val[res["best_epoch"] - 1])
    assert all(v > res["best_metric"] - 0.02 for v in val[res["best_epoch"]:])  # no later gain beyond min_delta
    assert val[-1] != pytest.approx(res["best_metric"])
    assert [r["lr"] for r in res["history"]] == [5e-3] * len(val)  # constant learning rate
    last = torch.load(tmp_path / "es" / "models" / "checkpoint_last.pt", weights_only=True)["model"]
    best = torch.load(res["model_path"], weights_only=True)
    assert any(not torch.equal(last[k], best[k]) for k in best)
    assert res["test_metrics"]["loss"] == pytest.approx(_test_loss(res["model_path"], png_dataset), rel=1e-4)


def test_bad_pairs_stop_before_training(png_dataset: Path, tmp_path: Path) -> None:
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:2, :2] = (255, 255, 0)
    Image.fromarray(rgb).save(png_dataset / "labels" / "case_03.png")
    with pytest.raises(InputError, match=r"case_03\.png.*RGB\(255, 255, 0\) in 4 pixels"):
        run_bundle(BUNDLE, png_dataset, output_dir=tmp_path / "bad", overrides=dict(TINY, max_epochs=1))
    assert not (tmp_path / "bad").exists()


def test_same_seed_same_model(png_dataset: Path, tmp_path: Path) -> None:
    """The same command with the same seed trains the same model, tensor for tensor; another seed does not."""
    over = dict(TINY, max_epochs=2, n_samples=0, augment=True)
    runs = [run_bundle(BUNDLE, png_dataset, output_dir=tmp_path / name, overrides=dict(over, seed=seed))
            for name, seed in (("a", 3), ("b", 3), ("c", 4))]
    a, b, c = (torch.load(r["model_path"], weights_only=True) for r in runs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0]["history"][-1]["loss"] == runs[1]["history"][-1]["loss"]
    assert any(not torch.equal(a[k], c[k]) for k in a)
