"""Streamed sliding-window inference: same labels and probabilities as MONAI, bounded buffer."""
from __future__ import annotations

import pytest
import torch


def _unet(spatial_dims=3, classes=3, seed=0):
    from monai.networks.nets import UNet

    torch.manual_seed(seed)
    return UNet(spatial_dims, 1, classes, (8, 16, 32), (2, 2)).eval()


def _monai(img, net, roi, overlap, swb):
    from monai.inferers import sliding_window_inference

    with torch.no_grad():
        return sliding_window_inference(img[None], roi, swb, net, overlap=overlap, mode="gaussian")[0]


@pytest.mark.parametrize("shape,roi,overlap,swb", [
    ((40, 50, 70), (32, 32, 16), 0.25, 3),   # many slabs along z, batches spanning slabs
    ((20, 50, 33), (32, 24, 40), 0.5, 4),    # image smaller than the ROI in x and z: MONAI's padding
    ((48, 40, 64), (32, 32, 32), 0.0, 16),   # no overlap, one batch holds several slabs
    ((36, 36, 45), (32, 32, 16), 0.75, 1),   # heavy overlap
])
def test_labels_and_probabilities_match_monai(shape, roi, overlap, swb):
    from volseg.inference.streaming import sliding_window_segment

    net = _unet()
    img = torch.rand(1, *shape, generator=torch.Generator().manual_seed(1))
    ref = _monai(img, net, roi, overlap, swb)
    labels, probs = sliding_window_segment(img, net, roi, overlap=overlap, sw_batch_size=swb, probabilities="float32")
    assert labels.shape == (1, *shape) and labels.dtype == torch.uint8
    assert torch.equal(labels[0].long(), ref.argmax(0))
    torch.testing.assert_close(probs, torch.softmax(ref, 0), atol=1e-6, rtol=0)


def test_two_d_network_over_volume_matches_slice_inferer():
    from monai.inferers import SliceInferer

    from volseg.inference.streaming import sliding_window_segment

    net = _unet(spatial_dims=2)
    img = torch.rand(1, 40, 30, 7, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = SliceInferer(roi_size=(32, 32), spatial_dim=2, sw_batch_size=4, overlap=0.25, mode="gaussian")(
            img[None], net)[0]
    labels, probs = sliding_window_segment(img, net, (32, 32), spatial_dims=2, sw_batch_size=5,
                                           probabilities="uint8")
    assert torch.equal(labels[0].long(), ref.argmax(0))
    assert probs.dtype == torch.uint8
    assert (probs.float() - torch.softmax(ref, 0) * 255).abs().max() <= 0.5 + 1e-3


def test_tta_and_meta_are_kept():
    from monai.data import MetaTensor

    from volseg.inference.core import mirror_tta, segment_tensor
    from volseg.inference.streaming import sliding_window_segment

    net = _unet(classes=2)
    affine = torch.diag(torch.tensor([0.7, 0.8, 2.5, 1.0], dtype=torch.float64))
    img = MetaTensor(torch.rand(1, 24, 20, 30), affine=affine, meta={"filename_or_obj": "x.nii.gz"})
    labels, probs = sliding_window_segment(img, net, (16, 16, 16), tta=True, probabilities="float16")
    ref = segment_tensor(img, net, (16, 16, 16), tta=True)
    assert torch.equal(labels.as_tensor()[0].long(), ref.as_tensor().argmax(0))
    assert probs.dtype == torch.float16 and probs.shape == (2, 24, 20, 30)
    assert torch.equal(labels.affine, affine) and labels.meta["filename_or_obj"] == "x.nii.gz"
    assert callable(mirror_tta(net, 3))


def test_buffer_depth_does_not_grow_with_the_volume():
    from volseg.inference.streaming import plan_windows

    roi = (96, 96, 96)
    depths = {z: plan_windows((512, 512, z), roi, 0.25, 4)[1] for z in (200, 600, 1200)}
    assert len(set(depths.values())) == 1
    assert depths[600] <= 96 + 72  # one ROI plus one overlap step: 168 of 600 slices
    batches, _ = plan_windows((512, 512, 600), roi, 0.25, 4)
    starts = [w[-1].start for b in batches for w in b]
    assert starts == sorted(starts) and len(starts) == 7 * 7 * 8  # MONAI's grid: 7 starts over 512, 8 over 600


def test_bad_options_are_config_errors():
    from volseg.errors import ConfigError
    from volseg.inference.streaming import sliding_window_segment

    net = _unet()
    with pytest.raises(ConfigError, match="3 values"):
        sliding_window_segment(torch.rand(1, 8, 8, 8), net, (16, 16))
    with pytest.raises(ConfigError, match="probability dtype"):
        sliding_window_segment(torch.rand(1, 8, 8, 8), net, (16, 16, 16), probabilities="float64")
    with pytest.raises(ConfigError, match="cannot be applied"):
        sliding_window_segment(torch.rand(1, 8, 8), net, (16, 16, 16), spatial_dims=3)


@pytest.mark.gpu
def test_cuda_windows_with_cpu_outputs_match_cpu():
    from volseg.inference.streaming import sliding_window_segment

    net = _unet()
    img = torch.rand(1, 40, 36, 50, generator=torch.Generator().manual_seed(3))
    ref, _ = sliding_window_segment(img, net, (32, 32, 16), amp=False)
    got, probs = sliding_window_segment(img, net.cuda(), (32, 32, 16), device="cpu", sw_device="cuda", amp=True,
                                        probabilities="float16")
    assert got.device.type == "cpu" and probs.device.type == "cpu"
    assert (got == ref).float().mean() > 0.999  # fp16 autocast moves a few near-ties


def test_count_windows_matches_the_plan():
    from volseg.inference.streaming import count_windows, plan_windows

    assert count_windows((512, 512, 600), (96, 96, 96)) == 7 * 7 * 8
    assert count_windows((20, 50, 33), (32, 24, 40)) == sum(len(b) for b in plan_windows((32, 50, 40), (32, 24, 40))[0])
    assert count_windows((64, 64, 7), (32, 32), spatial_dims=2) == 3 * 3 * 7


def test_auto_backend_runs_small_cases_eagerly(bundle3d, phantom):
    from volseg.inference import Predictor
    from volseg.inference.predictor import AUTO_COMPILE_MIN_WINDOWS
    from volseg.inference.streaming import count_windows

    pred = Predictor(bundle3d, device="cpu", backend="auto")
    assert count_windows(phantom.image.shape[1:], pred.roi_size) < AUTO_COMPILE_MIN_WINDOWS
    mask = pred(phantom.image)
    assert mask.shape == phantom.image.shape and pred.forward is not pred.network
    assert getattr(pred.forward, "_compiled", None) is None  # never compiled for this small case
