"""Labels from the model grid back onto the source grid, nearest neighbour, in uint8.

When every preprocessing step is axis-aligned (orientation, spacing, crops, pads, flips: the
usual case), the map from source voxel indices to model voxel indices is a scaled axis
permutation, so nearest-neighbour sampling is separable: one rounded index vector per axis and a
single gather. That gives each source voxel the label of the model voxel nearest to its physical
position (mm, from the two affines), with no float32 copy and no sampling grid of the full volume
(MONAI's ``Invertd`` builds a float32 grid of 3 x the source size, ~1.9 GB for 512x512x600).
Anything else (a rotation, a shear) returns ``None`` and the caller falls back to ``Invertd``.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch


# MONAI transforms whose effect on the grid is fully described by the affine they update (no
# interpolation convention of their own): the fast path is taken only when all applied ones are here
AXIS_ALIGNED = frozenset({
    "Orientation", "Orientationd", "Spacing", "Spacingd", "CropForeground", "CropForegroundd", "SpatialPad",
    "SpatialPadd", "BorderPad", "BorderPadd", "DivisiblePad", "DivisiblePadd", "SpatialCrop", "SpatialCropd",
    "CenterSpatialCrop", "CenterSpatialCropd", "ResizeWithPadOrCrop", "ResizeWithPadOrCropd", "Flip", "Flipd",
    "Identity", "Identityd", "EnsureType", "EnsureTyped", "SpatialResample",
})


def only_axis_aligned(applied_operations: Sequence[Any]) -> bool:
    """True when every entry of a MetaTensor's ``applied_operations`` is one of :data:`AXIS_ALIGNED`."""
    for op in applied_operations:
        if not isinstance(op, dict) or str(op.get("class", "")) not in AXIS_ALIGNED:
            return False
        if bool((op.get("extra_info") or {}).get("align_corners", False)):
            return False  # Spacing(align_corners=True) samples its own way: leave it to Invertd
    return True


def axis_map(model_affine: Any, source_affine: Any, tol: float = 1e-5) -> Optional[np.ndarray]:
    """``M = inv(model_affine) @ source_affine`` (source index -> model index) when its 3x3 part
    has exactly one non-zero per row and column (a scaled axis permutation), else ``None``."""
    m = np.linalg.solve(np.asarray(model_affine, dtype=np.float64), np.asarray(source_affine, dtype=np.float64))
    rot = m[:-1, :-1]
    scale = np.abs(rot).max()
    big = np.abs(rot) > tol * scale
    if not (big.sum(0) == 1).all() or not (big.sum(1) == 1).all():
        return None
    return m


def resample_labels_nearest(labels: Any, model_affine: Any, source_affine: Any,
                            source_shape: Sequence[int]) -> Optional[torch.Tensor]:
    """Labels ``(1, *source_shape)`` (dtype kept) from ``labels`` ``(1, *model_shape)`` on the grid of
    ``model_affine``, by nearest neighbour in world space; source voxels outside the model grid get
    0. ``None`` when the grids are not related by a scaled axis permutation."""
    m = axis_map(model_affine, source_affine)
    if m is None:
        return None
    lab = torch.as_tensor(labels).detach().cpu()
    lab = lab.as_subclass(torch.Tensor)[0]
    nd = lab.ndim
    index, valid, order = [], [], []
    for j, n in enumerate(source_shape):
        p = int(np.argmax(np.abs(m[:nd, j])))
        pos = m[p, j] * np.arange(n, dtype=np.float64) + m[p, nd]
        k = np.rint(pos).astype(np.int64)  # half to even, as grid_sample's nearest
        ok = (k >= 0) & (k < lab.shape[p])
        index.append(torch.from_numpy(np.clip(k, 0, lab.shape[p] - 1)))
        valid.append(torch.from_numpy(ok))
        order.append(p)
    src = lab.permute(*order)  # model axes in the order of the source axes they feed
    out = _gather(src, index)
    inside = valid[0].view(-1, *([1] * (nd - 1)))
    for j in range(1, nd):
        inside = inside & valid[j].view(*([1] * j), -1, *([1] * (nd - 1 - j)))
    out.mul_(inside.to(out.dtype))
    return out[None]


def _gather(src: torch.Tensor, index: Sequence[torch.Tensor]) -> torch.Tensor:
    """``src[i0][:, i1][:, :, i2]...``: an outer-product gather, one axis at a time (no index grid)."""
    out = src
    for axis, idx in enumerate(index):
        out = out.index_select(axis, idx)
    return out.contiguous()


def tie_voxels(model_affine: Any, source_affine: Any, shape: Sequence[int], tol: float = 1e-4) -> np.ndarray:
    """Bool ``shape``: source voxels exactly half-way (within ``tol`` voxel) between two model voxels
    along some axis. There nearest neighbour has two right answers; MONAI's float32 sampling grid
    and this module's exact index arithmetic may pick different ones, and nowhere else differ."""
    m = axis_map(model_affine, source_affine)
    if m is None:
        raise ValueError("the grids are not related by a scaled axis permutation")
    nd = len(shape)
    tie = np.zeros(tuple(shape), bool)
    for j, n in enumerate(shape):
        p = int(np.argmax(np.abs(m[:nd, j])))
        pos = m[p, j] * np.arange(n) + m[p, nd]
        tie |= (np.abs(pos - np.floor(pos) - 0.5) < tol).reshape([-1 if i == j else 1 for i in range(nd)])
    return tie
