"""Real pyradiomics samples: fetch, NRRD geometry vs pynrrd, plastimatch DICOM vs dcm2niix, SEG on real CT."""
from __future__ import annotations

import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import require_tool
from volseg.io import load_volume, save_mask

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def samples():
    from volseg.data import fetch_samples

    folder = fetch_samples()
    assert fetch_samples() == folder  # idempotent, no second download
    return folder


@pytest.mark.parametrize("case", ["lung1", "brain1"])
def test_nrrd_geometry_vs_pynrrd(tmp_path, samples, case):
    import nrrd

    data, hdr = nrrd.read(str(samples / f"{case}_image.nrrd"))
    assert hdr["space"] == "left-posterior-superior"
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(hdr["space directions"], dtype=float).T
    lps[:3, 3] = hdr["space origin"]
    img = load_volume(samples / f"{case}_image.nrrd")
    np.testing.assert_allclose(img.affine.numpy(), np.diag([-1, -1, 1, 1]) @ lps, atol=1e-6)
    np.testing.assert_array_equal(img[0].numpy(), data.astype(np.float32))
    label = load_volume(samples / f"{case}_label.nrrd")
    save_mask(label, img, tmp_path / "m.nii.gz")
    m = nib.load(str(tmp_path / "m.nii.gz"))
    idx = np.argwhere(np.asarray(m.dataobj) > 0)[:20]
    np.testing.assert_allclose(nib.affines.apply_affine(m.affine, idx),
                               nib.affines.apply_affine(np.diag([-1, -1, 1, 1]) @ lps, idx), atol=1e-3)


@pytest.mark.tools
@pytest.mark.slow
def test_plastimatch_series_vs_dcm2niix(tmp_path, samples):
    plm, d2n = require_tool("plastimatch"), require_tool("dcm2niix")
    dcm = tmp_path / "dcm"
    subprocess.run([plm, "convert", "--input", str(samples / "lung1_image.nrrd"), "--output-dicom", str(dcm)],
                   check=True, capture_output=True)
    subprocess.run([d2n, "-z", "y", "-f", "ref", "-o", str(tmp_path), str(dcm)], check=True, capture_output=True)
    img = load_volume(dcm)
    assert img.shape == (1, 512, 512, 48) and img.meta["modality"] == "CT"
    ref = nib.as_closest_canonical(nib.load(str(tmp_path / "ref.nii.gz")))
    ours = nib.as_closest_canonical(nib.Nifti1Image(img[0].numpy(), img.affine.numpy()))
    np.testing.assert_allclose(ours.affine, ref.affine, atol=1e-3)
    np.testing.assert_array_equal(ours.get_fdata(), ref.get_fdata())
    # and the original NRRD voxels and geometry survive the trip through plastimatch's DICOM
    src = load_volume(samples / "lung1_image.nrrd")
    np.testing.assert_allclose(img.affine.numpy(), src.affine.numpy(), atol=1e-3)
    np.testing.assert_array_equal(img.numpy(), src.numpy())
    if shutil.which("dciodvfy"):
        from volseg.io import write_dicom_seg

        label = load_volume(samples / "lung1_label.nrrd")
        seg = write_dicom_seg(label, img, tmp_path / "tumour.dcm", labels={1: "tumour"})
        res = subprocess.run(["dciodvfy", str(seg)], capture_output=True, encoding="utf-8", errors="replace")
        assert [ln for ln in (res.stdout + res.stderr).splitlines() if "Error" in ln] == []
