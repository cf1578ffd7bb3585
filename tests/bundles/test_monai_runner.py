"""``volseg predict`` writes the mask ``python -m monai.bundle run`` writes, on unmodified model-zoo
configs and zoo-style bundles (YAML with ``scripts/``, 2D slices), from NIfTI and DICOM.

Weights are overfit to a smooth target, so masks have real boundaries; agreement is per voxel.
Where a bundle inverts labels by nearest neighbour, the only voxels allowed to differ are exact
ties (a source voxel half-way between two model voxels, where both answers are nearest).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.bundles.conftest import (WHOLEBODY_OVERRIDES, agreement, dice, make_bundle_dir, overfit, run_monai,
                                    runner_mask, smooth_levels)

pytestmark = [pytest.mark.bundle, pytest.mark.slow]

@pytest.fixture(scope="module")
def spleen_runs(spleen, zoo_cases, tmp_path_factory):
    """MONAI's runner once over every case, and volseg's masks for the same cases."""
    from volseg.inference import Predictor, predict

    out = tmp_path_factory.mktemp("spleen_runner")
    run_monai(spleen, list(zoo_cases.values()), out)
    predictor = Predictor(spleen, backend="eager", device="cpu")
    vs = tmp_path_factory.mktemp("spleen_volseg")
    masks = {name: predict(src, vs / f"{name}.nii.gz", predictor=predictor, progress=False)
             for name, src in zoo_cases.items()}
    return out, vs, masks


@pytest.mark.parametrize("case", ["las", "oblique", "thin", "dicom"])
def test_spleen_bundle_matches_monai_runner(spleen_runs, zoo_cases, case):
    import nibabel as nib

    out, vs, masks = spleen_runs
    ref = runner_mask(out, zoo_cases[case])
    got = nib.load(str(vs / f"{case}.nii.gz"))
    np.testing.assert_allclose(got.affine, ref.affine, atol=1e-4)
    a, b = np.asarray(got.dataobj), np.rint(np.asarray(ref.dataobj)).astype(np.uint8)
    assert a.shape == b.shape and got.get_data_dtype() == np.uint8
    assert 0.02 < (b == 1).mean() < 0.9, "the overfit model marks a real structure"
    assert agreement(a, b) >= 0.9999, f"{case}: {int((a != b).sum())} of {a.size} voxels differ"


def test_spleen_accuracy_at_twice_the_model_resolution(spleen, tmp_path):
    """Against full-resolution truth, volseg's Dice equals MONAI's runner's (probabilities inverted,
    then argmax), and beats inverting argmax labels by nearest neighbour."""
    import nibabel as nib
    from scipy.ndimage import gaussian_filter

    from tests.bundles.conftest import phantom_file
    from volseg.inference import predict

    src = phantom_file(tmp_path, "fine", (200, 180, 60), (0.75, 0.75, 1.0), seed=21)
    hu = np.asarray(nib.load(str(src)).dataobj, dtype=np.float32)
    scaled = np.clip((hu + 57.0) / 221.0, 0, 1)
    smooth = gaussian_filter(scaled, (2.0, 2.0, 2.0))  # 1 model voxel (1.5, 1.5, 2 mm) in source voxels
    truth = ((smooth >= 0.25) & (smooth <= 0.75)).astype(np.uint8)
    run_monai(spleen, [src], tmp_path / "runner")
    ref = np.rint(np.asarray(runner_mask(tmp_path / "runner", src).dataobj)).astype(np.uint8)
    got = predict(src, tmp_path / "v.nii.gz", model=spleen, backend="eager", progress=False)[0].numpy()
    d_volseg, d_monai = dice(got, truth), dice(ref, truth)
    assert d_monai > 0.8
    assert abs(d_volseg - d_monai) <= 0.001, (d_volseg, d_monai)
    labels_first = predict(src, None, model=spleen, backend="eager", progress=False,
                           overrides={"postprocessing#transforms": [
                                          {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                                          {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
                                          {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing",
                                           "orig_keys": "image", "nearest_interp": True}]})
    assert dice(labels_first[0].numpy(), truth) < d_volseg


@pytest.mark.parametrize("case", ["las", "thin", "dicom"])
def test_wholebody_bundle_matches_monai_runner(wholebody, zoo_cases, tmp_path, case):
    """105 classes, argmax before a nearest-neighbour Invertd, replicate padding of a volume thinner
    than the window (the model grid of ``thin`` has 40 slices, the window 96)."""
    import nibabel as nib

    from volseg.inference import Predictor, predict
    from volseg.inference.invert import tie_voxels
    from volseg.io import load_volume

    src = zoo_cases[case]
    run_monai(wholebody, [src], tmp_path / "runner", overrides=WHOLEBODY_OVERRIDES)
    ref = np.rint(np.asarray(runner_mask(tmp_path / "runner", src).dataobj)).astype(np.uint8)
    predictor = Predictor(wholebody, backend="eager", device="cpu", overrides=WHOLEBODY_OVERRIDES)
    got = predict(src, tmp_path / "v.nii.gz", predictor=predictor, progress=False)[0].numpy()
    assert len(np.unique(ref)) >= 3
    source = load_volume(src)
    model = predictor.preprocess(source)
    ties = tie_voxels(model.affine, source.affine, source.shape[1:])
    differ = got != ref
    assert not (differ & ~ties).any(), f"{int((differ & ~ties).sum())} non-tie voxels differ"
    assert agreement(got, ref) >= 0.999
    assert nib.load(str(tmp_path / "v.nii.gz")).get_data_dtype() == np.uint8


YAML_BUNDLE = """\
imports:
- $import glob
- $import os
bundle_root: .
output_dir: $@bundle_root + '/eval'
datalist: []
device: $torch.device('cpu')
network_def:
  _target_: scripts.net.TinySeg
  in_channels: 1
  out_channels: 3
