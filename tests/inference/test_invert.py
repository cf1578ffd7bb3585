"""Separable inversion onto the source grid equals MONAI's Invertd: probabilities to float32 rounding,
labels everywhere except exact ties (a source voxel half-way between two model voxels)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from volseg.inference.invert import inverse_axis_maps, resample_to_source, tie_voxels


def _rot(a: float, b: float, c: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("xyz", [a, b, c], degrees=True).as_matrix()


def _affine(linear: np.ndarray, origin=(3.0, -4.0, 5.0)) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3], a[:3, 3] = linear, origin
    return a


def _threshold(x):
    return x > 0.3


GRIDS = {
    "las_anisotropic": ((20, 18, 9), _affine(np.diag([-0.8, 0.9, 2.5]))),
    "cyclic_sagittal": ((11, 20, 17), _affine(np.array([[0, 0, 1.3], [1.1, 0, 0], [0, 0.7, 0]]))),
    "cyclic_other_way": ((13, 9, 16), _affine(np.array([[0, 0.9, 0], [0, 0, -1.2], [1.4, 0, 0]]))),
    "oblique": ((16, 15, 12), _affine(_rot(10, -5, 20) @ np.diag([0.9, 1.1, 2.0]))),
}


def _chains():
    from monai.transforms import (CropForegroundd, DivisiblePadd, Flipd, Orientationd, Resized, ResizeWithPadOrCropd,
                                  Spacingd, SpatialPadd)

    return {
        "spacing": [Orientationd("image", axcodes="RAS"), Spacingd("image", pixdim=(1.5, 1.3, 2.0), mode="bilinear")],
        "spacing_zeros_crop_pad_flip": [
            Orientationd("image", axcodes="RAS"),
            Spacingd("image", pixdim=(1.0, 1.0, 2.0), mode="bilinear", padding_mode="zeros"),
            CropForegroundd("image", source_key="image", select_fn=_threshold, margin=1, allow_smaller=False),
            SpatialPadd("image", (20, 20, 12)), DivisiblePadd("image", 4), Flipd("image", spatial_axis=1)],
        "lps_target_resize": [Orientationd("image", axcodes="LPS"), Resized("image", spatial_size=(16, 16, -1)),
                              ResizeWithPadOrCropd("image", (20, 12, 9))],
    }


@pytest.mark.parametrize("grid", sorted(GRIDS))
@pytest.mark.parametrize("chain", ["spacing", "spacing_zeros_crop_pad_flip", "lps_target_resize"])
def test_matches_invertd(grid, chain):
    from monai.data import MetaTensor
    from monai.transforms import Compose, Invertd

    shape, affine = GRIDS[grid]
    torch.manual_seed(0)
    src = MetaTensor(torch.rand(1, *shape), affine=torch.tensor(affine))
    pre = Compose(_chains()[chain])
    x = pre({"image": src})["image"]
    pred = MetaTensor(torch.rand(3, *x.shape[1:]), affine=x.affine, meta=dict(x.meta))
    for nearest in (False, True):
        ref = Invertd("pred", transform=pre, orig_keys="image", nearest_interp=nearest)({"image": x, "pred": pred})
        ref = ref["pred"].as_tensor()
        maps = inverse_axis_maps(x.applied_operations, x.affine, x.shape[1:], src.affine, src.shape[1:],
                                 nearest=nearest)
        assert maps is not None, f"{chain} on {grid} should be separable"
        got = resample_to_source(pred.as_tensor(), maps)
        assert got.shape == ref.shape
        if not nearest:
            torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
        else:
            differ = (got != ref).any(0).numpy()
            assert not (differ & ~tie_voxels(x.affine, src.affine, shape)).any()


def test_axis_maps_follow_columns_not_rows():
    """Cyclic storage: source axis j takes model axis p where column j of the grid map is non-zero."""
    from monai.data import MetaTensor
    from monai.transforms import Compose, Orientationd

    shape, affine = GRIDS["cyclic_sagittal"]
    src = MetaTensor(torch.rand(1, *shape), affine=torch.tensor(affine))
    x = Compose([Orientationd("image", axcodes="RAS")])({"image": src})["image"]
    maps = inverse_axis_maps(x.applied_operations, x.affine, x.shape[1:], src.affine, src.shape[1:], nearest=True)
    assert [(m.source_axis, m.model_axis) for m in maps] == [(0, 1), (1, 2), (2, 0)]  # A, S, R columns
    torch.testing.assert_close(resample_to_source(x.as_tensor(), maps), src.as_tensor())


def test_rotations_are_left_to_monai():
    from monai.data import MetaTensor
    from monai.transforms import Compose, Rotated

    src = MetaTensor(torch.rand(1, 12, 12, 8), affine=torch.eye(4, dtype=torch.float64))
    x = Compose([Rotated("image", angle=0.3)])({"image": src})["image"]
    assert inverse_axis_maps(x.applied_operations, x.affine, x.shape[1:], src.affine, src.shape[1:]) is None


def test_a_wrong_source_grid_is_refused():
    from monai.data import MetaTensor
    from monai.transforms import Compose, Spacingd

    src = MetaTensor(torch.rand(1, 12, 12, 8), affine=torch.eye(4, dtype=torch.float64))
    x = Compose([Spacingd("image", pixdim=(2.0, 2.0, 2.0))])({"image": src})["image"]
    other = torch.diag(torch.tensor([1.0, 1.0, 1.5, 1.0], dtype=torch.float64))
    assert inverse_axis_maps(x.applied_operations, x.affine, x.shape[1:], other, src.shape[1:]) is None
