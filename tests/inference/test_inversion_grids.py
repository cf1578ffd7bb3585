"""Masks and probabilities back on the source grid for sagittal-like (cyclic axis permutation) and
oblique storage, through ``volseg.predict`` only, checked against two independent references:

* plain MONAI: the same preprocessing (``LoadImaged`` with nibabel, ``Orientationd``, ``Spacingd``),
  the threshold model's softmax (or its labels) on the model grid, then MONAI's own ``Invertd``
  back to the source grid (bilinear for probabilities, nearest for labels);
* SimpleITK: every source voxel's world position from SimpleITK's reading of the source file,
  mapped into the model grid: the nearest model voxel's label, or the probabilities there by
  trilinear interpolation (scipy).

A swap of two axes is its own inverse, so only a cyclic permutation (i -> A, j -> S, k -> L) or a
rotation tells a row of the grid-to-grid map from a column.
"""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.conftest import THRESHOLDS, expected_labels, make_bundle, write_nifti

PIXDIM = (1.7, 2.5, 2.7)  # model grid (RAS mm); source/model spacing ratios have odd denominators: few exact ties
SHAPE = (40, 36, 24)
SPACING = (1.3, 2.2, 3.1)


def _rot(axis: int, deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    i, j = [a for a in range(3) if a != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


# RAS direction cosines, columns = index axes (i, j, k)
GRIDS = {
    "ASL": np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),  # sagittal: i->A, j->S, k->L
    "SLA": np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]),  # i->S, j->L, k->A
    "oblique_PIR": _rot(2, 19.0) @ _rot(0, -13.0) @ np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]),
}


def _source(tmp: Path, direction: np.ndarray) -> Path:
    """A phantom CT (int16 HU) stored on ``direction`` with anisotropic spacing, as NIfTI (sform = qform)."""
    from volseg.data import make_phantom

    ph = make_phantom(shape=SHAPE, spacing=SPACING, direction=direction, origin=(3.7, -11.3, 5.9), seed=5,
                      n_lesions=1)
    aff = np.asarray(ph.affine, dtype=np.float64)
    return write_nifti(tmp / "src.nii.gz", np.rint(ph.image[0].numpy()), aff)


def _bundle(root: Path, diagonal: bool, labels: bool) -> Path:
    """The threshold bundle with Orientationd + Spacingd; ``diagonal`` resamples onto a RAS-aligned
    grid (a rotation for oblique sources), else the source's own rotation is kept. ``labels``: the
    bundle's postprocessing takes the argmax on the model grid and inverts labels (nearest, as
    model-zoo bundles do); else no postprocessing: volseg's default (softmax, bilinear inversion of
    the probabilities, argmax on the source grid)."""
    make_bundle(root, spacing=PIXDIM)
    cfg_path = root / "configs" / "inference.json"
    cfg = json.loads(cfg_path.read_text())
    for t in cfg["preprocessing"]["transforms"]:
        if t["_target_"] == "Spacingd":
            t["diagonal"] = diagonal
    if labels:
        cfg["postprocessing"] = {"_target_": "Compose", "transforms": [
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
             "nearest_interp": True}]}
    cfg_path.write_text(json.dumps(cfg, indent=1))
    return root


def _monai_reference(src: Path, diagonal: bool):
    """Plain MONAI: ``(model-grid image x, softmax on the model grid, labels on the source grid by
    Invertd (nearest), softmax on the source grid by Invertd (bilinear))``."""
    from monai.data import MetaTensor
    from monai.transforms import Compose, EnsureTyped, Invertd, LoadImaged, Orientationd, Spacingd

    from volseg.inference.toy import ThresholdNet

    pre = Compose([LoadImaged("image", reader="NibabelReader", ensure_channel_first=True, image_only=True),
                   Orientationd("image", axcodes="RAS"),
                   Spacingd("image", pixdim=PIXDIM, mode="bilinear", diagonal=diagonal),
                   EnsureTyped("image", dtype=torch.float32)])
    x = pre({"image": str(src)})["image"]
    lab = torch.from_numpy(expected_labels(x[0].numpy()))[None].float()
    with torch.no_grad():
        probs = torch.softmax(ThresholdNet(3, 1, THRESHOLDS)(x[None].as_tensor()), dim=1)[0]

    def invert(t: torch.Tensor, nearest: bool) -> np.ndarray:
        pred = MetaTensor(t, affine=x.affine, meta=dict(x.meta))
        out = Invertd("pred", transform=pre, orig_keys="image", nearest_interp=nearest)({"image": x, "pred": pred})
        return torch.as_tensor(out["pred"]).numpy()

    return x, probs.numpy(), np.rint(invert(lab, True)[0]).astype(np.uint8), invert(probs, False)


