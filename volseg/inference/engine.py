"""Execute a bundle's inferer and postprocessing on one preprocessed image, streamed.

A bundle's ``postprocessing`` is read as a chain (:func:`read_chain`): per-voxel steps on the
model grid (``Activationsd`` softmax/sigmoid, ``AsDiscreted`` argmax/threshold), an ``Invertd``
back to the source grid (bilinear of probabilities, or nearest of labels, as the bundle says),
per-voxel steps on the source grid, then whatever else (``KeepLargestConnectedComponentd``,
``Lambdad``, ...), and a saver, which ``volseg predict`` replaces by its own writers.

:func:`run_chain` runs the fused prefix slab by slab: the sliding-window slabs
(:func:`volseg.inference.sliding.blend_slabs`) go through the per-voxel steps and the separable
inverse (:mod:`volseg.inference.invert`) straight into the source-grid output, so no full-size
float map of all classes exists. The remaining transforms are MONAI's own, applied to the full
result; where volseg cannot stream a step (a rotation to invert, an unknown transform before the
inversion), it materialises the output there and hands the rest to MONAI (correct first), saying
so in the debug log.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from volseg.errors import ConfigError
from volseg.inference.invert import AxisMap, inverse_axis_maps, resample_axis
from volseg.inference.sliding import Slab, WindowSpec, blend_slabs

log = logging.getLogger(__name__)

SAVERS = ("SaveImaged", "SaveImage", "SaveMaskd")
PASS_THROUGH = ("EnsureTyped", "ToDeviced", "ToTensord", "Identityd", "CopyItemsd")


@dataclass
class VoxelStep:
    """A per-voxel step: ``softmax``/``sigmoid`` (over channels) or ``argmax``/``threshold``."""

    kind: str
    threshold: float = 0.5

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "softmax":
            return torch.softmax(x.float(), dim=0)
        if self.kind == "sigmoid":
            return torch.sigmoid(x.float())
        if self.kind == "argmax":  # max().indices: the first maximum, as argmax, ~5x faster on CPU
            return x.max(dim=0, keepdim=True).indices.to(torch.uint8 if x.shape[0] <= 256 else torch.int16)
        if self.kind == "threshold":
            return (x >= self.threshold).to(torch.uint8)
        if self.kind == "entropy":  # predictive entropy of probabilities over channels, / log(L): 0..1
            p = x.float().clamp_min(1e-12)
            return (-(p * p.log()).sum(dim=0, keepdim=True) / float(np.log(max(x.shape[0], 2)))).clamp_(0, 1)
        raise ConfigError(f"unknown per-voxel step {self.kind!r}")

    @property
    def discrete(self) -> bool:
        return self.kind in ("argmax", "threshold")


@dataclass
class Chain:
    """A bundle's postprocessing as volseg runs it: ``before`` (model grid), ``invert`` (``None``:
    no inversion; else ``{"nearest": bool}``), ``after`` (source grid), then ``rest`` (MONAI
    transforms on the full result). ``note`` says why ``rest`` starts where it does."""

    key: str = "pred"
    image_key: str = "image"
    before: List[VoxelStep] = field(default_factory=list)
    invert: Optional[Dict[str, Any]] = None
    after: List[VoxelStep] = field(default_factory=list)
    rest: List[Any] = field(default_factory=list)
    note: str = ""

    @property
    def steps(self) -> List[VoxelStep]:
        return self.before + self.after


def _per_key(values: Any, index: int) -> Any:
    return values[index] if isinstance(values, (list, tuple)) else values


def _voxel_step(t: Any, key: str) -> Optional[List[VoxelStep]]:
    """The per-voxel steps ``t`` (an ``Activationsd``/``AsDiscreted``) does to ``key``; ``None`` if
    it does something else (an ``other`` activation, one-hot, rounding, another ``dim``)."""
    name = type(t).__name__
    keys = list(getattr(t, "keys", ()))
    if key not in keys:
        return []
    i = keys.index(key)
    kwargs = dict(getattr(getattr(t, "converter", None), "kwargs", {}) or {})
    if name == "Activationsd":
        if _per_key(t.other, i) is not None or kwargs.get("dim", 0) != 0:
            return None
        steps = [VoxelStep("sigmoid")] if _per_key(t.sigmoid, i) else []
        return steps + ([VoxelStep("softmax")] if _per_key(t.softmax, i) else [])
    if name == "AsDiscreted":
        if (t.to_onehot[i] is not None or _per_key(t.rounding, i) is not None or kwargs.get("dim", 0) != 0
                or not kwargs.get("keepdim", True)):
            return None
        steps = [VoxelStep("argmax")] if _per_key(t.argmax, i) else []
        if t.threshold[i] is not None:
            steps.append(VoxelStep("threshold", float(t.threshold[i])))
        return steps
    return None


def read_chain(postprocessing: Any, key: str = "pred", image_key: str = "image", preprocessing: Any = None) -> Chain:
    """Read a bundle's ``postprocessing`` (a MONAI ``Compose`` or ``None``) into a :class:`Chain`.
    No postprocessing at all means volseg's default: softmax, bilinear inversion of the bundle's
    ``preprocessing``, argmax."""
    chain = Chain(key=key, image_key=image_key)
    if postprocessing is None:
        chain.before, chain.after = [VoxelStep("softmax")], [VoxelStep("argmax")]
        chain.invert = {"nearest": False, "transform": preprocessing}
        return chain
    transforms = list(getattr(postprocessing, "transforms", [postprocessing]))
    for pos, t in enumerate(transforms):
        name = type(t).__name__
        if name in SAVERS:
            break
        if name in PASS_THROUGH:
            continue
        steps = _voxel_step(t, key) if name in ("Activationsd", "AsDiscreted") else None
        if steps is not None and not chain.rest:
            (chain.after if chain.invert is not None else chain.before).extend(steps)
            continue
        if name == "Invertd" and chain.invert is None and not chain.rest and key in list(t.keys):
            i = list(t.keys).index(key)
            orig = _per_key(t.orig_keys, i)
            if orig == image_key and _per_key(t.post_func, i) is None:
                chain.invert = {"nearest": bool(_per_key(t.nearest_interp, i)), "transform": t.transform}
                continue
        if not chain.rest:
            chain.note = f"{name} (step {pos + 1} of the postprocessing) and what follows run as MONAI transforms"
        chain.rest.append(t)
    return chain


@dataclass
class Output:
    """What the chain produced for one case: ``value`` ``(C, *grid)`` on the source grid (or the
    model grid when the bundle does not invert), ``probabilities`` ``(L, *grid)`` when asked."""

    value: torch.Tensor
    affine: Any
    probabilities: Optional[torch.Tensor] = None
    uncertainty: Optional[torch.Tensor] = None


class _ToSource:
    """Turns model-grid slabs (in order along the last model axis) into source-grid values."""

    def __init__(self, maps: Sequence[AxisMap], source_shape: Sequence[int], model_shape: Sequence[int],
                 before: Sequence[VoxelStep], after: Sequence[VoxelStep], device: torch.device):
        nd = len(source_shape)
        self.stream = next(m for m in maps if m.model_axis == nd - 1)
        self.inplane = sorted((m for m in maps if m.model_axis != nd - 1), key=lambda m: m.model_axis)
        self.before, self.after = list(before), list(after)
        self.shape = [int(s) for s in source_shape]
        self.device = device
        need = self.stream.needed()
        first = np.where(self.stream.weight != 0, self.stream.index, np.iinfo(np.int64).max).min(axis=1)
        self.order = np.argsort(need, kind="stable")
        self.need = need
        self.low = np.minimum.accumulate(first[self.order][::-1])[::-1]  # smallest model index still needed
        # in-plane source axes, in the order they appear in the cached (model-axis-ordered) slices
        self.perm = [1 + [m.source_axis for m in self.inplane].index(j) for j in range(nd) if j != self.stream.source_axis]
        self.dense: Dict[Any, torch.Tensor] = {}
        self.model_sizes = [int(s) for s in model_shape]
        self.cache: Dict[int, torch.Tensor] = {}
        self.pos = 0
        self.out: Optional[torch.Tensor] = None  # slice-major (n_stream, C, *other source axes): contiguous writes

    def push(self, z0: int, z1: int, slab: torch.Tensor, chunk: int = 4) -> None:
        for c0 in range(0, z1 - z0, chunk):  # a few model slices at a time: source-size temporaries stay small
            t = slab[..., c0:c0 + chunk]
            for step in self.before:
                t = step(t)
            t = self._inplane(t.movedim(-1, 0))  # (dz, C, *in-plane source axes, in model-axis order)
            for k in range(t.shape[0]):
                self.cache[z0 + c0 + k] = t[k]
            self._emit(z0 + c0 + t.shape[0])

    def _inplane(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(dz, C, *in-plane model axes)`` resampled onto the in-plane source axes: a gather
        for nearest maps, else one batched matrix product per axis (dense 1D interpolation matrices
        are small: source x model samples)."""
        for m in self.inplane:
            ax = 2 + m.model_axis
            if m.is_gather or not x.is_floating_point():
                x = resample_axis(x, ax, m)
                continue
            w = self._dense(m, x)
            if ax == x.ndim - 1:
                x = x @ w.T
            elif ax == x.ndim - 2:
                x = w @ x
            else:
                x = torch.movedim(torch.movedim(x, ax, -1) @ w.T, -1, ax)
        return x

    def _dense(self, m: AxisMap, like: torch.Tensor) -> torch.Tensor:
        key = (m.model_axis, like.dtype, like.device)
        if key not in self.dense:
            w = np.zeros((m.index.shape[0], int(m.index.max(initial=0)) + 1))
            rows = np.arange(m.index.shape[0])
            for k in range(m.index.shape[1]):
                np.add.at(w, (rows, m.index[:, k]), m.weight[:, k])
            n_model = max(int(m.index.max(initial=0)) + 1, self.model_sizes[m.model_axis])
            full = np.zeros((w.shape[0], n_model))
            full[:, :w.shape[1]] = w
            self.dense[key] = torch.from_numpy(full).to(device=like.device, dtype=like.dtype)
        return self.dense[key]

    def finish(self) -> torch.Tensor:
        self._emit(np.iinfo(np.int64).max)
        return self.out.movedim(0, 1 + self.stream.source_axis).contiguous()

    def _emit(self, front: int) -> None:
        gather = self.stream.is_gather
        while self.pos < len(self.order) and self.need[self.order[self.pos]] < front:
            s = int(self.order[self.pos])
            val = None
            for k, w in zip(self.stream.index[s], self.stream.weight[s]):
                if w == 0:
                    continue
                if gather:
                    val = self.cache[int(k)]
                elif val is None:
                    val = self.cache[int(k)].mul(float(w))
                else:
                    val.add_(self.cache[int(k)], alpha=float(w))
            if val is None:
                val = torch.zeros_like(next(iter(self.cache.values())))
            for step in self.after:
                val = step(val)
            val = val.permute(0, *self.perm)
            if self.out is None:
                n = self.shape[self.stream.source_axis]
                self.out = torch.zeros((n, *val.shape), dtype=val.dtype, device=self.device)
            self.out[s].copy_(val)
            self.pos += 1
            if self.pos < len(self.order):
                low = int(self.low[self.pos])
                for z in [z for z in self.cache if z < low]:
                    del self.cache[z]


