"""Sliding-window inference streamed slab by slab: MONAI's windows and blending in bounded memory.

MONAI's ``sliding_window_inference`` keeps the blended output ``(B, L, X, Y, Z)`` and a count map in
float32 at full size. :func:`blend_slabs` runs the same windows in order of their start along the
last axis and blends them into a ring buffer that spans only the slices still open (about
``roi_z + one step``). Once no remaining window reaches a slice, that slice is final and is yielded:
the weighted mean of the window outputs, exactly MONAI's output for those slices (window grid,
importance map, padding of small images and the division by the weight sum are MONAI's own; only
the order in which windows are summed differs, so values agree to float32 rounding).

:class:`StreamingInferer` is a ``monai.inferers.Inferer`` with ``SlidingWindowInferer``'s options
(``spatial_dim`` adds ``SliceInferer``'s slice-by-slice mode). A bundle names it in its
``inferer``; ``python -m monai.bundle run`` gets the full output from it, and ``volseg predict``
consumes its slabs directly (:mod:`volseg.inference.engine`), so both execute the same blending.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from monai.inferers import Inferer

from volseg.errors import ConfigError

log = logging.getLogger(__name__)

BLEND_MODES = ("constant", "gaussian")
PAD_MODES = ("constant", "reflect", "replicate", "circular")
Slab = Tuple[int, int, torch.Tensor]


def _tuple(value: Any, n: int) -> Tuple[Any, ...]:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ConfigError(f"expected {n} values, got {list(value)}")
        return tuple(value)
    return (value,) * n


@dataclass(frozen=True)
class WindowSpec:
    """What a sliding-window inferer does, as MONAI's ``SlidingWindowInferer`` defines it.

    ``roi_size``: window size per spatial axis; ``None`` or a value <= 0 takes the image's size on
    that axis. ``overlap``: one value or one per axis, in [0, 1). ``mode``: ``constant`` or
    ``gaussian`` blending (``sigma_scale`` per axis, as a fraction of the window). Images smaller
    than the window are padded with ``padding_mode``/``cval`` and cropped back. ``slice_axis``: run
    a 2D network on slices along this spatial axis (MONAI ``SliceInferer``'s ``spatial_dim``),
    ``roi_size`` then has one value fewer.
    """

    roi_size: Tuple[Optional[int], ...]
    sw_batch_size: int = 1
    overlap: Union[float, Tuple[float, ...]] = 0.25
    mode: str = "constant"
    sigma_scale: Union[float, Tuple[float, ...]] = 0.125
    padding_mode: str = "constant"
    cval: float = 0.0
    slice_axis: Optional[int] = None
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        mode = str(getattr(self.mode, "value", self.mode))
        pad = str(getattr(self.padding_mode, "value", self.padding_mode))
        if mode not in BLEND_MODES:
            raise ConfigError(f"inferer mode {mode!r} is not supported; choose one of {', '.join(BLEND_MODES)}")
        if pad not in PAD_MODES:
            raise ConfigError(f"inferer padding_mode {pad!r} is not supported; choose one of {', '.join(PAD_MODES)}")
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "padding_mode", pad)
        object.__setattr__(self, "roi_size", tuple(None if r is None else int(r) for r in _as_list(self.roi_size)))
        object.__setattr__(self, "sw_batch_size", max(1, int(self.sw_batch_size)))
        for o in _as_list(self.overlap):
            if not 0.0 <= float(o) < 1.0:
                raise ConfigError(f"inferer overlap must be >= 0 and < 1, got {self.overlap}")

    def slicing(self, ndim: int) -> Optional[int]:
        """The axis a ``ndim``-D image is sliced along, or ``None`` (no slice axis, or an image with as
        many dimensions as the window: a 2D image under a 2D slice inferer runs directly)."""
        if self.slice_axis is None or len(self.roi_size) not in (1, ndim - 1) or (len(self.roi_size) == 1 and ndim == 2):
            return None
        return int(self.slice_axis) % ndim

    def window(self, image_size: Sequence[int]) -> List[int]:
        """The window size for an image of spatial ``image_size`` (slice axis: 1)."""
        nd = len(image_size)
        roi = list(self.roi_size)
        axis = self.slicing(nd)
        if axis is not None:
            roi = roi * (nd - 1) if len(roi) == 1 else roi
            roi.insert(axis, 1)
        elif len(roi) == 1:
            roi = roi * nd
        if len(roi) != nd:
            raise ConfigError(f"roi_size {list(self.roi_size)} has {len(roi)} values for a {nd}D image")
        return [int(s) if r is None or r <= 0 else int(r) for r, s in zip(roi, image_size)]

    def with_options(self, **changes: Any) -> "WindowSpec":
        """A copy with the given fields replaced (``None`` values are ignored)."""
        kw = {k: getattr(self, k) for k in ("roi_size", "sw_batch_size", "overlap", "mode", "sigma_scale",
                                             "padding_mode", "cval", "slice_axis")}
        kw.update({k: v for k, v in changes.items() if v is not None})
        return WindowSpec(**kw)

    @classmethod
    def from_inferer(cls, inferer: Any) -> Optional["WindowSpec"]:
        """The spec of a MONAI ``SlidingWindowInferer``/``SliceInferer`` or a :class:`StreamingInferer`;
        ``None`` for any other inferer, or one whose options change the network's inputs
        (``with_coord``) or outputs, which volseg then runs as it is."""
        from monai.inferers import SliceInferer, SlidingWindowInferer

        if isinstance(inferer, StreamingInferer):
            return inferer.spec
        if type(inferer) not in (SlidingWindowInferer, SliceInferer):
            return None
        if getattr(inferer, "with_coord", False):
            return None
        slice_axis = None
        roi = inferer.roi_size
        if isinstance(inferer, SliceInferer):
            slice_axis = int(inferer.spatial_dim)
            roi = getattr(inferer, "orig_roi_size", None) or roi
            if isinstance(roi, (list, tuple)) and len(roi) == 3:  # SliceInferer rewrites roi_size when called
                roi = [r for i, r in enumerate(roi) if i != slice_axis]
        return cls(roi_size=tuple(_as_list(roi)), sw_batch_size=int(inferer.sw_batch_size),
                   overlap=_freeze(inferer.overlap), mode=str(getattr(inferer.mode, "value", inferer.mode)),
                   sigma_scale=_freeze(inferer.sigma_scale), padding_mode=str(inferer.padding_mode),
                   cval=float(inferer.cval), slice_axis=slice_axis)


def _as_list(v: Any) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _freeze(v: Any) -> Any:
    return tuple(float(x) for x in v) if isinstance(v, (list, tuple)) else float(v)


def scan_interval(image_size: Sequence[int], roi: Sequence[int], overlap: Sequence[float]) -> Tuple[int, ...]:
    """MONAI's window step per axis: the whole axis when the window spans it, else
    ``int(roi * (1 - overlap))`` (at least 1). Re-stated, not imported: MONAI's is the private
    ``monai.inferers.utils._get_scan_interval``; ``tests/inference/test_sliding.py`` pins the two equal."""
    out = []
    for s, r, o in zip(image_size, roi, overlap):
        out.append(int(r) if int(r) == int(s) else max(int(r * (1 - float(o))), 1))
    return tuple(out)


def window_slices(image_size: Sequence[int], roi: Sequence[int], overlap: Any) -> List[Tuple[slice, ...]]:
    """MONAI's window grid (``dense_patch_slices``) over a padded image of ``image_size``, sorted
    (stably) by start on the last axis."""
    from monai.data.utils import dense_patch_slices

    nd = len(image_size)
    step = scan_interval(image_size, roi, _tuple(overlap, nd))
    return sorted(dense_patch_slices(tuple(image_size), tuple(roi), step), key=lambda s: s[-1].start)


def plan_windows(size: Sequence[int], roi: Sequence[int], overlap: Any = 0.25,
                 sw_batch_size: int = 4) -> Tuple[List[List[Tuple[slice, ...]]], int]:
    """Batches of windows over a padded image of ``size`` and the ring depth (slices along the last
    axis) the blend needs: it depends on ``roi``, ``overlap`` and ``sw_batch_size``, not on the
    image's length."""
    wins = window_slices(size, roi, overlap)
    batches = [wins[i:i + sw_batch_size] for i in range(0, len(wins), sw_batch_size)]
    depth = max(max(w[-1].stop for w in b) - b[0][-1].start for b in batches)
    return batches, depth


def count_windows(image_size: Sequence[int], spec: WindowSpec) -> int:
    """How many windows :func:`blend_slabs` runs over an image of spatial ``image_size``."""
    roi = spec.window(image_size)
    size = [max(r, int(s)) for r, s in zip(roi, image_size)]
    return len(window_slices(size, roi, spec.overlap))


def slice_network(network: Callable, axis: int) -> Callable:
    """A 2D network as a 3D one over windows ``(N, C, ...)`` that have size 1 on spatial ``axis``."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        return network(x.squeeze(2 + axis)).unsqueeze(2 + axis)

    return forward


def blend_slabs(image: torch.Tensor, network: Callable, spec: WindowSpec, sw_device: Any = None,
                progress: bool = False) -> Iterator[Slab]:
    """Yield ``(start, stop, out)`` for consecutive slabs along the last spatial axis of ``image``
    ``(C, *spatial)``: ``out`` ``(L, *spatial[:-1], stop - start)`` float32 on ``sw_device`` is
    MONAI's blended sliding-window output for those slices. ``network`` maps ``(N, C, *window)`` to
    ``(N, L, *window)``; with ``spec.slice_axis`` it is a 2D network applied to slices."""
    from monai.data.utils import compute_importance_map
    from tqdm.auto import tqdm

    raw = image.as_tensor() if hasattr(image, "as_tensor") else image
    sw_device = raw.device if sw_device is None else torch.device(sw_device)
    size = list(raw.shape[1:])
    nd = len(size)
    roi = spec.window(size)
    axis = spec.slicing(nd)
    fn = network if axis is None else slice_network(network, axis)
    pads = [(max(r - s, 0) // 2, max(r - s, 0) - max(r - s, 0) // 2) for r, s in zip(roi, size)]
    if any(a or b for a, b in pads):  # MONAI pads images smaller than the window, then crops back
        flat = [p for a, b in reversed(pads) for p in (a, b)]
        kw = {"value": float(spec.cval)} if spec.padding_mode == "constant" else {}
        raw = F.pad(raw[None], flat, mode=spec.padding_mode, **kw)[0]
    padded = list(raw.shape[1:])
    batches, cap = plan_windows(padded, roi, spec.overlap, spec.sw_batch_size)
    weight = compute_importance_map(tuple(roi), mode=spec.mode, sigma_scale=spec.sigma_scale, device=sw_device,
                                    dtype=torch.float32)
    crop = tuple(slice(a, a + s) for (a, _), s in zip(pads[:-1], size[:-1]))
    z_lo, z_n = pads[-1][0], size[-1]
    acc: Optional[torch.Tensor] = None
    count = torch.zeros((1, *padded[:-1], cap), dtype=torch.float32, device=sw_device)
    done = 0  # padded slices [0, done) are final and yielded

    def flush(front: int) -> Iterator[Slab]:
        nonlocal done
        for rs, off in _ring(done, front, cap):
            z0 = done + off.start - z_lo
            z1 = z0 + (rs.stop - rs.start)
            a, b = max(z0, 0), min(z1, z_n)
            if a < b:
                part = (slice(None), *crop, slice(rs.start + a - z0, rs.start + b - z0))
                yield a, b, acc[part] / count[part]
            acc[..., rs] = 0
            count[..., rs] = 0
        done = front

    bar = tqdm(total=sum(len(b) for b in batches), desc="windows", unit="win", disable=not progress, leave=False)
    with torch.no_grad():
        for batch in batches:
            if acc is not None and max(w[-1].stop for w in batch) - done > cap:
                yield from flush(batch[0][-1].start)
            x = torch.cat([raw[(slice(None), *w)][None] for w in batch]).to(sw_device)
            out = fn(x)
            if tuple(out.shape[2:]) != tuple(x.shape[2:]):
                raise ConfigError(f"the network returned windows of {tuple(out.shape[2:])} for input windows of "
                                  f"{tuple(x.shape[2:])}; volseg blends only same-size outputs")
            out = out.to(torch.float32)
            if acc is None:
                acc = torch.zeros((out.shape[1], *padded[:-1], cap), dtype=torch.float32, device=sw_device)
            for w, o in zip(batch, out):
                for rs, off in _ring(w[-1].start, w[-1].stop, cap):
                    region = (slice(None), *w[:-1], rs)
                    acc[region].addcmul_(o[..., off], weight[..., off])  # fused: no window-size temporary
                    count[region] += weight[..., off]
            bar.update(len(batch))
        yield from flush(padded[-1])
    bar.close()


def _ring(start: int, stop: int, cap: int) -> Iterator[Tuple[slice, slice]]:
    """Split global slices ``[start, stop)`` into ``(ring slice, offset slice)`` pieces of a ring of ``cap``."""
    pos = start
    while pos < stop:
        r0 = pos % cap
        n = min(stop - pos, cap - r0)
        yield slice(r0, r0 + n), slice(pos - start, pos - start + n)
        pos += n


class StreamingInferer(Inferer):
    """``SlidingWindowInferer`` with bounded blending memory (a ``monai.inferers.Inferer``).

    Same options and results as MONAI's ``SlidingWindowInferer`` (``spatial_dim``: MONAI
    ``SliceInferer``'s slice-by-slice mode for a 2D network over a 3D image). Called as
    ``inferer(inputs (B, C, *spatial), network)`` it returns the blended output ``(B, L, *spatial)``
    on ``device`` (default: the input's), windows running on ``sw_device``. ``volseg predict``
    reads its :attr:`spec` and consumes the slabs without building the full output.
    """

    def __init__(self, roi_size: Union[int, Sequence[int]], sw_batch_size: int = 1,
                 overlap: Union[float, Sequence[float]] = 0.25, mode: str = "constant",
                 sigma_scale: Union[float, Sequence[float]] = 0.125, padding_mode: str = "constant", cval: float = 0.0,
                 sw_device: Any = None, device: Any = None, progress: bool = False,
                 spatial_dim: Optional[int] = None) -> None:
        super().__init__()
        self.spec = WindowSpec(roi_size=tuple(_as_list(roi_size)), sw_batch_size=sw_batch_size,
                               overlap=_freeze(overlap), mode=str(mode), sigma_scale=_freeze(sigma_scale),
                               padding_mode=str(padding_mode), cval=float(cval), slice_axis=spatial_dim)
        self.sw_device = sw_device
        self.device = device
        self.progress = progress

    def __call__(self, inputs: torch.Tensor, network: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        def fn(x: torch.Tensor) -> torch.Tensor:
            return network(x, *args, **kwargs)

        device = torch.device(self.device) if self.device is not None else inputs.device
        outs = []
        for item in inputs:
            full: Optional[torch.Tensor] = None
            for z0, z1, slab in blend_slabs(item, fn, self.spec, sw_device=self.sw_device or inputs.device,
                                            progress=self.progress):
                if full is None:
                    full = torch.empty((slab.shape[0], *item.shape[1:]), dtype=torch.float32, device=device)
                full[..., z0:z1] = slab.to(device)
            outs.append(full)
        out = torch.stack(outs)
        if hasattr(inputs, "meta"):
            from monai.data import MetaTensor

            return MetaTensor(out, meta=dict(inputs.meta), applied_operations=list(inputs.applied_operations))
        return out
