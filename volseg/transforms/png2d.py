"""Transforms of the 2D PNG workflow: ONE chain, :func:`png2d_transforms`, for training and inference.

load (``volseg.io.load_volume``: a grey PNG by :func:`volseg.io.png.read_png_gray`, or a 3D scan;
labels through the palette) -> intensity to [0, 1] (PNG: divided by the full scale of its bit
depth; CT: HU window) -> in-plane resize (labels nearest neighbour) -> median filter -> float32.
Arrays are channel-first ``(1, X, Y)`` (X = PNG column, Y = PNG row), or ``(1, X, Y, Z)`` for a
scan segmented slice by slice. Labels never get intensity transforms.
"""
from __future__ import annotations

from typing import Hashable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import Compose, InvertibleTransform, MapTransform

from volseg.errors import ConfigError, InputError

KEYS = ("image", "label")
STAGES = ("train", "val", "infer")


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


def slice_intensity(img, source_format: str = "", window: Tuple[float, float] = (-1000.0, 400.0),
                    png_max: float = 255.0):
    """Map an image to the [0, 1] range the PNG workflow trains on.

    PNG input (``source_format == "png"``) is divided by ``png_max``, the full scale of its bit
    depth (255 or 65535, ``meta["png_max"]`` from :func:`volseg.io.png.read_png_gray`); anything
    else (a CT volume) is clipped to ``window`` (HU) and scaled, exactly as
    :func:`volseg.data.png_slices.volume_to_png_slices` writes its slices.
    """
    lo, hi = float(window[0]), float(window[1])
    if hi <= lo:
        raise ConfigError(f"window {window} must be (low, high) with low < high")
    if source_format == "png":
        return img / float(png_max)
    return (img.clip(lo, hi) - lo) / (hi - lo)


class SliceIntensityd:
    """Dictionary transform around :func:`slice_intensity`; format and bit depth come from the image's meta."""

    def __init__(self, keys: Union[Hashable, Sequence[Hashable]] = "image", window: Sequence[float] = (-1000.0, 400.0)):
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        self.window = (float(window[0]), float(window[1]))

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for k in self.keys:
            meta = getattr(d[k], "meta", {}) or {}
            d[k] = slice_intensity(d[k], str(meta.get("source_format", "")), self.window,
                                   float(meta.get("png_max", 255.0)))
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


class LoadPNGLabeld(MapTransform):
    """Load label PNGs (:func:`volseg.io.png.load_png_label`, colours through ``palette``) as ``(1, X, Y)``
    class indices (a float32 MetaTensor holding integers, so MONAI spatial transforms accept it).

    With the image already loaded under ``image_key``, a label of a different size raises InputError.
    """

    def __init__(self, keys: KeysCollection = "label", palette: Optional[Mapping] = None,
                 nearest_colour: bool = False, image_key: str = "image", allow_missing_keys: bool = True):
        super().__init__(keys, allow_missing_keys)
        self.palette, self.nearest_colour, self.image_key = palette, bool(nearest_colour), image_key

    def __call__(self, data: Mapping) -> dict:
        from monai.data import MetaTensor

        from volseg.io.png import load_png_label

        d = dict(data)
        for key in self.key_iterator(d):
            path = d[key]
            lab = load_png_label(path, self.palette, self.nearest_colour)
            img = d.get(self.image_key)
            if img is not None and hasattr(img, "shape") and tuple(img.shape[1:]) != lab.shape:
                raise InputError(f"label size {lab.shape[0]}x{lab.shape[1]} differs from its image "
                                 f"({img.shape[1]}x{img.shape[2]})", path)
            meta = {"filename_or_obj": str(path), "source_format": "png", "space": "RAS",
                    "spatial_shape": np.asarray(lab.shape)}
            d[key] = MetaTensor(torch.from_numpy(lab[None].astype(np.float32)),
                                affine=torch.eye(3, dtype=torch.float64), meta=meta)
        return d


class _Compose(Compose):
    """A MONAI ``Compose`` that lets volseg's one-line errors through unwrapped."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except RuntimeError as exc:
            from volseg.bundles.config import unwrap_error

            err = unwrap_error(exc)
            if err is None:
                raise
            raise err from None


def png2d_transforms(
    stage: str = "train",
    spatial_size: Sequence[int] = (256, 256),
    median_kernel: int = 3,
    palette: Optional[Mapping] = None,
    nearest_colour: bool = False,
    window: Sequence[float] = (-1000.0, 400.0),
    augment: bool = False,
):
    """The 2D preset, the same for training, validation and inference (``lung_png2d``'s
    ``train.json`` and ``inference.json`` both call it).

    ``{"image": path or MetaTensor[, "label": path]}`` -> ``LoadVolumed`` (image) and
    :class:`LoadPNGLabeld` (label) -> :class:`SliceIntensityd` -> :class:`InPlaneResized` to
    ``spatial_size`` (image bilinear, label nearest) -> :class:`MedianFilter2dd` (``median_kernel``,
    image only) -> float32. ``stage`` is ``"train"``, ``"val"`` (never augmented) or ``"infer"``
    (image only, invertible so ``Invertd`` puts predictions back on the source grid).
    ``augment`` (train stage only) adds random flips and 90-degree rotations (labels nearest).
    """
    from monai.transforms import EnsureTyped, RandFlipd, RandRotate90d

    from volseg.transforms.load import LoadVolumed

    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; valid: {', '.join(STAGES)}")
    keys = ["image"] if stage == "infer" else list(KEYS)
    xforms: list = [LoadVolumed(keys="image")]
    if stage != "infer":
        xforms.append(LoadPNGLabeld(keys="label", palette=palette, nearest_colour=nearest_colour))
    xforms += [
        SliceIntensityd(keys="image", window=window),
        InPlaneResized(keys=keys, size=spatial_size, mode=["bilinear", "nearest"][: len(keys)]),
        MedianFilter2dd(keys="image", kernel_size=median_kernel),
    ]
    if stage == "train" and augment:
        xforms += [RandFlipd(keys=keys, prob=0.5, spatial_axis=0), RandRotate90d(keys=keys, prob=0.25)]
    xforms.append(EnsureTyped(keys=keys, dtype=torch.float32))
    return _Compose(xforms)
