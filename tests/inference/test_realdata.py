"""Real scans (pyradiomics samples): the threshold model's mask lands on the same world points as
an independent reader (SimpleITK; dcm2niix for a DICOM series written by plastimatch)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import expected_labels, require_tool
from tests.inference.conftest import sitk_world_points, world_points

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def samples() -> Path:
    from volseg.data import fetch_samples
    from volseg.errors import InputError

    try:
        return Path(fetch_samples())
    except InputError as exc:  # no network / no cache (outside data): skip; any other error fails
        pytest.skip(f"pyradiomics samples unavailable: {exc}")


def test_mri_nrrd_with_negative_y_direction(bundle3d, samples, tmp_path):
    import volseg

    src = samples / "brain1_image.nrrd"
    out = tmp_path / "brain1.nii.gz"
    volseg.predict(src, out, model=bundle3d, backend="eager", progress=False)
    # the threshold model marks voxels > -500 (all MRI tissue >= 0): compare with SimpleITK's own read
    expected = sitk_world_points(src, lambda a: expected_labels(a) > 0)
    got = sitk_world_points(out, lambda a: a > 0)
    np.testing.assert_allclose(got, expected, atol=2e-3)
    m = nib.load(str(out))
    np.testing.assert_allclose(world_points(np.asarray(m.dataobj), m.affine), expected, atol=2e-3)


@pytest.mark.tools
def test_ct_dicom_from_plastimatch_against_dcm2niix(bundle3d, samples, tmp_path):
    import volseg

    plastimatch = require_tool("plastimatch")
    dcm2niix = require_tool("dcm2niix")
    dicom = tmp_path / "lung1_dcm"
    subprocess.run([plastimatch, "convert", "--input", str(samples / "lung1_image.nrrd"), "--output-dicom",
                    str(dicom)], check=True, capture_output=True)
    conv = tmp_path / "conv"
    conv.mkdir()
    subprocess.run([dcm2niix, "-z", "y", "-f", "ref", "-o", str(conv), str(dicom)], check=True, capture_output=True)
    ref = nib.load(str(conv / "ref.nii.gz"))
    expected = world_points(expected_labels(ref.get_fdata()), ref.affine)
    out = tmp_path / "lung1.nii.gz"
    volseg.predict(dicom, out, model=bundle3d, backend="eager", progress=False, stats=True)
    m = nib.load(str(out))
    got = world_points(np.asarray(m.dataobj), m.affine)
    assert len(got) == len(expected) > 10000
    np.testing.assert_allclose(got, expected, atol=2e-3)
