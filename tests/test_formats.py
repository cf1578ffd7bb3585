"""volseg.formats: the one home of file suffixes and case naming."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from volseg.formats import case_name, full_suffix

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name, suffix", [("CT.NII.GZ", ".nii.gz"), ("a.b.nii", ".nii"), ("x.seg.dcm", ".seg.dcm"),
                                          ("x.dcm", ".dcm"), ("v.nrrd", ".nrrd"), ("README", ""), ("t.tar.gz", ".tar.gz")])
def test_full_suffix(name: str, suffix: str) -> None:
    assert full_suffix(name) == suffix


def test_case_name(tmp_path: Path) -> None:
    assert case_name("/d/ct_01.nii.gz") == "ct_01"
    assert case_name("CT.NII.GZ") == "CT"
    assert case_name("slice_03.png") == "slice_03"
    assert case_name("scan.v2.nrrd") == "scan.v2"
    assert case_name("x.foo") == "x"
    series = tmp_path / "1.2.840.10008"  # a DICOM series folder: its whole name
    series.mkdir()
    assert case_name(series) == "1.2.840.10008"
    assert case_name(str(series) + "/") == "1.2.840.10008"


def test_no_suffix_lists_outside_formats() -> None:
    """A tuple of volume suffixes is written once, in volseg/formats.py."""
    pattern = re.compile(r"\(\s*\"\.nii(\.gz)?\",\s*\"\.nii")
    hits = [str(p.relative_to(ROOT)) for p in (ROOT / "volseg").rglob("*.py")
            if p.name != "formats.py" and pattern.search(p.read_text(encoding="utf-8"))]
    assert hits == []
