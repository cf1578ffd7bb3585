"""The bundles' inference.json: runnable through monai.bundle and consistent with volseg predict."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import THRESHOLDS, expected_labels

REPO = Path(__file__).resolve().parents[2]
BUNDLES = ("ct_unet3d", "ct_deeplab3d", "mri_unet3d")


def _threshold_bundle(root: Path, template: str = "ct_unet3d") -> Path:
    """A copy of a real bundle's inference.json with the fixed threshold model and an invertible
    reorientation as preprocessing, plus its weights."""
    import torch

    from volseg.inference.toy import ThresholdNet

    cfg = json.loads((REPO / "bundles" / template / "configs" / "inference.json").read_text())
    cfg["network_def"] = {"_target_": "volseg.inference.toy.ThresholdNet", "spatial_dims": 3, "in_channels": 1,
                          "thresholds": list(THRESHOLDS)}
    cfg["preprocessing"] = {"_target_": "Compose", "transforms": [
        {"_target_": "LoadImaged", "keys": "image", "ensure_channel_first": True, "image_only": True},
        {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
        {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"}]}
    cfg["roi_size"] = [32, 32, 16]
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "configs" / "inference.json").write_text(json.dumps(cfg))
    torch.save(ThresholdNet(3, 1, THRESHOLDS).state_dict(), root / "models" / "model.pt")
    return root


@pytest.mark.parametrize("name", BUNDLES)
def test_inference_json_keys(name):
    cfg = json.loads((REPO / "bundles" / name / "configs" / "inference.json").read_text())
    for key in ("network_def", "preprocessing", "inferer", "postprocessing", "labels", "bundle_root", "dataset_dir",
                "output_dir", "device", "roi_size", "run"):
        assert key in cfg, key
    assert cfg["inferer"]["mode"] == "gaussian"
    assert any(t["_target_"] == "Invertd" for t in cfg["postprocessing"]["transforms"])


@pytest.mark.bundle
def test_monai_bundle_run_writes_masks_on_source_grid(phantom, tmp_path):
    bundle = _threshold_bundle(tmp_path / "bundle")
    data = tmp_path / "data"
    data.mkdir()
    hu = np.rint(phantom.image[0].numpy()).astype(np.int16)
    aff = np.array([[0.0, 7.0, 0.0, -80.0], [-6.0, 0.0, 0.0, 95.0], [0.0, 0.0, -9.0, 40.0], [0, 0, 0, 1.0]])
    nib.save(nib.Nifti1Image(hu, aff), str(data / "c1.nii.gz"))
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file",
                          str(bundle / "configs" / "inference.json"), "--bundle_root", str(bundle),
                          "--dataset_dir", str(data), "--output_dir", str(out), "--device", "$torch.device('cpu')",
                          "--model_path", str(bundle / "models" / "model.pt")],
                         capture_output=True, encoding="utf-8", errors="replace", cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    m = nib.load(str(out / "predictions" / "c1.nii.gz"))
    assert m.get_data_dtype() == np.uint8
    np.testing.assert_allclose(m.affine, aff, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(m.dataobj), expected_labels(hu))


@pytest.mark.parametrize("name", BUNDLES)
def test_real_bundle_predicts_with_random_weights(name, phantom, tmp_path):
    """The real network_def and preprocessing, random weights: output on the source grid, and the
    network_def equals the training config's."""
    import torch
    from monai.bundle import ConfigParser

    src = REPO / "bundles" / name / "configs"
    train, infer = ConfigParser(), ConfigParser()
    train.read_config(str(src / "train.json"))
    infer.read_config(str(src / "inference.json"))
    assert infer.get_parsed_content("network_def", instantiate=False) is not None
    # the same network as training (else model.pt cannot load)
    assert json.dumps(infer.get("network_def"), sort_keys=True) == json.dumps(train.get("network_def"), sort_keys=True)
    bundle = tmp_path / name
    shutil.copytree(src, bundle / "configs")
    (bundle / "models").mkdir()
    infer["roi_size"] = [32, 32, 32]
    torch.manual_seed(0)
    net = infer.get_parsed_content("network_def")
    torch.save(net.state_dict(), bundle / "models" / "model.pt")
    import volseg

    img = phantom.image
    mask = volseg.predict(img, None, model=bundle, backend="eager", roi_size=(32, 32, 32), progress=False)
    assert mask.shape == img.shape and mask.dtype == torch.uint8
    np.testing.assert_allclose(np.asarray(mask.affine), np.asarray(img.affine))


