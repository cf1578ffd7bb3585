"""DICOM reading: series found recursively and grouped by SeriesInstanceUID, slices sorted by
ImagePositionPatient projected on the slice normal, rescale slope/intercept applied, geometry
checked (missing slices, non-uniform spacing, duplicate positions, mixed orientations, gantry tilt:
each a one-line ``InputError`` naming the files; ``resample=True`` interpolates gaps / uneven spacing
onto a uniform grid and removes gantry-tilt shear, linearly); single files
including multi-frame Enhanced CT/MR. Pixels of classic series are read with SimpleITK's
ImageSeriesReader in volseg's own slice order when the rescale is uniform (fast), else pydicom.
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from volseg.errors import InputError
from volseg.io._checks import check_claim, check_spacing
from volseg.io._geometry import LPS_TO_RAS, RawImage

log = logging.getLogger(__name__)
PathLike = Union[str, "os.PathLike[str]"]
NON_IMAGE_MODALITIES = {"SEG", "SR", "PR", "KO", "RTSTRUCT", "RTPLAN", "RTDOSE", "REG", "DOC", "RTRECORD"}
SPACING_RTOL = 0.01  # relative tolerance on slice steps
TILT_TOL_DEG = 0.05


@dataclass
class DicomSeries:
    """One series found in a folder: its UID, modality, description and file headers."""

    uid: str
    modality: str = ""
    description: str = ""
    files: List[str] = field(default_factory=list)
    headers: List[Any] = field(default_factory=list)

    def summary(self) -> Dict[str, Any]:
        n = len(self.files)
        frames = int(getattr(self.headers[0], "NumberOfFrames", 1) or 1) if n == 1 else n
        return {"uid": self.uid, "modality": self.modality, "description": self.description,
                "files": n, "slices": frames}


def is_dicom_file(path: PathLike) -> bool:
    """True when the file has the DICM preamble marker (or parses as DICOM)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
        if len(head) == 132 and head[128:132] == b"DICM":
            return True
        import pydicom

        ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True, specific_tags=["SOPClassUID"])
        return "SOPClassUID" in ds
    except Exception:  # noqa: BLE001
        return False


def _read_header(path: Path):
    import pydicom

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001
        return None


