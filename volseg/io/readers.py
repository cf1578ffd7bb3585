"""``load_volume``: one reader for DICOM, NIfTI, NRRD/MHA/MHD and PNG, returning a RAS ``MetaTensor``.

Data come back channel-first ``(C, X, Y, Z)`` (2D PNG: ``(1, X, Y)``) float32, with spatial axis 0
the fastest-varying index in the file (DICOM column, NIfTI i). ``affine`` maps voxel indices to
RAS+ millimetres; files in LPS (DICOM, NRRD, MHA) are converted with ``diag(-1, -1, 1)``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from volseg._atomic import full_suffix
from volseg.errors import InputError
from volseg.io._geometry import RawImage, affine_from_itk

PathLike = Union[str, "os.PathLike[str]"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = {".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "mha", ".mhd": "mha"}
PNG_SUFFIXES = (".png",)
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima", "")


def load_volume(
    path: Any,
    series: Optional[str] = None,
    ndim: Optional[int] = None,
    resample: bool = False,
):
    """Read an image into a channel-first float32 ``MetaTensor`` with a RAS+ affine (mm).

    ``path``: a DICOM folder (searched recursively, grouped by SeriesInstanceUID; ``series`` picks
    one by UID or UID prefix), a single DICOM file (multi-frame Enhanced CT/MR included), ``.nii``,
    ``.nii.gz``, ``.nrrd``, ``.mha``/``.mhd`` or a grey ``.png`` (:func:`volseg.io.png.read_png_gray`).
    An in-memory ``MetaTensor`` is returned unchanged. ``ndim=3`` requires a 3D volume (2D or 4D inputs raise ``InputError``).
    ``resample=True`` lets DICOM series with missing slices / non-uniform spacing be resampled onto a
    uniform grid instead of failing. Returns ``(C, X, Y, Z)`` (PNG: ``(1, X, Y)``), CT in HU.
    """
    if hasattr(path, "affine") and hasattr(path, "meta"):
        return path.to_metatensor() if isinstance(path, RawImage) else path
    return read_image(path, series=series, ndim=ndim, resample=resample).to_metatensor()


def read_image(path: PathLike, series: Optional[str] = None, ndim: Optional[int] = None,
               resample: bool = False) -> RawImage:
    """Like :func:`load_volume` but returns a numpy :class:`RawImage` (no torch import)."""
    p = Path(path)
    if not p.exists():
        raise InputError("no such file or folder", p)
    if p.is_dir():
        from volseg.io.dicom import load_dicom

        img = load_dicom(p, series=series, resample=resample)
    else:
        suffix = full_suffix(p)
        if suffix in NIFTI_SUFFIXES:
            img = _load_nifti(p)
        elif suffix in ITK_SUFFIXES:
            img = _load_itk(p, ITK_SUFFIXES[suffix])
        elif suffix in PNG_SUFFIXES:
            from volseg.io.png import read_png_gray

            img = read_png_gray(p)
        else:
            from volseg.io.dicom import is_dicom_file, load_dicom

            if not is_dicom_file(p):
                raise InputError(
                    f"unsupported file type {suffix or '(no suffix)'!r}: expected a DICOM file or folder, "
                    ".nii, .nii.gz, .nrrd, .mha, .mhd or .png",
                    p,
                )
            img = load_dicom(p, series=series, resample=resample)
    if ndim is not None:
        dims = img.ndim - 1 + (1 if img.shape[0] > 1 else 0)
        if dims != ndim:
            shape = tuple(img.shape[1:]) + ((img.shape[0],) if img.shape[0] > 1 else ())
            raise InputError(f"expected a {ndim}D image, got {dims}D with shape {shape}", p)
    return img


def _load_nifti(p: Path):
    import nibabel as nib

    try:
        img = nib.load(str(p))
        data = np.asarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
        raise InputError(f"cannot read NIfTI ({_short(exc)}); the file may be truncated or corrupt", p) from exc
    if data.dtype.kind not in "biuf":
        raise InputError(f"unsupported NIfTI data type {data.dtype}", p)
    affine = np.asarray(img.affine, dtype=np.float64)
    if data.ndim == 2:
        arr = data[None]
        affine = affine.copy()
        # a 2D NIfTI: keep the first two columns of the affine in a 2D-compatible 3x3 form
        aff2 = np.eye(3)
        aff2[:2, :2] = affine[:2, :2]
        aff2[:2, 2] = affine[:2, 3]
        affine = aff2
    elif data.ndim == 3:
        arr = data[None]
    elif data.ndim == 4 and data.shape[3] == 1:
        arr = data[None, :, :, :, 0]
    elif data.ndim == 4:
        arr = np.moveaxis(data, 3, 0)
    elif data.ndim == 5 and data.shape[3] == 1:
        arr = np.moveaxis(data[:, :, :, 0, :], 3, 0)
    else:
        raise InputError(f"unsupported NIfTI dimensionality {data.ndim} (shape {data.shape})", p)
    return RawImage(
        arr.astype(np.float32, copy=False),
        affine,
        {"filename_or_obj": str(p), "source_format": "nifti", "modality": ""},
    )


def _load_itk(p: Path, fmt: str):
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(p))
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read {fmt.upper()} ({_short(exc)})", p) from exc
    dim = img.GetDimension()
    arr = sitk.GetArrayFromImage(img)  # (Z, Y, X[, C])
    ncomp = img.GetNumberOfComponentsPerPixel()
    if ncomp > 1:
        arr = np.moveaxis(arr, -1, 0)  # (C, Z, Y, X)
    else:
        arr = arr[None]
    arr = np.transpose(arr, (0, *range(arr.ndim - 1, 0, -1)))  # (C, X, Y, Z)
    if dim == 3:
        affine = affine_from_itk(img.GetDirection(), img.GetSpacing(), img.GetOrigin())
    elif dim == 2:
        d = np.asarray(img.GetDirection()).reshape(2, 2)
        affine = np.eye(3)
        affine[:2, :2] = np.diag([-1.0, -1.0]) @ d @ np.diag(img.GetSpacing())
        affine[:2, 2] = np.diag([-1.0, -1.0]) @ np.asarray(img.GetOrigin())
    else:
        raise InputError(f"unsupported {fmt.upper()} dimensionality {dim}", p)
    modality = ""
    if img.HasMetaDataKey("modality"):
        modality = img.GetMetaData("modality")
    return RawImage(
        arr.astype(np.float32, copy=False),
        affine,
        {"filename_or_obj": str(p), "source_format": fmt, "modality": modality},
    )


def load_png(p: PathLike):
    """A grey 8/16-bit PNG as a ``(1, X, Y)`` float32 ``MetaTensor`` (see :func:`volseg.io.png.read_png_gray`)."""
    from volseg.io.png import read_png_gray

    return read_png_gray(p).to_metatensor()


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or exc.__class__.__name__
