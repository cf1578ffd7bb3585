"""The 2D PNG workflow end to end on small synthetic PNG pairs (three classes, blue tumour)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from volseg.errors import InputError
from volseg.workflows.png2d import PNG2DTrainer, split_cases


def _net(seed: int = 0) -> torch.nn.Module:
    from monai.networks.nets import UNet

    torch.manual_seed(seed)
    return UNet(2, 1, 3, channels=(8, 16, 32), strides=(2, 2), num_res_units=1)


def test_split_is_seeded_60_20_20() -> None:
    items = list(range(20))
    a = split_cases(items, seed=42)
    assert [len(p) for p in a] == [12, 4, 4]
    assert split_cases(items, seed=42) == a and split_cases(items, seed=1) != a
    assert sorted(sum(a, [])) == items


def test_png_workflow_end_to_end(png_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    trainer = PNG2DTrainer(
        dataset_dir=png_dataset, output_dir=out, network=_net(), spatial_size=(32, 32),
        max_epochs=25, batch_size=4, learning_rate=5e-3, patience=3, n_samples=3, device="cpu", progress=False,
    )
    res = trainer.run()
    assert (res["n_train"], res["n_val"], res["n_test"]) == (12, 4, 4)
    for key in ("model", "metrics_csv", "curves", "samples"):
        assert Path(res[key]).stat().st_size > 1000 or key == "metrics_csv"
    with open(res["metrics_csv"]) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == res["epochs_run"] and set(rows[0]) >= {"train_accuracy", "val_accuracy", "train_loss", "val_loss"}
    test = json.loads((out / "eval" / "test_metrics.json").read_text())
    assert test["split"] == "test" and test["n_images"] == 4
    assert test["accuracy"] > 0.9, test
    assert test["dice"]["tumour"] > 0.5 and test["dice"]["lung"] > 0.8, test
    with Image.open(res["curves"]) as im:
        assert im.size[0] > 500
    state = torch.load(res["model"], weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_early_stopping_triggers_and_restores_best(png_dataset: Path, tmp_path: Path) -> None:
    """min_delta makes late small gains not count: training must stop early and keep the best epoch."""
    trainer = PNG2DTrainer(
        dataset_dir=png_dataset, output_dir=tmp_path / "es", network=_net(1), spatial_size=(32, 32),
        max_epochs=30, batch_size=4, learning_rate=5e-3, patience=3, min_delta=0.02, n_samples=0,
        median_kernel=0, device="cpu", progress=False,
    )
    res = trainer.run()
    hist = trainer.history
    val = [r["val_loss"] for r in hist]
    assert res["stopped_early"] and res["epochs_run"] < 30
    assert res["epochs_run"] == res["best_epoch"] + 3
    assert res["best_val_loss"] == pytest.approx(val[res["best_epoch"] - 1])
    assert val[-1] != pytest.approx(res["best_val_loss"])
    # the saved model is the best epoch's, not the last one's: its validation loss matches the best
    net = _net(2)
    net.load_state_dict(torch.load(res["model"], weights_only=True))
    from volseg.transforms.png2d import load_png_pairs, png2d_transforms

    pairs = [p for p in trainer.pairs() if p["name"] in res["split"]["val"]]
    xform = png2d_transforms("val", (32, 32), 0, load=False)
    batch = [xform(d) for d in load_png_pairs(pairs)]
    img = torch.stack([b["image"] for b in batch])
    lab = torch.stack([b["label"] for b in batch]).long()[:, 0]
    net.eval()
    with torch.no_grad():
        loss = float(torch.nn.functional.cross_entropy(net(img), lab))
    assert loss == pytest.approx(res["best_val_loss"], rel=1e-4)


def test_bad_pairs_stop_before_training(png_dataset: Path, tmp_path: Path) -> None:
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:2, :2] = (255, 255, 0)
    Image.fromarray(rgb).save(png_dataset / "labels" / "case_03.png")
    trainer = PNG2DTrainer(dataset_dir=png_dataset, output_dir=tmp_path / "bad", network=_net(), progress=False)
    with pytest.raises(InputError, match=r"case_03\.png.*RGB\(255, 255, 0\) in 4 pixels"):
        trainer.run()
    assert not (tmp_path / "bad").exists()


def test_split_by_patient_keeps_slices_together() -> None:
    from volseg.workflows.png2d import group_key, split_groups

    pairs = [{"name": f"p{p}_z{z:04d}"} for p in range(5) for z in range(4)]
    parts = split_groups(pairs, seed=42, split_by="prefix")
    owners = [{group_key(x["name"], "prefix") for x in part} for part in parts]
    assert [len(o) for o in owners] == [3, 1, 1] and not (owners[0] & owners[2]) and not (owners[1] & owners[2])
    assert group_key("ct/a/x_1", "folder") == "ct/a" and group_key("ct/a/x_1", "prefix") == "ct/a/x"
    with pytest.raises(InputError, match="only 1 group"):
        split_groups(pairs[:4], split_by="prefix")
