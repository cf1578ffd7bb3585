"""CT and MRI transform presets shared by the training bundles and the inference configs.

Images are ``(C, X, Y, Z)`` MetaTensors; CT intensities in HU, spacing in mm. Labels are
resampled with nearest neighbour only and never get intensity transforms.

Intensity normalisation (``intensity``, e.g. from ``volseg plan``; ``None`` keeps each preset's
default) is a dict with a ``mode``:

* ``{"mode": "window", "window": [lo, hi]}``: clip to ``[lo, hi]`` and scale to [0, 1], then crop
  to the voxels above ``lo`` (the CT default, with ``window = hu_window``);
* ``{"mode": "clip_zscore", "clip": [lo, hi], "mean": m, "std": s}``: crop to the voxels above
  ``lo``, clip to ``[lo, hi]``, then ``(x - m) / s`` with the dataset's foreground statistics
  (nnU-Net's CT normalisation);
* ``{"mode": "zscore", "nonzero": bool}``: crop to the non-zero region, then z-score each case and
  channel (over its non-zero voxels when ``nonzero``; the MRI default with ``nonzero: true``).
"""
from __future__ import annotations

import functools
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from volseg.errors import ConfigError

STAGES = ("train", "val", "infer")
INTENSITY_MODES = ("window", "clip_zscore", "zscore")


def _keys(stage: str, keys: Sequence[str]) -> Tuple[List[str], List[str], str, Any]:
    if stage not in STAGES:
        raise ConfigError(f"unknown transform stage {stage!r}; valid: {', '.join(STAGES)}")
    keys = [keys] if isinstance(keys, str) else list(keys)
    if not keys:
        raise ConfigError("transform keys must not be empty")
    image = keys[0]
    label = keys[1] if len(keys) > 1 and stage != "infer" else None
    all_keys = [image] + ([label] if label else [])
    return all_keys, ["bilinear"] + (["nearest"] if label else []), image, label


