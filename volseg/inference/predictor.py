"""``Predictor`` (a bundle's inference config + weights, loaded once) and ``predict`` (inputs -> mask files).

Per case: load (``volseg.io.load_volume``) -> the bundle's ``preprocessing`` -> sliding-window /
slice-by-slice inference streamed straight to labels (:func:`volseg.inference.streaming.sliding_window_segment`)
-> inverse of
every spatial preprocessing transform (nearest neighbour for labels) -> optional keep-largest ->
uint8 mask on the source grid with the source's exact affine.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from volseg._atomic import atomic_path, check_not_input
from volseg.errors import ConfigError, InputError, VolsegError
from volseg.inference.cases import Case, dist_rank, find_cases, shard
from volseg.inference.core import keep_largest_component, resolve_device
from volseg.inference.invert import only_axis_aligned, resample_labels_nearest
from volseg.inference.streaming import BLEND_MODES, count_windows, sliding_window_segment
from volseg.transforms.load import adapt_loaders

FORMATS = ("nifti", "dicom-seg", "both")
BACKENDS = ("auto", "eager", "compiled")
PROB_FORMATS = ("uint8", "float16")
# backend "auto" compiles (seconds, once per process) only for a case with at least this many
# windows: below it the eager network finishes first (96^3 windows: ~1 s each eager on 2 cores)
AUTO_COMPILE_MIN_WINDOWS = 48


def _unwrap(exc: BaseException) -> Optional[VolsegError]:
    """The VolsegError inside MONAI's transform-wrapping RuntimeErrors, if any."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, VolsegError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _meta(x: Any) -> Dict[str, Any]:
    """A copy of a MetaTensor's meta without its affine (passed separately)."""
    return {k: v for k, v in x.meta.items() if k != "affine"}


