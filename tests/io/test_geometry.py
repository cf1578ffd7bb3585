"""Geometry round trips: load -> save_mask -> reload with nibabel AND SimpleITK; world positions agree."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from tests.io.conftest import ORIENTATIONS
from volseg.data import make_phantom
from volseg.io import load_volume, save_mask, save_volume

IDX = np.array([[0, 0, 0], [5, 3, 2], [11, 9, 5], [7, 0, 4], [0, 9, 1]])


def _world_nib(path, idx):
    img = nib.load(str(path))
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    np.testing.assert_allclose(img.get_qform(), img.get_sform(), atol=1e-4)
    return nib.affines.apply_affine(img.affine, idx), np.asarray(img.dataobj)


def _world_sitk(path, idx):
    img = sitk.ReadImage(str(path))
    lps = np.array([img.TransformContinuousIndexToPhysicalPoint([float(v) for v in i]) for i in idx])
    return lps * np.array([-1, -1, 1]), np.transpose(sitk.GetArrayFromImage(img), (2, 1, 0))


@pytest.mark.parametrize("orient", list(ORIENTATIONS))
@pytest.mark.parametrize("src_suffix", [".nii.gz", ".nrrd"])
def test_mask_round_trip(tmp_path, orient, src_suffix):
    spacing = (0.7, 1.3, 3.1)  # anisotropic
    ph = make_phantom(shape=(12, 10, 8), spacing=spacing, seed=1, n_lesions=1,
                      direction=ORIENTATIONS[orient], origin=(12.5, -40.25, 7.0))
    src = tmp_path / f"src{src_suffix}"
    save_volume(ph.image, src)
    ref = load_volume(src)
    np.testing.assert_allclose(ref.affine.numpy(), ph.affine, atol=1e-5)
    mask = (ref[0] > -500).to(dtype=ref.dtype) + (ref[0] > 500)
    expected_world = nib.affines.apply_affine(ph.affine, IDX[:, :3] % np.array([12, 10, 8]))
    for out_suffix in (".nii.gz", ".nrrd", ".mha"):
        out = tmp_path / f"mask{out_suffix}"
        save_mask(mask, ref, out)
        idx = IDX % np.array([12, 10, 8])
        w_sitk, a_sitk = _world_sitk(out, idx)
        np.testing.assert_allclose(w_sitk, expected_world, atol=1e-3)
        assert a_sitk.dtype == np.uint8
        np.testing.assert_array_equal(a_sitk, mask.numpy().astype(np.uint8))
        if out_suffix == ".nii.gz":
            w_nib, a_nib = _world_nib(out, idx)
            np.testing.assert_allclose(w_nib, expected_world, atol=1e-3)
            np.testing.assert_array_equal(a_nib, mask.numpy().astype(np.uint8))
        # volseg reads its own output back on the same grid
        again = load_volume(out)
        np.testing.assert_allclose(again.affine.numpy(), ph.affine, atol=1e-4)


def test_save_volume_dtypes(tmp_path):
    ph = make_phantom(shape=(10, 10, 8), spacing=(1, 1, 1), seed=0)
    save_volume(ph.image, tmp_path / "ct.nii.gz")
    assert nib.load(str(tmp_path / "ct.nii.gz")).get_data_dtype() == np.int16
    save_volume(ph.image / 7.0, tmp_path / "f.nii.gz")
    assert nib.load(str(tmp_path / "f.nii.gz")).get_data_dtype() == np.float32


def test_mask_dtype_uint16_and_refusals(tmp_path):
    ph = make_phantom(shape=(10, 10, 8), spacing=(1, 1, 1), seed=0)
    big = np.zeros((10, 10, 8), dtype=np.int32)
    big[0, 0, 0] = 300
    save_mask(big, ph.image, tmp_path / "big.nii.gz")
    assert nib.load(str(tmp_path / "big.nii.gz")).get_data_dtype() == np.uint16
    from volseg.errors import InputError

    with pytest.raises(InputError, match="non-integer"):
        save_mask(np.full((10, 10, 8), 0.5, dtype=np.float32), ph.image, tmp_path / "p.nii.gz")
    with pytest.raises(InputError, match="differs from the reference grid"):
        save_mask(np.zeros((10, 10, 7), dtype=np.uint8), ph.image, tmp_path / "s.nii.gz")
    assert not (tmp_path / "p.nii.gz").exists() and not (tmp_path / "s.nii.gz").exists()


def test_nifti_qform_only_and_mhd(tmp_path):
    """A NIfTI with only a qform (sform code 0) is read by its qform; .mhd writes a header + data pair."""
    aff = np.array([[0, 0, 2.0, -10], [-1.5, 0, 0, 20], [0, 1.2, 0, 5], [0, 0, 0, 1]])
    img = nib.Nifti1Image(np.arange(60, dtype=np.int16).reshape(3, 4, 5), aff)
    img.set_qform(aff, code=1)
    img.set_sform(None, code=0)
    nib.save(img, str(tmp_path / "q.nii"))
    v = load_volume(tmp_path / "q.nii")
    np.testing.assert_allclose(v.affine.numpy(), aff, atol=1e-5)
    save_mask(v[0] > 30, v, tmp_path / "m.mhd")
    back = load_volume(tmp_path / "m.mhd")
    np.testing.assert_allclose(back.affine.numpy(), aff, atol=1e-5)
    np.testing.assert_array_equal(back[0].numpy() > 0, v[0].numpy() > 30)
    assert sorted(p.suffix for p in tmp_path.glob("m.*")) in ([".mhd", ".raw"], [".mhd", ".zraw"])


@pytest.mark.parametrize("layout", ["fortran", "read-only", "negative-stride", "big-endian", "c"])
def test_metatensor_is_an_own_c_contiguous_copy_with_the_same_values(layout):
    from volseg.io._geometry import make_metatensor

    base = np.arange(2 * 5 * 4 * 3, dtype=np.float32).reshape(2, 5, 4, 3)
    arr = {"fortran": np.asfortranarray(base), "read-only": np.asfortranarray(base).copy(order="F"),
           "negative-stride": base[:, ::-1], "big-endian": base.astype(">f4"), "c": base.copy()}[layout]
    if layout == "read-only":
        arr.flags.writeable = False
    t = make_metatensor(arr, np.eye(4))
    assert t.is_contiguous() and t.dtype == torch.float32
    np.testing.assert_array_equal(t.numpy(), np.asarray(arr, dtype=np.float32))
    t[0, 0, 0, 0] = -1.0  # writeable, and never writes through to a read-only source
    if layout == "read-only":
        assert arr[0, 0, 0, 0] == 0.0
