"""CLI: info, convert, phantom; bad inputs give one line naming the file, exit 1, no traceback, no output."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import sitk_write_series
from volseg.cli import main


def _fail(capsys, argv, *expect):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for e in expect:
        assert e in err, err
    return err


def test_info_json_and_convert(tmp_path, capsys, sitk_series):
    d, vol, affine = sitk_series
    assert main(["info", str(d), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == [12, 10, 6] and info["orientation"] == "LPS" and info["modality"] == "CT"
    np.testing.assert_allclose(info["spacing"], [0.7, 0.8, 2.5], atol=1e-6)
    np.testing.assert_allclose(info["affine"], affine, atol=1e-4)
    assert info["series"][0]["slices"] == 6
    assert info["intensity_range"] == [float(vol.min()), float(vol.max())]
    out = tmp_path / "ct.nii.gz"
    assert main(["convert", str(d), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    img = nib.load(str(out))
    np.testing.assert_allclose(img.affine, affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(img.dataobj), vol)
    assert img.get_data_dtype() == np.int16
    # info on the converted NIfTI reports the same geometry
    assert main(["info", str(out), "--json"]) == 0
    info2 = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(info2["affine"], info["affine"], atol=1e-4)
    assert main(["convert", str(out), str(tmp_path / "ct.nrrd")]) == 0
    assert main(["info", str(tmp_path / "ct.nrrd")]) == 0
    assert "orientation: LPS" in capsys.readouterr().out


def test_info_lists_series(tmp_path, capsys, small_volume):
    study = tmp_path / "study"
    sitk_write_series(small_volume, study / "a", (1, 1, 2), (0, 0, 0), np.eye(3), series_uid="1.2.3.4")
    sitk_write_series(small_volume, study / "b", (1, 1, 2), (0, 0, 0), np.eye(3), series_uid="1.2.3.5")
    assert main(["info", str(study), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert sorted(s["uid"] for s in info["series"]) == ["1.2.3.4", "1.2.3.5"]
    assert main(["info", str(study), "--series", "1.2.3.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["series_uid"] == "1.2.3.5"
    _fail(capsys, ["convert", str(study), str(tmp_path / "o.nii.gz")], "2 image series", "1.2.3.4")
    assert not (tmp_path / "o.nii.gz").exists()
    _fail(capsys, ["convert", str(study), str(study / "o.nii.gz"), "--series", "1.2.3.4"], "inside the input folder")
    assert not (study / "o.nii.gz").exists()


def test_phantom_command(tmp_path, capsys):
    assert main(["phantom", str(tmp_path / "ds"), "--cases", "2", "--shape", "24", "24", "16"]) == 0
    ds = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert ds["numTraining"] == 2 and ds["labels"]["2"] == "lesion"
    assert (tmp_path / "ds" / ds["training"][1]["label"]).exists()


@pytest.fixture
def bad_inputs(tmp_path, small_volume):
    """name -> (path, expected message fragment)."""
    ok = nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), np.eye(4))
    nib.save(ok, str(tmp_path / "good.nii.gz"))
    raw = (tmp_path / "good.nii.gz").read_bytes()
    (tmp_path / "trunc.nii.gz").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "empty").mkdir()
    (tmp_path / "notimage.png").write_bytes(b"this is not a png")
    (tmp_path / "notes.txt").write_text("hello")
    nib.save(nib.Nifti1Image(np.zeros((6, 6, 4, 3), np.float32), np.eye(4)), str(tmp_path / "four.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((6, 6), np.float32), np.eye(4)), str(tmp_path / "two.nii.gz"))
    sitk_write_series(small_volume, tmp_path / "missing", (1, 1, 2), (0, 0, 0), np.eye(3))
    (tmp_path / "missing" / "slice_002.dcm").unlink()
    with gzip.open(tmp_path / "junk.nii.gz", "wb") as f:
        f.write(b"\0" * 400)
    return {
        "truncated": (tmp_path / "trunc.nii.gz", "truncated"),
        "junk": (tmp_path / "junk.nii.gz", "cannot read NIfTI"),
        "empty": (tmp_path / "empty", "no DICOM image series"),
        "png": (tmp_path / "notimage.png", "not a readable PNG"),
        "text": (tmp_path / "notes.txt", "unsupported file type"),
        "missing_slice": (tmp_path / "missing", "missing slice"),
        "nonexistent": (tmp_path / "nope.nii.gz", "no such file"),
    }


@pytest.mark.parametrize("case", ["truncated", "junk", "empty", "png", "text", "missing_slice", "nonexistent"])
def test_bad_inputs_cli(tmp_path, capsys, bad_inputs, case):
    path, msg = bad_inputs[case]
    out = tmp_path / "out.nii.gz"
    err = _fail(capsys, ["convert", str(path), str(out)], msg, str(path))
    assert err.startswith("volseg: error: ")
    assert not out.exists()
    _fail(capsys, ["info", str(path)], msg)


def test_ndim_required(bad_inputs, tmp_path):
    from volseg.errors import InputError
    from volseg.io import load_volume

    four = tmp_path / "four.nii.gz"
    assert load_volume(four).shape == (3, 6, 6, 4)
    for name, got in (("four.nii.gz", "4D"), ("two.nii.gz", "2D")):
        with pytest.raises(InputError, match=f"expected a 3D image, got {got}") as exc:
            load_volume(tmp_path / name, ndim=3)
        assert name in str(exc.value)


def test_convert_refuses_to_overwrite_input(tmp_path, capsys, bad_inputs):
    good = tmp_path / "good.nii.gz"
    before = good.read_bytes()
    _fail(capsys, ["convert", str(good), str(good)], "refusing to overwrite an input")
    assert good.read_bytes() == before


def test_no_traceback_subprocess(tmp_path):
    (tmp_path / "x.nii.gz").write_bytes(b"\x1f\x8b broken")
    res = subprocess.run([sys.executable, "-m", "volseg", "convert", str(tmp_path / "x.nii.gz"),
                          str(tmp_path / "y.nii.gz")], capture_output=True, encoding="utf-8", errors="replace")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "x.nii.gz" in res.stderr and not (tmp_path / "y.nii.gz").exists()


def test_convert_png_slices_dispatch(tmp_path, capsys):
    from volseg.data import make_phantom
    from volseg.io import save_mask, save_volume

    ph = make_phantom(shape=(16, 16, 6), spacing=(2, 2, 4), seed=0)
    save_volume(ph.image, tmp_path / "ct.nii.gz")
    save_mask(ph.label, ph.image, tmp_path / "lab.nii.gz")
    assert main(["convert", str(tmp_path / "ct.nii.gz"), "--label", str(tmp_path / "lab.nii.gz"),
                 "--to", "png-slices", str(tmp_path / "png")]) == 0
    assert len(list((tmp_path / "png").rglob("*.png"))) == 12
    _fail(capsys, ["convert", str(tmp_path / "ct.nii.gz"), str(tmp_path / "x.nii.gz"), "--label",
                   str(tmp_path / "lab.nii.gz")], "--label is only used with --to png-slices")
    assert not (tmp_path / "x.nii.gz").exists()


@pytest.mark.realdata
def test_fetch_command(capsys, monkeypatch, tmp_path):
    from volseg.data.samples import default_cache_dir

    cache = default_cache_dir()
    assert main(["fetch"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == str(cache / "pyradiomics-3.0.1" / "data")
    monkeypatch.setenv("VOLSEG_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