def load_weights(network: torch.nn.Module, path: Path) -> None:
    """Load a plain state_dict or ``{"model": state_dict}`` (weights_only) into ``network``."""
    if not path.is_file():
        raise InputError("model weights not found (train the bundle first: models/model.pt)", path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad input file
        raise InputError(f"cannot read weights: {str(exc).splitlines()[0]}", path) from None
    for key in ("model", "state_dict", "network"):
        if isinstance(sd, Mapping) and isinstance(sd.get(key), Mapping):
            sd = sd[key]
            break
    if not isinstance(sd, Mapping):
        raise InputError("weights file is not a state_dict", path)
    try:
        network.load_state_dict(sd)
    except RuntimeError as exc:
        raise InputError(f"weights do not match the bundle's network_def: {str(exc).splitlines()[0]}", path) from None


def bundle_labels(bundle: Path) -> Dict[int, str]:
    """``{label: name}`` from a MONAI bundle's ``configs/metadata.json`` (``network_data_format.outputs
    .pred.channel_def``, as in the model zoo), without the background; ``{}`` when absent."""
    try:
        meta = json.loads((bundle / "configs" / "metadata.json").read_text(encoding="utf-8"))
        channels = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
        return {int(k): str(v) for k, v in channels.items() if int(k) != 0}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


class Predictor:
    """Segment volumes with a trained bundle (``configs/inference.json`` + ``models/model.pt``).

    ``model``: the bundle folder (or its ``models/model.pt``). Options left ``None`` come from the
    bundle's ``inferer`` (``roi_size``, ``overlap``, ``sw_batch_size``). ``device`` holds the
    full-size outputs (uint8 labels), ``sw_device`` (default ``device``) runs the network windows and
    holds the few-slab blending buffer. ``backend``:
    ``auto`` uses ``volseg.inference.fast.optimize_for_inference`` (falling back to eager if it
    fails) once a case has at least ``AUTO_COMPILE_MIN_WINDOWS`` windows, the eager network before.
    ``overrides`` sets config keys (``{"base_channels": 8}``) before anything is built.
    ``predictor(image)`` returns the uint8 mask ``(1, X, Y, Z)`` MetaTensor on the source grid.
    """

    def __init__(self, model: Any, device: Any = "auto", sw_device: Any = None,
                 roi_size: Optional[Sequence[int]] = None, overlap: Optional[float] = None,
                 sw_batch_size: Optional[int] = None, tta: bool = False, amp: bool = True,
                 keep_largest: bool = False, backend: str = "auto", progress: bool = False,
                 overrides: Optional[Mapping[str, Any]] = None):
        from monai.bundle import ConfigParser
        from monai.bundle.utils import ID_SEP_KEY as SEP

        bundle = Path(model)
        if bundle.is_file() and bundle.suffix == ".pt":
            bundle = bundle.parent.parent
        config = bundle / "configs" / "inference.json"
        if not bundle.exists():
            raise InputError("model bundle not found", bundle)
        if not config.is_file():
            raise InputError("not a volseg/MONAI bundle: configs/inference.json is missing", bundle)
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.device = resolve_device(device)
        self.sw_device = self.device if sw_device is None else resolve_device(sw_device)
        parser = ConfigParser()
        try:
            parser.read_config(str(config))
        except Exception as exc:  # noqa: BLE001 - malformed JSON
            raise InputError(f"cannot read inference config: {exc}", config) from None
        parser["bundle_root"] = str(bundle)
        if "device" in parser:
            parser["device"] = f"$torch.device('{self.device}')"
        for key, value in (overrides or {}).items():
            parser[key] = value
        if roi_size:
            parser["roi_size"] = [int(r) for r in roi_size]
        if "network_def" not in parser:
            raise ConfigError("inference.json has no 'network_def'", config)

        def opt(*ids: str, default: Any = None) -> Any:
            for i in ids:
                try:
                    if parser.get(i.replace("::", SEP)) is not None:
                        return parser.get_parsed_content(i.replace("::", SEP))
                except (KeyError, TypeError, IndexError):
                    continue
            return default

        try:
            self.network = parser.get_parsed_content("network_def")
            self.preprocessing = opt("preprocessing")
            labels = opt("labels", default={}) or {}
        except VolsegError:
            raise
        except Exception as exc:  # noqa: BLE001 - MONAI wraps config errors in several types
            inner = _unwrap(exc)
            raise inner or ConfigError(f"cannot build the bundle components: {str(exc).splitlines()[0]}",
                                       config) from None
        self.preprocessing = adapt_loaders(self.preprocessing)
        self.labels: Dict[int, str] = {int(k): str(v) for k, v in dict(labels or bundle_labels(bundle)).items()}
        self.spatial_dims = int(opt("network_def::spatial_dims", default=0) or 0) or None
        self.in_channels = opt("network_def::in_channels")
        roi = roi_size if roi_size else opt("inferer::roi_size", "roi_size")
        if roi is None:
            raise ConfigError("no roi_size: give --roi-size or set inferer.roi_size in inference.json", config)
        self.roi_size = [int(r) for r in roi]
        if self.spatial_dims is None:
            self.spatial_dims = len(self.roi_size)
        if len(self.roi_size) == 1:
            self.roi_size = self.roi_size * self.spatial_dims
        self.overlap = float(overlap if overlap is not None else opt("inferer::overlap", default=0.25))
        self.sw_batch_size = int(sw_batch_size or opt("inferer::sw_batch_size", default=4))
        # blending as the bundle's own inferer does it (MONAI's default is "constant"); no inferer: Gaussian
        has_inferer = isinstance(parser.get("inferer"), Mapping)
        self.mode = str(opt("inferer::mode", default="constant" if has_inferer else "gaussian"))
        self.sigma_scale = opt("inferer::sigma_scale", default=0.125)
        if self.mode not in BLEND_MODES:
            raise ConfigError(f"inferer mode {self.mode!r} is not supported; choose one of {', '.join(BLEND_MODES)}",
                              config)
        self.tta, self.amp, self.keep_largest, self.progress = bool(tta), bool(amp), bool(keep_largest), progress
        self.bundle = bundle
        load_weights(self.network, bundle / "models" / "model.pt")
        self.network = self.network.to(self.sw_device).eval()
        self.backend = backend
        self.forward = self._optimize(backend)

    def _optimize(self, backend: str) -> Any:
        if backend == "eager":
            return self.network
        try:
            from volseg.inference.fast import optimize_for_inference
        except ImportError:
            if backend == "compiled":
                raise ConfigError("backend 'compiled' is not available (volseg.inference.fast missing)") from None
            return self.network
        try:
            return optimize_for_inference(self.network, self.roi_size, self.sw_device)
        except VolsegError:
            raise
        except Exception as exc:  # noqa: BLE001 - 'auto' falls back to eager on any compile failure
            if backend == "compiled":
                raise ConfigError(f"backend 'compiled' failed: {str(exc).splitlines()[0]}") from None
            return self.network

    # -- one case -------------------------------------------------------------------------
    def _check_channels(self, image: Any, where: Any) -> None:
        if self.in_channels is not None and image.shape[0] != int(self.in_channels):
            raise InputError(f"model expects {int(self.in_channels)} input channel(s), image has {image.shape[0]}",
                             where)

    def preprocess(self, image: Any) -> Mapping[str, Any]:
        """The bundle's preprocessing applied to ``image`` (C, X, Y, Z): ``{"image": MetaTensor, ...}``."""
        where = image.meta.get("filename_or_obj") if hasattr(image, "meta") else None
        data = {"image": image}
        if self.preprocessing is not None:
            try:
                data = self.preprocessing(data)
            except Exception as exc:  # noqa: BLE001 - MONAI wraps transform errors
                inner = _unwrap(exc)
                raise (inner or InputError(f"preprocessing failed: {str(exc).splitlines()[0]}", where)) from None
        self._check_channels(data["image"], where)
        return data

    def infer(self, x: Any, probabilities: Optional[str] = None) -> Tuple[Any, Optional[Any]]:
        """Labels ``(1, ...)`` uint8 (and softmax probabilities ``(L, ...)`` of dtype ``probabilities``)
        on the model grid of a preprocessed image ``x`` (C, ...), by streamed sliding windows."""
        where = x.meta.get("filename_or_obj") if hasattr(x, "meta") else None
        forward = self.forward
        if (self.backend == "auto" and forward is not self.network and getattr(forward, "_compiled", None) is None
                and count_windows(x.shape[1:], self.roi_size, self.spatial_dims, self.overlap) < AUTO_COMPILE_MIN_WINDOWS):
            forward = self.network  # a small case: compiling would cost more than it saves
        try:
            return sliding_window_segment(x, forward, self.roi_size, spatial_dims=self.spatial_dims,
                                          overlap=self.overlap, sw_batch_size=self.sw_batch_size, device=self.device,
                                          sw_device=self.sw_device, tta=self.tta, amp=self.amp,
                                          probabilities=probabilities, progress=self.progress, mode=self.mode,
                                          sigma_scale=self.sigma_scale)
        except RuntimeError as exc:
            raise InputError(f"the network failed on this image {tuple(x.shape)}: {str(exc).splitlines()[0]}",
                             where) from None

    def _invert(self, pred: Any, data: Mapping[str, Any], nearest: bool) -> Any:
        from monai.data import MetaTensor
        from monai.transforms import Invertd

        x = data["image"]
        if not isinstance(x, MetaTensor) or not x.applied_operations or self.preprocessing is None:
            return pred
        pred = MetaTensor(pred.as_subclass(torch.Tensor) if isinstance(pred, MetaTensor) else pred,
                          affine=x.affine, meta=_meta(x))
        inv = Invertd(keys="pred", transform=self.preprocessing, orig_keys="image", nearest_interp=nearest,
                      to_tensor=True)
        return inv({"image": x, "pred": pred})["pred"]

    def __call__(self, image: Any) -> Any:
        """uint8 mask ``(1, X, Y, Z)`` MetaTensor on ``image``'s grid (its affine and meta)."""
        mask, _ = self.segment(image, probabilities=False)
        return mask

    def segment(self, image: Any, probabilities: bool = False) -> Tuple[Any, Optional[Any]]:
        """``(mask (1, X, Y, Z) uint8, softmax probabilities (L, X, Y, Z) on the source grid or None)``:
        float16 when no spatial transform had to be inverted, float32 otherwise."""
        from monai.data import MetaTensor

        from volseg.io import load_volume

        image = load_volume(image)
        where = image.meta.get("filename_or_obj")
        data = self.preprocess(image)
        labels, probs = self.infer(data["image"], probabilities="float16" if probabilities else None)
        inv_probs = None
        if probs is not None:
            inv_probs = self._invert(probs.float() if data["image"].applied_operations else probs, data, nearest=False)
        del probs
        ops = data["image"].applied_operations if hasattr(data["image"], "applied_operations") else []
        fast = None
        if ops and self.preprocessing is not None and only_axis_aligned(ops):
            fast = resample_labels_nearest(labels, labels.affine, image.affine, image.shape[1:])
        if fast is not None:
            labels = fast
        else:
            labels = self._invert(labels.float() if ops else labels, data, nearest=True)
        arr = torch.as_tensor(labels).detach().cpu().numpy()
        arr = np.rint(arr).astype(np.uint8) if arr.dtype != np.uint8 else arr
        if tuple(arr.shape[1:]) != tuple(image.shape[1:]):
            raise InputError(f"preprocessing could not be inverted onto the source grid: {arr.shape[1:]} vs "
                             f"{tuple(image.shape[1:])}", where)
        if self.keep_largest:
            arr[0] = keep_largest_component(arr[0], sorted(self.labels) or None)
        mask = MetaTensor(torch.from_numpy(arr), affine=image.affine.clone(), meta=_meta(image))
        if inv_probs is not None:
            inv_probs = torch.as_tensor(inv_probs).detach().cpu()
        return mask, inv_probs


def _outputs(name: str, output: Path, single_file: bool) -> Dict[str, Path]:
    lower = output.name.lower()
    if single_file:
        cut = next(len(s) for s in (".nii.gz", ".seg.dcm", ".nii", ".dcm") if lower.endswith(s))
        base, folder = output.name[:-cut], output.parent
    else:
        base, folder = name, output
    mask = output if single_file and lower.endswith((".nii.gz", ".nii")) else folder / f"{base}.nii.gz"
    seg = output if single_file and lower.endswith(".dcm") else folder / f"{base}.seg.dcm"
    return {"mask": mask, "seg": seg, "prob": folder / f"{base}_prob.nii.gz",
            "stats_csv": folder / f"{base}_stats.csv", "stats_json": folder / f"{base}_stats.json",
            "overlay": folder / f"{base}_overlay.png"}


def save_probabilities(probs: Any, affine: Any, path: Path, fmt: str = "uint8") -> Path:
    """Probabilities ``(L, X, Y, Z)`` -> 4D NIfTI ``(X, Y, Z, L)``: uint8 (p x 255, scl_slope 1/255) or float16."""
    import nibabel as nib

    arr = np.moveaxis(torch.as_tensor(probs).float().numpy(), 0, -1)
    aff = np.asarray(torch.as_tensor(affine).double().numpy())
    if fmt == "uint8":
        img = nib.Nifti1Image(np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8), aff)
        img.header.set_slope_inter(1.0 / 255.0, 0.0)
    elif fmt == "float16":
        img = nib.Nifti1Image(arr.astype(np.float16), aff)
    else:
        raise ConfigError(f"unknown probability format {fmt!r}; choose one of {', '.join(PROB_FORMATS)}")
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path


