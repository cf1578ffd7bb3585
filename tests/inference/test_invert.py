"""Labels back onto the source grid without MONAI's sampling grid: identical to ``Invertd``
(nearest) except where a source voxel lies exactly half-way between two model voxels."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from volseg.inference.invert import tie_voxels

ROT = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])  # permuted and flipped axes


@pytest.mark.parametrize("spacing,pixdim,direction", [
    ((0.8, 0.8, 1.5), (1.5, 1.5, 2.0), None),        # CT to the ct_unet3d grid
    ((1.0, 1.0, 1.0), (2.0, 2.0, 2.0), None),        # many exact ties
    ((0.7, 1.1, 2.5), (1.0, 1.0, 1.0), ROT),         # anisotropic, non-RAS axes
    ((0.9, 0.9, 3.0), (0.45, 0.45, 1.5), None),      # upsampling
])
def test_matches_invertd_except_at_exact_ties(spacing, pixdim, direction):
    from monai.data import MetaTensor
    from monai.transforms import Compose, CropForegroundd, EnsureTyped, Invertd, Orientationd, Spacingd

    from volseg.data import make_phantom
    from volseg.inference.invert import only_axis_aligned, resample_labels_nearest

    img = make_phantom(shape=(96, 90, 40), spacing=spacing, direction=direction, seed=1).image
    pre = Compose([EnsureTyped("image"), Orientationd("image", axcodes="RAS"),
                   Spacingd("image", pixdim=pixdim, mode="bilinear"),
                   CropForegroundd("image", source_key="image", select_fn=lambda x: x > -900, margin=2,
                                   allow_smaller=True)])
    x = pre({"image": img})["image"]
    assert only_axis_aligned(x.applied_operations)
    lab = (x > -500).to(torch.uint8) + (x > 200).to(torch.uint8)
    fast = resample_labels_nearest(lab, x.affine, img.affine, img.shape[1:])
    pred = MetaTensor(lab.float(), affine=x.affine, meta=dict(x.meta))
    ref = Invertd("pred", transform=pre, orig_keys="image", nearest_interp=True)({"image": x, "pred": pred})["pred"]
    ref = torch.as_tensor(ref).round().to(torch.uint8)
    assert fast.shape == ref.shape and fast.dtype == torch.uint8
    tie = tie_voxels(x.affine, img.affine, img.shape[1:])
    diff = (fast != ref)[0].numpy()
    assert not (diff & ~tie).any(), "a voxel that is not a tie differs from MONAI's Invertd"
    assert diff.mean() < 0.05


def test_oblique_grids_and_unknown_transforms_fall_back():
    from volseg.inference.invert import axis_map, only_axis_aligned, resample_labels_nearest

    c, s = np.cos(0.3), np.sin(0.3)
    oblique = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    assert axis_map(np.eye(4), oblique) is None
    assert resample_labels_nearest(torch.zeros(1, 4, 4, 4, dtype=torch.uint8), np.eye(4), oblique, (4, 4, 4)) is None
    assert not only_axis_aligned([{"class": "Rotated"}])
    assert only_axis_aligned([{"class": "Orientation"}, {"class": "SpatialResample", "extra_info": {}}])
    assert not only_axis_aligned([{"class": "SpatialResample", "extra_info": {"align_corners": True}}])


def test_outside_the_model_grid_is_background():
    from volseg.inference.invert import resample_labels_nearest

    lab = torch.ones(1, 4, 4, 4, dtype=torch.uint8)
    model = np.diag([2.0, 2.0, 2.0, 1.0])
    model[:3, 3] = 4.0  # model voxel centres at 4, 6, 8, 10 mm; source voxels at 0, 1, ..., 13 mm
    out = resample_labels_nearest(lab, model, np.eye(4), (14, 14, 14))[0]
    # 3 mm and 11 mm are ties (half-way to a model voxel): half to even puts 3 mm in, 11 mm out
    inside = np.zeros(14, bool)
    inside[3:11] = True
    np.testing.assert_array_equal(out.numpy(), np.einsum("i,j,k->ijk", inside, inside, inside).astype(np.uint8))
