"""``predict``: inputs (files, DICOM folders, folders, ``dataset.json``, MetaTensors) -> mask files.

Cases are loaded one ahead in a background thread, split over torchrun ranks, and written beside
each other (mask, DICOM SEG, probabilities, stats, overlay); a case's outputs are removed again if
any of them fails, and a bad case among good ones is reported at the end.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from volseg._atomic import atomic_group, atomic_path, check_not_input, validate_output
from volseg.errors import ConfigError, InputError, VolsegError
from volseg.formats import MASK_SUFFIXES, NIFTI_SUFFIXES
from volseg.inference.cases import Case, dist_rank, find_cases, shard
from volseg.inference.predictor import Predictor

FORMATS = ("auto", "nifti", "png", "dicom-seg", "both")
PROB_FORMATS = ("uint8", "float32")


def _outputs(name: str, output: Path, single_file: bool) -> Dict[str, Path]:
    lower = output.name.lower()
    if single_file:
        cut = next(len(s) for s in MASK_SUFFIXES if lower.endswith(s))
        base, folder = output.name[:-cut], output.parent
    else:
        base, folder = name, output
    mask = output if single_file and lower.endswith(NIFTI_SUFFIXES) else folder / f"{base}.nii.gz"
    seg = output if single_file and lower.endswith(".dcm") else folder / f"{base}.seg.dcm"
    png = output if single_file and lower.endswith(".png") else folder / f"{base}.png"
    return {"mask": mask, "seg": seg, "png": png, "prob": folder / f"{base}_prob.nii.gz",
            "uncertainty": folder / f"{base}_uncertainty.nii.gz",
            "stats_csv": folder / f"{base}_stats.csv", "stats_json": folder / f"{base}_stats.json",
            "overlay": folder / f"{base}_overlay.png"}


def save_probabilities(probs: Any, affine: Any, path: Path, fmt: str = "uint8") -> Path:
    """Probabilities ``(L, X, Y, Z)`` -> 4D NIfTI ``(X, Y, Z, L)`` (one channel: 3D): uint8 (p x 255,
    scl_slope 1/255) or float32 (NIfTI-1 has no float16). Also writes 0..1 uncertainty maps."""
    import nibabel as nib

    from volseg.io.writers import nifti_image

    arr = np.moveaxis(torch.as_tensor(probs).float().numpy(), 0, -1)
    if arr.shape[-1] == 1:
        arr = arr[..., 0]
    aff = np.asarray(torch.as_tensor(affine).double().numpy())
    if fmt == "uint8":
        img = nifti_image(np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8), aff)
        img.header.set_slope_inter(1.0 / 255.0, 0.0)
    elif fmt == "float32":
        img = nifti_image(arr.astype(np.float32), aff)
    else:
        raise ConfigError(f"unknown probability format {fmt!r}; choose one of {', '.join(PROB_FORMATS)}")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path


def _on_source_grid(mask: Any, image: Any) -> bool:
    return tuple(mask.shape[1:]) == tuple(image.shape[1:]) and \
        np.allclose(np.asarray(mask.affine, dtype=np.float64), np.asarray(image.affine, dtype=np.float64), atol=1e-4)


def _write_case(predictor: Predictor, image: Any, result: Mapping[str, Any], paths: Dict[str, Path], name: str,
                source: Any, fmt: str, stats: bool, overlay: bool, prob_format: str) -> Dict[str, str]:
    inputs = [source] if isinstance(source, (str, os.PathLike)) else []
    mask = result["mask"]
    written: Dict[str, str] = {}
    for key in ("seg", "prob", "uncertainty", "stats_csv", "stats_json", "overlay"):
        check_not_input(paths[key], inputs)
    if (fmt not in ("nifti", "png") or stats or overlay) and not _on_source_grid(mask, image):
        raise ConfigError("the bundle's postprocessing leaves the mask on the model grid (no Invertd): only the "
                          "NIfTI mask can be written, not DICOM SEG, stats or overlays", source)
    with atomic_group():  # a case's outputs appear together, or none of them (old ones stay)
        _write_outputs(predictor, image, result, paths, name, fmt, stats, overlay, prob_format, inputs, written)
    return written


def _write_outputs(predictor: Predictor, image: Any, result: Mapping[str, Any], paths: Dict[str, Path], name: str,
                   fmt: str, stats: bool, overlay: bool, prob_format: str, inputs: list,
                   written: Dict[str, str]) -> None:
    from volseg.inference.report import label_stats, save_overlay, write_stats
    from volseg.io import save_mask, write_dicom_seg

    mask, probs, unc = result["mask"], result.get("probabilities"), result.get("uncertainty")
    modality = str(image.meta.get("modality", "") or "")
    if fmt in ("nifti", "both"):
        reference = image if _on_source_grid(mask, image) else mask
        written["mask"] = str(save_mask(mask, reference, paths["mask"], inputs=inputs))
    if fmt == "png":
        from volseg.io import bundle_palette, save_label_png

        written["mask"] = str(save_label_png(mask, paths["png"], bundle_palette(predictor.bundle), inputs=inputs))
    if fmt in ("dicom-seg", "both"):
        logging.getLogger("highdicom").setLevel(logging.WARNING)  # its per-module INFO lines are noise here
        written["seg"] = str(write_dicom_seg(mask, image, paths["seg"], labels=predictor.labels or None))
    if probs is not None:
        written["prob"] = str(save_probabilities(probs, mask.affine, paths["prob"], prob_format))
    if unc is not None:
        written["uncertainty"] = str(save_probabilities(unc, mask.affine, paths["uncertainty"], "float32"))
    if stats:
        rows = label_stats(mask, image, image.affine, predictor.labels or None, modality, uncertainty=unc)
        written["stats"] = str(paths["stats_csv"])
        write_stats(rows, paths["stats_csv"], paths["stats_json"], case=name)
    if overlay:
        written["overlay"] = str(save_overlay(image, mask, image.affine, paths["overlay"],
                                              predictor.labels or None, modality, title=name, uncertainty=unc))


def _case_format(fmt: str, image: Any, where: Any) -> str:
    """The mask format for a case: ``auto`` is a palette PNG for PNG inputs (the format 2D labels
    come in), else NIfTI."""
    source = image.meta.get("source_format")
    if fmt == "auto":
        return "png" if source == "png" else "nifti"
    if fmt == "png" and image.ndim != 3:
        raise InputError("--format png writes 2D label PNGs; this input is 3D (use nifti)", where)
    if fmt in ("dicom-seg", "both") and source != "dicom":
        raise InputError("--format dicom-seg needs a DICOM series input (a DICOM SEG references its source slices)",
                         where)
    return fmt


def run_cases(predictor: Predictor, cases: Sequence[Case], output: Optional[Path], single_file: bool = False,
              fmt: str = "nifti", save_probs: Any = False, stats: bool = False, overlay: bool = False,
              series: Optional[str] = None, progress: bool = True,
              keep_masks: bool = False) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """Run ``cases`` with the next case loaded in a background thread. Returns ``(done, failed)``:
    ``done[name]`` = written paths (and ``"mask_tensor"`` when ``keep_masks``), ``failed[name]`` = message."""
    from tqdm.auto import tqdm

    from volseg.io import load_volume

    prob_format = "uint8" if save_probs is True else (save_probs or "")
    done: Dict[str, Any] = {}
    failed: Dict[str, str] = {}

    def load(case: Case) -> Any:
        return load_volume(case.source, series=series, nonfinite=predictor.nonfinite)

    with ThreadPoolExecutor(max_workers=1) as pool:
        futures = [pool.submit(load, cases[0])] if cases else []
        bar = tqdm(cases, desc="predict", unit="case", disable=not progress or len(cases) < 2)
        for i, case in enumerate(bar):
            fut = futures[i]
            if i + 1 < len(cases):
                futures.append(pool.submit(load, cases[i + 1]))
            try:
                image = fut.result()
                case_fmt = _case_format(fmt, image, case.source if not hasattr(case.source, "meta") else None)
                outs = predictor.outputs(image, probabilities=bool(prob_format))
                result: Dict[str, Any] = {}
                if output is not None:
                    result = _write_case(predictor, image, outs, _outputs(case.name, output, single_file),
                                         case.name, case.source, case_fmt, stats, overlay, prob_format)
                if keep_masks:
                    result["mask_tensor"] = outs["mask"]
                done[case.name] = result
            except Exception as exc:  # noqa: BLE001 - in a batch one bad case must not stop the others
                if len(cases) == 1:
                    raise
                msg = str(exc) if isinstance(exc, VolsegError) else f"{type(exc).__name__}: {exc}"
                failed[case.name] = msg.splitlines()[0] if msg else type(exc).__name__
            futures[i] = None  # release the loaded volume
    return done, failed


def predict(input: Any, output: Any = None, model: Any = None, *, config: Any = None, device: Any = "auto",
            sw_device: Any = None, roi_size: Optional[Sequence[int]] = None, overlap: Optional[float] = None,
            sw_batch_size: Optional[int] = None, tta: bool = False, amp: bool = True, precision: str = "auto",
            keep_largest: bool = False,
            format: str = "auto", save_probabilities: Any = False, stats: bool = False, overlay: bool = False,
            series: Optional[str] = None, backend: str = "auto", progress: bool = True,
            predictor: Optional[Predictor] = None, overrides: Optional[Mapping[str, Any]] = None,
            trust_bundle: bool = False, nan_to: Optional[float] = None, uncertainty: bool = False) -> Any:
    """Segment ``input`` (DICOM folder, NIfTI/NRRD/MHA file, folder of volumes, ``dataset.json``,
    MetaTensor) with the bundle ``model`` (see :class:`Predictor` for ``config``, ``overrides`` and
    the inference options).

    One input: returns the mask ``(1, X, Y, Z)`` MetaTensor on the source grid; ``output`` ending in
    ``.nii.gz`` is that file (``.seg.dcm``: that DICOM SEG; ``.png``: a label PNG in the bundle's
    palette), any other ``output`` a folder (``<case>.nii.gz``; ``<case>.png`` for PNG inputs:
    ``format="auto"``; ask for ``nifti`` to get NIfTI from PNGs). Many inputs: ``output`` is a folder, the cases are split over torchrun
    ranks (``RANK::WORLD_SIZE``) and ``{case: {kind: path}}`` is returned; failed cases are listed
    in an ``InputError`` raised after the good ones are written. Extra files beside the mask:
    ``<case>.seg.dcm`` (``format`` ``dicom-seg``/``both``), ``<case>_prob.nii.gz``
    (``save_probabilities`` ``"uint8"`` or ``"float32"``), ``<case>_stats.csv/.json``, ``<case>_overlay.png``.
    A case's files appear together (written aside, renamed at the end). The output is checked
    before the model loads. ``trust_bundle`` lets the bundle run code outside volseg's safe subset
    (``docs/security.md``); ``nan_to`` replaces NaN/Inf voxels (default: refuse such scans).
    ``uncertainty`` also writes ``<case>_uncertainty.nii.gz`` (normalised predictive entropy over the
    mirrored TTA passes, and MC dropout where the network has dropout; on the mask's grid), adds
    ``mean_uncertainty`` per label to the stats and a heat-map row to the overlay.
    """
    if model is None and predictor is None:
        raise ConfigError("predict needs model= (a trained bundle folder)")
    if format not in FORMATS:
        raise ConfigError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if save_probabilities not in (False, None, True, *PROB_FORMATS):
        raise ConfigError(f"unknown probability format {save_probabilities!r}; choose one of {', '.join(PROB_FORMATS)}")
    if series is not None and isinstance(input, (str, os.PathLike)) and Path(input).is_dir():
        cases = [Case(Path(input).name, Path(input))]  # one series picked from a study folder
    else:
        cases = find_cases(input)
    out = None if output is None else Path(output)
    file_like = out is not None and out.name.lower().endswith(MASK_SUFFIXES)
    single_file = file_like and len(cases) == 1
    if single_file and format == "auto":  # the output's name says the format
        lower = out.name.lower()
        format = "dicom-seg" if lower.endswith(".dcm") else "png" if lower.endswith(".png") else "nifti"
    if file_like and not single_file:
        raise ConfigError(f"{len(cases)} inputs need an output folder, not a file name", out)
    if out is not None:  # before the model loads: a bad output costs no inference
        inputs = [c.source for c in cases if isinstance(c.source, (str, os.PathLike))]
        validate_output(out, inputs, "mask-or-folder" if len(cases) == 1 else "folder")
        if not single_file:
            for case in cases:
                validate_output(out / f"{case.name}.nii.gz", inputs, "mask")
    if predictor is None:
        predictor = Predictor(model, config=config, device=device, sw_device=sw_device, roi_size=roi_size,
                              overlap=overlap, sw_batch_size=sw_batch_size, tta=tta, amp=amp, precision=precision,
                              keep_largest=keep_largest, backend=backend, progress=progress and len(cases) == 1,
                              overrides=overrides, trust_bundle=trust_bundle, uncertainty=uncertainty,
                              nonfinite="error" if nan_to is None else float(nan_to))
    rank, world = dist_rank()
    many = len(cases) > 1 or world > 1
    mine = shard(cases, rank, world) if world > 1 else cases
    done, failed = run_cases(predictor, mine, out, single_file=single_file, fmt=format,
                             save_probs=save_probabilities, stats=stats, overlay=overlay, series=series,
                             progress=progress, keep_masks=not many)
    if failed:
        listing = "; ".join(f"{k}: {v}" for k, v in failed.items())
        raise InputError(f"{len(failed)} of {len(mine)} case(s) failed ({len(done)} written): {listing}")
    if not many:
        return next(iter(done.values()))["mask_tensor"]
    return done
