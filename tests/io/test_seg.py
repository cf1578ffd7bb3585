"""DICOM SEG: references the source series, decodes back onto the grid, passes dciodvfy."""
from __future__ import annotations

import subprocess

import numpy as np
import pydicom
import pytest

from tests.conftest import require_tool
from volseg.data import PHANTOM_LABELS, make_phantom
from volseg.errors import InputError
from volseg.io import load_volume, write_dicom_seg, write_dicom_series


@pytest.fixture
def phantom_series(tmp_path):
    ph = make_phantom(shape=(32, 28, 10), spacing=(1.2, 1.2, 3.0), seed=2, n_lesions=1)
    write_dicom_series(ph.image, tmp_path / "ct")
    return ph, load_volume(tmp_path / "ct")


def test_seg_content(tmp_path, phantom_series):
    import highdicom as hd

    ph, ref = phantom_series
    out = write_dicom_seg(ph.label, ref, tmp_path / "mask.seg.dcm", labels=PHANTOM_LABELS)
    seg = hd.seg.segread(str(out))
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["lung", "lesion"]
    assert seg.SegmentSequence[0].SegmentAlgorithmName == "volseg"
    assert "RecommendedDisplayCIELabValue" in seg.SegmentSequence[0]
    src_uids = {pydicom.dcmread(f).SOPInstanceUID for f in ref.meta["dicom_files"]}
    refd = {i.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
    assert refd == src_uids
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ref.meta["series_uid"]
    # decode back in volseg slice order and compare voxel by voxel
    sop = [pydicom.dcmread(f).SOPInstanceUID for f in ref.meta["dicom_files"]]
    arr = seg.get_pixels_by_source_instance(sop, combine_segments=True, skip_overlap_checks=True)
    np.testing.assert_array_equal(np.transpose(arr, (2, 1, 0)), ph.label[0].numpy())


def test_seg_labels_default_to_the_values_in_the_mask(tmp_path, phantom_series):
    """Without ``labels`` every value in the mask is a segment named after it (not the phantom's names)."""
    import highdicom as hd

    ph, ref = phantom_series
    mask = ph.label.clone()
    mask[0, 3:6, 3:6, 2:4] = 5
    seg = hd.seg.segread(str(write_dicom_seg(mask, ref, tmp_path / "m.seg.dcm")))
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["label 1", "label 5"]


@pytest.mark.tools
def test_seg_passes_dciodvfy(tmp_path, phantom_series):
    exe = require_tool("dciodvfy")
    ph, ref = phantom_series
    out = write_dicom_seg(ph.label, ref, tmp_path / "mask.dcm")
    res = subprocess.run([exe, str(out)], capture_output=True, encoding="utf-8", errors="replace")
    errors = [ln for ln in (res.stdout + res.stderr).splitlines() if "Error" in ln]
    assert errors == []


def test_seg_needs_dicom_reference(tmp_path):
    ph = make_phantom(shape=(8, 8, 4), spacing=(1, 1, 1), seed=0)
    with pytest.raises(InputError, match="dicom_files"):
        write_dicom_seg(ph.label, ph.image, tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists()
