"""Checks every reader runs: the size a header claims (before allocating), geometry sanity and
non-finite voxels. Each failure is a one-line ``InputError`` naming the file."""
from __future__ import annotations

import logging
import os
from typing import Optional, Sequence, Union

import numpy as np

from volseg.errors import ConfigError, InputError

log = logging.getLogger("volseg.io")
PathLike = Union[str, "os.PathLike[str]"]

DEFAULT_MAX_VOXELS = 2**31  # 8 GiB as float32; override with max_voxels= or VOLSEG_MAX_VOXELS
MAX_VOXELS_ENV = "VOLSEG_MAX_VOXELS"
# the most a deflate stream (gzip, zlib: .nii.gz, compressed NRRD/MHA, PNG) can expand: 1032:1
DEFLATE_MAX_RATIO = 1032
NONFINITE_CHOICES = ("error", "keep")


def max_voxels(value: Optional[int] = None) -> int:
    """The voxel limit: ``value``, else ``$VOLSEG_MAX_VOXELS``, else :data:`DEFAULT_MAX_VOXELS` (2**31)."""
    if value is None:
        env = os.environ.get(MAX_VOXELS_ENV, "").strip()
        if not env:
            return DEFAULT_MAX_VOXELS
        try:
            value = int(float(env))
        except ValueError:
            raise ConfigError(f"{MAX_VOXELS_ENV}={env!r} is not a number of voxels") from None
    if value <= 0:
        raise ConfigError(f"the voxel limit must be positive, got {value}")
    return int(value)


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} TB"


def check_claim(shape: Sequence[int], itemsize: int, where: PathLike, limit: Optional[int] = None,
                available: Optional[int] = None, encoding: Optional[str] = None, what: str = "") -> None:
    """Refuse a header whose claimed size cannot be real, before anything is allocated.

    ``shape``: voxels per axis (channels/frames included); ``itemsize``: bytes per value as stored;
    ``available``: bytes of pixel data in the file(s); ``encoding``: ``None``/``"raw"`` (uncompressed),
    ``"deflate"`` (gzip/zlib, at most 1032:1), ``"text"`` (at least 1 byte per value) or
    ``"unbounded"`` (bzip2, JPEG 2000...: only the voxel limit applies).
    """
    dims = [int(s) for s in shape]
    desc = f"{' x '.join(str(d) for d in dims)}{' ' + what if what else ''}"
    if any(d <= 0 for d in dims):
        raise InputError(f"header claims an empty or negative image size {desc}", where)
    n = int(np.prod(np.asarray(dims, dtype=object)))
    lim = max_voxels(limit)
    if n > lim:
        raise InputError(f"header claims {desc} = {n:,} voxels, more than the limit of {lim:,} "
                         f"(set {MAX_VOXELS_ENV} to raise it)", where)
    if available is None or encoding == "unbounded":
        return
    need = n * int(itemsize)
    if encoding in (None, "raw"):
        most = available
    elif encoding == "deflate":
        most = available * DEFLATE_MAX_RATIO
    elif encoding == "text":
        need, most = n, available
    else:
        return
    if need > most:
        held = f"the file holds only {_size(available)}" if encoding in (None, "raw", "text") else (
            f"{_size(available)} of compressed data expand to at most {_size(most)}")
        raise InputError(f"header claims {desc} ({_size(need)}) but {held}: truncated or corrupt file", where)


def affine_problem(affine: np.ndarray, ndim: int = 3) -> Optional[str]:
    """Why a voxel-to-world affine cannot be used (non-finite, zero spacing, singular), or ``None``.

    ``ndim``: the number of spatial axes whose columns must be valid (2 for a 2D image).
    """
    a = np.asarray(affine, dtype=np.float64)
    k = min(ndim, a.shape[0] - 1)
    m = a[: a.shape[0] - 1, :k]
    if not np.all(np.isfinite(a[: a.shape[0] - 1])):
        return "non-finite (NaN/Inf) values"
    if not np.any(a[: a.shape[0] - 1, : a.shape[0] - 1]):
        return "all zeros"
    norms = np.linalg.norm(m, axis=0)
    if np.any(norms <= 0):
        return f"zero voxel size along axis {int(np.argmin(norms))}"
    sv = np.linalg.svd(m / norms, compute_uv=False)
    if sv[-1] < 1e-6:
        return "singular (axes are parallel)"
    return None


def check_affine(affine: np.ndarray, where: PathLike, ndim: int = 3, what: str = "affine") -> None:
    """Raise ``InputError`` if :func:`affine_problem` finds one."""
    why = affine_problem(affine, ndim)
    if why is not None:
        raise InputError(f"invalid {what}: {why}", where)


def check_spacing(spacing: Sequence[float], where: PathLike, what: str = "voxel spacing") -> None:
    """Spacings must be finite and > 0 (mm)."""
    sp = np.asarray([float(s) for s in spacing], dtype=np.float64)
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise InputError(f"invalid {what} {[float(s) for s in sp]} (must be finite and > 0 mm)", where)


def count_nonfinite(arr: np.ndarray) -> int:
    """Number of NaN/Inf values (0 fast when there are none; no full-size temporary)."""
    if arr.dtype.kind not in "fc" or arr.size == 0:
        return 0
    if np.isfinite(np.add.reduce(arr, axis=None, dtype=np.float64)):
        return 0
    flat = arr.reshape(-1)
    step = 1 << 22
    return int(sum(np.count_nonzero(~np.isfinite(flat[i:i + step])) for i in range(0, flat.size, step)))


def apply_nonfinite(arr: np.ndarray, where: PathLike, policy: Union[str, float] = "error") -> np.ndarray:
    """Apply the non-finite voxel policy to ``arr`` (modified in place when replacing).

    ``policy``: ``"error"`` (default) raises ``InputError`` with the count ("3 NaN/Inf voxels");
    a number replaces each NaN/Inf by it and logs one warning; ``"keep"`` leaves them.
    """
    if isinstance(policy, str):
        if policy not in NONFINITE_CHOICES:
            raise ConfigError(f"unknown non-finite policy {policy!r}: use 'error', 'keep' or a number")
        if policy == "keep":
            return arr
    else:
        try:
            value = float(policy)
        except (TypeError, ValueError):
            raise ConfigError(f"unknown non-finite policy {policy!r}: use 'error', 'keep' or a number") from None
        if not np.isfinite(value):
            raise ConfigError(f"the replacement for NaN/Inf voxels must be finite, got {policy!r}")
    n = count_nonfinite(arr)
    if n == 0:
        return arr
    what = f"{n:,} NaN/Inf voxel{'s' if n != 1 else ''} of {arr.size:,}"
    if policy == "error":
        raise InputError(f"{what}; replace them with --nan-to VALUE (nonfinite=VALUE)", where)
    if not arr.flags.writeable:
        arr = arr.copy()
    np.nan_to_num(arr, copy=False, nan=value, posinf=value, neginf=value)
    log.warning("%s: replaced %s with %g", where, what, value)
    return arr
