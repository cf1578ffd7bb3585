"""Predictions from the model grid back onto the source grid, as MONAI's ``Invertd`` does it, per axis.

The usual preprocessing (orientation, spacing, crops, pads, flips, resizes) moves every axis on
its own: the inverse is an axis permutation plus, per axis, a 1D linear map (interpolation
weights, zero fill where a crop is undone, index shifts). :func:`inverse_axis_maps` replays a
MetaTensor's ``applied_operations`` backwards the way each MONAI transform's ``inverse`` does
(grid_sample's ``border``/``zeros`` padding, ``interpolate``'s pixel centres, nearest rounding)
and returns one sparse map per source axis. Applying them (:func:`resample_axis`) gives MONAI's
inverted values to float32 rounding without a sampling grid of the source volume, and lets
:mod:`volseg.inference.engine` turn model-grid slabs into source-grid slabs as they are produced.

Anything else (rotations, ``align_corners=True``, spline orders, a transform not listed here)
returns ``None`` with the reason in the debug log, and the caller runs MONAI's own ``Invertd``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

_TOL = 1e-4


class Unsupported(Exception):
    """The applied operations are not a separable chain volseg can invert itself."""


@dataclass
class AxisMap:
    """Source axis ``source_axis`` takes values from model axis ``model_axis``: source index ``i``
    is ``sum_k weight[i, k] * model[index[i, k]]`` (rows of zero weight are 0)."""

    source_axis: int
    model_axis: int
    index: np.ndarray  # (n_source, K) int64
    weight: np.ndarray  # (n_source, K) float64

    @property
    def is_gather(self) -> bool:
        """One model voxel per source voxel with weight 1 (or none): nearest neighbour."""
        return self.index.shape[1] == 1 and bool(np.all((self.weight == 0) | (self.weight == 1)))

    def needed(self) -> np.ndarray:
        """Per source index, the largest model index it reads (-1 when it reads none)."""
        masked = np.where(self.weight != 0, self.index, -1)
        return masked.max(axis=1)


def _translate(offsets: Sequence[float]) -> np.ndarray:
    t = np.eye(len(offsets) + 1)
    t[:-1, -1] = offsets
    return t


def _flat_ops(ops: Sequence[Any]) -> List[dict]:
    """Nested crop/pad records (``CropForeground``'s ``pad_info``, ``ResizeWithPadOrCrop``'s
    ``crop_info``/``pad_info``) as a flat list in the order they were applied."""
    out: List[dict] = []
    for op in ops:
        if not isinstance(op, dict):
            raise Unsupported(f"applied operation of type {type(op).__name__}")
        extra = dict(op.get("extra_info") or {})
        crop_info, pad_info = extra.pop("crop_info", None), extra.pop("pad_info", None)
        if crop_info is not None:
            out += _flat_ops([crop_info])
        elif "cropped" in extra:
            out.append({**op, "extra_info": extra})
        elif pad_info is None:
            out.append(op)
        if pad_info is not None:
            out += _flat_ops([pad_info])
    return out


class _Walk:
    """State of the backward replay: current grid (shape, affine) and, per current axis, the model
    axis it comes from and the dense map ``(n_current, n_model)`` from model values to it."""

    def __init__(self, shape: Sequence[int], affine: np.ndarray, nearest: bool):
        self.shape = [int(s) for s in shape]
        self.affine = np.asarray(affine, dtype=np.float64)
        self.nearest = nearest
        self.axes = list(range(len(self.shape)))
        self.maps = [np.eye(n) for n in self.shape]

    def crop(self, before: Sequence[int], after: Sequence[int]) -> None:  # undo a pad
        for a, (b, e) in enumerate(zip(before, after)):
            n = self.shape[a]
            self.maps[a] = self.maps[a][b:n - e]
            self.shape[a] = n - b - e
        self.affine = self.affine @ _translate(before)

    def pad(self, before: Sequence[int], after: Sequence[int]) -> None:  # undo a crop: zeros
        for a, (b, e) in enumerate(zip(before, after)):
            m = np.zeros((self.shape[a] + b + e, self.maps[a].shape[1]))
            m[b:b + self.shape[a]] = self.maps[a]
            self.maps[a] = m
            self.shape[a] += b + e
        self.affine = self.affine @ _translate([-b for b in before])

    def flip(self, axes: Sequence[int]) -> None:
        for a in axes:
            self.maps[a] = self.maps[a][::-1]
            f = np.eye(len(self.shape) + 1)
            f[a, a], f[a, -1] = -1.0, self.shape[a] - 1
            self.affine = self.affine @ f

    def permute(self, new_affine: np.ndarray, new_shape: Sequence[int]) -> None:
        """Undo an orientation change: the new grid is a signed permutation of the current one."""
        x = np.linalg.solve(self.affine, new_affine)  # new index -> current index
        nd = len(self.shape)
        axes, maps = [], []
        for j in range(nd):
            col = x[:nd, j]
            a = int(np.argmax(np.abs(col)))
            s, t = col[a], x[a, nd]
            if abs(abs(s) - 1) > _TOL or np.abs(np.delete(col, a)).max(initial=0) > _TOL or abs(t - round(t)) > _TOL:
                raise Unsupported("orientation inverse is not an axis permutation")
            rows = np.rint(s * np.arange(new_shape[j]) + t).astype(np.int64)
            if rows.min(initial=0) < 0 or rows.max(initial=0) >= self.shape[a]:
                raise Unsupported("orientation inverse leaves the grid")
            axes.append(self.axes[a])
            maps.append(self.maps[a][rows])
        self.axes, self.maps = axes, maps
        self.shape = [int(s) for s in new_shape]
        self.affine = np.asarray(new_affine, dtype=np.float64)

    def resample(self, new_affine: np.ndarray, new_shape: Sequence[int], mode: str, padding_mode: str) -> None:
        """Undo a resampling (MONAI ``SpatialResample``: grid_sample, align_corners=False)."""
        x = np.linalg.solve(self.affine, np.asarray(new_affine, dtype=np.float64))
        nd = len(self.shape)
        rot = x[:nd, :nd]
        if np.abs(rot - np.diag(np.diag(rot))).max() > _TOL * max(np.abs(rot).max(), 1.0):
            raise Unsupported("resampling inverse is not axis-aligned (rotation or shear)")
        for a in range(nd):
            pos = rot[a, a] * np.arange(new_shape[a]) + x[a, nd]
            self.maps[a] = _sample_matrix(pos, self.shape[a], mode, padding_mode) @ self.maps[a]
        self.shape = [int(s) for s in new_shape]
        self.affine = np.asarray(new_affine, dtype=np.float64)

    def resize(self, new_shape: Sequence[int], mode: str) -> None:
        """Undo a ``Resize`` (``torch.nn.functional.interpolate``, align_corners=False)."""
        from monai.transforms.utils import scale_affine

        nd = len(self.shape)
        for a in range(nd):
            self.maps[a] = _interpolate_matrix(new_shape[a], self.shape[a], mode) @ self.maps[a]
        back = np.asarray(scale_affine(tuple(new_shape), tuple(self.shape)), dtype=np.float64)
        self.affine = self.affine @ np.linalg.inv(back)
        self.shape = [int(s) for s in new_shape]


def _sample_matrix(pos: np.ndarray, n: int, mode: str, padding_mode: str) -> np.ndarray:
    """Rows: grid_sample of a 1D signal of length ``n`` at voxel positions ``pos`` (align_corners=False)."""
    out = np.zeros((len(pos), n))
    rows = np.arange(len(pos))
    if padding_mode == "border":
        pos = np.clip(pos, 0, n - 1)
    elif padding_mode != "zeros":
        raise Unsupported(f"padding_mode {padding_mode!r}")
    if mode == "nearest":
        k = np.rint(pos).astype(np.int64)  # half to even, as grid_sample's nearbyint
        ok = (k >= 0) & (k < n)
        out[rows[ok], k[ok]] = 1.0
        return out
    if mode not in ("bilinear", "linear", "trilinear"):
        raise Unsupported(f"interpolation mode {mode!r}")
    k0 = np.floor(pos).astype(np.int64)
    f = pos - k0
    for k, w in ((k0, 1.0 - f), (k0 + 1, f)):
        ok = (k >= 0) & (k < n) & (w != 0)
        np.add.at(out, (rows[ok], k[ok]), w[ok])
    return out


def _interpolate_matrix(n_out: int, n_in: int, mode: str) -> np.ndarray:
    """Rows: ``F.interpolate`` of a 1D signal from ``n_in`` to ``n_out`` samples (align_corners=False)."""
    out = np.zeros((n_out, n_in))
    i = np.arange(n_out)
    scale = np.float32(n_in) / np.float32(n_out)
    if mode == "nearest":
        out[i, np.minimum(np.floor(i * scale).astype(np.int64), n_in - 1)] = 1.0
    elif mode == "nearest-exact":
        out[i, np.minimum(np.floor((i + 0.5) * scale).astype(np.int64), n_in - 1)] = 1.0
    elif mode in ("linear", "bilinear", "trilinear"):
        src = np.maximum(scale * (i + 0.5) - 0.5, 0.0)
        k0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        k1 = np.minimum(k0 + 1, n_in - 1)
        f = src - k0
        np.add.at(out, (i, k0), 1.0 - f)
        np.add.at(out, (i, k1), f)
    elif mode == "area":  # adaptive average pooling: the mean of input samples [floor(i*in/out), ceil((i+1)*in/out))
        for row in i:
            lo, hi = (row * n_in) // n_out, -(-((row + 1) * n_in) // n_out)
            out[row, lo:hi] = 1.0 / (hi - lo)
    else:
        raise Unsupported(f"resize mode {mode!r}")
    return out


def _axes(value: Any, nd: int) -> List[int]:
    if value is None:
        return list(range(nd))
    vals = [value] if isinstance(value, (int, np.integer)) else list(value)
    return [int(v) % nd for v in vals]


def _mode(extra: dict, nearest: bool) -> str:
    if nearest:
        return "nearest"
    mode = extra.get("mode")
    mode = getattr(mode, "value", mode)
    if isinstance(mode, (list, tuple)):
        mode = mode[0]
    if isinstance(mode, (int, np.integer)):
        raise Unsupported(f"spline interpolation order {mode}")
    return str(mode)


def _align_corners(extra: dict) -> bool:
    value = extra.get("align_corners")
    return value is True or (isinstance(value, (list, tuple)) and any(v is True for v in value))


def _replay(walk: _Walk, op: dict) -> None:
    name = str(op.get("class", ""))
    extra = op.get("extra_info") or {}
    orig = [int(s) for s in op.get("orig_size", walk.shape)]
    nd = len(walk.shape)
    if op.get("do_transforms") is False:
        raise Unsupported(f"{name} recorded as not applied")
    if "padded" in extra:
        padded = [tuple(int(v) for v in p) for p in extra["padded"]][-nd:]
        walk.crop([p[0] for p in padded], [p[1] for p in padded])
    elif "cropped" in extra:
        c = [int(v) for v in extra["cropped"]]
        walk.pad(c[0::2], c[1::2])
    elif "axes" in extra and "k" not in extra and name in ("Flip", "Flipd"):
        walk.flip(_axes(extra.get("axes"), nd))
    elif "original_affine" in extra:
        walk.permute(np.asarray(extra["original_affine"], dtype=np.float64), orig)
    elif "src_affine" in extra:
        if _align_corners(extra):
            raise Unsupported("align_corners=True")
        pad = str(getattr(extra.get("padding_mode"), "value", extra.get("padding_mode")) or "border")
        walk.resample(np.asarray(torch.as_tensor(extra["src_affine"]), dtype=np.float64), orig,
                      _mode(extra, walk.nearest), pad)
    elif "new_dim" in extra:
        if _align_corners(extra) or int(extra.get("new_dim") or 0):
            raise Unsupported("resize with align_corners=True or added dimensions")
        walk.resize(orig, _mode(extra, walk.nearest))
    else:
        raise Unsupported(f"no separable inverse for {name or 'an unnamed transform'}")
    if [int(s) for s in walk.shape] != orig:
        raise Unsupported(f"{name}: replayed grid {walk.shape} is not the recorded {orig}")


def inverse_axis_maps(applied_operations: Sequence[Any], model_affine: Any, model_shape: Sequence[int],
                      source_affine: Any, source_shape: Sequence[int], nearest: bool = False) -> Optional[List[AxisMap]]:
    """One :class:`AxisMap` per source axis that maps values on the model grid (``model_affine``,
    ``model_shape``; the MetaTensor after preprocessing) back onto the source grid the way MONAI's
    ``Invertd`` would (``nearest``: its ``nearest_interp=True``), or ``None`` when the chain is not
    separable or does not end on the source grid (the reason goes to the debug log)."""
    try:
        walk = _Walk(model_shape, np.asarray(torch.as_tensor(model_affine), dtype=np.float64), nearest)
        for op in reversed(_flat_ops(list(applied_operations))):
            _replay(walk, op)
        src = np.asarray(torch.as_tensor(source_affine), dtype=np.float64)
        if [int(s) for s in source_shape] != walk.shape:
            raise Unsupported(f"inverted grid {walk.shape} is not the source grid {list(source_shape)}")
        scale = max(np.abs(src[:-1, :-1]).max(), 1.0)
        if np.abs(walk.affine - src).max() > 1e-3 * scale:
            raise Unsupported("inverted affine differs from the source affine")
    except Unsupported as exc:
        log.debug("volseg inverts with MONAI's Invertd: %s", exc)
        return None
    return [_sparse(j, walk.axes[j], m) for j, m in enumerate(walk.maps)]


def _sparse(source_axis: int, model_axis: int, m: np.ndarray) -> AxisMap:
    nz = m != 0
    k = max(int(nz.sum(axis=1).max(initial=0)), 1)
    index = np.zeros((m.shape[0], k), dtype=np.int64)
    weight = np.zeros((m.shape[0], k), dtype=np.float64)
    for i in range(m.shape[0]):
        cols = np.flatnonzero(nz[i])
        index[i, :len(cols)] = cols
        weight[i, :len(cols)] = m[i, cols]
    return AxisMap(source_axis, model_axis, index, weight)


def resample_axis(x: torch.Tensor, axis: int, amap: AxisMap) -> torch.Tensor:
    """``x`` with dimension ``axis`` (model axis ``amap.model_axis``'s values) replaced by the source
    axis ``amap.source_axis``: an interpolating gather. Integer inputs need a gather map (nearest)."""
    idx = torch.from_numpy(amap.index).to(x.device)
    shape = [1] * x.ndim
    shape[axis] = -1
    if amap.is_gather:
        out = x.index_select(axis, idx[:, 0])
        valid = torch.from_numpy(amap.weight[:, 0] != 0).to(x.device)
        if not bool(valid.all()):
            out = out * valid.view(shape).to(out.dtype)
        return out
    out = None
    for k in range(idx.shape[1]):
        w = torch.from_numpy(amap.weight[:, k]).to(device=x.device, dtype=x.dtype).view(shape)
        term = x.index_select(axis, idx[:, k]) * w
        out = term if out is None else out.add_(term)
    return out


def resample_to_source(x: torch.Tensor, maps: Sequence[AxisMap]) -> torch.Tensor:
    """``x`` ``(C, *model)`` on the source grid ``(C, *source)`` through all axis maps at once."""
    by_model = {m.model_axis: m for m in maps}
    for p in sorted(by_model, key=lambda p: by_model[p].index.shape[0] / max(x.shape[1 + p], 1)):
        x = resample_axis(x, 1 + p, by_model[p])
    return x.permute(0, *[1 + m.model_axis for m in maps])


def tie_voxels(model_affine: Any, source_affine: Any, shape: Sequence[int], tol: float = 1e-4) -> np.ndarray:
    """Bool ``shape``: source voxels exactly half-way (within ``tol`` voxel) between two model voxels
    along some axis. There nearest neighbour has two right answers; MONAI's float32 sampling grid
    and this module's exact index arithmetic may pick different ones, and nowhere else differ."""
    m = np.linalg.solve(np.asarray(torch.as_tensor(model_affine), dtype=np.float64),
                        np.asarray(torch.as_tensor(source_affine), dtype=np.float64))
    nd = len(shape)
    tie = np.zeros(tuple(shape), bool)
    for j, n in enumerate(shape):
        p = int(np.argmax(np.abs(m[:nd, j])))
        pos = m[p, j] * np.arange(n) + m[p, nd]
        tie |= (np.abs(pos - np.floor(pos) - 0.5) < tol).reshape([-1 if i == j else 1 for i in range(nd)])
    return tie