def test_lung_png2d_bundle_runs_slice_by_slice_on_a_volume(phantom, tmp_path):
    """Engineer E's 2D bundle applied to a 3D CT through the generic 2D-over-3D path (random weights)."""
    import torch
    from monai.bundle import ConfigParser

    bundle = tmp_path / "lung"
    shutil.copytree(REPO / "bundles" / "lung_png2d" / "configs", bundle / "configs")
    (bundle / "models").mkdir()
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["base_channels"] = 4
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), bundle / "models" / "model.pt")
    import volseg

    mask = volseg.predict(phantom.image, None, model=bundle, backend="eager", overrides={"base_channels": 4},
                          progress=False)
    assert mask.shape == phantom.image.shape and mask.dtype == torch.uint8
    np.testing.assert_allclose(np.asarray(mask.affine), np.asarray(phantom.image.affine))


def test_ct_preset_preprocessing_is_inverted_onto_the_source_grid(phantom, tmp_path):
    """ct_unet3d's real preprocessing (orient, resample, HU window, crop) with a threshold model:
    the mask comes back on the non-RAS source grid and matches the HU threshold there."""
    import torch

    import volseg
    from volseg.inference.toy import ThresholdNet

    cfg = json.loads((REPO / "bundles" / "ct_unet3d" / "configs" / "inference.json").read_text())
    t_scaled = (-500.0 + 1000.0) / 1400.0  # -500 HU in the [-1000, 400] HU window scaled to [0, 1]
    cfg["network_def"] = {"_target_": "volseg.inference.toy.ThresholdNet", "spatial_dims": 3, "in_channels": 1,
                          "thresholds": [t_scaled]}
    cfg["pixdim"] = [5.0, 5.0, 5.0]
    bundle = tmp_path / "ct"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "inference.json").write_text(json.dumps(cfg))
    torch.save(ThresholdNet(3, 1, [t_scaled]).state_dict(), bundle / "models" / "model.pt")
    hu = np.rint(phantom.image[0].numpy()).astype(np.int16)
    aff = np.array([[0.0, 7.0, 0.0, -80.0], [-6.0, 0.0, 0.0, 95.0], [0.0, 0.0, -9.0, 40.0], [0, 0, 0, 1.0]])
    nib.save(nib.Nifti1Image(hu, aff), str(tmp_path / "ct.nii.gz"))
    volseg.predict(tmp_path / "ct.nii.gz", tmp_path / "m.nii.gz", model=bundle, backend="eager",
                   roi_size=(32, 32, 32), progress=False)
    m = nib.load(str(tmp_path / "m.nii.gz"))
    np.testing.assert_allclose(m.affine, aff, atol=1e-5)
    got, exp = np.asarray(m.dataobj) > 0, hu > -500
    dice = 2 * (got & exp).sum() / (got.sum() + exp.sum())
    assert dice > 0.97, dice


@pytest.mark.bundle
def test_unmodified_ct_unet3d_inference_json_runs(phantom, tmp_path):
    """The shipped config, unchanged, through the MONAI runner (random weights in output_dir)."""
    import torch
    from monai.bundle import ConfigParser

    config = REPO / "bundles" / "ct_unet3d" / "configs" / "inference.json"
    parser = ConfigParser()
    parser.read_config(str(config))
    out = tmp_path / "run"
    (out / "models").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), out / "models" / "model.pt")
    data = tmp_path / "data"
    data.mkdir()
    hu = np.rint(phantom.image[0].numpy()).astype(np.int16)
    aff = np.array([[0.0, 7.0, 0.0, -80.0], [-6.0, 0.0, 0.0, 95.0], [0.0, 0.0, -9.0, 40.0], [0, 0, 0, 1.0]])
    nib.save(nib.Nifti1Image(hu, aff), str(data / "p1.nii.gz"))
    res = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", str(config),
                          "--bundle_root", str(REPO / "bundles" / "ct_unet3d"), "--dataset_dir", str(data),
                          "--output_dir", str(out), "--roi_size", "[32, 32, 32]"],
                         capture_output=True, encoding="utf-8", errors="replace", cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    m = nib.load(str(out / "predictions" / "p1.nii.gz"))
    assert m.shape == hu.shape and m.get_data_dtype() == np.uint8
    np.testing.assert_allclose(m.affine, aff, atol=1e-5)
