"""The streamed sliding window gives MONAI's own blended output, for every option that changes it."""
from __future__ import annotations

import pytest
import torch

from volseg.errors import ConfigError
from volseg.inference.sliding import StreamingInferer, WindowSpec, blend_slabs, count_windows, plan_windows


def _net3(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Conv3d(2, 3, 3, padding=1).eval()


def _net2(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Conv2d(2, 3, 3, padding=1).eval()


CASES = [
    # shape, roi, overlap, mode, sigma_scale, padding_mode, cval, sw_batch_size
    ((40, 33, 29), (16, 16, 8), 0.25, "gaussian", 0.125, "constant", 0.0, 3),
    ((40, 33, 29), (16, -1, 12), (0.5, 0.25, 0.6), "constant", 0.125, "constant", 0.0, 2),
    ((21, 19, 30), (16, None, 16), 0.5, "gaussian", (0.1, 0.2, 0.3), "constant", 0.0, 4),
    ((10, 12, 7), (16, 16, 16), 0.25, "gaussian", 0.125, "replicate", 0.0, 4),
    ((10, 30, 7), (16, 16, 16), 0.5, "gaussian", 0.125, "reflect", 0.0, 1),
    ((10, 30, 7), (16, 16, 16), 0.25, "constant", 0.125, "constant", -3.0, 2),
]


@pytest.mark.parametrize("shape,roi,overlap,mode,sigma,pad,cval,swb", CASES)
def test_matches_monai_sliding_window_inference(shape, roi, overlap, mode, sigma, pad, cval, swb):
    from monai.inferers import sliding_window_inference

    x = torch.rand(1, 2, *shape) * 4 - 2
    net = _net3()
    with torch.no_grad():
        ref = sliding_window_inference(x, roi, swb, net, overlap=overlap, mode=mode, sigma_scale=sigma,
                                       padding_mode=pad, cval=cval)
        got = StreamingInferer(roi, swb, overlap, mode, sigma, pad, cval)(x, net)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    assert (got.argmax(1) == ref.argmax(1)).float().mean() > 0.99999


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slice_mode_matches_monai_slice_inferer(axis):
    from monai.inferers import SliceInferer

    x = torch.rand(1, 2, 40, 30, 9)
    net = _net2()
    with torch.no_grad():
        ref = SliceInferer(roi_size=(16, 12), spatial_dim=axis, sw_batch_size=3, overlap=0.25, mode="gaussian")(x, net)
        got = StreamingInferer((16, 12), 3, 0.25, "gaussian", spatial_dim=axis)(x, net)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


def test_2d_images_and_metatensor_outputs():
    from monai.data import MetaTensor
    from monai.inferers import sliding_window_inference

    x = MetaTensor(torch.rand(1, 2, 50, 37), affine=torch.diag(torch.tensor([2.0, 3.0, 1.0, 1.0])))
    with torch.no_grad():
        ref = sliding_window_inference(x, (16, 16), 4, _net2(), overlap=0.5, mode="gaussian")
        got = StreamingInferer((16, 16), 4, 0.5, "gaussian")(x, _net2())
    torch.testing.assert_close(got.as_tensor(), ref.as_tensor(), rtol=0, atol=1e-5)
    assert isinstance(got, MetaTensor) and torch.equal(got.affine, x.affine)


def test_slabs_cover_the_image_once_in_order():
    x = torch.rand(2, 20, 18, 41)
    spec = WindowSpec(roi_size=(16, 16, 16), sw_batch_size=2, overlap=0.25)
    starts = [(a, b) for a, b, _ in blend_slabs(x, _net3(), spec)]
    assert starts[0][0] == 0 and starts[-1][1] == 41
    assert all(b0 == a1 for (_, b0), (a1, _) in zip(starts, starts[1:]))


def test_spec_from_monai_inferers_and_refusals():
    from monai.inferers import SimpleInferer, SliceInferer, SlidingWindowInferer

    spec = WindowSpec.from_inferer(SlidingWindowInferer((96, 96, 96), sw_batch_size=4, overlap=0.5,
                                                        padding_mode="replicate", mode="gaussian"))
    assert spec == WindowSpec((96, 96, 96), 4, 0.5, "gaussian", 0.125, "replicate", 0.0)
    assert WindowSpec.from_inferer(SliceInferer(roi_size=(64, 64), spatial_dim=1)).slice_axis == 1
    assert WindowSpec.from_inferer(SimpleInferer()) is None
    assert WindowSpec.from_inferer(SlidingWindowInferer((8, 8, 8), with_coord=True)) is None
    with pytest.raises(ConfigError, match="mode 'median'"):
        WindowSpec((8, 8, 8), mode="median")
    with pytest.raises(ConfigError, match="padding_mode"):
        WindowSpec((8, 8, 8), padding_mode="wrap")
    with pytest.raises(ConfigError, match="overlap"):
        WindowSpec((8, 8, 8), overlap=1.0)


def test_ring_depth_does_not_grow_with_the_scan():
    roi = (96, 96, 96)
    depths = {z: plan_windows((512, 512, z), roi, 0.25, 4)[1] for z in (200, 600, 1200)}
    assert len(set(depths.values())) == 1 and depths[600] <= 96 + 72
    assert count_windows((512, 512, 600), WindowSpec(roi, overlap=0.25)) == 7 * 7 * 8
    assert count_windows((64, 64, 7), WindowSpec((32, 32), overlap=0.25, slice_axis=2)) == 3 * 3 * 7


def test_slabs_are_a_few_slices_whatever_the_length():
    """What is held at once (the ring and each yielded slab) spans a window and a step, not the scan."""
    x = torch.rand(1, 32, 32, 200)
    spec = WindowSpec((16, 16, 16), sw_batch_size=2, overlap=0.25)
    widths = [b - a for a, b, _ in blend_slabs(x, torch.nn.Conv3d(1, 2, 1), spec)]
    assert sum(widths) == 200 and max(widths) <= plan_windows((32, 32, 200), (16, 16, 16), 0.25, 2)[1] <= 28


def test_scan_interval_is_monais() -> None:
    """volseg.inference.sliding.scan_interval re-states MONAI's private ``_get_scan_interval`` (the window
    step) instead of importing it; pinned here on a grid of sizes, windows and overlaps (3D and 2D), so
    a MONAI change of the step (or of the private name) fails this test rather than shifting windows."""
    import itertools

    from monai.inferers.utils import _get_scan_interval

    from volseg.inference.sliding import scan_interval

    sizes, rois = (1, 7, 16, 17, 96, 97, 250), (1, 7, 16, 96, 128)
    overlaps = (0.0, 0.1, 0.25, 1 / 3, 0.5, 0.625, 0.75, 0.9, 0.99)
    for s, r, o in itertools.product(sizes, rois, overlaps):
        assert scan_interval((s,), (r,), (o,)) == _get_scan_interval((s,), (r,), 1, (o,)), (s, r, o)
    for shape, roi, ov in [((40, 33, 29), (16, 33, 8), (0.5, 0.25, 0.6)), ((64, 64), (64, 32), (0.3, 0.7))]:
        assert scan_interval(shape, roi, ov) == _get_scan_interval(shape, roi, len(shape), ov)
