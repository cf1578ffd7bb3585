"""The lung_png2d bundle through MONAI's own runner (subprocess): train (default recipe and the seed
recipe as an extra config file) -> evaluate -> DDP on CPU -> inference on PNGs and volumes."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.workflow.conftest import write_png_pairs

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "lung_png2d" / "configs"
SMALL_NET = {
    "network_def": {
        "_target_": "monai.networks.nets.UNet", "spatial_dims": 2, "in_channels": 1,
        "out_channels": "@num_classes", "channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1,
    }
}


def _run(cmd: list, tmp: Path) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, encoding="utf-8", errors="replace", timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


def _configs(*names: str, small: Path) -> str:
    files = [str(CONFIGS / n) for n in names]
    files.insert(1, str(small))
    return repr(files)


@pytest.fixture
def small_net(tmp_path: Path) -> Path:
    path = tmp_path / "small_net.json"
    path.write_text(json.dumps(SMALL_NET))
    return path


@pytest.mark.bundle
def test_bundle_train_then_evaluate(tmp_path: Path, small_net: Path) -> None:
    data = tmp_path / "data"
    write_png_pairs(data, n=10)
    out = tmp_path / "out"
    common = ["--dataset_dir", str(data), "--output_dir", str(out), "--roi_size", "[32,32]", "--batch_size", "4"]
    log = _run([sys.executable, "-m", "monai.bundle", "run", "training", "--meta_file", str(CONFIGS / "metadata.json"),
                "--config_file", _configs("train.json", small=small_net), "--max_epochs", "2", *common], tmp_path)
    for rel in ("models/model.pt", "models/checkpoint_last.pt", "logs/metrics.csv", "logs/curves.png",
                "eval/samples.png", "eval/test_metrics.json", "eval/test_metrics.csv"):
        assert (out / rel).is_file(), rel
    with open(out / "logs" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2"] and float(rows[1]["lr"]) < float(rows[0]["lr"])  # cosine
    assert "an epoch is only 2 optimizer step(s)" in log  # 6 training images, batch 4
    assert "test (2 images): accuracy" in log and "Dice tumour" in log and ", lung " in log
    exported = json.loads((out / "configs" / "inference.json").read_text())  # RUN is a bundle of its own
    assert exported["roi_size"] == [32, 32] and exported["bundle_root"] == str(out.resolve())
    trained = json.loads((out / "eval" / "test_metrics.json").read_text())
    (out / "eval" / "test_metrics.json").unlink()
    _run([sys.executable, "-m", "monai.bundle", "run", "--config_file",
          _configs("train.json", "evaluate.json", small=small_net), *common], tmp_path)
    metrics = json.loads((out / "eval" / "test_metrics.json").read_text())
    assert metrics["n_images"] == 2 and set(metrics["dice"]) == {"tumour", "lung"}
    assert metrics["loss"] == pytest.approx(trained["loss"], rel=1e-5)  # model.pt = the weights tested after training


@pytest.mark.bundle
def test_seed_recipe_as_an_extra_config_file(tmp_path: Path, small_net: Path) -> None:
    """``--config_file "['train.json', 'recipe_seed.json']"``: cross-entropy, early stopping on validation loss."""
    data = tmp_path / "data"
    write_png_pairs(data, n=10)
    out = tmp_path / "seed"
    log = _run([sys.executable, "-m", "monai.bundle", "run", "training", "--config_file",
                _configs("train.json", "recipe_seed.json", small=small_net), "--dataset_dir", str(data),
                "--output_dir", str(out), "--roi_size", "[32,32]", "--batch_size", "4", "--max_epochs", "2"], tmp_path)
    with open(out / "logs" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["lr"] for r in rows] == ["0.001", "0.001"]  # the seed recipe: Adam 1e-3, no schedule
    assert "val_loss" in log and "(best" in log


@pytest.mark.bundle
def test_bundle_torchrun_two_processes_gloo(tmp_path: Path, small_net: Path) -> None:
    data = tmp_path / "data"
    write_png_pairs(data, n=10)
    out = tmp_path / "ddp"
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "monai.bundle", "run",
          "training", "--config_file", _configs("train.json", "multi_gpu_train.json", small=small_net),
          "--dataset_dir", str(data), "--output_dir", str(out), "--max_epochs", "2", "--roi_size", "[32,32]",
          "--batch_size", "2"], tmp_path)
    with open(out / "logs" / "metrics.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 2
    assert (out / "models" / "model.pt").is_file()


def test_bundle_default_network_is_unet_classic() -> None:
    cfg = json.loads((CONFIGS / "train.json").read_text())
    assert cfg["network_def"]["name"] == "unet_classic" and cfg["network_def"]["spatial_dims"] == 2
    from monai.bundle import ConfigParser

    parser = ConfigParser(cfg)
    parser["base_channels"] = 8
    net = parser.get_parsed_content("network_def")
    import torch

    assert tuple(net(torch.zeros(1, 1, 64, 64)).shape) == (1, 3, 64, 64)


@pytest.mark.bundle
def test_bundle_inference_2d_model_on_3d_volume(tmp_path: Path) -> None:
    """inference.json runs the 2D model slice by slice over a 3D NIfTI; the mask keeps the scan's grid."""
    import nibabel as nib
    import numpy as np
    import torch

    from tests.workflow.conftest import AFFINE, ct_with_lung_and_tumour, threshold_net_2d

    ct, lab = ct_with_lung_and_tumour()
    (tmp_path / "in").mkdir()
    nib.save(nib.Nifti1Image(ct, AFFINE), tmp_path / "in" / "chest.nii.gz")
    model_dir = tmp_path / "model"
    (model_dir / "models").mkdir(parents=True)
    torch.save(threshold_net_2d().state_dict(), model_dir / "models" / "model.pt")
    net = tmp_path / "net.json"
    net.write_text(json.dumps({"network_def": {"_target_": "torch.nn.Conv2d", "in_channels": 1,
                                               "out_channels": 3, "kernel_size": 1}}))
    _run([sys.executable, "-m", "monai.bundle", "run", "--config_file",
          repr([str(CONFIGS / "inference.json"), str(net)]), "--input_dir", str(tmp_path / "in"),
          "--output_dir", str(model_dir), "--roi_size", "[40,36]", "--median_kernel", "0"], tmp_path)
    out = nib.load(model_dir / "predictions" / "chest_seg.nii.gz")
    assert out.shape == ct.shape and out.get_data_dtype() == np.uint8
    np.testing.assert_allclose(out.affine, AFFINE, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out.dataobj), lab)