network: $@network_def.to(@device)
preprocessing:
  _target_: Compose
  transforms:
  - {_target_: LoadImaged, keys: image, image_only: true}
  - {_target_: EnsureChannelFirstd, keys: image, channel_dim: no_channel}
  - {_target_: Orientationd, keys: image, axcodes: RAS}
  - {_target_: Spacingd, keys: image, pixdim: [1.2, 1.2, 2.0], mode: bilinear}
  - {_target_: ScaleIntensityRanged, keys: image, a_min: -1000, a_max: 400, b_min: 0.0, b_max: 1.0, clip: true}
  - {_target_: CropForegroundd, keys: image, source_key: image, margin: 4}
  - {_target_: EnsureTyped, keys: image}
dataset: {_target_: Dataset, data: "$[{'image': i} for i in @datalist]", transform: '@preprocessing'}
dataloader: {_target_: DataLoader, dataset: '@dataset', batch_size: 1, shuffle: false, num_workers: 0}
inferer: {_target_: SlidingWindowInferer, roi_size: [64, 64, 32], sw_batch_size: 2, overlap: 0.25, mode: gaussian}
postprocessing:
  _target_: Compose
  transforms:
  - {_target_: Activationsd, keys: pred, softmax: true}
  - {_target_: Invertd, keys: pred, transform: '@preprocessing', orig_keys: image, nearest_interp: false,
     to_tensor: true}
  - {_target_: AsDiscreted, keys: pred, argmax: true}
  - {_target_: KeepLargestConnectedComponentd, keys: pred, applied_labels: [2]}
  - {_target_: SaveImaged, keys: pred, output_dir: '@output_dir', output_postfix: seg, separate_folder: false,
     resample: false}
evaluator: {_target_: SupervisedEvaluator, device: '@device', val_data_loader: '@dataloader', network: '@network',
            inferer: '@inferer', postprocessing: '@postprocessing'}
checkpointloader: {_target_: CheckpointLoader, load_path: "$@bundle_root + '/models/model.pt'",
                   load_dict: {model: '@network'}}
initialize: ["$@checkpointloader(@evaluator)"]
run: ["$@evaluator.run()"]
"""

TINY_NET = """\
import torch
from monai.networks.nets import UNet


class TinySeg(torch.nn.Module):
    def __init__(self, in_channels: int = 1, out_channels: int = 3):
        super().__init__()
        self.net = UNet(3, in_channels, out_channels, (8, 16, 32), (2, 2), num_res_units=1)

    def forward(self, x):
        return self.net(x)
