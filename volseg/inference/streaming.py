"""Sliding-window inference with bounded memory: labels straight out of a streamed blend.

MONAI's ``sliding_window_inference`` keeps the blended scores ``(L, X, Y, Z)`` and a count map
``(1, X, Y, Z)`` in float32 at full resolution, and the caller's argmax adds more full-size
temporaries (11.6 GB peak for a 512x512x600 CT with 3 classes). Here the windows run in order of
their start along the last axis and are Gaussian-blended into a ring buffer that spans only the
slabs still open (about ``roi_z + overlap step`` slices). Once no remaining window reaches a slice,
that slice is final: its argmax goes into the uint8 label map, and (when asked) its softmax
probabilities into a float16/uint8 map. Window positions, the Gaussian importance map and the
padding of small images are MONAI's own, so the labels match MONAI's argmax up to float rounding.

The blend ``sum_w g_w * p_w`` is not divided by the count map for labels: the per-voxel weight sum
is positive, so the argmax is the same. Probabilities are divided (and softmaxed) slice by slice.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from volseg.errors import ConfigError
from volseg.inference.core import DeviceLike, mirror_tta, resolve_device

BLEND_MODES = ("gaussian", "constant")
PROBABILITY_DTYPES = {"float16": torch.float16, "uint8": torch.uint8, "float32": torch.float32}


def _ring(start: int, stop: int, cap: int) -> Iterator[Tuple[slice, slice]]:
    """Split global slices ``[start, stop)`` into ``(ring slice, offset slice)`` pieces of a ring of ``cap``."""
    pos = start
    while pos < stop:
        r0 = pos % cap
        n = min(stop - pos, cap - r0)
        yield slice(r0, r0 + n), slice(pos - start, pos - start + n)
        pos += n


def _windows(size: Sequence[int], roi: Sequence[int], overlap: float) -> List[Tuple[slice, ...]]:
    """MONAI's window grid for a (padded) image of ``size``, sorted by start on the last axis."""
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    nd = len(size)
    scan = _get_scan_interval(size, roi, nd, [float(overlap)] * nd)
    slices = dense_patch_slices(size, roi, scan)
    return sorted(slices, key=lambda s: s[-1].start)


def plan_windows(size: Sequence[int], roi: Sequence[int], overlap: float = 0.25,
                 sw_batch_size: int = 4) -> Tuple[List[List[Tuple[slice, ...]]], int]:
    """Batches of MONAI's windows over an image of ``size`` (padded to at least ``roi``), in order of
    their start on the last axis, and the ring depth (slices along that axis) the blend needs: it
    depends on ``roi``, ``overlap`` and ``sw_batch_size``, not on the image's length."""
    wins = _windows(size, roi, overlap)
    batches = [wins[i:i + sw_batch_size] for i in range(0, len(wins), sw_batch_size)]
    depth = max(max(w[-1].stop for w in b) - b[0][-1].start for b in batches)
    return batches, depth


def count_windows(image_shape: Sequence[int], roi_size: Sequence[int], spatial_dims: Optional[int] = None,
                  overlap: float = 0.25) -> int:
    """How many windows :func:`sliding_window_segment` runs over an image of spatial ``image_shape``."""
    roi = [int(r) for r in roi_size]
    if spatial_dims == 2 and len(image_shape) == 3:
        roi = (roi[:2] if len(roi) >= 2 else roi * 2) + [1]
    size = [max(r, int(s)) for r, s in zip(roi, image_shape)]
    return len(_windows(size, roi, overlap))


