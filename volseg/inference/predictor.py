"""``Predictor``: a MONAI bundle's own inference definition, loaded once and executed per case.

It builds what ``python -m monai.bundle run --config_file configs/inference.json`` builds
(``network_def``, ``preprocessing``, ``inferer``, ``postprocessing``, the weights named by its
``checkpointloader``) and runs it through :mod:`volseg.inference.engine`: sliding windows streamed
slab by slab, the bundle's postprocessing fused into the stream where it can be (activation,
inversion of probabilities or labels, discretisation), MONAI's own transforms for the rest. The
saver is replaced by volseg's writers. Options left ``None`` keep the bundle's settings.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch

from volseg.bundles.config import build, channel_labels, locate_bundle, read_parser, unwrap_error
from volseg.errors import ConfigError, InputError, VolsegError
from volseg.inference.core import enable_mc_dropout, mirror_tta, resolve_device
from volseg.inference.engine import Output, model_slabs, read_chain, run_chain
from volseg.inference.backends import BACKENDS, PRECISIONS, bundle_cache_dir, make_forward, window_shape
from volseg.inference.sliding import WindowSpec
from volseg.transforms.load import adapt_loaders

log = logging.getLogger(__name__)

# the config items a prediction resolves (and everything they reference): what the trust check reads
USED_IDS = ("network_def", "preprocessing", "inferer", "postprocessing", "checkpointloader#load_path", "model_path",
            "labels", "image_key", "evaluator#amp")


def load_weights(network: torch.nn.Module, path: Path) -> None:
    """Load a plain state_dict or ``{"model": state_dict}`` (``weights_only=True``) into ``network``."""
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


def _image_key(parser: Any, preprocessing: Any) -> str:
    key = parser.get("image_key")
    if isinstance(key, str) and not key.startswith(("$", "@", "%")):
        return key
    for t in getattr(preprocessing, "transforms", ()):
        keys = list(getattr(t, "keys", ()) or ())
        if keys:
            return str(keys[0])
    return "image"


def _weights_path(parser: Any, root: Path, where: Path) -> Path:
    """The weights a bundle's own run loads: its ``checkpointloader``'s ``load_path`` (model zoo),
    else its ``model_path`` (volseg), else ``models/model.pt``."""
    for item in ("checkpointloader#load_path", "model_path"):
        try:
            if parser.get(item) is not None:
                return Path(str(build(parser, item, where)))
        except KeyError:
            continue
    return root / "models" / "model.pt"


class Predictor:
    """Segment volumes with a MONAI bundle (``configs/inference.json``/``.yaml`` + weights).

    ``model``: a bundle folder, a training output folder (``models/model.pt``; then ``config``
    names the bundle that trained it) or a weights file. ``config``: a bundle folder or config
    file(s), merged in order. ``overrides``: config ids to set first (``{"inferer#overlap": 0.5}``).
    ``device`` holds the outputs, ``sw_device`` (default ``device``) runs the windows and the
    few-slab blending buffer. ``roi_size``/``overlap``/``sw_batch_size`` replace the bundle's
    sliding-window settings. ``tta`` averages all mirrorings. ``precision``: ``auto`` (fp32 on CPU;
    float16 autocast on CUDA where the bundle's evaluator uses AMP and ``amp`` is true), ``fp32``,
    ``bf16`` (CPUs with AVX512-BF16/AMX, or CUDA), ``fp16`` (CUDA). ``uncertainty`` adds a predictive-entropy map over the
    mirrored TTA passes (MC dropout too where the network has dropout; implies ``tta``); ``keep_largest`` adds MONAI's
    ``KeepLargestConnectedComponentd`` over the labels. ``backend``: ``eager`` is plain PyTorch;
    ``auto`` loads a forward pass built once by ``volseg optimize`` (OpenVINO / AOTInductor) when one
    matches, else runs eager, and never compiles per process; ``channels_last``, ``aoti``,
    ``openvino`` ask for one (:mod:`volseg.inference.backends`).
    ``predictor(image)`` returns the mask ``(1, X, Y, Z)`` MetaTensor on the source grid.
    """

    def __init__(self, model: Any, device: Any = "auto", sw_device: Any = None,
                 roi_size: Optional[Sequence[int]] = None, overlap: Optional[float] = None,
                 sw_batch_size: Optional[int] = None, tta: bool = False, amp: bool = True, precision: str = "auto",
                 keep_largest: bool = False, backend: str = "auto", progress: bool = False,
                 overrides: Optional[Mapping[str, Any]] = None, config: Any = None, trust_bundle: bool = False,
                 nonfinite: Any = "error", uncertainty: bool = False):
        from volseg.bundles.trust import check_bundle_files

        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        source = locate_bundle(model, config)
        where = source.config_files[0]
        check_bundle_files(source.config_files, ids=USED_IDS, trusted=trust_bundle)
        self.nonfinite = nonfinite
        self.device = resolve_device(device)
        self.sw_device = self.device if sw_device is None else resolve_device(sw_device)
        over: Dict[str, Any] = {}
        over.update(dict(overrides or {}))
        parser = read_parser(source, over)
        if "device" in parser and "device" not in over:
            parser["device"] = f"$torch.device('{self.sw_device}')"
        for item in ("network_def", "inferer"):
            if item not in parser:
                raise ConfigError(f"the bundle config has no {item!r}", where)
        self.network = build(parser, "network_def", where)
        self.preprocessing = adapt_loaders(build(parser, "preprocessing", where)) if "preprocessing" in parser else None
        self.inferer = build(parser, "inferer", where)
        post = build(parser, "postprocessing", where) if "postprocessing" in parser else None
        self.image_key = _image_key(parser, self.preprocessing)
        self.chain = read_chain(post, key="pred", image_key=self.image_key, preprocessing=self.preprocessing)
        labels = parser.get("labels") if isinstance(parser.get("labels"), Mapping) else None
        self.labels: Dict[int, str] = ({int(k): str(v) for k, v in labels.items()} if labels
                                       else channel_labels(source.metadata))
        if keep_largest:
            from monai.transforms import KeepLargestConnectedComponentd

            self.chain.rest.append(KeepLargestConnectedComponentd(keys="pred", applied_labels=sorted(self.labels) or None))
        self.spec = WindowSpec.from_inferer(self.inferer)
        if self.spec is not None:
            self.spec = self.spec.with_options(roi_size=None if not roi_size else tuple(int(r) for r in roi_size),
                                               overlap=overlap, sw_batch_size=sw_batch_size)
        elif roi_size or overlap is not None or sw_batch_size:
            raise ConfigError(f"the bundle's inferer ({type(self.inferer).__name__}) is not a sliding window: "
                              "--roi-size/--overlap/--sw-batch-size do not apply", where)
        else:
            log.debug("volseg runs the bundle's own %s in one piece (not streamed)", type(self.inferer).__name__)
        evaluator_amp = parser.get("evaluator#amp") if "evaluator" in parser else None
        # on CUDA, "auto" is float16 autocast where the bundle's evaluator uses AMP (MONAI's runner does)
        self.precision = "fp32" if precision == "auto" and (not amp or evaluator_amp is False) else precision
        self.tta, self.progress, self.backend = bool(tta) or bool(uncertainty), progress, backend
        self.uncertainty = bool(uncertainty)
        self.bundle = source.root
        self.weights = source.weights or _weights_path(parser, source.root, where)
        load_weights(self.network, self.weights)
        self.network = self.network.to(self.sw_device).eval()
        self.cache_dir = bundle_cache_dir(self.weights.parent.parent)
        self.in_channels = _int_item(parser, "network_def#in_channels", where) or _in_channels(self.network)
        self.spatial_dims = _int_item(parser, "network_def#spatial_dims", where) or _spatial_dims(self.network)
        self.forward = self._forward()

    def _forward(self) -> Any:
        """The network's forward pass (:func:`volseg.inference.backends.make_forward`), wrapped for
        mirrored TTA. With live MC dropout, or a window that depends on the image, it is the eager network."""
        self.mc_dropout = bool(self.uncertainty and enable_mc_dropout(self.network))
        spec = self.spec
        fixed = spec is not None and all(r is not None and r > 0 for r in spec.roi_size)
        backend = self.backend if fixed and not self.mc_dropout else "eager"
        roi = spec.roi_size if fixed else (1,) * (self.spatial_dims or 3)
        window = window_shape(self.network, spec.sw_batch_size if spec else 1, roi, self.in_channels)
        fn = make_forward(self.network, window, self.sw_device, backend=backend, precision=self.precision,
                          cache_dir=self.cache_dir)
        log.debug("volseg forward pass: %r", fn)
        if self.tta:
            fn = mirror_tta(fn, self.spatial_dims or 3, probabilities=self.uncertainty)
        return fn

    # -- one case -------------------------------------------------------------------------
    def preprocess(self, image: Any) -> Any:
        """The bundle's preprocessing of ``image`` (a loaded ``(C, X, Y, Z)`` MetaTensor): the model-grid
        image ``(C, ...)`` with its ``applied_operations``."""
        where = image.meta.get("filename_or_obj")
        data: Dict[str, Any] = {self.image_key: image}
        if self.preprocessing is not None:
            try:
                data = self.preprocessing(data)
            except VolsegError:
                raise
            except Exception as exc:  # noqa: BLE001 - MONAI wraps transform errors
                inner = unwrap_error(exc)
                raise (inner or InputError(f"preprocessing failed: {str(exc).splitlines()[0]}", where)) from None
        x = data[self.image_key]
        if self.in_channels is not None and x.shape[0] != self.in_channels:
            raise InputError(f"model expects {self.in_channels} input channel(s), image has "
                             f"{x.shape[0]} after preprocessing", where)
        return x

    def _slab_spec(self, x: Any) -> Optional[WindowSpec]:
        """A 2D network over a 3D image runs slice by slice along the last axis (``SliceInferer``)."""
        spec = self.spec
        if spec is not None and self.spatial_dims == 2 and x.ndim == 4 and spec.slice_axis is None:
            spec = spec.with_options(slice_axis=2)
        return spec

    def run(self, image: Any, probabilities: bool = False) -> Tuple[Any, Output]:
        """``(source image, engine Output)`` for ``image`` (path or MetaTensor)."""
        from volseg.io import load_volume

        source = _finite(load_volume(image, nonfinite=self.nonfinite), self.nonfinite)
        x = self.preprocess(source)
        where = source.meta.get("filename_or_obj")
        slabs = model_slabs(x, self.forward, self._slab_spec(x), self.inferer, sw_device=self.sw_device,
                            progress=self.progress)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)  # MC dropout: the same scan gives the same mask and map
                out = run_chain(x, source, self.chain, slabs, device=self.device, probabilities=probabilities,
                                uncertainty=self.uncertainty)
        except RuntimeError as exc:
            inner = unwrap_error(exc)
            raise (inner or InputError(f"the network failed on this image {tuple(x.shape)}: "
                                       f"{str(exc).splitlines()[0]}", where)) from None
        return source, out

    def outputs(self, image: Any, probabilities: bool = False) -> Dict[str, Any]:
        """``{"mask", "probabilities", "uncertainty"}`` for ``image``: the bundle's result ``(C, X, Y, Z)``
        as a MetaTensor on the source grid (uint8 labels when it is a label map), the class
        probabilities ``(L, X, Y, Z)`` (or ``None``) and, with ``uncertainty``, the normalised
        predictive entropy ``(1, X, Y, Z)`` float32 0..1 over the TTA (and MC dropout) passes."""
        from monai.data import MetaTensor

        source, out = self.run(image, probabilities)
        meta = {k: v for k, v in source.meta.items() if k != "affine"}
        affine = torch.as_tensor(out.affine)
        mask = MetaTensor(_as_labels(out.value).cpu(), affine=affine.clone(), meta=meta)
        unc = None if out.uncertainty is None else \
            MetaTensor(out.uncertainty.float().cpu(), affine=affine.clone(), meta=dict(meta))
        return {"mask": mask, "probabilities": None if out.probabilities is None else out.probabilities.cpu(),
                "uncertainty": unc}

    def segment(self, image: Any, probabilities: bool = False) -> Tuple[Any, Optional[Any]]:
        """``(mask, probabilities or None)``, as :meth:`outputs` gives them."""
        res = self.outputs(image, probabilities)
        return res["mask"], res["probabilities"]

    def __call__(self, image: Any) -> Any:
        """The mask ``(1, X, Y, Z)`` MetaTensor on ``image``'s grid."""
        return self.segment(image)[0]


def _finite(image: Any, policy: Any) -> Any:
    """An in-memory image under the non-finite voxel policy (files are checked by their reader)."""
    from volseg.io._checks import apply_nonfinite

    raw = image.as_tensor() if hasattr(image, "as_tensor") else torch.as_tensor(image)
    if policy == "keep" or bool(torch.isfinite(raw).all()):
        return image
    arr = raw.detach().cpu().numpy().copy()
    apply_nonfinite(arr, image.meta.get("filename_or_obj") or "in-memory image", policy)
    out = image.clone()
    out.as_tensor().copy_(torch.from_numpy(arr))
    return out


def _int_item(parser: Any, item: str, where: Path) -> Optional[int]:
    """An integer config item (``network_def#in_channels``), or ``None`` when absent or not an integer."""
    try:
        if parser.get(item) is None:
            return None
        value = build(parser, item, where)
    except (KeyError, VolsegError):
        return None
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _as_labels(value: torch.Tensor) -> torch.Tensor:
    """Integer-valued outputs as uint8 (uint16 past 255); anything else as float32."""
    if value.dtype in (torch.uint8, torch.int16, torch.int32, torch.int64, torch.bool):
        big = value.numel() and int(value.max()) > 255
        return value.to(torch.int32 if big else torch.uint8)
    if value.numel() and torch.equal(value, value.round()) and float(value.min()) >= 0 and float(value.max()) <= 255:
        return value.to(torch.uint8)
    return value.float()


def _in_channels(network: torch.nn.Module) -> Optional[int]:
    for m in network.modules():
        if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
            return int(m.in_channels)
    return None


def _spatial_dims(network: torch.nn.Module) -> Optional[int]:
    for m in network.modules():
        if isinstance(m, torch.nn.Conv3d):
            return 3
        if isinstance(m, torch.nn.Conv2d):
            return 2
    return None
