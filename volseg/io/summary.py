"""``describe``: the geometry and content of an image, for ``volseg info``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np

from volseg.io._geometry import orientation_code, spacing_of, to_numpy

PathLike = Union[str, "os.PathLike[str]"]


def describe(path: PathLike, series: Optional[str] = None, resample: bool = False, *,
             nonfinite: Union[str, float] = "error", max_voxels: Optional[int] = None) -> Dict[str, Any]:
    """A JSON-ready summary of an image: ``shape`` (X, Y, Z), ``spacing`` (mm), ``affine`` (4x4 RAS+
    mm, as nibabel reports it for the converted NIfTI), ``orientation`` (nibabel axis code, e.g.
    ``"LPS"``), ``origin`` (RAS mm of voxel 0), ``modality``, ``series`` (series found; DICOM),
    ``intensity_range`` [min, max], ``dtype``, ``format`` and ``channels``.

    A folder holding several DICOM series and no ``series`` choice is described by its series list.
    ``nonfinite`` and ``max_voxels`` are :func:`volseg.io.load_volume`'s.
    """
    from volseg.errors import InputError
    from volseg.io.readers import read_image

    p = Path(path)
    found = None
    if p.is_dir():
        from volseg.io.dicom import find_dicom_series

        found = find_dicom_series(p)  # scanned once: its warnings are printed once
        if len(found) > 1 and series is None:
            return {"path": str(p), "format": "dicom", "series": [s.summary() for s in found],
                    "note": "several series: pass --series UID to describe one"}
        if not found:
            raise InputError("no DICOM image series found (empty folder or no DICOM image files)", p)
    img = read_image(p, series=series, resample=resample, nonfinite=nonfinite, max_voxels=max_voxels,
                     dicom_series=found)
    arr = to_numpy(img)
    affine = to_numpy(img.affine).astype(np.float64)
    meta = img.meta
    spatial = tuple(int(s) for s in arr.shape[1:])
    if len(spatial) == 2:
        aff4 = np.eye(4)
        aff4[:2, :2], aff4[:2, 3] = affine[:2, :2], affine[:2, 2]
        affine = aff4
    info: Dict[str, Any] = {
        "path": str(p),
        "format": meta.get("source_format", ""),
        "shape": list(spatial),
        "channels": int(arr.shape[0]),
        "spacing": [round(v, 6) for v in spacing_of(affine)][: len(spatial)],
        "affine": [[float(round(v, 6)) for v in row] for row in affine],
        "origin": [float(round(v, 6)) for v in affine[:3, 3]],
        "orientation": orientation_code(affine),
        "space": "RAS",
        "modality": meta.get("modality", ""),
        "intensity_range": [float(arr.min()), float(arr.max())] if arr.size else [0.0, 0.0],
        "dtype": "float32",
        "series": meta.get("series", []),
    }
    if meta.get("series_uid"):
        info["series_uid"] = meta["series_uid"]
        info["n_files"] = len(meta.get("dicom_files") or [])
    return info


def format_info(info: Dict[str, Any]) -> str:
    """Human-readable lines for ``describe``'s dictionary."""
    lines = [f"path:        {info['path']}", f"format:      {info.get('format', '')}"]
    if "shape" not in info:
        lines.append(info.get("note", ""))
    else:
        lines += [
            f"modality:    {info.get('modality') or '-'}",
            f"shape:       {' x '.join(str(s) for s in info['shape'])}" + (f" ({info['channels']} channels)" if info["channels"] > 1 else ""),
            f"spacing:     {', '.join(f'{s:g}' for s in info['spacing'])} mm",
            f"orientation: {info['orientation']} (RAS+ affine below, mm)",
            f"origin:      {', '.join(f'{v:.3f}' for v in info['origin'])}",
            f"intensity:   {info['intensity_range'][0]:g} .. {info['intensity_range'][1]:g}",
        ]
        lines += ["affine:      " + "  ".join(f"{v:10.4f}" for v in row) for row in info["affine"]]
    for s in info.get("series", []):
        lines.append(f"series:      {s['uid']}  {s['modality'] or '?'}  {s['description']!r}  {s['slices']} slices")
    return "\n".join(lines)
