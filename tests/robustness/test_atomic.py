"""volseg._atomic: atomic groups (all outputs of a case appear together or not at all) and validate_output."""
from __future__ import annotations

import errno
from pathlib import Path

import pytest

from volseg._atomic import atomic_dir, atomic_group, atomic_path, validate_output
from volseg.errors import ConfigError, InputError, VolsegError


def _names(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir())


def test_group_renames_together(tmp_path):
    with atomic_group() as tmp_for:
        t = tmp_for(tmp_path / "case_stats.csv")
        t.write_text("stats")
        with atomic_path(tmp_path / "case.nii.gz") as tmp:
            tmp.write_bytes(b"mask")
        assert not (tmp_path / "case.nii.gz").exists() and not (tmp_path / "case_stats.csv").exists()
        with atomic_dir(tmp_path / "slices") as d:
            (d / "z0.png").write_bytes(b"png")
        assert not (tmp_path / "slices").exists()
    assert _names(tmp_path) == ["case.nii.gz", "case_stats.csv", "slices"]
    assert (tmp_path / "case.nii.gz").read_bytes() == b"mask" and (tmp_path / "slices" / "z0.png").exists()


def test_group_failure_keeps_previous_outputs(tmp_path):
    (tmp_path / "case.nii.gz").write_bytes(b"old mask")
    (tmp_path / "case_stats.csv").write_text("old stats")
    with pytest.raises(RuntimeError, match="overlay failed"):
        with atomic_group():
            with atomic_path(tmp_path / "case.nii.gz") as tmp:
                tmp.write_bytes(b"new mask")
            with atomic_path(tmp_path / "case_stats.csv") as tmp:
                tmp.write_text("new stats")
            raise RuntimeError("overlay failed")
    assert _names(tmp_path) == ["case.nii.gz", "case_stats.csv"]  # no temporaries
    assert (tmp_path / "case.nii.gz").read_bytes() == b"old mask"
    assert (tmp_path / "case_stats.csv").read_text() == "old stats"


def test_group_rename_failure_restores(tmp_path, monkeypatch):
    """If a rename fails half-way, the finals already replaced are put back."""
    import os

    (tmp_path / "a.nii.gz").write_bytes(b"old a")
    real = os.replace
    calls = []

    def flaky(src, dst):
        calls.append(Path(dst).name)
        if Path(dst).name == "b.csv":
            raise OSError(errno.EIO, "I/O error")
        return real(src, dst)

    with pytest.raises(OSError):
        with atomic_group():
            with atomic_path(tmp_path / "a.nii.gz") as tmp:
                tmp.write_bytes(b"new a")
            with atomic_path(tmp_path / "b.csv") as tmp:
                tmp.write_text("b")
            monkeypatch.setattr(os, "replace", flaky)
    monkeypatch.setattr(os, "replace", real)
    assert _names(tmp_path) == ["a.nii.gz"] and (tmp_path / "a.nii.gz").read_bytes() == b"old a"


def test_nested_group_joins_outer(tmp_path):
    with atomic_group():
        with atomic_group():
            with atomic_path(tmp_path / "inner.txt") as tmp:
                tmp.write_text("i")
        assert not (tmp_path / "inner.txt").exists()
        try:
            with atomic_group():
                with atomic_path(tmp_path / "failed.txt") as tmp:
                    tmp.write_text("f")
                raise ValueError
        except ValueError:
            pass
    assert _names(tmp_path) == ["inner.txt"]


def test_enospc_names_final_path(tmp_path):
    with pytest.raises(InputError) as ei:
        with atomic_path(tmp_path / "mask.nii.gz") as tmp:
            tmp.write_bytes(b"x")
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert ei.value.path == str(tmp_path / "mask.nii.gz") and "no space left" in str(ei.value)
    assert _names(tmp_path) == []
    with pytest.raises(InputError, match="no space left"):  # wrapped, as SimpleITK / torch.save report it
        with atomic_path(tmp_path / "m.nrrd"):
            raise RuntimeError("ITK ERROR: ImageIO: No space left on device")


@pytest.fixture
def tree(tmp_path):
    series = tmp_path / "series"
    series.mkdir()
    (series / "1.dcm").write_bytes(b"")
    scan = tmp_path / "ct.nii.gz"
    scan.write_bytes(b"")
    (tmp_path / "afile").write_text("")
    (tmp_path / "outdir").mkdir()
    (tmp_path / "d.nii.gz").mkdir()
    return tmp_path, series, scan


@pytest.mark.parametrize("out,kind,err,fragment", [
    ("x.txt", "volume", ConfigError, "use one of .nii, .nii.gz, .nrrd, .mha, .mhd"),
    ("x.txt", "mask", ConfigError, "use one of .nii.gz, .nii, .seg.dcm, .dcm"),
    ("x.txt", "mask-or-folder", ConfigError, "or a folder"),
    ("x.nrrd", "mask-or-folder", ConfigError, "unknown mask file type '.nrrd'"),
    ("x.txt", "folder", ConfigError, "a folder is expected"),
    ("afile", "folder", InputError, "not a folder"),
    ("outdir", "volume", ConfigError, "unknown volume file type '(no suffix)'"),
    ("d.nii.gz", "volume", InputError, "is a folder"),
    ("series/mask.nii.gz", "mask", InputError, "inside the input folder"),
    ("series/sub/mask.nii.gz", "mask-or-folder", InputError, "inside the input folder"),
    ("series", "folder", InputError, "refusing to overwrite an input"),
    ("ct.nii.gz", "volume", InputError, "refusing to overwrite an input"),
    ("afile/x.nii.gz", "volume", InputError, "is a file, not a folder"),
])
def test_validate_output_refuses(tree, out, kind, err, fragment):
    root, series, scan = tree
    before = sorted(str(p) for p in root.rglob("*"))
    with pytest.raises(err) as ei:
        validate_output(root / out, [series, scan], kind)
    assert fragment in str(ei.value) and str(root / out) in str(ei.value)
    assert sorted(str(p) for p in root.rglob("*")) == before  # nothing created


@pytest.mark.parametrize("out,kind", [
    ("new/deeper/mask.nii.gz", "mask"), ("m.seg.dcm", "mask-or-folder"), ("masks", "mask-or-folder"),
    ("run.v2", "folder"), ("ct.nrrd", "volume"), ("series2", "folder"),
])
def test_validate_output_accepts(tree, out, kind):
    root, series, scan = tree
    validate_output(root / out, [series, scan], kind)
    assert not (root / "new").exists()


def test_validate_output_unknown_kind(tmp_path):
    with pytest.raises(VolsegError, match="unknown output kind"):
        validate_output(tmp_path / "x.nii.gz", [], "image")