"""


@pytest.fixture(scope="module")
def yaml_bundle(tmp_path_factory, train_images) -> Path:
    root = make_bundle_dir(tmp_path_factory.mktemp("yaml") / "tiny_yaml", {"inference.yaml": YAML_BUNDLE},
                           scripts={"__init__.py": "", "net.py": TINY_NET})
    overfit(root, train_images, smooth_levels([0.3, 0.9], 1.0), steps=120, crop=32)
    return root


@pytest.mark.parametrize("case", ["las", "oblique"])
def test_yaml_bundle_with_scripts_matches_monai_runner(yaml_bundle, zoo_cases, tmp_path, case):
    """YAML config, a network from the bundle's own ``scripts/``, ``EnsureChannelFirstd(channel_dim=
    "no_channel")``, a crop to the foreground, and ``KeepLargestConnectedComponentd`` (run by MONAI)."""
    from volseg.inference import predict

    from volseg.errors import ConfigError

    src = zoo_cases[case]
    run_monai(yaml_bundle, [src], tmp_path / "runner", config_file="configs/inference.yaml")
    ref = np.rint(np.asarray(runner_mask(tmp_path / "runner", src, postfix="seg").dataobj)).astype(np.uint8)
    with pytest.raises(ConfigError, match="--trust-bundle"):  # its scripts/ are code: the user must say so
        predict(src, tmp_path / "v.nii.gz", model=yaml_bundle, backend="eager", progress=False)
    got = predict(src, tmp_path / "v.nii.gz", model=yaml_bundle, backend="eager", progress=False,
                  trust_bundle=True)[0].numpy()
    assert len(np.unique(ref)) == 3
    assert agreement(got, ref) >= 0.9999, int((got != ref).sum())


SLICE_BUNDLE = {
    "imports": ["$import os"],
    "bundle_root": ".",
    "output_dir": "$@bundle_root + '/eval'",
    "datalist": [],
    "device": "$torch.device('cpu')",
    "network_def": {"_target_": "UNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 3,
                    "channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1},
    "network": "$@network_def.to(@device)",
    "preprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "LoadImaged", "keys": "image"},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": "image", "pixdim": [1.1, 1.1, -1], "mode": "bilinear"},
        {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -1000, "a_max": 400, "b_min": 0.0,
         "b_max": 1.0, "clip": True}]},
    "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]", "transform": "@preprocessing"},
    "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "num_workers": 0},
    "inferer": {"_target_": "SliceInferer", "roi_size": [64, 64], "spatial_dim": 2, "sw_batch_size": 4,
                "overlap": 0.25, "mode": "gaussian"},
    "postprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "Activationsd", "keys": "pred", "softmax": True},
        {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
         "nearest_interp": False, "to_tensor": True},
        {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
        {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "trans",
         "separate_folder": False}]},
    "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader",
                  "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing"},
    "checkpointloader": {"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/model.pt'",
                         "load_dict": {"model": "@network"}},
    "initialize": ["$@checkpointloader(@evaluator)"],
    "run": ["$@evaluator.run()"],
}


def test_slice_bundle_matches_monai_runner(tmp_path, train_images, zoo_cases):
    from volseg.inference import predict

    bundle = make_bundle_dir(tmp_path / "slices", {"inference.json": SLICE_BUNDLE})
    overfit(bundle, train_images, smooth_levels([0.3, 0.9], 1.0), steps=150, crop=48)
    src = zoo_cases["oblique"]
    run_monai(bundle, [src], tmp_path / "runner")
    ref = np.rint(np.asarray(runner_mask(tmp_path / "runner", src).dataobj)).astype(np.uint8)
    got = predict(src, tmp_path / "v.nii.gz", model=bundle, backend="eager", progress=False)[0].numpy()
    assert len(np.unique(ref)) == 3
    assert agreement(got, ref) >= 0.9999, int((got != ref).sum())


def test_cli_training_folder_config_and_overrides(spleen, zoo_cases, tmp_path):
    """``-m`` a folder with only ``models/model.pt`` plus ``--config`` the bundle; ``--set`` overrides
    reach the bundle as monai.bundle run's ``--key value`` do."""
    import subprocess
    import sys

    import nibabel as nib

    trained = tmp_path / "run_output"
    (trained / "models").mkdir(parents=True)
    shutil.copy2(spleen / "models" / "model.pt", trained / "models" / "model.pt")
    src = zoo_cases["las"]
    out = tmp_path / "cli.nii.gz"
    res = subprocess.run([sys.executable, "-m", "volseg", "predict", "-i", str(src), "-o", str(out), "-m",
                          str(trained), "--config", str(spleen), "--set", "inferer#overlap=0.25", "--quiet"],
                         capture_output=True, text=True, encoding="utf-8")
    assert res.returncode == 0, res.stderr
    run_monai(spleen, [src], tmp_path / "runner", overrides={"inferer#overlap": 0.25})
    ref = np.rint(np.asarray(runner_mask(tmp_path / "runner", src).dataobj)).astype(np.uint8)
    assert agreement(np.asarray(nib.load(str(out)).dataobj), ref) >= 0.9999
    res = subprocess.run([sys.executable, "-m", "volseg", "predict", "-i", str(src), "-o", str(out), "-m",
                          str(trained)], capture_output=True, text=True, encoding="utf-8")
    assert res.returncode == 1 and "--config" in res.stderr and "Traceback" not in res.stderr
    meta = json.loads((spleen / "configs" / "metadata.json").read_text())
    assert "spleen" in json.dumps(meta["network_data_format"]["outputs"]["pred"]["channel_def"])
