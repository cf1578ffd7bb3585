from __future__ import annotations

import numpy as np
import pytest
import torch

from volseg.errors import ConfigError
from volseg.transforms import LoadVolumed, ct_transforms, mri_transforms


@pytest.fixture(scope="module")
def case(ct_dataset):
    return {"image": str(ct_dataset / "imagesTr" / "case_000.nii.gz"),
            "label": str(ct_dataset / "labelsTr" / "case_000.nii.gz")}


def test_load_volumed_reads_paths_and_passes_metatensors(case):
    out = LoadVolumed(keys=["image", "label"])(case)
    img, lab = out["image"], out["label"]
    assert img.shape == (1, 48, 48, 32) and img.dtype == torch.float32
    assert set(torch.unique(lab).tolist()) <= {0.0, 1.0, 2.0}
    again = LoadVolumed(keys="image")({"image": img})
    assert again["image"] is img


def test_ct_val_geometry_and_nearest_labels(case):
    import nibabel as nib

    out = ct_transforms("val", pixdim=(6.0, 6.0, 6.0), roi_size=(24, 24, 24))(case)
    img, lab = out["image"], out["label"]
    assert img.shape == lab.shape
    assert float(img.min()) == 0.0 and float(img.max()) == 1.0  # air (-1000 HU) and bone (700 HU, clipped at 400)
    assert set(torch.unique(lab).tolist()) <= {0.0, 1.0, 2.0}  # nearest: no blended label values
    np.testing.assert_allclose(np.abs(np.diag(img.affine.numpy()))[:3], [6.0, 6.0, 6.0], atol=1e-4)
    # a lung voxel of the transformed label lies, in world mm, on a lung voxel of the file (nibabel)
    ref = nib.load(case["label"])
    idx = torch.nonzero(lab[0] == 1)[len(torch.nonzero(lab[0] == 1)) // 2].numpy()
    world = img.affine.numpy() @ np.r_[idx, 1.0]
    vox = np.round(np.linalg.inv(ref.affine) @ world).astype(int)[:3]
    assert ref.get_fdata()[tuple(vox)] == 1


def test_ct_train_patches(case):
    out = ct_transforms("train", pixdim=(6.0, 6.0, 6.0), roi_size=(16, 16, 16), num_samples=3)(case)
    assert len(out) == 3
    for s in out:
        assert s["image"].shape == (1, 16, 16, 16) and s["label"].shape == (1, 16, 16, 16)
        assert set(torch.unique(s["label"]).tolist()) <= {0.0, 1.0, 2.0}


def test_ct_infer_is_invertible(case):
    from monai.transforms import Invertd

    pre = ct_transforms("infer", keys=["image"], pixdim=(6.0, 6.0, 6.0))
    d = pre({"image": case["image"]})
    assert "label" not in d
    d["pred"] = d["image"].clone()
    inv = Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=True)(d)
    assert tuple(inv["pred"].shape) == (1, 48, 48, 32)
    np.testing.assert_allclose(inv["pred"].affine.numpy(), LoadVolumed("image")(case)["image"].affine.numpy(),
                               atol=1e-4)


def test_mri_zscore_on_nonzero(mri_dataset):
    case = {"image": str(mri_dataset / "imagesTr" / "mr_0_0000.nii.gz"),
            "label": str(mri_dataset / "labelsTr" / "mr_0.nii.gz")}
    out = mri_transforms("val", pixdim=(4.0, 4.0, 4.0), crop_foreground=False)(case)
    img = out["image"][0]
    nz = img[img != 0]
    assert abs(float(nz.mean())) < 1e-3 and abs(float(nz.std()) - 1.0) < 1e-2


def test_bad_stage_and_window():
    with pytest.raises(ConfigError, match="train, val, infer"):
        ct_transforms("predict")
    with pytest.raises(ConfigError, match="hu_window"):
        ct_transforms("val", hu_window=(400, -1000))
