"""DICOM series reading: agreement with SimpleITK's geometry and dcm2niix, sorting, bad series."""
from __future__ import annotations

import shutil
import subprocess

import nibabel as nib
import numpy as np
import pydicom
import pytest

from tests.conftest import require_tool, sitk_write_series
from volseg.errors import InputError
from volseg.io import load_volume, write_dicom_series


def test_sitk_series_geometry_and_sorting(sitk_series):
    d, vol, affine = sitk_series
    img = load_volume(d)
    assert img.shape == (1, *vol.shape)
    np.testing.assert_allclose(img.affine.numpy(), affine, atol=1e-4)
    np.testing.assert_array_equal(img[0].numpy(), vol.astype(np.float32))
    assert img.meta["modality"] == "CT" and img.meta["source_format"] == "dicom"
    names = [f.split("/")[-1] for f in img.meta["dicom_files"]]
    assert names == [f"slice_{i:03d}.dcm" for i in (3, 0, 5, 1, 4, 2)]  # slice order, not name order


def _canonical(img):
    c = nib.as_closest_canonical(img)
    return c.affine, c.get_fdata()


@pytest.mark.tools
def test_matches_dcm2niix(tmp_path, sitk_series):
    exe = require_tool("dcm2niix")
    d, vol, _ = sitk_series
    subprocess.run([exe, "-z", "y", "-f", "ref", "-o", str(tmp_path), str(d)], check=True, capture_output=True)
    ref = nib.load(str(tmp_path / "ref.nii.gz"))
    img = load_volume(d)
    a1, v1 = _canonical(ref)
    a2, v2 = _canonical(nib.Nifti1Image(img[0].numpy(), img.affine.numpy()))
    np.testing.assert_allclose(a2, a1, atol=1e-3)
    np.testing.assert_array_equal(v2, v1)


@pytest.mark.tools
@pytest.mark.parametrize("orient", ["LPS", "oblique", "LSA"])
def test_write_dicom_series_read_by_dcm2niix(tmp_path, orient):
    from tests.io.conftest import ORIENTATIONS
    from volseg.data import make_phantom

    exe = require_tool("dcm2niix")
    ph = make_phantom(shape=(20, 16, 6), spacing=(0.9, 1.1, 2.0), seed=3, n_lesions=1,
                      direction=ORIENTATIONS[orient], origin=(10.0, -5.0, 30.0))
    files = write_dicom_series(ph.image, tmp_path / "dcm")
    assert len(files) == 6
    back = load_volume(tmp_path / "dcm")
    np.testing.assert_allclose(back.affine.numpy(), ph.affine, atol=1e-4)
    np.testing.assert_array_equal(back.numpy(), ph.image.numpy())
    subprocess.run([exe, "-z", "y", "-f", "ref", "-o", str(tmp_path), str(tmp_path / "dcm")], check=True,
                   capture_output=True)
    a1, v1 = _canonical(nib.load(str(tmp_path / "ref.nii.gz")))
    a2, v2 = _canonical(nib.Nifti1Image(ph.image[0].numpy(), ph.affine))
    np.testing.assert_allclose(a1, a2, atol=1e-3)
    np.testing.assert_array_equal(v1, v2)


def test_pydicom_sample_series_and_grouping():
    from pydicom.data import get_testdata_file

    import os

    base = os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), "dicomdirtests")
    with pytest.raises(InputError, match="image series found, choose one") as exc:
        load_volume(base)
    assert "1.3.6.1.4.1.5962.1.1.0.0.0.1194734704.16302.0.6" in str(exc.value) and "\n" not in str(exc.value)
    img = load_volume(base, series="1.3.6.1.4.1.5962.1.1.0.0.0.1194734704.16302.0.6")
    assert img.shape[1:] == (16, 16, 5)
    proj = [float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in img.meta["dicom_files"]]
    assert proj == sorted(proj)
    np.testing.assert_allclose(img.affine.numpy()[2, 2], proj[1] - proj[0], atol=1e-6)


def test_single_file_and_rescale():
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    img = load_volume(path)
    expected = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(img[0, :, :, 0].numpy(), expected.T)
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    np.testing.assert_allclose(img.affine.numpy()[:3, 3], ipp * [-1, -1, 1], atol=1e-6)


def test_multiframe_enhanced_ct(tmp_path, sitk_series):
    import highdicom as hd

    d, vol, affine = sitk_series
    legacy = [pydicom.dcmread(f) for f in sorted(d.glob("*.dcm"))]
    mf = hd.legacy.LegacyConvertedEnhancedCTImage(legacy, series_instance_uid=hd.UID(), series_number=9,
                                                  sop_instance_uid=hd.UID(), instance_number=1)
    mf.save_as(str(tmp_path / "enh.dcm"))
    img = load_volume(tmp_path / "enh.dcm")
    np.testing.assert_allclose(img.affine.numpy(), affine, atol=1e-4)
    np.testing.assert_array_equal(img[0].numpy(), vol.astype(np.float32))
    # a SEG on the multi-frame reference decodes back onto volseg's grid
    from volseg.io import write_dicom_seg

    mask = (img[0].numpy() > 2000).astype(np.uint8)
    seg = hd.seg.segread(str(write_dicom_seg(mask, img, tmp_path / "seg.dcm", labels={1: "bright"})))
    frames = seg.get_pixels_by_source_frame(mf.SOPInstanceUID, list(range(1, len(legacy) + 1)),
                                            combine_segments=True, skip_overlap_checks=True,
                                            assert_missing_frames_are_empty=True)
    back = np.transpose(frames[img.meta["frame_order"]], (2, 1, 0))
    np.testing.assert_array_equal(back, mask)


