"""Writers that put data back on its source grid: ``save_mask`` and ``save_volume`` (NIfTI, NRRD, MHA).

NIfTI files get the reference's RAS affine as both qform and sform (codes 1, scanner), so they
overlay exactly in 3D Slicer, ITK-SNAP and mrview. NRRD/MHA/MHD are written with SimpleITK in LPS.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import numpy as np

from volseg._atomic import atomic_files, atomic_path, check_not_input
from volseg.errors import ConfigError, InputError
from volseg.formats import NIFTI_SUFFIXES, OUTPUT_SUFFIXES, full_suffix
from volseg.io._geometry import affine_of, itk_from_affine, to_numpy

PathLike = Union[str, "os.PathLike[str]"]
WRITE_SUFFIXES = OUTPUT_SUFFIXES["volume"]


def _spatial(arr: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Drop a leading singleton channel: ``(1, X, Y, Z)`` -> ``(X, Y, Z)`` (2D, 3x3 affine: ``(1, X, Y)`` -> ``(X, Y)``)."""
    nd = affine.shape[0] - 1
    return arr[0] if arr.ndim == nd + 1 and arr.shape[0] == 1 else arr


def mask_dtype(arr: np.ndarray) -> np.dtype:
    """uint8 for labels 0..255, uint16 up to 65535; raises for negative or non-integral values."""
    if arr.size == 0:
        return np.dtype(np.uint8)
    if arr.dtype.kind == "b":
        return np.dtype(np.uint8)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise InputError("mask has NaN/inf values")
    if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
        raise InputError("mask has non-integer values: pass a label map (argmax), not probabilities")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0:
        raise InputError(f"mask has negative labels (min {lo:g})")
    if hi <= 255:
        return np.dtype(np.uint8)
    if hi <= 65535:
        return np.dtype(np.uint16)
    raise InputError(f"mask label {hi:g} exceeds 65535")


def save_mask(mask: Any, reference: Any, path: PathLike, inputs: Iterable[PathLike] = ()) -> Path:
    """Write a label map ``(X, Y, Z)`` or ``(1, X, Y, Z)`` on the grid of ``reference`` (uint8/uint16).

    ``reference``: a ``MetaTensor`` from ``load_volume``, a path to the source image, or a 4x4 RAS
    affine. The written affine equals the reference's exactly. Formats by suffix: ``.nii``,
    ``.nii.gz``, ``.nrrd``, ``.mha``, ``.mhd``. The write is atomic; ``path`` may not be an input.
    """
    ref_path = None
    if isinstance(reference, (str, os.PathLike)):
        from volseg.io.readers import load_volume

        ref_path = reference
        reference = load_volume(reference)
    affine = affine_of(reference)
    if affine is None:
        raise ConfigError("save_mask needs a reference MetaTensor, image path or 4x4 affine")
    nd = affine.shape[0] - 1
    arr = _spatial(to_numpy(mask), affine)
    if arr.ndim != nd:
        raise InputError(f"mask must be (X, Y, Z) or (1, X, Y, Z) (2D: (X, Y)), got shape {arr.shape}", path)
    ref_shape = getattr(reference, "shape", None)
    if ref_shape is not None and len(ref_shape) >= nd and tuple(ref_shape[-nd:]) != arr.shape:
        raise InputError(f"mask shape {arr.shape} differs from the reference grid {tuple(ref_shape[-nd:])}", path)
    try:
        dtype = mask_dtype(arr)
    except InputError as exc:
        raise InputError(exc.message, path) from None
    return _write(arr.astype(dtype, copy=False), affine, path, [*inputs, ref_path, _source_of(reference)])


