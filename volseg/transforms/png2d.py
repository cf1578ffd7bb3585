"""Transforms of the 2D PNG workflow: grayscale load, resize, median filter, scale to [0, 1].

Arrays are channel-first ``(1, X, Y)`` float32 (X = PNG column, Y = PNG row), matching the rest
of volseg. Labels come from :mod:`volseg.data.png` (palette) and are only ever resized with
nearest neighbour; they never get intensity transforms.
"""
from __future__ import annotations

import os
from typing import Hashable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from monai.transforms import InvertibleTransform

from volseg.data.png import load_png_label, read_png
from volseg.errors import ConfigError, InputError

PathLike = Union[str, "os.PathLike[str]"]
KEYS = ("image", "label")


def load_png_gray(path: PathLike, scale: str = "dtype") -> np.ndarray:
    """Load a PNG as grayscale ``(X, Y)`` float32.

    8- and 16-bit single-channel PNGs keep their values; RGB(A) PNGs become luminance
    (ITU-R 601, as PIL's ``convert("L")``). ``scale="dtype"`` divides by the type's maximum
    (255 or 65535) so values lie in [0, 1]; ``"minmax"`` stretches each image to [0, 1];
    ``"none"`` keeps raw values.
    """
    arr = read_png(path)
    if arr.ndim == 3:
        rgb = arr[..., :3].astype(np.float32)
        gray = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        maxval = 255.0
    else:
        gray = arr.astype(np.float32)
        maxval = 255.0 if arr.dtype == np.uint8 else 65535.0
        if arr.dtype == np.bool_:
            maxval = 1.0
    return scale_intensity(gray, scale=scale, maxval=maxval)


def scale_intensity(img: np.ndarray, scale: str = "dtype", maxval: float = 255.0) -> np.ndarray:
    """Scale a grayscale image to [0, 1]: ``"dtype"`` (divide by ``maxval``), ``"minmax"``, ``"none"``."""
    img = np.asarray(img, dtype=np.float32)
    if scale == "dtype":
        return img / np.float32(maxval)
    if scale == "minmax":
        lo, hi = float(img.min()), float(img.max())
        return (img - lo) / np.float32(hi - lo) if hi > lo else np.zeros_like(img)
    if scale == "none":
        return img
    raise ConfigError(f"unknown PNG intensity scale {scale!r}; valid: dtype, minmax, none")


def median_filter_2d(img: np.ndarray, kernel_size: int = 3) -> np.ndarray:
    """Median filter in the (X, Y) plane, per channel: ``(C, X, Y)``, ``(C, X, Y, Z)`` (slice by slice) or ``(X, Y)``.

    ``kernel_size`` must be odd; 0 or 1 leaves the image unchanged. Edges are reflected.
    """
    if kernel_size in (0, 1):
        return img
    if kernel_size < 0 or kernel_size % 2 == 0:
        raise ConfigError(f"median filter kernel must be odd (got {kernel_size})")
    from scipy.ndimage import median_filter

    is_tensor = isinstance(img, torch.Tensor)
    arr = img.detach().cpu().numpy() if is_tensor else np.asarray(img)
    size = {2: (kernel_size,) * 2, 3: (1, kernel_size, kernel_size), 4: (1, kernel_size, kernel_size, 1)}[arr.ndim]
    out = median_filter(arr, size=size, mode="reflect")
    if is_tensor:
        res = torch.as_tensor(out)
        if hasattr(img, "applied_operations"):
            from monai.data import MetaTensor

            res = MetaTensor(res, meta=dict(img.meta), applied_operations=list(img.applied_operations))
        return res
    return out


class MedianFilter2d:
    """Array transform around :func:`median_filter_2d` for ``(C, X, Y)`` images."""

    def __init__(self, kernel_size: int = 3):
        median_filter_2d(np.zeros((1, 3, 3), np.float32), kernel_size)
        self.kernel_size = kernel_size

    def __call__(self, img):
        return median_filter_2d(img, self.kernel_size)


class MedianFilter2dd:
    """Dictionary twin of :class:`MedianFilter2d` (apply to images only, never labels)."""

    def __init__(self, keys: Union[Hashable, Sequence[Hashable]] = "image", kernel_size: int = 3):
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        self.filter = MedianFilter2d(kernel_size)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for k in self.keys:
            d[k] = self.filter(d[k])
        return d


def slice_intensity(img, source_format: str = "", window: Tuple[float, float] = (-1000.0, 400.0)):
    """Map an image to the [0, 1] range the PNG workflow trains on.

    PNG input (``source_format == "png"``) is divided by 255 (by 65535 when values exceed 255);
    anything else (a CT volume) is clipped to ``window`` (HU) and scaled, exactly as
    :func:`volseg.data.png_slices.volume_to_png_slices` writes its slices.
    """
    lo, hi = float(window[0]), float(window[1])
    if hi <= lo:
        raise ConfigError(f"window {window} must be (low, high) with low < high")
    if source_format == "png":
        top = 65535.0 if float(img.max()) > 255 else 255.0
        return img / top
    return (img.clip(lo, hi) - lo) / (hi - lo)