def _bad_series(tmp_path, small_volume, positions_fn, directions=None):
    d = tmp_path / "bad"
    sp = (0.7, 0.8, 2.5)
    pos = [np.array([-40.0, -30.0, 100.0 + 2.5 * k]) for k in range(small_volume.shape[2])]
    pos = positions_fn(pos)
    sitk_write_series(small_volume, d, sp, (-40, -30, 100), np.eye(3), positions=pos)
    return d


def test_missing_slice(tmp_path, small_volume):
    d = _bad_series(tmp_path, small_volume, lambda p: p)
    (d / "slice_003.dcm").unlink()
    with pytest.raises(InputError, match=r"missing slice\(s\).*slice_002.dcm and slice_004.dcm"):
        load_volume(d)
    img = load_volume(d, resample=True)
    assert img.shape[1:] == (12, 10, 6)
    expected = (small_volume[:, :, 2].astype(np.float32) + small_volume[:, :, 4]) / 2
    np.testing.assert_allclose(img[0, :, :, 3].numpy(), expected, atol=1e-3)


def test_non_uniform_spacing(tmp_path, small_volume):
    def shift(p):
        p[2] = p[2] + np.array([0, 0, 0.6])
        return p

    with pytest.raises(InputError, match="non-uniform slice spacing"):
        load_volume(_bad_series(tmp_path, small_volume, shift))


def test_gantry_tilt(tmp_path, small_volume):
    def tilt(p):
        return [q + np.array([0, 0.8 * k, 0]) for k, q in enumerate(p)]

    d = _bad_series(tmp_path, small_volume, tilt)
    with pytest.raises(InputError, match="gantry tilt.*resample=True"):
        load_volume(d)
    img = load_volume(d, resample=True)
    aff = img.affine.numpy()
    np.testing.assert_allclose(aff[:3, 2], [0, 0, 2.5], atol=1e-6)  # orthogonal slice axis
    assert img.meta["resampled"] and img.meta["dicom_files"] == []
    # slice k of the source is shifted 0.8 k mm along y (one row per 0.8 mm): voxel (i, j, k) of the
    # orthogonal grid shows source row j - k
    src = small_volume.astype(np.float32)
    np.testing.assert_allclose(img[0, :, 3:, 2].numpy(), src[:, 1:8, 2], atol=1e-3)


def test_mixed_orientation(tmp_path, small_volume):
    d = _bad_series(tmp_path, small_volume, lambda p: p)
    f = d / "slice_004.dcm"
    ds = pydicom.dcmread(f)
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.save_as(f)
    with pytest.raises(InputError, match="mixed slice orientations.*slice_004.dcm"):
        load_volume(d)


def test_two_series_and_choice(tmp_path, small_volume):
    d = tmp_path / "two"
    sitk_write_series(small_volume, d / "a", (1, 1, 2), (0, 0, 0), np.eye(3), series_uid="1.2.3.4", description="A")
    sitk_write_series(small_volume[:, :, :4], d / "b", (1, 1, 2), (0, 0, 0), np.eye(3), series_uid="1.2.3.5",
                      description="B", modality="MR")
    with pytest.raises(InputError) as exc:
        load_volume(d)
    msg = str(exc.value)
    assert "2 image series" in msg and "1.2.3.4 (CT, 'A', 6 slices)" in msg and "1.2.3.5 (MR, 'B', 4 slices)" in msg
    assert load_volume(d, series="1.2.3.5").shape[1:] == (12, 10, 4)
    with pytest.raises(InputError, match="not found"):
        load_volume(d, series="9.9")


def test_non_dicom_and_non_image_files_skipped(tmp_path, sitk_series, caplog):
    d, vol, _ = sitk_series
    (d / "notes.txt").write_text("not dicom")
    sr = pydicom.dcmread(next(d.glob("*.dcm")))
    sr.Modality = "SR"
    sr.SeriesInstanceUID = "1.2.9"
    sr.save_as(d / "report.dcm")
    with caplog.at_level("WARNING"):
        img = load_volume(d)
    assert img.shape[1:] == vol.shape
    text = caplog.text
    assert "notes.txt" in text and "report.dcm (SR)" in text


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DICOM image series found"):
        load_volume(tmp_path / "empty")


def test_duplicate_positions(tmp_path, small_volume):
    d = _bad_series(tmp_path, small_volume, lambda p: p)
    shutil.copy(d / "slice_002.dcm", d / "slice_002b.dcm")
    ds = pydicom.dcmread(d / "slice_002b.dcm")
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(d / "slice_002b.dcm")
    with pytest.raises(InputError, match="duplicate slice position"):
        load_volume(d)