def _slice_network(network: Callable) -> Callable:
    """A 2D network as a 3D one over ``(N, C, X, Y, 1)`` windows (one axial slice each)."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        return network(x[..., 0])[..., None]

    return forward


def sliding_window_segment(
    image: torch.Tensor,
    network: Callable,
    roi_size: Sequence[int],
    spatial_dims: Optional[int] = None,
    overlap: float = 0.25,
    sw_batch_size: int = 4,
    device: DeviceLike = "cpu",
    sw_device: DeviceLike = None,
    tta: bool = False,
    amp: bool = True,
    probabilities: Optional[str] = None,
    progress: bool = False,
    mode: str = "gaussian",
    sigma_scale: Union[float, Sequence[float]] = 0.125,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Labels ``(1, X, Y[, Z])`` uint8 (and optionally probabilities ``(L, X, Y[, Z])``) for an image
    ``(C, X, Y[, Z])``, by blended sliding windows (Gaussian by default) in memory bounded by a few slabs.

    ``network`` maps ``(N, C, *roi)`` to logits ``(N, L, *roi)``; a 2D network over a 3D image
    (``spatial_dims=2``) runs slice by slice along the last axis. Windows run on ``sw_device``
    (default ``device``), where the slab buffer also lives; the outputs are written to ``device``.
    ``tta`` averages all mirrorings, ``amp`` is float16 autocast on CUDA. ``probabilities``:
    ``None``, ``"float16"``, ``"float32"`` or ``"uint8"`` (p x 255, rounded) softmax maps. A
    MetaTensor input gives MetaTensor outputs with its affine, meta and applied_operations.
    ``mode``/``sigma_scale``: MONAI's blending (``"gaussian"`` or ``"constant"``).
    """
    from tqdm.auto import tqdm

    if probabilities is not None and probabilities not in PROBABILITY_DTYPES:
        raise ConfigError(f"unknown probability dtype {probabilities!r}; choose one of {', '.join(PROBABILITY_DTYPES)}")
    image_dims = image.ndim - 1
    spatial_dims = image_dims if spatial_dims is None else int(spatial_dims)
    roi = [int(r) for r in roi_size]
    fn = mirror_tta(network, spatial_dims) if tta else network
    if spatial_dims == 2 and image_dims == 3:
        roi = (roi[:2] if len(roi) >= 2 else roi * 2) + [1]
        fn = _slice_network(fn)
    elif spatial_dims != image_dims:
        raise ConfigError(f"a {spatial_dims}D network cannot be applied to a {image_dims}D image")
    if len(roi) != image_dims:
        raise ConfigError(f"roi_size {list(roi_size)} must have {spatial_dims} values for a {spatial_dims}D network")
    device = resolve_device(device)
    sw_device = device if sw_device is None else resolve_device(sw_device)
    use_amp = bool(amp) and sw_device.type == "cuda"

    raw = image.as_subclass(torch.Tensor) if hasattr(image, "applied_operations") else image
    size = list(raw.shape[1:])
    pads = [(max(r - s, 0) // 2, max(r - s, 0) - max(r - s, 0) // 2) for r, s in zip(roi, size)]
    if any(a or b for a, b in pads):  # MONAI pads images smaller than the ROI with zeros, then crops back
        raw = F.pad(raw, [p for a, b in reversed(pads) for p in (a, b)], mode="constant", value=0.0)
    padded = list(raw.shape[1:])
    batches, cap = plan_windows(padded, roi, overlap, int(sw_batch_size))

    from monai.data.utils import compute_importance_map

    if str(mode) not in BLEND_MODES:
        raise ConfigError(f"unknown blend mode {mode!r}; choose one of {', '.join(BLEND_MODES)}")
    weight = compute_importance_map(tuple(roi), mode=str(mode), sigma_scale=sigma_scale, device=sw_device)
    crop = tuple(slice(a, a + s) for (a, _), s in zip(pads[:-1], size[:-1]))
    z_lo, z_n = pads[-1][0], size[-1]
    labels: Optional[torch.Tensor] = None
    probs: Optional[torch.Tensor] = None
    acc: Optional[torch.Tensor] = None
    count: Optional[torch.Tensor] = None
    done = 0  # padded slices [0, done) are final and written out

    def flush(front: int) -> None:
        """Write out the padded slices ``[done, front)`` and clear their ring slots."""
        nonlocal done, labels, probs
        if labels is None:
            dtype = torch.uint8 if acc.shape[0] <= 256 else torch.int16
            labels = torch.empty((1, *size), dtype=dtype, device=device)
        for rs, off in _ring(done, front, cap):
            z0 = done + off.start - z_lo
            z1 = z0 + (rs.stop - rs.start)
            a, b = max(z0, 0), min(z1, z_n)
            if a < b:
                part = acc[(slice(None), *crop, slice(rs.start + a - z0, rs.start + b - z0))]
                labels[..., a:b] = part.max(dim=0).indices.to(device=device, dtype=labels.dtype)[None]
                if probabilities is not None:
                    c = count[(slice(None), *crop, slice(rs.start + a - z0, rs.start + b - z0))]
                    p = torch.softmax(part / c, dim=0)
                    if probabilities == "uint8":
                        p = torch.round(p * 255.0)
                    if probs is None:
                        probs = torch.empty((acc.shape[0], *size), dtype=PROBABILITY_DTYPES[probabilities],
                                            device=device)
                    probs[..., a:b] = p.to(device=device, dtype=probs.dtype)
            acc[..., rs] = 0
            if count is not None:
                count[..., rs] = 0
        done = front

    bar = tqdm(total=sum(len(b) for b in batches), desc="windows", unit="win", disable=not progress, leave=False)
    with torch.no_grad():
        for batch in batches:
            front = batch[0][-1].start
            if acc is not None and max(w[-1].stop for w in batch) - done > cap:
                flush(front)
            x = torch.stack([raw[(slice(None), *w)] for w in batch]).to(sw_device)
            with torch.autocast(device_type=sw_device.type, dtype=torch.float16, enabled=use_amp):
                out = fn(x)
            if out.shape[2:] != x.shape[2:]:
                raise ConfigError(f"the network returned windows of {tuple(out.shape[2:])} for input windows of "
                                  f"{tuple(x.shape[2:])}")
            out = out.float()
            if acc is None:
                acc = torch.zeros((out.shape[1], *padded[:-1], cap), dtype=torch.float32, device=sw_device)
                if probabilities is not None:
                    count = torch.zeros((1, *padded[:-1], cap), dtype=torch.float32, device=sw_device)
            for w, o in zip(batch, out):
                for rs, off in _ring(w[-1].start, w[-1].stop, cap):
                    region = (slice(None), *w[:-1], rs)
                    acc[region].addcmul_(o[..., off], weight[..., off])
                    if count is not None:
                        count[region] += weight[..., off]
            bar.update(len(batch))
        flush(padded[-1])
    bar.close()
    return _with_meta(labels, image), (None if probs is None else _with_meta(probs, image))


def _with_meta(out: torch.Tensor, image: Any) -> torch.Tensor:
    """``out`` as a MetaTensor with ``image``'s affine, meta and applied_operations (if it has them)."""
    if not hasattr(image, "applied_operations"):
        return out
    from monai.data import MetaTensor

    res = MetaTensor(out, affine=image.affine, meta={k: v for k, v in image.meta.items() if k != "affine"})
    res.applied_operations = list(image.applied_operations)
    return res