class SliceIntensityd:
    """Dictionary transform around :func:`slice_intensity`; the format comes from ``meta["source_format"]``."""

    def __init__(self, keys: Union[Hashable, Sequence[Hashable]] = "image", window: Sequence[float] = (-1000.0, 400.0)):
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        self.window = (float(window[0]), float(window[1]))

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for k in self.keys:
            meta = getattr(d[k], "meta", {}) or {}
            d[k] = slice_intensity(d[k], str(meta.get("source_format", "")), self.window)
        return d


class InPlaneResized(InvertibleTransform):
    """Resize the (X, Y) plane of ``(C, X, Y)`` or ``(C, X, Y, Z)`` images to ``size``, keeping Z.

    Images use ``mode`` (bilinear), labels must be listed with ``"nearest"``. Invertible, so a
    bundle's ``Invertd`` puts predictions back on the source grid.
    """

    def __init__(self, keys: Union[Hashable, Sequence[Hashable]] = "image", size: Sequence[int] = (256, 256),
                 mode: Union[str, Sequence[str]] = "bilinear"):
        from monai.transforms import Resized

        keys = [keys] if isinstance(keys, str) else list(keys)
        size2 = tuple(int(s) for s in size)
        if len(size2) != 2:
            raise ConfigError(f"in-plane size must be two numbers (got {size})")
        self.resize = {3: Resized(keys, spatial_size=size2, mode=mode),
                       4: Resized(keys, spatial_size=(*size2, -1), mode=mode)}
        self.keys = keys

    def _pick(self, data: Mapping):
        ndim = int(data[self.keys[0]].ndim)
        if ndim not in self.resize:
            raise InputError(f"expected a (C, X, Y) or (C, X, Y, Z) image, got {ndim} dimensions")
        return self.resize[ndim]

    def __call__(self, data: Mapping) -> dict:
        return dict(self._pick(data)(data))

    def inverse(self, data: Mapping) -> dict:
        return dict(self._pick(data).inverse(data))


class LoadPNGPaird:
    """Load ``{"image": path, "label": path}`` into ``(1, X, Y)`` tensors.

    The image becomes grayscale float32 scaled by ``scale`` (see :func:`load_png_gray`); the
    label becomes class indices through the palette (float32 tensor holding integers, so MONAI
    spatial transforms accept it). Images and labels of different sizes raise InputError.
    A missing ``label`` key (inference) is allowed.
    """

    def __init__(
        self,
        palette: Optional[Mapping] = None,
        nearest_colour: bool = False,
        scale: str = "dtype",
        image_key: str = "image",
        label_key: str = "label",
    ):
        self.palette = palette
        self.nearest_colour = nearest_colour
        self.scale = scale
        self.image_key, self.label_key = image_key, label_key

    def __call__(self, data: Mapping) -> dict:
        from monai.data import MetaTensor

        d = dict(data)
        img_path = d[self.image_key]
        img = load_png_gray(img_path, scale=self.scale)
        meta = {"filename_or_obj": str(img_path), "source_format": "png", "spatial_shape": img.shape, "space": "RAS"}
        d[self.image_key] = MetaTensor(torch.from_numpy(img[None]), meta=meta)
        if self.label_key in d and d[self.label_key] is not None:
            lab_path = d[self.label_key]
            lab = load_png_label(lab_path, self.palette, self.nearest_colour)
            if lab.shape != img.shape:
                raise InputError(
                    f"label size {lab.shape[0]}x{lab.shape[1]} differs from its image {img_path} "
                    f"({img.shape[0]}x{img.shape[1]})",
                    lab_path,
                )
            lmeta = dict(meta, filename_or_obj=str(lab_path))
            d[self.label_key] = MetaTensor(torch.from_numpy(lab[None].astype(np.float32)), meta=lmeta)
        return d


def _unwrap_volseg_error(exc: BaseException):
    """The VolsegError MONAI wrapped in RuntimeError("applying transform ..."), or None."""
    from volseg.errors import VolsegError

    seen = exc
    while seen is not None:
        if isinstance(seen, VolsegError):
            return seen
        seen = seen.__cause__
    return None


def _compose(transforms):
    """A MONAI ``Compose`` that lets volseg's one-line errors through unwrapped."""
    from monai.transforms import Compose

    class _Compose(Compose):
        def __call__(self, *args, **kwargs):
            try:
                return super().__call__(*args, **kwargs)
            except RuntimeError as exc:
                err = _unwrap_volseg_error(exc)
                if err is None:
                    raise
                raise err from None

    return _Compose(transforms)


