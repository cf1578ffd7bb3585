"""A radiology viewer's own rendering: MRtrix3's ``mrview`` (headless, under ``xvfb-run``) draws our
mask over the source scan exactly where the scan's voxels meet the model's rule.

The fixed threshold model marks voxels above -500 HU. ``mrview`` renders (a) the scan with a
window that turns exactly those voxels white and (b) the scan blacked out with our mask as an
overlay, in the scan's own view, in each of the three planes. The viewer resolves the mask's
affine itself, so (a) and (b) agree only if the mask lands on the right voxels; a mask shifted by
one voxel is rendered and must disagree (the check can fail).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import THRESHOLDS, require_tool, write_nifti
from tests.inference.conftest import NON_RAS

pytestmark = pytest.mark.tools


def _render(scan: Path, out: Path, plane: int, window: str, focus: str, overlay: Path = None) -> np.ndarray:
    """Grey levels (H, W) of an mrview screenshot of ``scan`` in ``plane`` (0 sag, 1 cor, 2 axial)
    through ``focus`` ("x,y,z" scanner RAS mm)."""
    from PIL import Image

    cmd = [require_tool("xvfb-run"), "-a", "-s", "-screen 0 640x640x24", require_tool("mrview"), str(scan),
           "-mode", "1", "-plane", str(plane), "-focus", focus, "-noannotations", "-interpolation", "0", "-intensity_range", window]
    if overlay is not None:
        cmd += ["-overlay.load", str(overlay), "-overlay.colourmap", "0", "-overlay.opacity", "1",
                "-overlay.intensity", "0,1", "-overlay.threshold_min", "0.5", "-overlay.interpolation", "0"]
    cmd += ["-capture.folder", str(out.parent), "-capture.prefix", out.name, "-capture.grab", "-exit"]
    res = subprocess.run(cmd, capture_output=True, encoding="utf-8", errors="replace", timeout=120)
    shot = out.parent / f"{out.name}0000.png"
    if not shot.is_file():  # no OpenGL 3.3 under this X server: the viewer cannot run here at all
        pytest.skip(f"mrview could not render headless: {res.stderr.strip().splitlines()[-1:] or res.returncode}")
    return np.asarray(Image.open(shot).convert("L"), dtype=np.float64)


@pytest.fixture(scope="module")
def scan_and_mask(bundle3d, phantom, tmp_path_factory):
    import volseg

    work = tmp_path_factory.mktemp("viewer")
    scan = write_nifti(work / "ct.nii.gz", np.rint(phantom.image[0].numpy()), NON_RAS)
    mask = work / "mask.nii.gz"
    volseg.predict(scan, mask, model=bundle3d, backend="eager", progress=False)
    m = nib.load(str(mask))
    shifted = work / "shifted.nii.gz"
    aff = m.affine.copy()
    aff[:3, 3] += aff[:3, :3].sum(1)  # one voxel along each index axis: seen in every plane
    nib.save(nib.Nifti1Image(np.asarray(m.dataobj), aff), str(shifted))
    hu = np.rint(phantom.image[0].numpy())
    air = np.argwhere(hu < -700)
    air = air[air[:, 0] < np.median(air[:, 0])]  # one lung (they lie side by side along the first array axis)
    lung = np.median(air, axis=0).round()  # a point in it: every plane through it cuts both classes
    focus = ",".join(f"{v:.2f}" for v in NON_RAS[:3, :3] @ lung + NON_RAS[:3, 3])
    return work, scan, mask, shifted, focus


@pytest.mark.parametrize("plane", [0, 1, 2])
def test_mrview_draws_the_mask_on_the_voxels_the_model_marked(scan_and_mask, plane):
    work, scan, mask, shifted, focus = scan_and_mask
    lo = THRESHOLDS[0]
    truth = _render(scan, work / f"truth{plane}_", plane, f"{lo},{lo + 1}", focus) > 128  # HU > -500 white
    drawn = _render(scan, work / f"mask{plane}_", plane, "30000,30001", focus, overlay=mask) > 128
    wrong = _render(scan, work / f"shift{plane}_", plane, "30000,30001", focus, overlay=shifted) > 128
    assert 0.2 < truth.sum() / (truth.sum() + (~truth).sum()) < 0.8 or truth.sum() > 2000

    def iou(a, b):
        return (a & b).sum() / (a | b).sum()

    assert iou(drawn, truth) > 0.99
    assert iou(wrong, truth) < 0.97
