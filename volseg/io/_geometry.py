"""Geometry helpers: RAS/LPS affines, ITK direction/spacing/origin, MetaTensor construction."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def affine_from_itk(direction: Sequence[float], spacing: Sequence[float], origin: Sequence[float]) -> np.ndarray:
    """RAS+ 4x4 affine (mm) from an ITK/LPS direction (row-major 3x3), spacing (mm) and origin (mm)."""
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = d @ np.diag(np.asarray(spacing, dtype=np.float64))
    lps[:3, 3] = np.asarray(origin, dtype=np.float64)
    return LPS_TO_RAS @ lps


def itk_from_affine(affine: np.ndarray) -> Tuple[Tuple[float, ...], Tuple[float, ...], Tuple[float, ...]]:
    """``(direction row-major 9, spacing 3, origin 3)`` in ITK's LPS convention from a RAS+ affine."""
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
    m = lps[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    direction = m / spacing
    return tuple(direction.ravel().tolist()), tuple(spacing.tolist()), tuple(lps[:3, 3].tolist())


def spacing_of(affine: np.ndarray) -> Tuple[float, ...]:
    """Voxel size in mm along each index axis of a 4x4 affine."""
    a = np.asarray(affine, dtype=np.float64)
    return tuple(float(v) for v in np.linalg.norm(a[:3, :3], axis=0))


def orientation_code(affine: np.ndarray) -> str:
    """nibabel axis code of a RAS affine, e.g. ``"LPS"``."""
    import nibabel as nib

    return "".join(nib.orientations.aff2axcodes(np.asarray(affine, dtype=np.float64)))


class RawImage:
    """A channel-first numpy image with its RAS affine and volseg meta, before any torch import.

    ``load_volume`` turns it into a ``MetaTensor``; the CLI's ``convert``/``info`` use it directly
    so they start without importing torch.
    """

    def __init__(self, array: np.ndarray, affine: np.ndarray, meta: Optional[Dict[str, Any]] = None):
        self.array = array
        self.affine = np.asarray(affine, dtype=np.float64)
        self.meta: Dict[str, Any] = {
            "space": "RAS",
            "original_affine": self.affine.copy(),
            "spatial_shape": np.asarray(array.shape[1:]),
            "modality": "",
            "original_channel_dim": 0,  # already channel-first: MONAI's EnsureChannelFirstd leaves it as is
        }
        if meta:
            self.meta.update(meta)

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def ndim(self) -> int:
        return self.array.ndim

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.array if dtype is None else self.array.astype(dtype)

    def to_metatensor(self):
        """The same image as a MONAI ``MetaTensor`` (shares memory)."""
        return make_metatensor(self.array, self.affine, self.meta)


def make_metatensor(array: np.ndarray, affine: np.ndarray, meta: Optional[Dict[str, Any]] = None):
    """Channel-first float32 ``MetaTensor`` with a RAS affine and volseg's standard meta keys."""
    import torch
    from monai.data import MetaTensor

    aff = torch.as_tensor(np.asarray(affine, dtype=np.float64))
    m: Dict[str, Any] = {
        "space": "RAS",
        "original_affine": np.asarray(affine, dtype=np.float64).copy(),
        "spatial_shape": np.asarray(array.shape[1:]),
        "modality": "",
    }
    if meta:
        m.update(meta)
    return MetaTensor(_own_contiguous(array), affine=aff, meta=m)


def _own_contiguous(arr: np.ndarray):
    """A C-contiguous, writeable tensor of ``arr``: shared when it already is one, else one copy (torch's
    threaded copy: a NIfTI's Fortran-ordered 512x512x200 in about half numpy's time)."""
    import warnings

    import torch

    if any(s < 0 for s in arr.strides) or arr.dtype.byteorder not in "=|" or arr.dtype.kind not in "biuf":
        return torch.from_numpy(np.array(arr, dtype=arr.dtype.newbyteorder("="), order="C"))
    if arr.flags.c_contiguous and arr.flags.writeable:
        return torch.from_numpy(arr)
    with warnings.catch_warnings():  # read-only source: only read here, never written
        warnings.simplefilter("ignore", UserWarning)
        src = torch.from_numpy(arr)
    return src.clone(memory_format=torch.contiguous_format)


def to_numpy(x: Any) -> np.ndarray:
    """A numpy view of a tensor / MetaTensor / array."""
    if isinstance(x, RawImage):
        return x.array
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if hasattr(x, "as_tensor"):
            x = x.as_tensor()
        return x.numpy()
    return np.asarray(x)


def affine_of(obj: Any) -> Optional[np.ndarray]:
    """The RAS affine of a MetaTensor, or of a 4x4 array-like; ``None`` if there is none."""
    aff = getattr(obj, "affine", None)
    if aff is None:
        arr = np.asarray(obj) if not hasattr(obj, "detach") else to_numpy(obj)
        if arr.shape == (4, 4):
            return arr.astype(np.float64)
        return None
    return to_numpy(aff).astype(np.float64)
