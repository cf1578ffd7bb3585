"""volseg.inference.bundle: the components volseg's inference.json files name (the one SaveMaskd)."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from volseg.errors import InputError


def _pred(arr: np.ndarray, affine: np.ndarray, source: str):
    from monai.data import MetaTensor

    return MetaTensor(torch.as_tensor(arr[None], dtype=torch.float32), affine=torch.as_tensor(affine),
                      meta={"filename_or_obj": source, "spatial_shape": np.asarray(arr.shape)})


def test_savemaskd_3d_writes_nifti_on_the_prediction_affine(tmp_path: Path) -> None:
    from volseg.inference.bundle import SaveMaskd

    aff = np.array([[0.0, 2.0, 0.0, 10.0], [-1.5, 0.0, 0.0, 5.0], [0.0, 0.0, 3.0, -7.0], [0, 0, 0, 1.0]])
    lab = np.zeros((6, 5, 4), np.float32)
    lab[1:3, 2:4, 1:3] = 2
    out = SaveMaskd(keys="pred", output_dir=tmp_path / "p")({"pred": _pred(lab, aff, "/data/ct_01.nii.gz")})
    written = nib.load(out["pred_path"])
    assert Path(out["pred_path"]).name == "ct_01.nii.gz"
    np.testing.assert_array_equal(np.asarray(written.dataobj), lab.astype(np.uint8))
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_allclose(written.get_qform(), aff, atol=1e-5)  # quaternion: float32
    np.testing.assert_allclose(written.get_sform(), aff)


def test_savemaskd_2d_writes_a_palette_png(tmp_path: Path) -> None:
    from PIL import Image

    from volseg.inference.bundle import SaveMaskd

    lab = np.zeros((7, 5), np.float32)
    lab[2:4, 1:3] = 1
    lab[5, 4] = 2
    palette = {"0": [0, 0, 0], "1": [0, 0, 255], "2": [0, 255, 0]}
    image = _pred(np.zeros((9, 9), np.float32), np.eye(3), "/data/slice_03.png")  # the source: names the case
    out = SaveMaskd(keys="pred", output_dir=tmp_path, postfix="_seg", palette=palette)(
        {"image": image, "pred": _pred(lab, np.eye(3), "")})
    assert Path(out["pred_path"]).name == "slice_03_seg.png"
    rgb = np.asarray(Image.open(out["pred_path"]).convert("RGB"))  # rows = Y, columns = X
    assert rgb.shape == (5, 7, 3)
    assert tuple(rgb[1, 2]) == (0, 0, 255) and tuple(rgb[4, 5]) == (0, 255, 0) and tuple(rgb[0, 0]) == (0, 0, 0)


def test_savemaskd_refuses_a_prediction_left_on_the_model_grid(tmp_path: Path) -> None:
    from volseg.inference.bundle import SaveMaskd

    pred = _pred(np.zeros((4, 4, 4), np.float32), np.eye(4), "/data/ct.nii.gz")
    pred.meta["spatial_shape"] = np.asarray((8, 8, 8))
    with pytest.raises(InputError, match="Invertd"):
        SaveMaskd(output_dir=tmp_path)({"pred": pred})
    assert not any(tmp_path.iterdir())


def test_one_savemaskd() -> None:
    """The 2D transforms module has no saver of its own (bundles name volseg.inference.bundle.SaveMaskd)."""
    import volseg.transforms.png2d as png2d

    assert not hasattr(png2d, "SaveMaskd")