def _write_case(predictor: Predictor, image: Any, mask: Any, probs: Any, paths: Dict[str, Path], name: str,
                source: Any, fmt: str, stats: bool, overlay: bool, prob_format: str) -> Dict[str, str]:
    inputs = [source] if isinstance(source, (str, os.PathLike)) else []
    modality = str(image.meta.get("modality", "") or "")
    written: Dict[str, str] = {}
    for key in ("seg", "prob", "stats_csv", "stats_json", "overlay"):
        check_not_input(paths[key], inputs)
    try:
        _write_outputs(predictor, image, mask, probs, paths, name, fmt, stats, overlay, prob_format, inputs,
                       modality, written)
    except BaseException:
        for key, path in written.items():  # no partial output for a case: remove what was written
            Path(path).unlink(missing_ok=True)
            if key == "stats":
                paths["stats_json"].unlink(missing_ok=True)
        raise
    return written


def _write_outputs(predictor: Predictor, image: Any, mask: Any, probs: Any, paths: Dict[str, Path], name: str,
                   fmt: str, stats: bool, overlay: bool, prob_format: str, inputs: list, modality: str,
                   written: Dict[str, str]) -> None:
    from volseg.io import save_mask, write_dicom_seg
    from volseg.inference.report import label_stats, save_overlay, write_stats

    if fmt in ("nifti", "both"):
        written["mask"] = str(save_mask(mask, image, paths["mask"], inputs=inputs))
    if fmt in ("dicom-seg", "both"):
        import logging

        logging.getLogger("highdicom").setLevel(logging.WARNING)  # its per-module INFO lines are noise here
        written["seg"] = str(write_dicom_seg(mask, image, paths["seg"], labels=predictor.labels or None))
    if probs is not None:
        written["prob"] = str(save_probabilities(probs, image.affine, paths["prob"], prob_format))
    if stats:
        rows = label_stats(mask, image, image.affine, predictor.labels or None, modality)
        written["stats"] = str(paths["stats_csv"])
        write_stats(rows, paths["stats_csv"], paths["stats_json"], case=name)
    if overlay:
        written["overlay"] = str(save_overlay(image, mask, image.affine, paths["overlay"],
                                              predictor.labels or None, modality, title=name))