def find_dicom_series(folder: PathLike) -> List[DicomSeries]:
    """All image series under ``folder`` (recursive); non-DICOM and non-image files are skipped with a warning."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    groups: "OrderedDict[str, DicomSeries]" = OrderedDict()
    skipped_nondicom: List[str] = []
    skipped_nonimage: List[str] = []
    for p in files:
        if p.stat().st_size == 0:
            skipped_nondicom.append(f"{p.name} (empty)")
            continue
        if p.name.upper() == "DICOMDIR" or not is_dicom_file(p):
            skipped_nondicom.append(p.name)
            continue
        ds = _read_header(p)
        if ds is None:
            skipped_nondicom.append(p.name)
            continue
        modality = str(getattr(ds, "Modality", "") or "")
        if modality.upper() in NON_IMAGE_MODALITIES or "Rows" not in ds:
            why = modality if modality.upper() in NON_IMAGE_MODALITIES else f"{modality or '?'} without image rows/columns"
            skipped_nonimage.append(f"{p.name} ({why})")
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "unknown")
        s = groups.setdefault(uid, DicomSeries(uid, modality, str(getattr(ds, "SeriesDescription", "") or "")))
        s.files.append(str(p))
        s.headers.append(ds)
    if skipped_nondicom:
        log.warning("skipped %d non-DICOM file(s) in %s: %s", len(skipped_nondicom), folder, _few(skipped_nondicom))
    if skipped_nonimage:
        log.warning("skipped %d non-image DICOM file(s) in %s: %s", len(skipped_nonimage), folder, _few(skipped_nonimage))
    return list(groups.values())


def _few(items: Sequence[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def _series_list(series: Sequence[DicomSeries]) -> str:
    return "; ".join(
        f"{s.uid} ({s.modality or '?'}, {s.description or 'no description'!r}, {s.summary()['slices']} slices)" for s in series
    )


def choose_series(folder: Path, series: Sequence[DicomSeries], uid: Optional[str]) -> DicomSeries:
    """The series matching ``uid`` (exact or unique prefix), or the only one; else an error listing them."""
    if not series:
        raise InputError("no DICOM image series found (empty folder or no DICOM image files)", folder)
    if uid:
        hits = [s for s in series if s.uid == uid] or [s for s in series if s.uid.startswith(uid)]
        if len(hits) != 1:
            raise InputError(f"series {uid!r} {'not found' if not hits else 'is ambiguous'}; found: {_series_list(series)}", folder)
        return hits[0]
    if len(series) > 1:
        raise InputError(f"{len(series)} image series found, choose one with --series UID: {_series_list(series)}", folder)
    return series[0]


def load_dicom(path: PathLike, series: Optional[str] = None, resample: bool = False,
               max_voxels: Optional[int] = None, found: Optional[Sequence[DicomSeries]] = None):
    """A DICOM folder or file as ``(1, X, Y, Z)`` float32 ``MetaTensor`` (RAS affine, CT in HU).

    ``max_voxels``: refuse larger headers before allocating (default ``$VOLSEG_MAX_VOXELS`` or 2**31);
    ``found``: the result of :func:`find_dicom_series` on ``path`` if the caller already scanned it.
    """
    path = Path(path)
    if path.is_file():
        if path.stat().st_size == 0:
            raise InputError("empty file (0 bytes)", path)
        ds = _read_header(path)
        if ds is None:
            raise InputError("not a readable DICOM file", path)
        if "PerFrameFunctionalGroupsSequence" in ds or int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
            return _load_multiframe(path, max_voxels)
        s = DicomSeries(str(getattr(ds, "SeriesInstanceUID", "")), str(getattr(ds, "Modality", "")),
                        str(getattr(ds, "SeriesDescription", "") or ""), [str(path)], [ds])
        if str(s.modality).upper() in NON_IMAGE_MODALITIES or "Rows" not in ds:
            raise InputError(f"DICOM file is not an image ({s.modality or 'no pixel data'})", path)
        return _load_classic(path, s, resample, max_voxels)
    found = list(found) if found is not None else find_dicom_series(path)
    s = choose_series(path, found, series)
    if len(s.files) == 1 and int(getattr(s.headers[0], "NumberOfFrames", 1) or 1) > 1:
        return _load_multiframe(Path(s.files[0]), max_voxels)
    img = _load_classic(path, s, resample, max_voxels)
    img.meta["series"] = [x.summary() for x in found]
    return img


# attributes every slice of a series must share: (label, value read from a header)
_PER_SLICE = (
    ("Rows/Columns", lambda h: (_int(h, "Rows"), _int(h, "Columns"))),
    ("PixelSpacing", lambda h: _rounded(getattr(h, "PixelSpacing", None))),
    ("mixed slice orientations in one series: ImageOrientationPatient",
     lambda h: _rounded(getattr(h, "ImageOrientationPatient", None))),
    ("PhotometricInterpretation", lambda h: str(getattr(h, "PhotometricInterpretation", "") or "")),
    ("SamplesPerPixel", lambda h: _int(h, "SamplesPerPixel", 1)),
    ("rescale (RescaleSlope/RescaleIntercept present)", lambda h: ("RescaleSlope" in h, "RescaleIntercept" in h)),
)


def _int(h: Any, name: str, default: Optional[int] = None) -> Optional[int]:
    try:
        v = getattr(h, name, default)
        return default if v is None else int(v)
    except (TypeError, ValueError):
        return None


def _rounded(v: Any) -> Optional[Tuple[float, ...]]:
    try:
        return None if v is None else tuple(float(x) for x in v)
    except (TypeError, ValueError):
        return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b) and a and all(
            isinstance(x, float) for x in a + b):
        return bool(np.allclose(a, b, rtol=1e-4, atol=1e-4))
    return a == b


def check_slice_consistency(files: Sequence[str], headers: Sequence[Any], where: PathLike) -> None:
    """Refuse a series whose slices disagree on size, pixel spacing, orientation, photometric
    interpretation, samples per pixel or rescale presence; the error names the odd file(s)
    (those outside the largest group of agreeing slices)."""
    n = len(files)
    for label, get in _PER_SLICE:
        groups: List[Tuple[Any, List[int]]] = []
        for i, v in enumerate(get(h) for h in headers):
            hit = next((g for g in groups if _same(g[0], v)), None)
            if hit is None:
                groups.append((v, [i]))
            else:
                hit[1].append(i)
        if len(groups) < 2:
            continue
        common = max(groups, key=lambda g: (len(g[1]), 0 in g[1]))
        odd = sorted(i for g in groups if g is not common for i in g[1])
        shown = _few([Path(files[i]).name for i in odd], 3)
        first_odd = next(g[0] for g in groups if odd[0] in g[1])
        raise InputError(f"{label} differs between slices: {len(odd)} of {n} file(s) ({shown}) have "
                         f"{_show(first_odd)}, the others {_show(common[0])}", where)


def _show(v: Any) -> str:
    if isinstance(v, tuple) and all(isinstance(x, float) for x in v):
        return "[" + ", ".join(f"{x:g}" for x in v) + "]"
    return "missing" if v is None else str(v)


def _check_pixel_bytes(files: Sequence[str], headers: Sequence[Any], limit: Optional[int], where: PathLike) -> None:
    """The voxel count the headers claim, and each uncompressed file's size, before reading pixels."""
    h0 = headers[0]
    rows, cols = _int(h0, "Rows"), _int(h0, "Columns")
    frames = _int(h0, "NumberOfFrames", 1) or 1
    spp, bits = _int(h0, "SamplesPerPixel", 1) or 1, _int(h0, "BitsAllocated", 16) or 16
    if rows is None or cols is None:
        raise InputError("missing or invalid Rows/Columns", files[0])
    check_claim((cols, rows, frames * len(files)), max(1, bits // 8), where, limit, what="voxels")
    for f, h in zip(files, headers):
        ts = getattr(getattr(h, "file_meta", None), "TransferSyntaxUID", None)
        if ts is not None and getattr(ts, "is_compressed", False):
            continue
        check_claim((cols, rows, frames, spp), max(1, bits // 8), f, limit, os.path.getsize(f), "raw",
                    what=f"{bits}-bit values")


def _check_plane(iop: np.ndarray, where: PathLike) -> None:
    row, col = iop[:3], iop[3:]
    if not np.all(np.isfinite(iop)) or np.linalg.norm(row) < 1e-3 or np.linalg.norm(col) < 1e-3 or (
            np.linalg.norm(np.cross(row, col)) < 1e-3 * np.linalg.norm(row) * np.linalg.norm(col)):
        raise InputError(f"invalid ImageOrientationPatient {iop.round(4).tolist()} (zero or parallel axes)", where)


def _vec(ds: Any, name: str, n: int, where: str) -> np.ndarray:
    v = getattr(ds, name, None)
    if v is None or len(v) != n:
        raise InputError(f"missing or invalid {name}", where)
    return np.asarray([float(x) for x in v], dtype=np.float64)


def _check_orientation(iops: np.ndarray, files: Sequence[str], where: Path) -> np.ndarray:
    bad = np.where(np.abs(iops - iops[0]).max(axis=1) > 1e-4)[0]
    if len(bad):
        raise InputError(
            f"mixed slice orientations in one series: {Path(files[bad[0]]).name} differs from {Path(files[0]).name} "
            f"({iops[bad[0]].round(4).tolist()} vs {iops[0].round(4).tolist()})", where)
    return iops[0]


def _slice_axis(ipps: np.ndarray, iop: np.ndarray, files: Sequence[str], where: Path, fallback: float,
                resample: bool) -> Tuple[np.ndarray, np.ndarray, Any]:
    """Order, step vector (LPS mm per slice) and the fix needed: ``None``, ``"tilt"`` (shear to remove)
    or the slice positions along the normal (mm) to interpolate onto a uniform grid."""
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    proj = ipps @ normal
    order = np.argsort(proj, kind="stable")
    proj_s, ipps_s = proj[order], ipps[order]
    n = len(order)
    if n == 1:
        return order, normal * fallback, None
    steps = np.diff(proj_s)
    name = lambda i: Path(files[order[i]]).name  # noqa: E731
    dup = np.where(steps < 1e-3)[0]
    if len(dup):
        i = int(dup[0])
        raise InputError(
            f"{len(dup)} duplicate slice position(s), e.g. {name(i)} and {name(i + 1)} at {proj_s[i]:.3f} mm "
            "(several acquisitions or time points in one series?)", where)
    total = ipps_s[-1] - ipps_s[0]
    tilt = np.degrees(np.arccos(min(1.0, abs(total @ normal) / np.linalg.norm(total))))
    if tilt > TILT_TOL_DEG:
        what = (f"gantry tilt / sheared slices: slice stack is {tilt:.2f} degrees off the slice normal "
                f"(between {name(0)} and {name(n - 1)})")
        off = ipps_s - ipps_s[0] - np.outer(proj_s - proj_s[0], normal)  # in-plane shift of each slice
        lin = np.outer(np.arange(n), (ipps_s[-1] - ipps_s[0]) / (n - 1))
        lin -= np.outer(np.arange(n) * (proj_s[-1] - proj_s[0]) / (n - 1), normal)
        if not resample or np.abs(off - lin).max() > 1e-2 or np.abs(np.diff(proj_s) - np.median(np.diff(proj_s))).max() > 1e-2:
            raise InputError(what + ("; pass resample=True (--resample) to resample onto an orthogonal grid"
                                     if not resample else "; slice positions are irregular, cannot resample"), where)
        log.warning("%s: %s; resampling onto an orthogonal grid", where, what)
        return order, total / (n - 1), "tilt"
    med = float(np.median(steps))
    dev = np.abs(steps - med) > max(SPACING_RTOL * med, 1e-3)
    if dev.any():
        i = int(np.where(dev)[0][0])
        what = (f"missing slice(s): gap of {steps[i]:.3f} mm between {name(i)} and {name(i + 1)} "
                f"(usual step {med:.3f} mm)") if steps[i] > 1.5 * med else (
            f"non-uniform slice spacing: {steps[i]:.3f} mm between {name(i)} and {name(i + 1)} vs usual {med:.3f} mm")
        if not resample:
            raise InputError(what + "; pass resample=True (--resample) to interpolate onto a uniform grid", where)
        log.warning("%s: %s; resampling onto a uniform %.3f mm grid", where, what, med)
        return order, normal * med, proj_s - proj_s[0]  # positions of the slices to interpolate between
    return order, total / (n - 1), None


def _affine(iop: np.ndarray, pixel_spacing: np.ndarray, first_ipp: np.ndarray, step: np.ndarray) -> np.ndarray:
    lps = np.eye(4)
    lps[:3, 0] = iop[:3] * pixel_spacing[1]  # along columns index (X): row direction, column spacing
    lps[:3, 1] = iop[3:] * pixel_spacing[0]  # along rows index (Y): column direction, row spacing
    lps[:3, 2] = step
    lps[:3, 3] = first_ipp
    return LPS_TO_RAS @ lps


def _resample_z(vol: np.ndarray, pos: np.ndarray, step: float) -> np.ndarray:
    """Linear interpolation of ``vol`` (X, Y, Z) sampled at ``pos`` mm onto ``0, step, 2 step, ...``."""
    n = int(np.floor(pos[-1] / step + 1e-6)) + 1
    target = np.arange(n) * step
    idx = np.clip(np.searchsorted(pos, target, side="right") - 1, 0, len(pos) - 2)
    w = ((target - pos[idx]) / (pos[idx + 1] - pos[idx])).astype(np.float32)
    return vol[:, :, idx] * (1 - w) + vol[:, :, idx + 1] * w


def _deshear(vol: np.ndarray, affine: np.ndarray, iop: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Resample a gantry-tilted (sheared) volume onto the orthogonal grid sharing its first slice (linear)."""
    from scipy.ndimage import affine_transform

    normal_ras = LPS_TO_RAS[:3, :3] @ np.cross(iop[:3], iop[3:])
    dst = affine.copy()
    dst[:3, 2] = normal_ras * float(affine[:3, 2] @ normal_ras)
    m = np.linalg.inv(affine) @ dst  # output index -> input index
    out = affine_transform(vol, m[:3, :3], offset=m[:3, 3], order=1, mode="constant", cval=float(vol.min()))
    return out.astype(np.float32), dst


def _load_classic(where: Path, s: DicomSeries, resample: bool, limit: Optional[int] = None):
    files, headers = s.files, s.headers
    check_slice_consistency(files, headers, where)
    _check_pixel_bytes(files, headers, limit, where)
    if int(getattr(headers[0], "SamplesPerPixel", 1) or 1) != 1:
        raise InputError("colour DICOM images are not supported (SamplesPerPixel != 1)", files[0])
    try:
        ipps = np.stack([_vec(h, "ImagePositionPatient", 3, f) for h, f in zip(headers, files)])
        iops = np.stack([_vec(h, "ImageOrientationPatient", 6, f) for h, f in zip(headers, files)])
        spacing = _vec(headers[0], "PixelSpacing", 2, files[0])
        if not np.all(np.isfinite(ipps)):
            raise InputError("non-finite ImagePositionPatient", files[int(np.where(~np.isfinite(ipps))[0][0])])
    except InputError as exc:
        if len(files) == 1:  # secondary capture etc.: pixel grid without patient geometry
            ipps, iops, spacing = np.zeros((1, 3)), np.array([[1.0, 0, 0, 0, 1, 0]]), np.ones(2)
            log.warning("%s: %s; using a 1 mm identity grid", files[0], exc.message)
        else:
            raise
    check_spacing(spacing, files[0], "PixelSpacing")
    iop = _check_orientation(iops, files, where)
    _check_plane(iop, files[0])
    thick = float(getattr(headers[0], "SpacingBetweenSlices", 0) or getattr(headers[0], "SliceThickness", 0) or 1.0)
    if not np.isfinite(thick) or thick <= 0:
        thick = 1.0
    order, step, pos = _slice_axis(ipps, iop, files, where, thick, resample)
    if pos is not None and not isinstance(pos, str):
        n_out = int(np.floor(pos[-1] / float(np.linalg.norm(step)) + 1e-6)) + 1
        check_claim((int(headers[0].Columns), int(headers[0].Rows), n_out), 4, where, limit,
                    what="voxels after resampling")
    files_s = [files[i] for i in order]
    slopes = {(float(getattr(headers[i], "RescaleSlope", 1) or 1), float(getattr(headers[i], "RescaleIntercept", 0) or 0))
              for i in order}
    vol = _pixels_sitk(files_s) if len(slopes) == 1 and len(files_s) > 1 else None
    if vol is None:
        vol = _pixels_pydicom(files_s)
    affine = _affine(iop, spacing, ipps[order[0]], step)
    if isinstance(pos, str):
        vol, affine = _deshear(vol, affine, iop)
    elif pos is not None:
        vol = _resample_z(vol, pos, float(np.linalg.norm(step)))
        affine = _affine(iop, spacing, ipps[order[0]], step)
    h0 = headers[order[0]]
    meta = {
        "filename_or_obj": str(where), "source_format": "dicom", "modality": s.modality,
        "series_uid": s.uid, "series_description": s.description,
        "study_uid": str(getattr(h0, "StudyInstanceUID", "") or ""),
        "frame_of_reference_uid": str(getattr(h0, "FrameOfReferenceUID", "") or ""),
        "dicom_files": files_s if pos is None else [], "resampled": pos is not None,
        "series": [s.summary()],
    }
    return RawImage(vol[None], affine, meta)


def _pixels_sitk(files: List[str]) -> Optional[np.ndarray]:
    """``(X, Y, Z)`` float32 (rescale applied by GDCM) in the given file order; None on failure."""
    try:
        import SimpleITK as sitk

        r = sitk.ImageSeriesReader()
        r.SetFileNames(files)
        r.SetOutputPixelType(sitk.sitkFloat32)
        img = r.Execute()
        arr = sitk.GetArrayViewFromImage(img)
        if arr.ndim != 3 or arr.shape[0] != len(files):
            return None
        return np.ascontiguousarray(np.transpose(arr, (2, 1, 0)))
    except Exception as exc:  # noqa: BLE001 - fall back to pydicom
        log.debug("SimpleITK series read failed (%s); using pydicom", exc)
        return None


def _pixels_pydicom(files: List[str]) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_rescale

    out = None
    for k, f in enumerate(files):
        try:
            ds = pydicom.dcmread(f)
            a = apply_rescale(ds.pixel_array, ds).astype(np.float32)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"cannot decode pixel data ({' '.join(str(exc).split())[:160]})", f) from exc
        if out is None:
            out = np.empty((a.shape[1], a.shape[0], len(files)), dtype=np.float32)
        out[:, :, k] = a.T
    return out


def _fg(ds: Any, frame: Any, seq: str, attr: str) -> Any:
    """Functional-group attribute: per-frame first, then shared."""
    for grp in (frame, (getattr(ds, "SharedFunctionalGroupsSequence", None) or [None])[0]):
        if grp is not None and seq in grp and len(grp[seq].value) and attr in grp[seq].value[0]:
            return grp[seq].value[0][attr].value
    return None


def _load_multiframe(path: Path, limit: Optional[int] = None):
    """A multi-frame (Enhanced CT/MR or legacy multi-frame) file as ``(1, X, Y, Z)``."""
    import pydicom
    from pydicom.pixels import apply_rescale

    head = _read_header(path)
    if head is not None:
        _check_pixel_bytes([str(path)], [head], limit, path)
    try:
        ds = pydicom.dcmread(str(path))
        frames = ds.pixel_array
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read multi-frame DICOM ({' '.join(str(exc).split())[:160]})", path) from exc
    if frames.ndim == 2:
        frames = frames[None]
    n = frames.shape[0]
    per = list(getattr(ds, "PerFrameFunctionalGroupsSequence", []) or [])
    if per:
        ipps = np.array([[float(v) for v in (_fg(ds, per[i], "PlanePositionSequence", "ImagePositionPatient") or [])]
                         for i in range(n)], dtype=np.float64)
        iops = np.array([[float(v) for v in (_fg(ds, per[i], "PlaneOrientationSequence", "ImageOrientationPatient") or [])]
                         for i in range(n)], dtype=np.float64)
        ps = _fg(ds, per[0], "PixelMeasuresSequence", "PixelSpacing")
        thick = _fg(ds, per[0], "PixelMeasuresSequence", "SpacingBetweenSlices") or _fg(
            ds, per[0], "PixelMeasuresSequence", "SliceThickness") or 1.0
        if ipps.shape != (n, 3) or iops.shape != (n, 6) or ps is None:
            raise InputError("multi-frame DICOM lacks plane position/orientation/pixel measures per frame", path)
        spacing = np.array([float(v) for v in ps])
        check_spacing(spacing, path, "PixelSpacing")
        vol = np.empty(frames.shape, dtype=np.float32)
        for i in range(n):
            slope = _fg(ds, per[i], "PixelValueTransformationSequence", "RescaleSlope")
            icpt = _fg(ds, per[i], "PixelValueTransformationSequence", "RescaleIntercept")
            vol[i] = frames[i].astype(np.float32) * float(1 if slope is None else slope) + float(icpt or 0)
    else:
        if "ImagePositionPatient" not in ds:
            raise InputError("multi-frame DICOM without per-frame geometry is not supported", path)
        ipp0 = _vec(ds, "ImagePositionPatient", 3, str(path))
        iop0 = _vec(ds, "ImageOrientationPatient", 6, str(path))
        spacing = _vec(ds, "PixelSpacing", 2, str(path))
        thick = float(getattr(ds, "SpacingBetweenSlices", 0) or getattr(ds, "SliceThickness", 0) or 1.0)
        nrm = np.cross(iop0[:3], iop0[3:])
        ipps = ipp0 + np.arange(n)[:, None] * thick * nrm
        iops = np.repeat(iop0[None], n, axis=0)
        vol = apply_rescale(frames, ds).astype(np.float32)
    names = [f"{path.name}#frame{i + 1}" for i in range(n)]
    check_spacing(spacing, path, "PixelSpacing")
    if not np.all(np.isfinite(ipps)):
        raise InputError("non-finite ImagePositionPatient", path)
    iop = _check_orientation(iops, names, path)
    _check_plane(iop, path)
    order, step, pos = _slice_axis(ipps, iop, names, path, float(thick), False)
    arr = np.ascontiguousarray(np.transpose(vol[order], (2, 1, 0)))
    affine = _affine(iop, spacing, ipps[order[0]], step)
    uid = str(getattr(ds, "SeriesInstanceUID", "") or "")
    meta = {
        "filename_or_obj": str(path), "source_format": "dicom", "modality": str(getattr(ds, "Modality", "") or ""),
        "series_uid": uid, "series_description": str(getattr(ds, "SeriesDescription", "") or ""),
        "study_uid": str(getattr(ds, "StudyInstanceUID", "") or ""),
        "frame_of_reference_uid": str(getattr(ds, "FrameOfReferenceUID", "") or ""),
        "dicom_files": [str(path)], "frame_order": [int(i) for i in order], "resampled": False,
        "series": [{"uid": uid, "modality": str(getattr(ds, "Modality", "") or ""),
                    "description": str(getattr(ds, "SeriesDescription", "") or ""), "files": 1, "slices": n}],
    }
    return RawImage(arr[None], affine, meta)