def _sitk_reference(src: Path, x, probs: np.ndarray) -> tuple:
    """From SimpleITK's world point (LPS -> RAS) of every source voxel, its position in the model
    grid of ``x``; there ``(nearest labels (0 outside), nearest ties, probabilities by trilinear
    interpolation (scipy, edge values outside))``. Ties: half-way between two model voxels (two
    right answers)."""
    import SimpleITK as sitk
    from scipy.ndimage import map_coordinates

    img = sitk.ReadImage(str(src))
    d = np.array(img.GetDirection()).reshape(3, 3)
    sp, origin = np.array(img.GetSpacing()), np.array(img.GetOrigin())
    size = img.GetSize()
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), -1).reshape(-1, 3).astype(np.float64)
    ras = (idx @ (d * sp).T + origin) * np.array([-1.0, -1.0, 1.0])
    model = np.linalg.solve(np.asarray(x.affine, dtype=np.float64),
                            np.concatenate([ras, np.ones((len(ras), 1))], 1).T)[:3].T
    k = np.rint(model).astype(np.int64)
    shape = np.array(x.shape[1:])
    inside = ((k >= 0) & (k < shape)).all(1)
    lab = expected_labels(x[0].numpy())
    kc = np.clip(k, 0, shape - 1)
    nearest = np.where(inside, lab[kc[:, 0], kc[:, 1], kc[:, 2]], 0).astype(np.uint8)
    ties = (np.abs(model - np.floor(model) - 0.5) < 1e-3).any(1)
    p = np.stack([map_coordinates(c.astype(np.float64), model.T, order=1, mode="nearest") for c in probs])
    return nearest.reshape(size), ties.reshape(size), p.reshape(len(probs), *size)


def _argmax_and_close_calls(p: np.ndarray) -> tuple:
    """``(argmax over channels, voxels whose two largest probabilities are within 1e-3)``."""
    top = np.sort(p, axis=0)
    return np.argmax(p, axis=0).astype(np.uint8), (top[-1] - top[-2]) < 1e-3


# a rotation to invert (oblique source, Spacingd diagonal=True) runs MONAI's own Invertd (not separable)
CASES = [pytest.param(g, d, m, id=f"{g}-{'diagonal' if d else 'own-rotation'}-{m}")
         for g, d in (("ASL", False), ("SLA", False), ("oblique_PIR", False), ("oblique_PIR", True))
         for m in ("probabilities", "labels")]


@pytest.mark.parametrize("grid,diagonal,mode", CASES)
def test_mask_and_probabilities_match_invertd_and_sitk_world(grid, diagonal, mode, tmp_path):
    import SimpleITK as sitk

    import volseg

    src = _source(tmp_path, GRIDS[grid])
    bundle = _bundle(tmp_path / "bundle", diagonal, labels=mode == "labels")
    out = tmp_path / "out"
    mask = volseg.predict(src, out, model=bundle, backend="eager", progress=False, save_probabilities="uint8")
    assert tuple(mask.shape) == (1, *SHAPE)

    x, probs, nearest_invertd, prob_invertd = _monai_reference(src, diagonal)
    nearest_world, ties, prob_world = _sitk_reference(src, x, probs)
    # the two references agree with each other (probabilities to float32 rounding, labels off ties)
    np.testing.assert_allclose(prob_world, prob_invertd, atol=1e-4)
    assert not ((nearest_invertd != nearest_world) & ~ties).any()
    if mode == "labels":
        ref_invertd, ref_world, unsure = nearest_invertd, nearest_world, ties
    else:
        ref_invertd, close_i = _argmax_and_close_calls(prob_invertd)
        ref_world, close_w = _argmax_and_close_calls(prob_world)
        unsure = close_i | close_w
    assert unsure.mean() < 0.1, "most voxels must have one right answer"
    counts = np.bincount(ref_world.ravel(), minlength=3)
    assert counts[1] > 1000 and counts[2] > 100, counts  # tissue and bone both present

    src_nib = nib.load(str(src))
    m = nib.load(str(out / "src.nii.gz"))
    assert m.get_data_dtype() == np.uint8
    np.testing.assert_allclose(m.affine, src_nib.affine, atol=1e-5)
    got = np.asarray(m.dataobj)
    bad = (got != ref_world) & ~unsure
    assert not bad.any(), f"{int(bad.sum())} voxels differ from the SimpleITK world reference"
    bad = (got != ref_invertd) & ~unsure
    assert not bad.any(), f"{int(bad.sum())} voxels differ from MONAI's Invertd"

    # SimpleITK's reading of the mask: same geometry as its reading of the source, same voxels
    s_src, s_mask = sitk.ReadImage(str(src)), sitk.ReadImage(str(out / "src.nii.gz"))
    np.testing.assert_allclose(s_mask.GetOrigin(), s_src.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(s_mask.GetSpacing(), s_src.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(s_mask.GetDirection(), s_src.GetDirection(), atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(s_mask).transpose(2, 1, 0), got)

    # probabilities (X, Y, Z, L), stored as uint8 p x 255; with a bilinear chain: MONAI's bilinear
    # Invertd of the softmax (a labels chain's probabilities are left to the engine's choice)
    prob = nib.load(str(out / "src_prob.nii.gz"))
    np.testing.assert_allclose(prob.affine, src_nib.affine, atol=1e-5)
    p = np.moveaxis(np.asarray(prob.dataobj, dtype=np.float32), -1, 0)
    assert p.shape == prob_invertd.shape == (3, *SHAPE)
    if mode == "probabilities":
        np.testing.assert_allclose(p, prob_invertd, atol=0.5 / 255 + 1e-3)
