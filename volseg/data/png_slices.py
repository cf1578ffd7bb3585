"""Cut a 3D scan (and its mask) into PNG slice pairs for the 2D workflow.

``volseg convert VOLUME --label MASK --to png-slices OUTDIR`` calls :func:`volume_to_png_slices`.
Output layout::

    OUTDIR/images/<case>_z0000.png   8-bit grayscale, CT clipped to the HU window and scaled to 0..255
    OUTDIR/labels/<case>_z0000.png   RGB, label values coloured with the palette (default: 1 blue, 2 green)
    OUTDIR/slices.json               case, axis, volume shape, voxel-to-RAS affine, slice list

Pixel ``(column x, row y)`` of slice ``k`` along ``axis=2`` is voxel ``(x, y, k)`` of the volume as
loaded (no reorientation), so ``slices.json``'s affine maps every PNG pixel to RAS millimetres.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from volseg._atomic import atomic_dir, check_not_input
from volseg.errors import ConfigError, InputError
from volseg.formats import case_name

PathLike = Union[str, "os.PathLike[str]"]
AXIS_LETTERS = {0: "x", 1: "y", 2: "z"}


def _as_volume(obj: Any, what: str) -> Tuple[np.ndarray, Optional[np.ndarray], str]:
    """``(array (X, Y, Z), affine 4x4 or None, name)`` from a path (``volseg.io.load_volume``) or an array/MetaTensor."""
    name = what
    if isinstance(obj, (str, os.PathLike)):
        from volseg.io import load_volume

        name = os.fspath(obj)
        obj = load_volume(obj)
    affine = getattr(obj, "affine", None)
    meta = getattr(obj, "meta", {}) or {}
    if meta.get("filename_or_obj"):
        name = str(meta["filename_or_obj"])
    arr = obj.detach().cpu().numpy() if hasattr(obj, "detach") else np.asarray(obj)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise InputError(f"{what} must be a 3D volume (X, Y, Z) or (1, X, Y, Z), got shape {arr.shape}")
    aff = None if affine is None else np.asarray(affine, dtype=np.float64)
    return arr, aff, name


def window_to_uint8(arr: np.ndarray, window: Sequence[float] = (-1000.0, 400.0)) -> np.ndarray:
    """Clip to ``window`` (low, high; HU for CT) and scale linearly to uint8 0..255 (rounded)."""
    lo, hi = float(window[0]), float(window[1])
    if hi <= lo:
        raise ConfigError(f"window {tuple(window)} must be (low, high) with low < high")
    scaled = (np.clip(np.asarray(arr, dtype=np.float32), lo, hi) - lo) * (255.0 / (hi - lo))
    return np.rint(scaled).astype(np.uint8)


def volume_to_png_slices(
    image: Any,
    label: Any = None,
    out_dir: PathLike = "png_slices",
    window: Sequence[float] = (-1000.0, 400.0),
    axis: int = 2,
    palette: Optional[Mapping] = None,
    label_map: Optional[Mapping] = None,
    only_labelled: bool = False,
    case: Optional[str] = None,
) -> Dict[str, Any]:
    """Write one grayscale PNG per slice of ``image`` (and a colour label PNG per slice of ``label``).

    ``image``/``label``: a path (read with ``volseg.io.load_volume``) or an ``(X, Y, Z)`` /
    ``(1, X, Y, Z)`` array or MetaTensor; the label must share the image's shape and affine.
    ``window``: intensity window mapped to 0..255 (HU for CT). ``axis``: the slicing axis (2 = k,
    axial for an axial scan). ``label_map`` remaps label values before colouring (e.g. ``{1: 2, 2: 1}``
    to put phantom lesions (2) in blue). ``only_labelled`` keeps slices with a non-zero label.
    The folder is written atomically; returns ``{"out_dir", "n_slices", "images", "labels", "index"}``.
    """
    from PIL import Image

    from volseg.io.png import labels_to_rgb, parse_palette

    if axis not in (0, 1, 2):
        raise ConfigError(f"axis must be 0, 1 or 2 (got {axis})")
    pal = parse_palette(palette)
    img, affine, name = _as_volume(image, "image")
    affine = np.eye(4) if affine is None else affine
    inputs = [p for p in (image, label) if isinstance(p, (str, os.PathLike))]
    inputs += [str(m["filename_or_obj"]) for m in (getattr(image, "meta", None), getattr(label, "meta", None))
               if isinstance(m, dict) and m.get("filename_or_obj")]
    check_not_input(out_dir, inputs)
    lab = None
    if label is not None:
        lab, lab_aff, _ = _as_volume(label, "label")
        if lab.shape != img.shape:
            raise InputError(f"label shape {lab.shape} differs from image shape {img.shape}",
                             label if isinstance(label, (str, os.PathLike)) else None)
        if lab_aff is not None and not np.allclose(lab_aff, affine, atol=1e-3):
            raise InputError("label geometry (affine) differs from the image's: resample it onto the image grid first",
                             label if isinstance(label, (str, os.PathLike)) else None)
        lab = np.rint(lab).astype(np.int64)
        if label_map:
            lut = {int(k): int(v) for k, v in label_map.items()}
            lab = np.vectorize(lambda v: lut.get(v, v), otypes=[np.int64])(lab) if lab.size else lab
        missing = sorted(set(np.unique(lab).tolist()) - set(pal))
        if missing:
            raise ConfigError(f"label values {missing} have no palette colour (palette classes: {sorted(pal)}); "
                              "extend the palette or pass label_map")
    case = case or case_name(name)
    gray = window_to_uint8(img, window)
    letter = AXIS_LETTERS[axis]
    index = []
    with atomic_dir(out_dir) as tmp:
        (tmp / "images").mkdir()
        if lab is not None:
            (tmp / "labels").mkdir()
        for k in range(img.shape[axis]):
            lab_k = None if lab is None else np.take(lab, k, axis=axis)
            if only_labelled and lab_k is not None and not lab_k.any():
                continue
            fname = f"{case}_{letter}{k:04d}.png"
            Image.fromarray(np.ascontiguousarray(np.take(gray, k, axis=axis).T)).save(tmp / "images" / fname)
            if lab_k is not None:
                rgb = labels_to_rgb(lab_k, pal).transpose(1, 0, 2)
                Image.fromarray(np.ascontiguousarray(rgb)).save(tmp / "labels" / fname)
            index.append({"file": fname, "slice": k})
        info = {
            "case": case, "axis": axis, "shape": list(img.shape), "affine_ras": affine.tolist(),
            "window": [float(window[0]), float(window[1])],
            "palette": {str(k): list(v) for k, v in pal.items()},
            "pixel_order": "PNG column = first remaining volume axis, PNG row = second",
            "slices": index,
        }
        (tmp / "slices.json").write_text(json.dumps(info, indent=1) + "\n")
    out = Path(out_dir)
    return {
        "out_dir": str(out), "n_slices": len(index), "images": str(out / "images"),
        "labels": str(out / "labels") if lab is not None else None, "index": str(out / "slices.json"),
    }