def _check_format(fmt: str, image: Any, where: Any) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt != "nifti" and image.meta.get("source_format") != "dicom":
        raise InputError("--format dicom-seg needs a DICOM series input (a DICOM SEG references its source slices)",
                         where)


def run_cases(predictor: Predictor, cases: Sequence[Case], output: Optional[Path], single_file: bool = False,
              fmt: str = "nifti", save_probs: Any = False, stats: bool = False, overlay: bool = False,
              series: Optional[str] = None, progress: bool = True,
              keep_masks: bool = False) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """Run ``cases`` with the next case loaded in a background thread. Returns ``(done, failed)``:
    ``done[name]`` = written paths (and ``"mask"`` MetaTensor when ``keep_masks``), ``failed[name]`` = message."""
    from tqdm.auto import tqdm

    from volseg.io import load_volume

    prob_format = "uint8" if save_probs is True else (save_probs or "")
    done: Dict[str, Any] = {}
    failed: Dict[str, str] = {}

    def load(case: Case) -> Any:
        return load_volume(case.source, series=series)

    with ThreadPoolExecutor(max_workers=1) as pool:
        futures = [pool.submit(load, cases[0])] if cases else []
        bar = tqdm(cases, desc="predict", unit="case", disable=not progress or len(cases) < 2)
        for i, case in enumerate(bar):
            fut = futures[i]
            if i + 1 < len(cases):
                futures.append(pool.submit(load, cases[i + 1]))
            try:
                image = fut.result()
                _check_format(fmt, image, case.source if not hasattr(case.source, "meta") else None)
                mask, probs = predictor.segment(image, probabilities=bool(prob_format))
                result: Dict[str, Any] = {}
                if output is not None:
                    result = _write_case(predictor, image, mask, probs, _outputs(case.name, output, single_file),
                                         case.name, case.source, fmt, stats, overlay, prob_format)
                if keep_masks:
                    result["mask_tensor"] = mask
                done[case.name] = result
            except Exception as exc:  # noqa: BLE001 - in a batch one bad case must not stop the others
                if len(cases) == 1:
                    raise
                msg = str(exc) if isinstance(exc, VolsegError) else f"{type(exc).__name__}: {exc}"
                failed[case.name] = msg.splitlines()[0] if msg else type(exc).__name__
            futures[i] = None  # release the loaded volume
    return done, failed


