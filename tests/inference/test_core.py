"""The pure inference function and post-processing."""
from __future__ import annotations

import numpy as np
import pytest
import torch


def _image(seed=0, shape=(1, 30, 26, 14)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * 400.0


def test_segment_tensor_sliding_window_and_tta_exact():
    from volseg.inference.core import argmax_labels, segment_tensor
    from volseg.inference.toy import ThresholdNet

    img = _image()
    net = ThresholdNet(3, 1, (-100.0, 250.0)).eval()
    exp = (img[0] > -100).to(torch.uint8) + (img[0] > 250).to(torch.uint8)
    for tta in (False, True):
        probs = segment_tensor(img, net, (16, 16, 8), overlap=0.5, sw_batch_size=3, tta=tta, softmax=True)
        assert probs.shape == (3, 30, 26, 14) and probs.dtype == torch.float32
        torch.testing.assert_close(probs.sum(0), torch.ones(30, 26, 14))
        lab = argmax_labels(probs, chunk=5)
        assert lab.dtype == torch.uint8 and lab.shape == (1, 30, 26, 14)
        assert torch.equal(lab[0], exp)


def test_tta_averages_mirrorings():
    from volseg.inference.core import mirror_tta

    class Asym(torch.nn.Module):  # depends on position: mirroring changes its output
        def forward(self, x):
            ramp = torch.linspace(0, 1, x.shape[2]).view(1, 1, -1, 1)
            return torch.cat([torch.zeros_like(x), x * ramp], 1)

    x = torch.ones(1, 1, 6, 4)
    p = mirror_tta(Asym(), 2)(x)
    # averaged over flips (logits), the ramp becomes symmetric along axis 2
    torch.testing.assert_close(p, torch.flip(p, [2]))


def test_two_d_network_over_volume_runs_slice_by_slice():
    from volseg.inference.core import segment_tensor
    from volseg.inference.toy import ThresholdNet

    img = _image(1)
    probs = segment_tensor(img, ThresholdNet(2, 1, (0.0,)), (16, 16), spatial_dims=2, sw_batch_size=4)
    assert probs.shape == (2, 30, 26, 14)
    assert torch.equal(probs.argmax(0), (img[0] > 0).long())


def test_wrong_roi_and_dims_are_config_errors():
    from volseg.errors import ConfigError
    from volseg.inference.core import make_inferer

    with pytest.raises(ConfigError, match="3 values"):
        make_inferer(3, (16, 16))
    with pytest.raises(ConfigError, match="cannot be applied"):
        make_inferer(3, (16, 16, 16), image_dims=2)


def test_keep_largest_component_per_label():
    from volseg.inference.core import keep_largest_component

    m = np.zeros((20, 20, 20), np.uint8)
    m[1:6, 1:6, 1:6] = 1
    m[10:12, 10:12, 10:12] = 1
    m[14:18, 14:18, 14:18] = 2
    m[0, 19, 0] = 2
    out = keep_largest_component(m)
    assert (out == 1).sum() == 125 and (out == 2).sum() == 64 and out[0, 19, 0] == 0


def test_overlay_views_are_radiological():
    """A marker at the patient's right-anterior-superior corner shows up image-left and top."""
    from volseg.inference.report import _canonical, _views

    vol = np.zeros((10, 12, 8), np.float32)
    # LPS-like storage: index axis 0 points to patient left, 1 to posterior, 2 superior
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    vol[0, 0, 7] = 1.0  # most right (x index 0 -> RAS x max), most anterior, most superior
    ras, sp = _canonical(vol, affine)
    views = {name: img for name, img, _, _ in _views(ras, ras, (9, 11, 7), sp)}
    r, c = np.argwhere(views["axial"] == 1)[0]
    assert (r, c) == (0, 0)  # anterior = top row, patient right = left column
    r, c = np.argwhere(views["coronal"] == 1)[0]
    assert (r, c) == (0, 0)  # superior top, right on left
    r, c = np.argwhere(views["sagittal"] == 1)[0]
    assert (r, c) == (0, 0)  # superior top, anterior on left


def test_label_stats_volume_in_ml():
    from volseg.inference.report import label_stats

    m = np.zeros((4, 4, 4), np.uint8)
    m[:2] = 1
    img = np.full((1, 4, 4, 4), 50.0, np.float32)
    rows = label_stats(m, img, np.diag([2.0, 2.0, 5.0, 1.0]), {1: "a", 2: "b"}, "CT")
    assert rows[0] == {"label": 1, "name": "a", "voxels": 32, "volume_ml": 0.64, "mean_intensity": 50.0,
                       "intensity_unit": "HU"}
    assert rows[1]["voxels"] == 0 and rows[1]["mean_intensity"] is None


@pytest.mark.gpu
def test_cuda_windows_with_cpu_aggregation_and_amp():
    from volseg.inference.core import segment_tensor
    from volseg.inference.toy import ThresholdNet

    img = _image(2)
    net = ThresholdNet(3, 1, (-100.0, 250.0))
    ref = segment_tensor(img, net, (16, 16, 8), device="cpu", amp=False)
    got = segment_tensor(img, net.cuda(), (16, 16, 8), device="cpu", sw_device="cuda", amp=True)
    assert got.device.type == "cpu" and got.dtype == torch.float32
    assert torch.equal(got.argmax(0), ref.argmax(0))