def load_png_pairs(
    items: Sequence[Mapping], palette: Optional[Mapping] = None, nearest_colour: bool = False, scale: str = "dtype"
) -> list:
    """Load every ``{"image", "label"}`` pair with :class:`LoadPNGPaird`; ONE InputError lists all bad files."""
    loader = LoadPNGPaird(palette=palette, nearest_colour=nearest_colour, scale=scale)
    out, problems = [], []
    for item in items:
        try:
            out.append(loader(item))
        except InputError as exc:
            problems.append(str(exc))
    if problems:
        more = f" ... and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise InputError(f"{len(problems)} bad PNG pair(s): " + " | ".join(problems[:5]) + more)
    return out


def png2d_transforms(
    stage: str = "train",
    spatial_size: Optional[Tuple[int, int]] = (256, 256),
    median_kernel: int = 3,
    palette: Optional[Mapping] = None,
    nearest_colour: bool = False,
    scale: str = "dtype",
    augment: bool = False,
    load: bool = True,
):
    """The PNG preset: load pair -> resize (image bilinear, label nearest) -> median filter -> [0, 1].

    ``stage`` is ``"train"``, ``"val"`` (same, never augmented) or ``"infer"`` (image only).
    ``augment`` (train stage only) adds random flips and small rotations (labels nearest).
    ``spatial_size=None`` keeps the PNG size (then all PNGs must share one size to batch).
    ``load=False`` leaves out the loader, for items already loaded by :func:`load_png_pairs`.
    """
    from monai.transforms import EnsureTyped, RandFlipd, RandRotate90d, Resized

    if stage not in ("train", "val", "infer"):
        raise ConfigError(f"unknown stage {stage!r}; valid: train, val, infer")
    keys = ["image"] if stage == "infer" else ["image", "label"]
    xforms: list = [LoadPNGPaird(palette=palette, nearest_colour=nearest_colour, scale=scale)] if load else []
    if spatial_size is not None:
        size = tuple(int(s) for s in spatial_size)
        modes = ["bilinear", "nearest"][: len(keys)]
        xforms.append(Resized(keys=keys, spatial_size=size, mode=modes, align_corners=[False, None][: len(keys)]))
    xforms.append(MedianFilter2dd(keys="image", kernel_size=median_kernel))
    if stage == "train" and augment:
        xforms += [RandFlipd(keys=keys, prob=0.5, spatial_axis=0), RandRotate90d(keys=keys, prob=0.25)]
    xforms.append(EnsureTyped(keys=keys, dtype=torch.float32, track_meta=False))
    return _compose(xforms)


class SaveMaskd:
    """Save the argmax prediction ``(1, X, Y[, Z])``: 2D as a colour PNG (palette), 3D as uint8 NIfTI.

    Files go to ``output_dir/<case>_<postfix>.png`` or ``.nii.gz``, named after the image's
    ``filename_or_obj``; the 3D mask keeps the affine of the (inverted) prediction, i.e. the scan's.
    Writes are atomic. Returns the data with ``"<key>_path"`` added.
    """

    def __init__(self, keys: Union[Hashable, Sequence[Hashable]] = "pred", output_dir: PathLike = "predictions",
                 palette: Optional[Mapping] = None, postfix: str = "seg", image_key: str = "image"):
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        self.output_dir, self.palette, self.postfix, self.image_key = output_dir, palette, postfix, image_key

    def _case(self, data: Mapping, key: Hashable) -> str:
        from pathlib import Path

        for obj in (data.get(self.image_key), data.get(key)):
            name = str((getattr(obj, "meta", {}) or {}).get("filename_or_obj", "") or "")
            if name:
                base = Path(name.rstrip("/")).name
                for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".dcm"):
                    if base.lower().endswith(suffix):
                        return base[: -len(suffix)]
                return base
        return "case"

    def __call__(self, data: Mapping) -> dict:
        from pathlib import Path

        from PIL import Image

        from volseg._atomic import atomic_path
        from volseg.data.png import labels_to_rgb

        d = dict(data)
        for key in self.keys:
            pred = d[key]
            arr = (pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred))
            arr = np.rint(arr[0] if arr.ndim in (3, 4) else arr).astype(np.uint8)
            out = Path(self.output_dir) / f"{self._case(d, key)}_{self.postfix}"
            if arr.ndim == 2:
                path = out.with_name(out.name + ".png")
                with atomic_path(path) as tmp:
                    Image.fromarray(np.ascontiguousarray(labels_to_rgb(arr, self.palette).transpose(1, 0, 2))).save(
                        tmp, format="PNG")
            else:
                import nibabel as nib

                affine = np.asarray(getattr(pred, "affine", np.eye(4)), dtype=np.float64)
                path = out.with_name(out.name + ".nii.gz")
                img = nib.Nifti1Image(arr, affine)
                img.set_qform(affine, code=1)
                img.set_sform(affine, code=1)
                with atomic_path(path) as tmp:
                    nib.save(img, tmp)
            d[f"{key}_path"] = str(path)
        return d
