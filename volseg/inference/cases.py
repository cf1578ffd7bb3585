"""Turn a prediction input (file, DICOM folder, folder of volumes, dataset.json) into cases, and shard them."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence

from volseg.errors import InputError
from volseg.formats import VOLUME_SUFFIXES, case_name



@dataclass
class Case:
    """One input volume: ``source`` (path or in-memory MetaTensor) and its output ``name``."""

    name: str
    source: Any


def _suffix_ok(p: Path) -> bool:
    return p.is_file() and any(p.name.lower().endswith(s) for s in VOLUME_SUFFIXES if s != ".dcm")


def _is_dicom_dir(p: Path) -> bool:
    from volseg.io.dicom import is_dicom_file

    return any(is_dicom_file(f) for f in sorted(p.iterdir())[:20] if f.is_file())


def _from_datalist(path: Path) -> List[Case]:
    from volseg.data.datalist import dataset_images

    return [Case(case_name(img), Path(img)) for img in dataset_images(path)]


def find_cases(inputs: Any) -> List[Case]:
    """Cases from a MetaTensor, a file, a DICOM series folder, a folder of volumes (files and/or
    DICOM sub-folders), a ``dataset.json`` (``test``, else ``validation``, else ``training`` images,
    relative to the file), or a list of these. Names must be unique."""
    if isinstance(inputs, (list, tuple)):
        cases = [c for item in inputs for c in find_cases(item)]
    elif hasattr(inputs, "affine") and hasattr(inputs, "meta"):
        src = inputs.meta.get("filename_or_obj") if hasattr(inputs, "meta") else None
        cases = [Case(case_name(src) if src else "case", inputs)]
    else:
        p = Path(inputs)
        if not p.exists():
            raise InputError("no such file or folder", p)
        if p.is_file() and p.name.lower().endswith(".json"):
            cases = _from_datalist(p)
        elif p.is_file():
            cases = [Case(case_name(p), p)]
        elif _is_dicom_dir(p):
            cases = [Case(case_name(p), p)]
        else:
            cases = [Case(case_name(f), f) for f in sorted(p.iterdir())
                     if _suffix_ok(f) or (f.is_dir() and not f.name.startswith("."))]
            if not cases:
                raise InputError("folder holds no DICOM files, volumes (.nii.gz, .nrrd, .mha), PNG slices or series "
                                 "folders", p)
    seen = set()
    for c in cases:
        if c.name in seen:
            raise InputError(f"two inputs would write the same output name {c.name!r}")
        seen.add(c.name)
    return cases


def dist_rank() -> tuple:
    """``(rank, world_size)`` from torchrun's environment (``(0, 1)`` outside torchrun)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def shard(items: Sequence[Any], rank: Optional[int] = None, world_size: Optional[int] = None) -> List[Any]:
    """Items ``rank::world_size``: disjoint shards that together cover every item once."""
    r, w = dist_rank()
    rank = r if rank is None else rank
    world_size = w if world_size is None else world_size
    return list(items[rank::world_size])
