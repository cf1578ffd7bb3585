"""A MONAI model-zoo style bundle (``LoadImaged`` + ``EnsureChannelFirstd`` preprocessing, plain
``UNet`` with batch norm, weights as a bare state_dict, labels in ``metadata.json``) runs unchanged
through ``volseg predict``, and gives the mask a plain MONAI script gives with the same bundle."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from volseg.inference.invert import tie_voxels
from tests.inference.test_predict import NON_RAS, _nifti

PREPROCESSING = {"_target_": "Compose", "transforms": [
    {"_target_": "LoadImaged", "keys": "image"},
    {"_target_": "EnsureChannelFirstd", "keys": "image"},
    {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
    {"_target_": "Spacingd", "keys": "image", "pixdim": [8.0, 8.0, 10.0], "mode": "bilinear"},
    {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -1000, "a_max": 400, "b_min": 0, "b_max": 1,
     "clip": True},
    {"_target_": "EnsureTyped", "keys": "image"},
]}


@pytest.fixture(scope="module")
def zoo_bundle(tmp_path_factory) -> Path:
    from monai.networks.nets import UNet

    root = tmp_path_factory.mktemp("zoo_bundle")
    (root / "configs").mkdir()
    (root / "models").mkdir()
    cfg = {
        "imports": ["$import glob", "$import os"],
        "bundle_root": ".",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                        "channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 2, "norm": "batch"},
        "network": "$@network_def.to(@device)",
        "preprocessing": PREPROCESSING,
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [16, 16, 16], "sw_batch_size": 4,
                    "overlap": 0.5},
    }
    (root / "configs" / "inference.json").write_text(json.dumps(cfg, indent=1))
    meta = {"network_data_format": {"outputs": {"pred": {"channel_def": {"0": "background", "1": "spleen"}}}}}
    (root / "configs" / "metadata.json").write_text(json.dumps(meta))
    torch.manual_seed(0)
    net = UNet(3, 1, 2, (8, 16, 32), (2, 2), num_res_units=2, norm="batch")
    with torch.no_grad():  # non-trivial batch-norm statistics, as a trained model has
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    torch.save(net.state_dict(), root / "models" / "model.pt")
    return root


def _plain_monai(bundle: Path, source: Path):
    """The same bundle through plain MONAI: its preprocessing, sliding_window_inference, argmax, Invertd."""
    from monai.bundle import ConfigParser
    from monai.inferers import sliding_window_inference
    from monai.transforms import AsDiscreted, Compose, Invertd

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    pre = parser.get_parsed_content("preprocessing")
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    net.eval()
    data = pre({"image": str(source)})
    with torch.no_grad():
        data["pred"] = sliding_window_inference(data["image"][None], (16, 16, 16), 4, net, overlap=0.5,
                                                mode="constant")[0]
    post = Compose([AsDiscreted("pred", argmax=True),
                    Invertd("pred", transform=pre, orig_keys="image", nearest_interp=True, to_tensor=True)])
    return post(data)["pred"][0].numpy().astype(np.uint8), data["image"].affine


def test_zoo_bundle_runs_unchanged_and_matches_plain_monai(zoo_bundle, phantom, tmp_path):
    from volseg.inference import Predictor, predict

    src = _nifti(tmp_path / "ct.nii.gz", np.rint(phantom.image[0].numpy()), NON_RAS)
    out = tmp_path / "mask.nii.gz"
    predict(src, out, model=zoo_bundle, backend="eager", progress=False, stats=True)
    m = nib.load(str(out))
    np.testing.assert_allclose(m.affine, NON_RAS, atol=1e-5)
    got = np.asarray(m.dataobj)
    assert got.shape == phantom.image.shape[1:] and m.get_data_dtype() == np.uint8
    ref, model_affine = _plain_monai(zoo_bundle, src)
    assert 0.05 < (ref == 1).mean() < 0.95, "the random model should mark part of the volume"
    # the bundle's own (constant) blending, as MONAI's runner uses; the masks differ only where a
    # source voxel is exactly half-way between two model voxels (both choices are nearest)
    differ = got != ref
    assert not (differ & ~tie_voxels(model_affine, NON_RAS, got.shape)).any()
    assert Predictor(zoo_bundle, backend="eager").labels == {1: "spleen"}
    stats = json.loads((tmp_path / "mask_stats.json").read_text())
    assert "spleen" in json.dumps(stats)


def test_zoo_bundle_on_a_dicom_series(zoo_bundle, phantom, tmp_path):
    from volseg.inference import predict
    from volseg.io import write_dicom_series

    series = tmp_path / "series"
    write_dicom_series(phantom.image, series)
    mask = predict(series, tmp_path / "m.nii.gz", model=zoo_bundle, backend="eager", progress=False)
    assert tuple(mask.shape[1:]) == tuple(phantom.image.shape[1:])
    np.testing.assert_allclose(nib.load(str(tmp_path / "m.nii.gz")).affine, phantom.image.affine.numpy(), atol=1e-3)


def test_unsupported_blend_mode_is_a_config_error_at_load(zoo_bundle, tmp_path):
    import shutil

    from volseg.errors import ConfigError
    from volseg.inference import Predictor

    bad = tmp_path / "bad"
    shutil.copytree(zoo_bundle, bad)
    cfg = json.loads((bad / "configs" / "inference.json").read_text())
    cfg["inferer"]["mode"] = "median"
    (bad / "configs" / "inference.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="median"):
        Predictor(bad, backend="eager")