def save_volume(image: Any, path: PathLike, affine: Optional[np.ndarray] = None, inputs: Iterable[PathLike] = ()) -> Path:
    """Write an image ``(C, X, Y, Z)`` (C = 1) or ``(X, Y, Z)`` with its RAS affine.

    Integral data that fit int16 (e.g. CT in HU) are stored as int16, other data as float32.
    """
    aff = affine_of(image) if affine is None else np.asarray(affine, dtype=np.float64)
    if aff is None:
        raise ConfigError("save_volume needs a MetaTensor with an affine or affine=")
    arr = _spatial(to_numpy(image), aff)
    if arr.ndim != aff.shape[0] - 1:
        raise InputError(f"save_volume writes single-channel images, got shape {arr.shape}", path)
    if arr.dtype.kind in "biu" or (np.all(np.isfinite(arr)) and np.array_equal(arr, np.round(arr))):
        if arr.size and arr.min() >= -32768 and arr.max() <= 32767:
            arr = arr.astype(np.int16)
        else:
            arr = arr.astype(np.float32)
    else:
        arr = arr.astype(np.float32)
    return _write(arr, aff, path, [*inputs, _source_of(image)])


def _source_of(obj: Any) -> Optional[str]:
    meta = getattr(obj, "meta", None) or {}
    src = meta.get("filename_or_obj")
    return str(src) if src else None


def _write(arr: np.ndarray, affine: np.ndarray, path: PathLike, inputs: Iterable[Optional[PathLike]]) -> Path:
    path = Path(path)
    suffix = full_suffix(path)
    if suffix not in WRITE_SUFFIXES:
        raise ConfigError(f"cannot write {suffix or '(no suffix)'!r}: use one of {', '.join(WRITE_SUFFIXES)}")
    check_not_input(path, [i for i in inputs if i])
    if suffix in NIFTI_SUFFIXES:
        _write_nifti(arr, affine, path)
    elif suffix == ".mhd":
        _write_mhd(arr, affine, path)
    else:
        with atomic_path(path) as tmp:
            _write_itk(arr, affine, tmp)
    return path


def nifti_image(arr: np.ndarray, affine: np.ndarray) -> Any:
    """A ``nibabel.Nifti1Image`` of ``arr`` ``(X, Y, Z[, C])`` whose qform and sform are both ``affine``
    (4x4 RAS mm, codes 1 = scanner) and units mm: the one NIfTI header volseg writes (masks, volumes,
    probabilities), so every viewer puts it on the same points. A 2D ``arr`` ``(X, Y)`` with a 3x3
    affine becomes one slice ``(X, Y, 1)``."""
    import nibabel as nib

    affine = np.asarray(affine, dtype=np.float64)
    if arr.ndim == 2 and affine.shape == (3, 3):
        arr = arr[:, :, None]
        aff = np.eye(4)
        aff[:2, :2] = affine[:2, :2]
        aff[:2, 3] = affine[:2, 2]
        affine = aff
    img = nib.Nifti1Image(arr, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.set_data_dtype(arr.dtype)
    return img


def _write_nifti(arr: np.ndarray, affine: np.ndarray, path: Path) -> None:
    import nibabel as nib

    img = nifti_image(arr, affine)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))


def _itk_image(arr: np.ndarray, affine: np.ndarray):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(arr)))
    if arr.ndim == 3:
        direction, spacing, origin = itk_from_affine(affine)
    else:
        a = np.diag([-1.0, -1.0]) @ np.asarray(affine)[:2, :3]
        sp = np.linalg.norm(a[:, :2], axis=0)
        direction, spacing, origin = tuple((a[:, :2] / sp).ravel()), tuple(sp), tuple(a[:, 2])
    img.SetDirection(direction)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def _write_itk(arr: np.ndarray, affine: np.ndarray, path: Path) -> None:
    import SimpleITK as sitk

    sitk.WriteImage(_itk_image(arr, affine), str(path), True)


def _write_mhd(arr: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """``.mhd`` + ``.zraw`` pair: written in a temp folder, then both files renamed (together)."""
    import SimpleITK as sitk

    with atomic_files([path, path.with_suffix(".zraw")]) as tmpdir:
        sitk.WriteImage(_itk_image(arr, affine), str(tmpdir / path.name), True)
