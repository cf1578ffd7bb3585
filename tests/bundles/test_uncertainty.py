"""``volseg predict --uncertainty`` on trained (overfit) model-zoo networks: a predictive-entropy map
on the mask's grid, higher at predicted boundaries than inside labels, in stats and overlays."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.bundles.conftest import WHOLEBODY_OVERRIDES

pytestmark = [pytest.mark.slow]


def _boundary_and_interior(mask: np.ndarray):
    """Voxels within 1 voxel of a predicted boundary, and voxels at least 3 voxels inside a label
    (foreground or background)."""
    from scipy import ndimage

    ball = ndimage.generate_binary_structure(3, 1)
    edge = np.zeros(mask.shape, bool)
    inside = np.ones(mask.shape, bool)
    for lab in np.unique(mask):
        sel = mask == lab
        edge |= ndimage.binary_dilation(sel, ball) & ~ndimage.binary_erosion(sel, ball)
        inside &= ~sel | ndimage.binary_erosion(sel, ball, iterations=3)
    return edge, inside & ~edge


def test_uncertainty_map_is_high_at_boundaries_and_on_the_mask_grid(spleen, zoo_cases, tmp_path):
    import nibabel as nib

    from volseg.inference import predict

    src = zoo_cases["oblique"]
    out = tmp_path / "out"
    predict(src, out, model=spleen, backend="eager", progress=False, uncertainty=True, stats=True, overlay=True)
    mask_img = nib.load(str(out / "oblique.nii.gz"))
    unc_img = nib.load(str(out / "oblique_uncertainty.nii.gz"))
    np.testing.assert_allclose(unc_img.affine, mask_img.affine, atol=1e-6)
    np.testing.assert_allclose(unc_img.affine, nib.load(str(src)).affine, atol=1e-4)
    mask, unc = np.asarray(mask_img.dataobj), np.asarray(unc_img.dataobj, dtype=np.float32)
    assert unc.shape == mask.shape and unc.min() >= 0 and unc.max() <= 1
    edge, inside = _boundary_and_interior(mask)
    assert edge.sum() > 1000 and inside.sum() > 1000
    assert unc[edge].mean() > 3 * unc[inside].mean(), (unc[edge].mean(), unc[inside].mean())
    stats = json.loads((out / "oblique_stats.json").read_text())
    row = next(r for r in stats["labels"] if r["label"] == 1)
    np.testing.assert_allclose(row["mean_uncertainty"], unc[mask == 1].mean(), atol=1e-3)
    assert (out / "oblique_overlay.png").stat().st_size > 20_000


def test_mc_dropout_where_the_network_has_dropout(wholebody, zoo_cases, tmp_path):
    """SegResNet with dropout 0.2: the passes sample dropout too; seeded, so reruns give the same map."""
    from volseg.inference import Predictor

    pred = Predictor(wholebody, backend="eager", device="cpu", uncertainty=True, overrides=WHOLEBODY_OVERRIDES)
    assert pred.mc_dropout
    a = pred.outputs(zoo_cases["thin"])
    b = pred.outputs(zoo_cases["thin"])
    assert np.array_equal(a["uncertainty"].numpy(), b["uncertainty"].numpy())
    assert a["uncertainty"].shape[1:] == a["mask"].shape[1:]
    assert float(a["uncertainty"].max()) > 0.05