class _OnModelGrid:
    """Collects per-voxel results of model-grid slabs into the full model-grid output."""

    def __init__(self, shape: Sequence[int], steps: Sequence[VoxelStep], device: torch.device):
        self.shape, self.steps, self.device, self.out = [int(s) for s in shape], list(steps), device, None

    def push(self, z0: int, z1: int, slab: torch.Tensor) -> None:
        for step in self.steps:
            slab = step(slab)
        if self.out is None:
            self.out = torch.zeros((slab.shape[0], *self.shape), dtype=slab.dtype, device=self.device)
        self.out[..., z0:z1] = slab.to(self.device)

    def finish(self) -> torch.Tensor:
        return self.out


def _meta_tensor(value: torch.Tensor, like: Any, operations: bool = True) -> Any:
    from monai.data import MetaTensor

    meta = {k: v for k, v in like.meta.items() if k != "affine"}
    out = MetaTensor(value, affine=like.affine.clone(), meta=meta)
    if operations:
        out.applied_operations = [dict(op) for op in like.applied_operations]
    return out


def run_chain(image: Any, source: Any, chain: Chain, slabs: Iterator[Slab], device: Any = "cpu",
              probabilities: bool = False, uncertainty: bool = False) -> Output:
    """Run ``chain`` on the sliding-window ``slabs`` of the preprocessed ``image`` ``(C, *model)``
    (a MetaTensor with ``applied_operations``) whose untransformed grid is ``source``'s.

    ``probabilities``: also return the class probabilities ``(L, *grid)`` float32 (the chain's own
    activation, else softmax), inverted the way the chain inverts. ``uncertainty``: the slabs carry
    ``2L`` channels (logits, then the mean probabilities of several passes,
    :func:`volseg.inference.core.mirror_tta`); also return their normalised predictive entropy
    ``(1, *grid)`` (0 certain .. 1 uniform), interpolated linearly onto the grid of the mask."""
    device = torch.device(device)
    before, after, rest = list(chain.before), list(chain.after), list(chain.rest)
    maps = None
    if chain.invert is not None:
        maps = inverse_axis_maps(image.applied_operations, image.affine, image.shape[1:], source.affine,
                                 source.shape[1:], nearest=chain.invert["nearest"])
        if maps is None:  # not separable: materialise on the model grid, then MONAI's Invertd
            rest = [_invertd(chain)] + [_as_transform(s, chain.key) for s in after] + rest
            after = []
            log.debug("volseg: the inversion runs as MONAI's Invertd (full-size, not streamed)")
    if rest:
        log.debug("volseg: %s", chain.note or "postprocessing continues with MONAI transforms")
    discrete_at = next((i for i, s in enumerate(before) if s.discrete), len(before))
    prob_steps = before[:discrete_at] if any(s.kind in ("softmax", "sigmoid") for s in before[:discrete_at]) \
        else [*before[:discrete_at], VoxelStep("softmax")]
    grid_shape = source.shape[1:] if maps is not None else image.shape[1:]
    model_shape = image.shape[1:]
    main = _ToSource(maps, grid_shape, model_shape, before, after, device) if maps is not None else \
        _OnModelGrid(grid_shape, before, device)
    probs = unc = None
    if probabilities:
        probs = _ToSource(maps, grid_shape, model_shape, prob_steps, [], device) if maps is not None else \
            _OnModelGrid(grid_shape, prob_steps, device)
    if uncertainty:
        unc_maps = maps
        if maps is not None and chain.invert["nearest"]:
            unc_maps = inverse_axis_maps(image.applied_operations, image.affine, image.shape[1:], source.affine,
                                         source.shape[1:], nearest=False)
        unc = _ToSource(unc_maps, grid_shape, model_shape, [VoxelStep("entropy")], [], device) \
            if unc_maps is not None else \
            _OnModelGrid(grid_shape, [VoxelStep("entropy")], device)
    for z0, z1, slab in slabs:
        logits = slab[:slab.shape[0] // 2] if uncertainty else slab
        main.push(z0, z1, logits)
        if probs is not None:
            probs.push(z0, z1, logits)
        if unc is not None:
            unc.push(z0, z1, slab[slab.shape[0] // 2:])
    value = main.finish()
    prob_value = None if probs is None else probs.finish()
    unc_value = None if unc is None else unc.finish()
    affine = source.affine if maps is not None else image.affine
    if rest:
        value, affine = _run_monai(value, image, source, chain, rest, inverted=maps is not None)
    if maps is None and chain.invert is not None:  # MONAI's Invertd puts the side outputs on the source grid too
        if prob_value is not None:  # as the streamed path: the chain's own interpolation
            prob_value, _ = _run_monai(prob_value, image, source, chain, [_invertd(chain)], False)
        if unc_value is not None:
            unc_value, _ = _run_monai(unc_value, image, source, chain, [_invertd(chain, nearest=False)], False)
    return Output(value=value, affine=affine, probabilities=prob_value, uncertainty=unc_value)


def _invertd(chain: Chain, nearest: Optional[bool] = None) -> Any:
    from monai.transforms import Invertd

    nearest = chain.invert["nearest"] if nearest is None else nearest
    return Invertd(keys=chain.key, transform=chain.invert["transform"], orig_keys=chain.image_key,
                   nearest_interp=nearest, to_tensor=True)


def _as_transform(step: VoxelStep, key: str) -> Any:
    from monai.transforms import Activationsd, AsDiscreted

    if step.kind in ("softmax", "sigmoid"):
        return Activationsd(keys=key, **{step.kind: True})
    if step.kind == "argmax":
        return AsDiscreted(keys=key, argmax=True)
    return AsDiscreted(keys=key, threshold=step.threshold)


def _run_monai(value: torch.Tensor, image: Any, source: Any, chain: Chain, rest: Sequence[Any],
               inverted: bool) -> Tuple[torch.Tensor, Any]:
    """Apply MONAI ``rest`` transforms to the full output, as MONAI's evaluator would hold it."""
    from volseg.bundles.config import unwrap_error

    pred = _meta_tensor(value.float(), source if inverted else image, operations=not inverted)
    data = {chain.image_key: image, chain.key: pred}
    for t in rest:
        try:
            data = t(data)
        except Exception as exc:  # noqa: BLE001 - MONAI wraps transform errors
            inner = unwrap_error(exc)
            if inner is not None:
                raise inner from None
            raise ConfigError(f"postprocessing {type(t).__name__} failed: {str(exc).splitlines()[0]}") from None
    out = data[chain.key]
    affine = getattr(out, "affine", source.affine if inverted else image.affine)
    return torch.as_tensor(out).detach(), affine


def model_slabs(image: Any, forward: Callable, spec: Optional[WindowSpec], inferer: Any = None,
                sw_device: Any = None, progress: bool = False) -> Iterator[Slab]:
    """Slabs of the blended network output for ``image`` ``(C, *model)``: streamed windows when the
    bundle's inferer is a sliding window (``spec``), else the bundle's own ``inferer`` in one piece."""
    if spec is not None:
        yield from blend_slabs(image, forward, spec, sw_device=sw_device, progress=progress)
        return
    raw = image.as_tensor() if hasattr(image, "as_tensor") else image
    with torch.no_grad():
        out = inferer(raw[None].to(sw_device or raw.device), forward)
    out = torch.as_tensor(out)[0].float()
    if tuple(out.shape[1:]) != tuple(raw.shape[1:]):
        raise ConfigError(f"the bundle's inferer returned a grid of {tuple(out.shape[1:])} for an image of "
                          f"{tuple(raw.shape[1:])}")
    yield 0, out.shape[-1], out