def predict(input: Any, output: Any = None, model: Any = None, *, device: Any = "auto", sw_device: Any = None,
            roi_size: Optional[Sequence[int]] = None, overlap: Optional[float] = None,
            sw_batch_size: Optional[int] = None, tta: bool = False, amp: bool = True, keep_largest: bool = False,
            format: str = "nifti", save_probabilities: Any = False, stats: bool = False, overlay: bool = False,
            series: Optional[str] = None, backend: str = "auto", progress: bool = True,
            predictor: Optional[Predictor] = None, overrides: Optional[Mapping[str, Any]] = None) -> Any:
    """Segment ``input`` (DICOM folder, NIfTI/NRRD/MHA file, folder of volumes, ``dataset.json``,
    MetaTensor) with the bundle ``model``.

    One input: returns the uint8 mask ``(1, X, Y, Z)`` MetaTensor on the source grid; ``output``
    ending in ``.nii.gz`` is that file (``.seg.dcm``: that DICOM SEG), any other ``output`` a
    folder (``<case>.nii.gz``). Many
    inputs: ``output`` is a folder, the cases are split over torchrun ranks (``RANK::WORLD_SIZE``)
    and a dict ``{case: {kind: path}}`` is returned; failed cases are listed in an ``InputError``
    raised after the good ones are written. Extra files beside the mask: ``<case>.seg.dcm``
    (``format`` ``dicom-seg``/``both``), ``<case>_prob.nii.gz`` (``save_probabilities`` ``"uint8"``
    or ``"float16"``), ``<case>_stats.csv/.json``, ``<case>_overlay.png``. ``overrides``: bundle
    config keys to set (see :class:`Predictor`).
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
    file_like = out is not None and out.name.lower().endswith((".nii.gz", ".nii", ".dcm"))
    single_file = file_like and len(cases) == 1
    if single_file and out.name.lower().endswith(".dcm") and format == "nifti":
        format = "dicom-seg"  # an output named *.dcm asks for the DICOM SEG
    if file_like and not single_file:
        raise ConfigError(f"{len(cases)} inputs need an output folder, not a file name", out)
    if predictor is None:
        predictor = Predictor(model, device=device, sw_device=sw_device, roi_size=roi_size, overlap=overlap,
                              sw_batch_size=sw_batch_size, tta=tta, amp=amp, keep_largest=keep_largest,
                              backend=backend, progress=progress and len(cases) == 1, overrides=overrides)
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
