"""File formats volseg reads and writes, in one place: suffixes, :func:`full_suffix`, :func:`case_name`.

Readers pick a format by :func:`full_suffix`; writers refuse a suffix not in :data:`OUTPUT_SUFFIXES`;
prediction and evaluation name a case after its input with :func:`case_name` (``ct.nii.gz`` ->
``ct``). Standard library only, so the CLI and ``--help`` can use it without torch.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Tuple, Union

PathLike = Union[str, "os.PathLike[str]"]

NIFTI_SUFFIXES: Tuple[str, ...] = (".nii", ".nii.gz")
#: SimpleITK formats and the name ``volseg.io`` reports as ``meta["source_format"]``
ITK_SUFFIXES: Dict[str, str] = {".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "mha", ".mhd": "mha"}
PNG_SUFFIXES: Tuple[str, ...] = (".png",)
#: label maps that evaluation compares (prediction and reference masks)
LABEL_MAP_SUFFIXES: Tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
#: inputs a case can be (a DICOM series is a folder); stripped by :func:`case_name`
VOLUME_SUFFIXES: Tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm", ".png")
#: file suffixes volseg writes, per kind of output (first = default)
OUTPUT_SUFFIXES: Dict[str, Tuple[str, ...]] = {
    "volume": (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"),
    "mask": (".nii.gz", ".nii", ".seg.dcm", ".dcm", ".png"),
}
MASK_SUFFIXES = OUTPUT_SUFFIXES["mask"]
_DOUBLE_SUFFIXES = (".nii.gz", ".tar.gz", ".seg.dcm")


def full_suffix(path: PathLike) -> str:
    """The suffix that selects a file format, lower case: ``CT.NII.GZ`` -> ``.nii.gz``, ``x.seg.dcm`` ->
    ``.seg.dcm``, ``x.nrrd`` -> ``.nrrd``, ``README`` -> ``""``."""
    name = Path(path).name.lower()
    for s in _DOUBLE_SUFFIXES:
        if name.endswith(s):
            return s
    return Path(name).suffix


def case_name(path: Any) -> str:
    """The case an input names, for its outputs: ``ct.nii.gz`` -> ``ct``, ``slice_03.png`` ->
    ``slice_03``, a DICOM series folder -> the folder's name, ``x.foo`` -> ``x``; ``"case"`` when
    nothing is left."""
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(path)
    p = Path(text.rstrip("/\\") or text)
    name = p.name
    if p.is_dir():
        return name or "case"
    lower = name.lower()
    for s in VOLUME_SUFFIXES:
        if lower.endswith(s) and len(name) > len(s):
            return name[: -len(s)]
    return (p.stem if p.suffix else name) or "case"
