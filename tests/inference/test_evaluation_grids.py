"""HD95 and mean surface distance in mm on grids whose index axes are a cyclic permutation of the
world axes (sagittal-like storage) or oblique, with anisotropic spacing, against the same metrics
computed independently with SimpleITK (its own reading of the files' spacing, its own erosion and
``SignedMaurerDistanceMap``). Row norms of such an affine are not the spacing: only the columns are.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_nifti

SPACING = (0.8, 2.0, 3.5)  # mm along index axes i, j, k
SHAPE = (48, 30, 22)
DIRECTIONS = {
    "ASL": np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),  # i->A, j->S, k->L
    "SLA": np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]),  # i->S, j->L, k->A
}


def _oblique() -> np.ndarray:
    a, b = np.radians(25.0), np.radians(-35.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx @ DIRECTIONS["ASL"]


DIRECTIONS["oblique"] = _oblique()


def _masks() -> tuple:
    """``(pred, ref)`` uint8 ``SHAPE``: an ellipsoid (label 1) and a box (label 2) in the reference; the
    prediction shifts them by different voxel counts along each axis and trims one face."""
    i, j, k = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    ref = np.zeros(SHAPE, np.uint8)
    pred = np.zeros(SHAPE, np.uint8)
    ref[((i - 16) / 10.0) ** 2 + ((j - 14) / 8.0) ** 2 + ((k - 10) / 5.0) ** 2 <= 1] = 1
    pred[((i - 19) / 10.0) ** 2 + ((j - 13) / 8.0) ** 2 + ((k - 11) / 4.0) ** 2 <= 1] = 1
    ref[32:42, 5:15, 4:18] = 2
    pred[34:42, 7:16, 3:16] = 2
    return pred, ref


def _save(path: Path, arr: np.ndarray, direction: np.ndarray) -> Path:
    aff = np.eye(4)
    aff[:3, :3] = direction @ np.diag(SPACING)
    aff[:3, 3] = (12.5, -40.25, 7.75)
    return write_nifti(path, arr, aff, dtype=None)


def _sitk_metrics(pred_file: Path, ref_file: Path, label: int) -> dict:
    """Dice, HD95 (max of the two directed 95th percentiles) and symmetric mean surface distance in
    mm, surfaces = mask XOR its 6-connected erosion, as MONAI defines them; all geometry from SimpleITK."""
    import SimpleITK as sitk

    def surface(img: sitk.Image) -> sitk.Image:
        seg = sitk.Cast(img == label, sitk.sitkUInt8)
        eroded = sitk.BinaryErode(seg, [1, 1, 1], sitk.sitkCross, 0, 1, False)
        return sitk.Xor(seg, eroded)

    def distances(from_img: sitk.Image, to_img: sitk.Image) -> np.ndarray:
        dmap = sitk.SignedMaurerDistanceMap(surface(to_img), insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True)
        sel = sitk.GetArrayFromImage(surface(from_img)).astype(bool)
        return np.maximum(sitk.GetArrayFromImage(dmap)[sel], 0.0)

    p, r = sitk.ReadImage(str(pred_file)), sitk.ReadImage(str(ref_file))
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(sitk.Cast(p == label, sitk.sitkUInt8), sitk.Cast(r == label, sitk.sitkUInt8))
    d_pr, d_rp = distances(p, r), distances(r, p)
    return {"dice": overlap.GetDiceCoefficient(),
            "hd95_mm": max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)),
            "msd_mm": float(np.concatenate([d_pr, d_rp]).mean())}


@pytest.mark.parametrize("grid", sorted(DIRECTIONS))
def test_surface_distances_in_mm_match_simpleitk(grid, tmp_path):
    from volseg.inference.evaluation import evaluate, evaluate_case
    from volseg.io import load_volume

    pred, ref = _masks()
    pf = _save(tmp_path / "pred.nii.gz", pred, DIRECTIONS[grid])
    rf = _save(tmp_path / "ref.nii.gz", ref, DIRECTIONS[grid])
    from_files = {row["label"]: row for row in evaluate(pf, rf)["cases"]}
    in_memory = {row["label"]: row for row in evaluate_case(load_volume(pf), load_volume(rf))}
    assert sorted(from_files) == sorted(in_memory) == [1, 2]
    for label in (1, 2):
        want = _sitk_metrics(pf, rf, label)
        assert want["hd95_mm"] > 3.0 and want["msd_mm"] > 1.0  # not a trivial overlap
        for rows in (from_files, in_memory):
            got = rows[label]
            assert got["dice"] == pytest.approx(want["dice"], rel=1e-6)
            assert got["hd95_mm"] == pytest.approx(want["hd95_mm"], rel=1e-4), (label, got, want)
            assert got["msd_mm"] == pytest.approx(want["msd_mm"], rel=1e-4), (label, got, want)


def test_spacing_changes_the_answer():
    """The same voxels on a grid with other spacings give other distances: the fixture exercises
    every axis's spacing, so a spacing taken from the wrong axes cannot pass."""
    from volseg.inference.evaluation import evaluate_case

    pred, ref = _masks()
    base = evaluate_case(pred, ref, spacing=SPACING)
    for perm in ((1, 2, 0), (2, 0, 1)):
        other = evaluate_case(pred, ref, spacing=[SPACING[a] for a in perm])
        for b, o in zip(base, other):
            assert abs(b["hd95_mm"] - o["hd95_mm"]) > 0.1 or abs(b["msd_mm"] - o["msd_mm"]) > 0.1
