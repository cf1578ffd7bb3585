"""End-to-end prediction with a fixed-weight threshold model: geometry checked against nibabel and SimpleITK."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import SHAPE, expected_labels, make_bundle, require_tool, write_nifti
from tests.inference.conftest import NON_RAS, sitk_world_points, world_points

# a non-RAS orientation: index axes (i, j, k) point to (-y, +x, -z) i.e. "PRI", with an oblique origin
@pytest.fixture(scope="module")
def nonras_ct(phantom, tmp_path_factory) -> Path:
    hu = np.rint(phantom.image[0].numpy())
    return write_nifti(tmp_path_factory.mktemp("ct") / "oblique_ct.nii.gz", hu, NON_RAS)


@pytest.fixture(scope="module")
def dicom_ct(phantom, tmp_path_factory) -> Path:
    from volseg.io import write_dicom_series

    out = tmp_path_factory.mktemp("dcm") / "series1"
    write_dicom_series(phantom.image, out)
    return out


def test_nifti_non_ras_world_points_match(bundle3d, nonras_ct, tmp_path):
    import volseg

    out = tmp_path / "mask.nii.gz"
    mask = volseg.predict(nonras_ct, out, model=bundle3d, backend="eager", progress=False)
    assert mask.shape == (1, *SHAPE) and mask.dtype.is_floating_point is False
    src = nib.load(str(nonras_ct))
    hu = np.asarray(src.dataobj)
    expected_pts = world_points(expected_labels(hu), src.affine)
    assert len(expected_pts) > 1000
    # nibabel reading of the written mask
    m = nib.load(str(out))
    assert m.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(world_points(np.asarray(m.dataobj), m.affine), expected_pts)
    # SimpleITK reading of both files, independently (LPS -> RAS inside the helper)
    sitk_src = sitk_world_points(nonras_ct, lambda a: expected_labels(a) > 0)
    np.testing.assert_array_equal(sitk_world_points(out, lambda a: a > 0), sitk_src)
    np.testing.assert_array_equal(sitk_src, expected_pts)
    # label values, not only the foreground
    np.testing.assert_array_equal(np.asarray(m.dataobj), expected_labels(hu))


def test_dicom_series_world_points_match(bundle3d, dicom_ct, tmp_path):
    import volseg

    out = tmp_path / "pred"
    volseg.predict(dicom_ct, out, model=bundle3d, backend="eager", progress=False)
    mask_file = out / "series1.nii.gz"
    assert mask_file.is_file()
    expected = sitk_world_points(dicom_ct, lambda a: expected_labels(a) > 0)
    assert len(expected) > 1000
    m = nib.load(str(mask_file))
    np.testing.assert_array_equal(world_points(np.asarray(m.dataobj), m.affine), expected)
    np.testing.assert_array_equal(sitk_world_points(mask_file, lambda a: a > 0), expected)


@pytest.mark.tools
def test_dicom_seg_validates(bundle3d, dicom_ct, tmp_path):
    import pydicom

    import volseg

    dciodvfy = require_tool("dciodvfy")
    out = tmp_path / "pred"
    volseg.predict(dicom_ct, out, model=bundle3d, backend="eager", format="both", progress=False)
    seg = out / "series1.seg.dcm"
    assert seg.is_file() and (out / "series1.nii.gz").is_file()
    ds = pydicom.dcmread(seg)
    assert ds.Modality == "SEG" and len(ds.SegmentSequence) == 2
    res = subprocess.run([dciodvfy, str(seg)], capture_output=True, encoding="utf-8", errors="replace")
    errors = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]
    assert not errors, errors
    # an output named *.seg.dcm is that SEG file alone
    single = tmp_path / "one" / "lesions.seg.dcm"
    volseg.predict(dicom_ct, single, model=bundle3d, backend="eager", progress=False)
    assert [p.name for p in single.parent.iterdir()] == ["lesions.seg.dcm"]
    assert pydicom.dcmread(single).ReferencedSeriesSequence[0].SeriesInstanceUID == ds.ReferencedSeriesSequence[0] \
        .SeriesInstanceUID


def test_dicom_seg_needs_dicom_input(bundle3d, nonras_ct, tmp_path):
    import volseg
    from volseg.errors import InputError

    with pytest.raises(InputError, match="needs a DICOM"):
        volseg.predict(nonras_ct, tmp_path / "o", model=bundle3d, backend="eager", format="dicom-seg", progress=False)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_tta_stats_overlay_probabilities(bundle3d, nonras_ct, tmp_path):
    import volseg

    out = tmp_path / "o"
    mask = volseg.predict(nonras_ct, out, model=bundle3d, backend="eager", tta=True, stats=True, overlay=True,
                          save_probabilities="uint8", progress=False)
    hu = np.asarray(nib.load(str(nonras_ct)).dataobj)
    np.testing.assert_array_equal(mask[0].numpy(), expected_labels(hu))
    rows = json.loads((out / "oblique_ct_stats.json").read_text())["labels"]
    vox_ml = 6.0 * 7.0 * 9.0 / 1000.0
    for row in rows:
        sel = expected_labels(hu) == row["label"]
        assert row["voxels"] == int(sel.sum())
        assert row["volume_ml"] == pytest.approx(sel.sum() * vox_ml, rel=1e-6)
        assert row["mean_intensity"] == pytest.approx(hu[sel].mean(), abs=1e-2)
    assert (out / "oblique_ct_stats.csv").read_text().startswith("case,label,name,voxels,volume_ml")
    from PIL import Image

    png = Image.open(out / "oblique_ct_overlay.png")
    assert png.size[0] > 600 and np.asarray(png).std() > 10
    prob = nib.load(str(out / "oblique_ct_prob.nii.gz"))
    assert prob.get_data_dtype() == np.uint8 and prob.shape == (*SHAPE, 3)
    np.testing.assert_allclose(prob.affine, NON_RAS, atol=1e-5)
    p = prob.get_fdata()
    np.testing.assert_array_equal(np.argmax(p, axis=-1), expected_labels(hu))


def test_resampling_preprocessing_is_inverted(phantom, nonras_ct, tmp_path):
    """Spacingd to a coarser grid in preprocessing: the mask still comes back on the source grid."""
    import volseg

    bundle = make_bundle(tmp_path / "b", spacing=(8.0, 8.0, 8.0))
    mask = volseg.predict(nonras_ct, tmp_path / "m.nii.gz", model=bundle, backend="eager", progress=False)
    hu = np.asarray(nib.load(str(nonras_ct)).dataobj)
    exp = expected_labels(hu) > 0
    got = mask[0].numpy() > 0
    dice = 2 * (exp & got).sum() / (exp.sum() + got.sum())
    assert mask.shape == (1, *SHAPE) and dice > 0.95
    np.testing.assert_allclose(nib.load(str(tmp_path / "m.nii.gz")).affine, NON_RAS, atol=1e-5)


def test_two_d_model_over_volume(nonras_ct, tmp_path):
    import volseg

    bundle = make_bundle(tmp_path / "b2", spatial_dims=2, roi=(24, 24))
    mask = volseg.predict(nonras_ct, None, model=bundle, backend="eager", progress=False)
    hu = np.asarray(nib.load(str(nonras_ct)).dataobj)
    np.testing.assert_array_equal(mask[0].numpy(), expected_labels(hu))


def test_folder_and_dataset_json_inputs(bundle3d, phantom, tmp_path):
    import volseg

    hu = np.rint(phantom.image[0].numpy())
    data = tmp_path / "data"
    (data / "imagesTs").mkdir(parents=True)
    for name, aff in (("a", NON_RAS), ("b", np.diag([-5.0, 5.0, 8.0, 1.0]))):
        write_nifti(data / "imagesTs" / f"{name}.nii.gz", hu, aff)
    (data / "dataset.json").write_text(json.dumps({"test": ["imagesTs/a.nii.gz", "./imagesTs/b.nii.gz"]}))
    res = volseg.predict(data / "imagesTs", tmp_path / "out1", model=bundle3d, backend="eager", progress=False)
    assert sorted(res) == ["a", "b"]
    res2 = volseg.predict(data / "dataset.json", tmp_path / "out2", model=bundle3d, backend="eager", progress=False)
    assert sorted(res2) == ["a", "b"]
    for folder in ("out1", "out2"):
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == ["a.nii.gz", "b.nii.gz"]
        m = nib.load(str(tmp_path / folder / "b.nii.gz"))
        np.testing.assert_allclose(m.affine, np.diag([-5.0, 5.0, 8.0, 1.0]))
        np.testing.assert_array_equal(np.asarray(m.dataobj), expected_labels(hu))


def _cli(*args: str):
    return subprocess.run([sys.executable, "-m", "volseg", *args], capture_output=True, encoding="utf-8", errors="replace")


def test_cli_missing_model_and_channel_mismatch(nonras_ct, tmp_path):
    res = _cli("predict", "-i", str(nonras_ct), "-o", str(tmp_path / "m.nii.gz"), "-m", str(tmp_path / "nope"))
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "nope" in res.stderr and "bundle not found" in res.stderr
    two = make_bundle(tmp_path / "two", in_channels=2)
    res = _cli("predict", "-i", str(nonras_ct), "-o", str(tmp_path / "m.nii.gz"), "-m", str(two),
               "--backend", "eager", "--quiet")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "expects 2 input channel(s), image has 1" in res.stderr
    assert not (tmp_path / "m.nii.gz").exists()


def test_cli_batch_with_corrupt_case(bundle3d, phantom, tmp_path):
    hu = np.rint(phantom.image[0].numpy())
    data = tmp_path / "in"
    data.mkdir()
    for name in ("good1", "good2"):
        write_nifti(data / f"{name}.nii.gz", hu, NON_RAS)
    (data / "broken.nii.gz").write_bytes(b"\x1f\x8b not really a gzip file")
    out = tmp_path / "out"
    res = _cli("predict", "-i", str(data), "-o", str(out), "-m", str(bundle3d), "--backend", "eager", "--quiet")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "broken" in res.stderr and "1 of 3 case(s) failed" in res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["good1.nii.gz", "good2.nii.gz"]


def test_cli_single_case_writes_file(bundle3d, nonras_ct, tmp_path):
    out = tmp_path / "sub" / "mask.nii.gz"
    res = _cli("predict", "-i", str(nonras_ct), "-o", str(out), "-m", str(bundle3d), "--backend", "eager",
               "--stats", "--keep-largest", "--quiet")
    assert res.returncode == 0, res.stderr
    assert out.is_file() and (out.parent / "mask_stats.csv").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["mask.nii.gz", "mask_stats.csv", "mask_stats.json"]
    shutil.rmtree(out.parent)


@pytest.mark.tools
def test_dicom_mask_matches_dcm2niix_geometry(bundle3d, dicom_ct, tmp_path):
    """dcm2niix's conversion of the series marks the same world points as our mask."""
    import volseg

    dcm2niix = require_tool("dcm2niix")
    conv = tmp_path / "conv"
    conv.mkdir()
    subprocess.run([dcm2niix, "-z", "y", "-f", "ref", "-o", str(conv), str(dicom_ct)], check=True,
                   capture_output=True)
    ref = nib.load(str(conv / "ref.nii.gz"))
    expected = world_points(expected_labels(ref.get_fdata()), ref.affine)
    volseg.predict(dicom_ct, tmp_path / "m.nii.gz", model=bundle3d, backend="eager", progress=False)
    m = nib.load(str(tmp_path / "m.nii.gz"))
    got = world_points(np.asarray(m.dataobj), m.affine)
    assert len(got) == len(expected)
    np.testing.assert_allclose(got, expected, atol=2e-3)


