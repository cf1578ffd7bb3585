"""``load_volume``: one reader for DICOM, NIfTI, NRRD/MHA/MHD and PNG, returning a RAS ``MetaTensor``.

Data come back channel-first ``(C, X, Y, Z)`` (2D PNG: ``(1, X, Y)``) float32, with spatial axis 0
the fastest-varying index in the file (DICOM column, NIfTI i). ``affine`` maps voxel indices to
RAS+ millimetres; files in LPS (DICOM, NRRD, MHA) are converted with ``diag(-1, -1, 1)``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from volseg.errors import InputError
from volseg.formats import ITK_SUFFIXES, NIFTI_SUFFIXES, PNG_SUFFIXES, full_suffix
from volseg.io._checks import affine_problem, apply_nonfinite, check_affine, check_claim, check_spacing, log
from volseg.io._checks import max_voxels as check_max_voxels
from volseg.io._geometry import RawImage, affine_from_itk

PathLike = Union[str, "os.PathLike[str]"]



def load_volume(
    path: Any,
    series: Optional[str] = None,
    ndim: Optional[int] = None,
    resample: bool = False,
    *,
    nonfinite: Union[str, float] = "error",
    max_voxels: Optional[int] = None,
):
    """Read an image into a channel-first float32 ``MetaTensor`` with a RAS+ affine (mm).

    ``path``: a DICOM folder (searched recursively, grouped by SeriesInstanceUID; ``series`` picks
    one by UID or UID prefix), a single DICOM file (multi-frame Enhanced CT/MR included), ``.nii``,
    ``.nii.gz``, ``.nrrd``, ``.mha``/``.mhd`` or a grey ``.png`` (:func:`volseg.io.png.read_png_gray`).
    An in-memory ``MetaTensor`` is returned unchanged. ``ndim=3`` requires a 3D volume (2D or 4D
    inputs raise ``InputError``).
    ``resample=True`` lets DICOM series with missing slices / non-uniform spacing be resampled onto a
    uniform grid instead of failing. Returns ``(C, X, Y, Z)`` (PNG: ``(1, X, Y)``), CT in HU.

    Hostile files are refused with a one-line ``InputError`` naming the file: NaN/Inf voxels
    (``nonfinite="error"``; a number replaces them with one warning, ``"keep"`` keeps them), a header
    claiming more voxels than ``max_voxels`` (default ``$VOLSEG_MAX_VOXELS`` or 2**31) or than the
    file can hold (checked before allocating), non-finite / singular / zero-spacing geometry, and
    DICOM slices that disagree on pixel spacing, size, orientation, photometric interpretation or rescale.
    """
    if hasattr(path, "affine") and hasattr(path, "meta"):
        return path.to_metatensor() if isinstance(path, RawImage) else path
    return read_image(path, series=series, ndim=ndim, resample=resample, nonfinite=nonfinite,
                      max_voxels=max_voxels).to_metatensor()


def read_image(path: PathLike, series: Optional[str] = None, ndim: Optional[int] = None,
               resample: bool = False, *, nonfinite: Union[str, float] = "error",
               max_voxels: Optional[int] = None, dicom_series: Optional[Sequence[Any]] = None) -> RawImage:
    """Like :func:`load_volume` but returns a numpy :class:`RawImage` (no torch import).

    ``dicom_series``: the series :func:`volseg.io.dicom.find_dicom_series` already found in the
    folder ``path`` (skips a second scan, and its warnings).
    """
    p = Path(path)
    if not p.exists():
        raise InputError("no such file or folder", p)
    limit = check_max_voxels(max_voxels)
    if p.is_dir():
        from volseg.io.dicom import load_dicom

        img = load_dicom(p, series=series, resample=resample, max_voxels=limit, found=dicom_series)
    else:
        if p.stat().st_size == 0:
            raise InputError("empty file (0 bytes)", p)
        suffix = full_suffix(p)
        if suffix in NIFTI_SUFFIXES:
            img = _load_nifti(p, limit)
        elif suffix in ITK_SUFFIXES:
            img = _load_itk(p, ITK_SUFFIXES[suffix], limit)
        elif suffix in PNG_SUFFIXES:
            from volseg.io.png import read_png_gray

            img = read_png_gray(p, limit)
        else:
            from volseg.io.dicom import is_dicom_file, load_dicom

            if not is_dicom_file(p):
                raise InputError(
                    f"unsupported file type {suffix or '(no suffix)'!r}: expected a DICOM file or folder, "
                    ".nii, .nii.gz, .nrrd, .mha, .mhd or .png",
                    p,
                )
            img = load_dicom(p, series=series, resample=resample, max_voxels=limit)
    check_affine(img.affine, p, ndim=img.affine.shape[0] - 1)
    img.array = apply_nonfinite(img.array, p, nonfinite)
    if ndim is not None:
        dims = img.ndim - 1 + (1 if img.shape[0] > 1 else 0)
        if dims != ndim:
            shape = tuple(img.shape[1:]) + ((img.shape[0],) if img.shape[0] > 1 else ())
            raise InputError(f"expected a {ndim}D image, got {dims}D with shape {shape}", p)
    return img


def _qform(hdr: Any) -> Union[np.ndarray, str]:
    """The qform affine, or why it cannot be built (qfac other than 0/1/-1, negative pixdim)."""
    from nibabel.spatialimages import HeaderDataError

    h = hdr.copy()
    if h["pixdim"][0] == 0:
        h["pixdim"][0] = 1.0  # the NIfTI standard: qfac 0 means 1
    try:
        with np.errstate(all="ignore"):
            return np.asarray(h.get_qform(), dtype=np.float64)
    except (HeaderDataError, ValueError, np.linalg.LinAlgError) as exc:
        return _short(exc)


def _nifti_affine(hdr: Any, p: Path, ndim: int) -> np.ndarray:
    """The affine nibabel would use, from the header as written, refused when it is unusable.

    sform (code > 0) first; an unusable sform falls back to a valid qform with a warning; both codes 0
    (Analyze-style, no orientation) falls back to the pixdim voxel sizes with a warning (docs/concepts.md).
    """
    scode, qcode = int(hdr["sform_code"]), int(hdr["qform_code"])
    k = min(ndim, 3)
    qform, q_bad = (_qform(hdr), None) if qcode > 0 else (None, None)
    if isinstance(qform, str):
        qform, q_bad = np.full((4, 4), np.nan), qform
    elif qform is not None:
        q_bad = affine_problem(qform, k)
    if scode > 0:
        s_bad = affine_problem(hdr.get_sform(), k)
        if s_bad is None:
            return np.asarray(hdr.get_sform(), dtype=np.float64)
        if qform is not None and q_bad is None:
            log.warning("%s: unusable sform (%s); using the qform", p, s_bad)
            return np.asarray(qform, dtype=np.float64)
        raise InputError(f"invalid sform ({s_bad}) and no usable qform"
                         + (f" ({q_bad})" if q_bad else " (qform code 0)"), p)
    if qform is not None:
        if q_bad is not None:
            raise InputError(f"invalid qform ({q_bad}) and no sform (sform code 0)", p)
        return np.asarray(qform, dtype=np.float64)
    zooms = np.asarray(hdr["pixdim"][1:1 + k], dtype=np.float64)
    check_spacing(zooms, p, "voxel size (pixdim) with no sform/qform (both codes 0)")
    log.warning("%s: no sform/qform (both codes 0): orientation unknown; using pixdim voxel sizes %s mm "
                "and nibabel's default orientation", p, ", ".join(f"{z:g}" for z in zooms))
    return np.asarray(hdr.get_base_affine(), dtype=np.float64)


def _load_nifti(p: Path, limit: int):
    import nibabel as nib

    import logging

    from nibabel.openers import Opener

    try:  # the header as written: nib.load would "fix" zero pixdim to 1 mm (and log it)
        with Opener(str(p)) as f:
            head = f.read(4)
            f.seek(0)
            klass = nib.Nifti2Header if head in (b"\x1c\x02\0\0", b"\0\0\x02\x1c") else nib.Nifti1Header
            hdr = klass.from_fileobj(f, check=False)
        if int(hdr["sizeof_hdr"]) not in (348, 540) or bytes(hdr["magic"]).rstrip(b"\0") not in (
                b"n+1", b"ni1", b"n+2", b"ni2"):
            raise ValueError(f"not a NIfTI header: sizeof_hdr {int(hdr['sizeof_hdr'])}, magic {bytes(hdr['magic'])!r}")
        shape, dtype = hdr.get_data_shape(), hdr.get_data_dtype()
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
        raise InputError(f"cannot read NIfTI ({_short(exc)}); the file may be truncated or corrupt", p) from exc
    vox_offset = float(hdr["vox_offset"])
    if not np.isfinite(vox_offset) or vox_offset < 0 or vox_offset > 2**40:
        raise InputError(f"invalid vox_offset {vox_offset:g} in the NIfTI header", p)
    gz = full_suffix(p) == ".nii.gz"
    size = p.stat().st_size
    offset = 0 if gz else int(vox_offset)
    check_claim(shape, dtype.itemsize, p, limit, max(size - offset, 0), "deflate" if gz else "raw",
                what=str(dtype))
    affine = _nifti_affine(hdr, p, len(shape))
    quiet = logging.getLogger("nibabel.global")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # header problems were judged above
    try:
        data = np.asarray(nib.load(str(p)).dataobj)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read NIfTI ({_short(exc)}); the file may be truncated or corrupt", p) from exc
    finally:
        quiet.setLevel(level)
    if data.dtype.kind not in "biuf":
        raise InputError(f"unsupported NIfTI data type {data.dtype}", p)
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


def _itk_data_layout(p: Path, fmt: str):
    """``(bytes of pixel data available, encoding)`` for :func:`check_claim`, from the text header of a
    NRRD (``.nrrd``/``.nhdr``) or MetaImage (``.mha``/``.mhd``) file; ``(None, None)`` if unknown."""
    with open(p, "rb") as f:
        head = f.read(1 << 16)
    if fmt == "nrrd":
        end = head.find(b"\n\n")
        lines = head[: end if end >= 0 else len(head)].decode("latin-1").splitlines()
        fields = {k.strip().lower(): v.strip() for k, sep, v in (ln.partition(":") for ln in lines[1:]) if sep}
        enc = {"raw": "raw", "gzip": "deflate", "gz": "deflate", "ascii": "text", "text": "text", "txt": "text",
               "hex": "text"}.get(fields.get("encoding", "raw").lower(), "unbounded")
        data_file = fields.get("data file") or fields.get("datafile")
        header_len = end + 2 if end >= 0 else 0
    else:
        lines, header_len, fields = head.decode("latin-1").split("\n"), 0, {}
        for ln in lines:
            header_len += len(ln) + 1
            k, sep, v = ln.partition("=")
            if sep:
                fields[k.strip().lower()] = v.strip()
            if k.strip().lower() == "elementdatafile":
                break
        enc = "deflate" if fields.get("compresseddata", "false").lower() == "true" else "raw"
        data_file = fields.get("elementdatafile")
        data_file = None if (data_file or "").upper() == "LOCAL" else data_file
    if data_file is None:
        return max(p.stat().st_size - header_len, 0), enc
    target = (p.parent / data_file) if not os.path.isabs(data_file) else Path(data_file)
    if " " in data_file or "%" in data_file or not target.is_file():
        return None, None  # a file list / pattern: ITK reports missing files itself
    return target.stat().st_size, enc


def _load_itk(p: Path, fmt: str, limit: int):
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
        size, ncomp, pixel = reader.GetSize(), reader.GetNumberOfComponents(), reader.GetPixelID()
        spacing, origin, direction = reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection()
        probe = sitk.Image([1] * len(size), pixel, ncomp) if ncomp > 1 else sitk.Image([1] * len(size), pixel)
        itemsize = sitk.GetArrayViewFromImage(probe).dtype.itemsize
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read {fmt.upper()} ({_short(exc)})", p) from exc
    available, encoding = _itk_data_layout(p, fmt)
    check_claim(list(size) + ([ncomp] if ncomp > 1 else []), itemsize, p, limit, available, encoding,
                what=sitk.GetPixelIDValueAsString(pixel))
    check_spacing(spacing, p)
    if not np.all(np.isfinite(origin)) or not np.all(np.isfinite(direction)):
        raise InputError("invalid geometry: non-finite origin or direction", p)
    if abs(np.linalg.det(np.asarray(direction, dtype=np.float64).reshape(len(size), len(size)))) < 1e-6:
        raise InputError("invalid geometry: singular direction matrix", p)
    try:
        img = reader.Execute()
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