@pytest.mark.bundle
def test_bundle_inference_on_png_writes_colour_png(tmp_path: Path) -> None:
    """PNG in, colour PNG mask of the same size out (needs volseg.transforms.LoadVolumed reading PNG)."""
    import torch
    from PIL import Image

    from tests.workflow.conftest import threshold_net_2d
    from volseg.io.png import load_png_label

    img_dir, lab_dir = write_png_pairs(tmp_path / "pngs", n=2, size=32)
    model_dir = tmp_path / "model"
    (model_dir / "models").mkdir(parents=True)
    torch.save(threshold_net_2d().state_dict(), model_dir / "models" / "model.pt")
    net = tmp_path / "net.json"
    net.write_text(json.dumps({"network_def": {"_target_": "torch.nn.Conv2d", "in_channels": 1,
                                               "out_channels": 3, "kernel_size": 1}}))
    _run([sys.executable, "-m", "monai.bundle", "run", "--config_file",
          repr([str(CONFIGS / "inference.json"), str(net)]), "--input_dir", str(img_dir),
          "--output_dir", str(model_dir), "--roi_size", "[32,32]"], tmp_path)
    out = model_dir / "predictions" / "case_00_seg.png"
    with Image.open(out) as im:
        assert im.size == (32, 32) and im.mode == "RGB"
    agree = (load_png_label(out) == load_png_label(lab_dir / "case_00.png")).mean()
    assert agree > 0.95, agree