def test_series_choice_in_a_folder_with_two_series(bundle3d, phantom, tmp_path):
    import volseg
    from volseg.errors import ConfigError
    from volseg.io import write_dicom_series

    study = tmp_path / "study"
    study.mkdir()
    write_dicom_series(phantom.image, study / "a", series_uid="1.2.826.0.1.3680043.8.498.111", series_number=1)
    shifted = phantom.image.clone()
    shifted.affine[2, 3] += 500.0
    write_dicom_series(shifted, study / "b", series_uid="1.2.826.0.1.3680043.8.498.222", series_number=2)
    with pytest.raises(ConfigError, match="2 inputs need an output folder"):
        volseg.predict(study, tmp_path / "x.nii.gz", model=bundle3d, backend="eager", progress=False)
    res = volseg.predict(study, tmp_path / "both", model=bundle3d, backend="eager", progress=False)
    assert sorted(res) == ["a", "b"]
    mask = volseg.predict(study, tmp_path / "x.nii.gz", model=bundle3d, backend="eager", progress=False,
                          series="1.2.826.0.1.3680043.8.498.222")
    assert float(mask.affine[2, 3]) == pytest.approx(float(shifted.affine[2, 3]), abs=1e-3)


def test_no_partial_output_when_a_later_write_fails(bundle3d, nonras_ct, tmp_path, monkeypatch):
    import volseg
    from volseg.inference import report

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(report, "save_overlay", broken)
    with pytest.raises(OSError, match="disk full"):
        volseg.predict(nonras_ct, tmp_path / "o", model=bundle3d, backend="eager", stats=True, overlay=True,
                       progress=False)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