def _spatial(stage, all_keys, modes, axcodes, pixdim) -> list:
    import torch
    from monai.transforms import EnsureTyped, Orientationd, Spacingd

    from volseg.transforms.load import LoadVolumed

    return [
        LoadVolumed(keys=all_keys, label_keys=all_keys[1:]),
        EnsureTyped(keys=all_keys, dtype="float32", track_meta=True),
        Orientationd(keys=all_keys, axcodes=axcodes, labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        # float32 resampling: MONAI's default (float64) doubles the peak memory of a 512x512x600 CT
        Spacingd(keys=all_keys, pixdim=tuple(float(p) for p in pixdim), mode=modes, dtype=torch.float32),
    ]


def _random(stage, all_keys, image, label, roi_size, num_samples, pos, neg, augment) -> list:
    from monai.transforms import (RandCropByPosNegLabeld, RandFlipd, RandRotate90d, RandScaleIntensityd,
                                  RandShiftIntensityd, SpatialPadd)

    if stage != "train":
        return []
    roi = tuple(int(r) for r in roi_size)
    out: list = [SpatialPadd(keys=all_keys, spatial_size=roi)]
    if label is not None:
        out.append(RandCropByPosNegLabeld(keys=all_keys, label_key=label, spatial_size=roi, pos=float(pos),
                                          neg=float(neg), num_samples=int(num_samples), image_key=image,
                                          image_threshold=-1e9))
    if augment:
        out += [
            RandFlipd(keys=all_keys, prob=0.5, spatial_axis=0),
            RandFlipd(keys=all_keys, prob=0.5, spatial_axis=1),
            RandFlipd(keys=all_keys, prob=0.5, spatial_axis=2),
        ]
        if roi[0] == roi[1]:  # a 90-degree turn of a non-square window changes its shape: patches would not batch
            out.append(RandRotate90d(keys=all_keys, prob=0.25, max_k=3, spatial_axes=(0, 1)))
        out += [
            RandScaleIntensityd(keys=image, factors=0.1, prob=0.5),
            RandShiftIntensityd(keys=image, offsets=0.1, prob=0.5),
        ]
    return out


def ct_transforms(stage: str, keys: Sequence[str] = ("image", "label"), axcodes: str = "RAS",
                  pixdim: Sequence[float] = (1.5, 1.5, 2.0), hu_window: Sequence[float] = (-1000.0, 400.0),
                  roi_size: Sequence[int] = (96, 96, 96), num_samples: int = 4, pos: float = 1.0, neg: float = 1.0,
                  crop_foreground: bool = True, augment: bool = True, intensity: Optional[Mapping[str, Any]] = None):
    """CT preset: load -> orient to ``axcodes`` -> resample to ``pixdim`` mm (labels nearest) -> clip
    ``hu_window`` (HU) and scale to [0, 1] -> crop to the body (HU window foreground) -> for ``train``:
    pos/neg ``roi_size`` patches + flips, 90-degree rotations, intensity shift/scale.

    ``stage``: ``train``, ``val`` or ``infer`` (image key only; every transform invertible by ``Invertd``).
    ``intensity``: another normalisation (module docstring); ``None`` is the ``hu_window`` window.
    """
    from monai.transforms import Compose

    all_keys, modes, image, label = _keys(stage, keys)
    lo, hi = _range(hu_window, "hu_window")
    norm = dict(intensity) if intensity else {"mode": "window", "window": [lo, hi]}
    t = _spatial(stage, all_keys, modes, axcodes, pixdim)
    t += _normalise(all_keys, image, norm, crop_foreground)
    t += _random(stage, all_keys, image, label, roi_size, num_samples, pos, neg, augment)
    return Compose(t)


def mri_transforms(stage: str, keys: Sequence[str] = ("image", "label"), axcodes: str = "RAS",
                   pixdim: Sequence[float] = (1.0, 1.0, 1.0), roi_size: Sequence[int] = (96, 96, 96),
                   num_samples: int = 4, pos: float = 1.0, neg: float = 1.0, crop_foreground: bool = True,
                   augment: bool = True, intensity: Optional[Mapping[str, Any]] = None):
    """MRI preset: load -> orient -> resample to ``pixdim`` mm (labels nearest) -> crop to the
    non-zero region -> z-score over the non-zero voxels of each channel -> ``train``: pos/neg
    patches + augmentation. ``intensity``: another normalisation (module docstring).
    """
    from monai.transforms import Compose

    all_keys, modes, image, label = _keys(stage, keys)
    norm = dict(intensity) if intensity else {"mode": "zscore", "nonzero": True}
    t = _spatial(stage, all_keys, modes, axcodes, pixdim)
    t += _normalise(all_keys, image, norm, crop_foreground)
    t += _random(stage, all_keys, image, label, roi_size, num_samples, pos, neg, augment)
    return Compose(t)


def check_intensity(intensity: Mapping[str, Any]) -> Dict[str, Any]:
    """Validate an ``intensity`` setting (module docstring); returns it with floats. Bad: ``ConfigError``."""
    if not isinstance(intensity, Mapping) or intensity.get("mode") not in INTENSITY_MODES:
        raise ConfigError(f"intensity must be a dict with a 'mode' in {', '.join(INTENSITY_MODES)}, got {intensity!r}")
    mode = intensity["mode"]
    out: Dict[str, Any] = {"mode": mode}
    if mode == "window":
        out["window"] = list(_range(intensity.get("window"), "intensity window"))
    elif mode == "clip_zscore":
        out["clip"] = list(_range(intensity.get("clip"), "intensity clip"))
        try:
            out["mean"], out["std"] = float(intensity["mean"]), float(intensity["std"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"intensity clip_zscore needs numbers 'mean' and 'std', got {dict(intensity)!r}") from exc
        if not out["std"] > 0:
            raise ConfigError(f"intensity std must be > 0, got {out['std']}")
    else:
        out["nonzero"] = bool(intensity.get("nonzero", False))
    return out


def _range(value: Any, what: str) -> Tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be (low, high), got {value!r}") from exc
    if hi <= lo:
        raise ConfigError(f"{what} must be (low, high) with low < high, got {list(value)}")
    return lo, hi


def _normalise(all_keys: List[str], image: str, intensity: Mapping[str, Any], crop: bool) -> list:
    """Intensity normalisation and the foreground crop that goes with it (labels are only cropped)."""
    from monai.transforms import CropForegroundd, NormalizeIntensityd, ScaleIntensityRanged

    norm = check_intensity(intensity)
    crop_kw = dict(keys=all_keys, source_key=image, margin=2, allow_smaller=True)
    if norm["mode"] == "window":
        lo, hi = norm["window"]
        out: list = [ScaleIntensityRanged(keys=image, a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)]
        return out + ([CropForegroundd(select_fn=_above_zero, **crop_kw)] if crop else [])
    if norm["mode"] == "clip_zscore":
        lo, hi = norm["clip"]
        m, s = norm["mean"], norm["std"]
        out = [CropForegroundd(select_fn=functools.partial(_above, threshold=lo), **crop_kw)] if crop else []
        # clipping then (x - m) / s is one clipped linear map
        return out + [ScaleIntensityRanged(keys=image, a_min=lo, a_max=hi, b_min=(lo - m) / s, b_max=(hi - m) / s,
                                           clip=True)]
    out = [CropForegroundd(select_fn=_nonzero, **crop_kw)] if crop else []
    return out + [NormalizeIntensityd(keys=image, nonzero=norm["nonzero"], channel_wise=True)]


def _above(x, threshold: float = 0.0):
    return x > threshold


def _above_zero(x):
    return x > 0


def _nonzero(x):
    return x != 0
