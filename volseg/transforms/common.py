"""CT and MRI transform presets shared by the training bundles and the inference configs.

Images are ``(C, X, Y, Z)`` MetaTensors; CT intensities in HU, spacing in mm. Labels are
resampled with nearest neighbour only and never get intensity transforms.
"""
from __future__ import annotations

from typing import Any, List, Sequence, Tuple

from volseg.errors import ConfigError

STAGES = ("train", "val", "infer")


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
            RandRotate90d(keys=all_keys, prob=0.25, max_k=3, spatial_axes=(0, 1)),
            RandScaleIntensityd(keys=image, factors=0.1, prob=0.5),
            RandShiftIntensityd(keys=image, offsets=0.1, prob=0.5),
        ]
    return out


def ct_transforms(stage: str, keys: Sequence[str] = ("image", "label"), axcodes: str = "RAS",
                  pixdim: Sequence[float] = (1.5, 1.5, 2.0), hu_window: Sequence[float] = (-1000.0, 400.0),
                  roi_size: Sequence[int] = (96, 96, 96), num_samples: int = 4, pos: float = 1.0, neg: float = 1.0,
                  crop_foreground: bool = True, augment: bool = True):
    """CT preset: load -> orient to ``axcodes`` -> resample to ``pixdim`` mm (labels nearest) -> clip
    ``hu_window`` (HU) and scale to [0, 1] -> crop to the body (HU window foreground) -> for ``train``:
    pos/neg ``roi_size`` patches + flips, 90-degree rotations, intensity shift/scale.

    ``stage``: ``train``, ``val`` or ``infer`` (image key only; every transform invertible by ``Invertd``).
    """
    from monai.transforms import Compose, CropForegroundd, ScaleIntensityRanged

    all_keys, modes, image, label = _keys(stage, keys)
    lo, hi = (float(v) for v in hu_window)
    if hi <= lo:
        raise ConfigError(f"hu_window must be (low, high) with low < high, got {list(hu_window)}")
    t = _spatial(stage, all_keys, modes, axcodes, pixdim)
    t.append(ScaleIntensityRanged(keys=image, a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True))
    if crop_foreground:
        t.append(CropForegroundd(keys=all_keys, source_key=image, select_fn=_above_zero, margin=2,
                                 allow_smaller=True))
    t += _random(stage, all_keys, image, label, roi_size, num_samples, pos, neg, augment)
    return Compose(t)


def mri_transforms(stage: str, keys: Sequence[str] = ("image", "label"), axcodes: str = "RAS",
                   pixdim: Sequence[float] = (1.0, 1.0, 1.0), roi_size: Sequence[int] = (96, 96, 96),
                   num_samples: int = 4, pos: float = 1.0, neg: float = 1.0, crop_foreground: bool = True,
                   augment: bool = True):
    """MRI preset: load -> orient -> resample to ``pixdim`` mm (labels nearest) -> z-score over the
    non-zero voxels of each channel -> crop to the non-zero region -> ``train``: pos/neg patches + augmentation.
    """
    from monai.transforms import Compose, CropForegroundd, NormalizeIntensityd

    all_keys, modes, image, label = _keys(stage, keys)
    t = _spatial(stage, all_keys, modes, axcodes, pixdim)
    if crop_foreground:
        t.append(CropForegroundd(keys=all_keys, source_key=image, select_fn=_nonzero, margin=2,
                                 allow_smaller=True))
    t.append(NormalizeIntensityd(keys=image, nonzero=True, channel_wise=True))
    t += _random(stage, all_keys, image, label, roi_size, num_samples, pos, neg, augment)
    return Compose(t)


def _above_zero(x):
    return x > 0


def _nonzero(x):
    return x != 0
