"""DICOM writers: a CT/MR Image Storage series from a ``MetaTensor`` and a DICOM SEG (highdicom)."""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from volseg._atomic import atomic_dir, atomic_path, check_not_input
from volseg.errors import ConfigError, InputError
from volseg.io._geometry import LPS_TO_RAS, affine_of, to_numpy

PathLike = Union[str, "os.PathLike[str]"]
SOP_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}
DEFAULT_COLOURS = [(255, 0, 0), (0, 200, 0), (0, 0, 255), (255, 200, 0), (0, 200, 200), (200, 0, 200)]


def _geometry(affine: np.ndarray) -> Tuple[np.ndarray, np.ndarray, Tuple[float, float], np.ndarray]:
    """LPS (row cosine, column cosine, (row spacing, column spacing), slice step vector) of a RAS affine."""
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
    cx, cy = lps[:3, 0], lps[:3, 1]
    sx, sy = float(np.linalg.norm(cx)), float(np.linalg.norm(cy))
    if abs(float(cx @ cy)) > 1e-4 * sx * sy:
        raise InputError("cannot write DICOM for a sheared in-plane grid (columns/rows not orthogonal)")
    return cx / sx, cy / sy, (sy, sx), lps


def write_dicom_series(
    image: Any,
    out_dir: PathLike,
    modality: str = "CT",
    series_description: str = "volseg",
    patient_name: str = "VOLSEG^PHANTOM",
    patient_id: str = "VOLSEG0001",
    study_uid: Optional[str] = None,
    series_uid: Optional[str] = None,
    series_number: int = 1,
) -> List[Path]:
    """Write ``image`` ``(1, X, Y, Z)`` / ``(X, Y, Z)`` (CT in HU) as one file per slice ``k`` (``IM_0001.dcm`` ...).

    Geometry comes from its RAS affine (ImagePositionPatient per slice, ImageOrientationPatient,
    PixelSpacing); pixels are int16 with RescaleSlope/Intercept. The folder is written atomically.
    Returns the file paths in slice order.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from volseg import __version__

    modality = modality.upper()
    if modality not in SOP_CLASS:
        raise ConfigError(f"unknown modality {modality!r}; valid: {', '.join(SOP_CLASS)}")
    affine = affine_of(image)
    if affine is None:
        raise ConfigError("write_dicom_series needs a MetaTensor with an affine")
    arr = to_numpy(image)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise InputError(f"write_dicom_series needs a 3D image (1, X, Y, Z), got shape {arr.shape}")
    arr = arr.astype(np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    integral = np.array_equal(arr, np.round(arr))
    if integral and lo >= -32768 and hi <= 32767:
        slope, icpt = 1.0, 0.0
    else:
        icpt = lo
        slope = max((hi - lo) / 65000.0, 1e-6)
        icpt = lo + 32768 * slope
    pix = np.clip(np.round((arr - icpt) / slope), -32768, 32767).astype(np.int16)
    row, col, (srow, scol), lps = _geometry(affine)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = generate_uid()
    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    step = float(np.linalg.norm(lps[:3, 2]))
    check_not_input(out_dir, [getattr(image, "meta", {}).get("filename_or_obj")])
    paths: List[Path] = []
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        for k in range(arr.shape[2]):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = SOP_CLASS[modality]
            sop_uid = generate_uid()
            meta.MediaStorageSOPInstanceUID = sop_uid
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
            ds = pydicom.Dataset()
            ds.file_meta = meta
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
            ds.SOPClassUID, ds.SOPInstanceUID = SOP_CLASS[modality], sop_uid
            ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = date
            ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = time
            ds.AccessionNumber = ""
            ds.Modality = modality
            ds.Manufacturer = "volseg"
            ds.ManufacturerModelName = "volseg"
            ds.SoftwareVersions = __version__
            ds.ReferringPhysicianName = ""
            ds.SeriesDescription = series_description
            ds.PatientName, ds.PatientID = patient_name, patient_id
            ds.PatientBirthDate, ds.PatientSex = "", "O"
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
            ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", int(series_number), k + 1
            ds.AcquisitionNumber = 1
            ds.PatientPosition = "HFS"
            ds.Laterality = ""
            ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_uid, ""
            ipp = lps[:3, :3] @ np.array([0.0, 0.0, float(k)]) + lps[:3, 3]
            ds.ImagePositionPatient = [_ds(v) for v in ipp]
            ds.ImageOrientationPatient = [_ds(v) for v in (*row, *col)]
            ds.SliceLocation = _ds(float(ipp @ np.cross(row, col)))
            ds.SliceThickness = _ds(step)
            ds.SpacingBetweenSlices = _ds(step)
            ds.PixelSpacing = [_ds(srow), _ds(scol)]
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.Rows, ds.Columns = int(arr.shape[1]), int(arr.shape[0])
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleIntercept, ds.RescaleSlope = _ds(icpt), _ds(slope)
            if modality == "CT":
                ds.RescaleType = "HU"
                ds.KVP = "120"
                ds.WindowCenter, ds.WindowWidth = "40", "400"
            else:
                ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "GR", "NONE", ""
                ds.MRAcquisitionType, ds.EchoTime, ds.RepetitionTime = "3D", "1", "10"
                ds.EchoTrainLength, ds.MagneticFieldStrength = "1", "3"
            ds.PixelData = np.ascontiguousarray(pix[:, :, k].T).tobytes()
            name = f"IM_{k + 1:04d}.dcm"
            pydicom.dcmwrite(str(tmp / name), ds, enforce_file_format=True)
            paths.append(out / name)
    return paths


def _ds(v: float) -> str:
    """A DICOM DS string (<= 16 characters) for ``v``."""
    s = f"{v:.10g}"
    if len(s) > 16:
        s = f"{v:.8g}"
    if len(s) > 16:
        s = f"{v:.6e}"
    return s


def write_dicom_seg(
    mask: Any,
    reference: Any,
    path: PathLike,
    labels: Optional[Mapping[int, str]] = None,
    colours: Optional[Mapping[int, Sequence[int]]] = None,
    series_description: str = "volseg segmentation",
    series_number: int = 300,
) -> Path:
    """Write a label map ``(X, Y, Z)`` / ``(1, X, Y, Z)`` on ``reference``'s grid as a DICOM SEG (highdicom).

    ``reference`` is the ``MetaTensor`` from ``load_volume`` of a DICOM series (its
    ``meta["dicom_files"]`` lists the source files in slice order) or that folder's path. One
    segment per label in ``labels`` (``{value: name}``; default: each value in the mask, named
    ``"label <value>"``) with a display colour and the volseg algorithm identification. Empty frames are omitted. Atomic write.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    from volseg import __version__

    if isinstance(reference, (str, os.PathLike)):
        from volseg.io.readers import load_volume

        reference = load_volume(reference)
    meta = getattr(reference, "meta", None) or {}
    files = list(meta.get("dicom_files") or [])
    if not files:
        raise InputError("DICOM SEG needs a reference loaded from DICOM (meta['dicom_files'] is empty)",
                         meta.get("filename_or_obj"))
    arr = to_numpy(mask)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if not labels:
        labels = {int(v): f"label {int(v)}" for v in np.unique(np.round(arr)) if v != 0} or {1: "label 1"}
    labels = {int(k): str(v) for k, v in labels.items()}
    ref_shape = tuple(reference.shape[-3:])
    if arr.shape != ref_shape:
        raise InputError(f"mask shape {arr.shape} differs from the reference grid {ref_shape}", path)
    arr = np.round(arr).astype(np.int64)
    unknown = sorted(set(np.unique(arr).tolist()) - {0} - set(labels))
    if unknown:
        raise ConfigError(f"mask has labels {unknown} missing from labels={labels}")
    check_not_input(path, files)
    sources = [pydicom.dcmread(f, stop_before_pixels=False) for f in files]
    if len(sources) == 1 and int(getattr(sources[0], "NumberOfFrames", 1) or 1) > 1:
        order = meta.get("frame_order") or list(range(arr.shape[2]))
        frames = np.zeros((arr.shape[2], arr.shape[1], arr.shape[0]), dtype=np.uint8)
        for k, f in enumerate(order):
            frames[f] = arr[:, :, k].T
    else:
        frames = np.ascontiguousarray(np.transpose(arr, (2, 1, 0)))
    algo = hd.AlgorithmIdentificationSequence(name="volseg", family=codes.cid7162.ArtificialIntelligence,
                                              version=__version__)
    descs = []
    seg_values = sorted(labels)
    label_frames = np.zeros(frames.shape, dtype=np.uint16 if len(seg_values) > 255 else np.uint8)
    for n, value in enumerate(seg_values, start=1):
        rgb = (colours or {}).get(value, DEFAULT_COLOURS[(n - 1) % len(DEFAULT_COLOURS)])
        descs.append(hd.seg.SegmentDescription(
            segment_number=n, segment_label=labels[value],
            segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algo,
            display_color=hd.color.CIELabColor.from_rgb(*[int(c) for c in rgb]) if hasattr(hd.color.CIELabColor, "from_rgb")
            else None,
        ))
        label_frames[frames == value] = n
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=label_frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descs,
        series_instance_uid=hd.UID(), series_number=int(series_number), sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="volseg", manufacturer_model_name="volseg",
        software_versions=__version__, device_serial_number="0", series_description=series_description,
        content_label="VOLSEG", content_description=series_description[:64],
        content_creator_name="VOLSEG^AUTO", omit_empty_frames=True,
    )
    with atomic_path(path) as tmp:
        seg.save_as(str(tmp))
    return Path(path)
