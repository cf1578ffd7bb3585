"""From a fingerprint to bundle settings, with nnU-Net's rules (``nnunetv2/experiment_planning``).

* **Target spacing** (``pixdim``): the median spacing per axis; when the coarsest axis is more than
  3x the finest other axis *and* has fewer than a third of its voxels (anisotropic data), that axis
  takes the 10th percentile of its spacings instead (not below the other axes' spacing).
* **Window** (``roi_size``): starts isotropic in mm at 256^3 voxels, capped by the median shape at the
  target spacing, sizes multiples of the network's total stride; shrunk one stride at a time, on
  the axis largest relative to the median shape, until two patches fit the memory budget.
* **Patches per step** (``batch_size`` x ``num_samples``): as many as fit the budget, at most 5 % of
  the dataset's voxels per step, at least 2.
* **Intensity** (``intensity``): CT: clip to the foreground 0.5-99.5 percentiles, then z-score with
  the foreground mean and std; otherwise per-case z-score (over the non-zero voxels when cropping
  to them removes at least a quarter of the image).

Memory is an estimate: the summed outputs of every leaf module for a probe patch (float32), scaled
to the window, x2 for the backward pass, plus weights, gradients and the two Adam moments.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

ANISOTROPY = 3.0
PATCH_VOXELS_START = 256 ** 3
DATASET_FRACTION_PER_STEP = 0.05
MIN_PATCHES = 2
BACKWARD_FACTOR = 2.0
DEFAULT_MEMORY_GB = 8.0  # nnU-Net's default GPU memory target


def target_spacing(spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[int]]) -> Tuple[List[float], str]:
    """Median spacing (mm per axis), with nnU-Net's anisotropy rule; returns ``(spacing, why)``."""
    sp = np.asarray(spacings, dtype=np.float64)
    target = np.median(sp, axis=0)
    size = np.median(np.asarray(shapes, dtype=np.float64), axis=0)
    worst = int(np.argmax(target))
    others = [i for i in range(len(target)) if i != worst]
    aniso_spacing = target[worst] > ANISOTROPY * max(target[i] for i in others)
    aniso_voxels = size[worst] * ANISOTROPY < min(size[i] for i in others)
    why = "median spacing"
    if aniso_spacing and aniso_voxels:
        p10 = float(np.percentile(sp[:, worst], 10))
        target[worst] = max(p10, max(target[i] for i in others) + 1e-5)
        why = (f"median spacing; axis {worst} is anisotropic (> {ANISOTROPY:g}x the others): its 10th "
               "percentile spacing")
    return [round(float(t), 4) for t in target], why


def median_shape(spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[int]],
                 spacing: Sequence[float]) -> List[int]:
    """Median size (voxels per axis) of the cases once resampled to ``spacing``."""
    sp, sh = np.asarray(spacings, dtype=np.float64), np.asarray(shapes, dtype=np.float64)
    return [int(round(v)) for v in np.median(sh * sp / np.asarray(spacing, dtype=np.float64), axis=0)]


def memory_model(network: Any, in_channels: int, stride: int) -> Tuple[float, float]:
    """``(bytes per patch voxel for activations, bytes for weights + gradients + Adam moments)`` of ``network``."""
    import torch

    leaves = [m for m in network.modules() if not list(m.children())]
    total = [0]

    def hook(_m, _inp, out):
        for t in (out if isinstance(out, (tuple, list)) else [out]):
            if isinstance(t, torch.Tensor):
                total[0] += t.numel()

    side = max(2 * stride, 32)
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = network.training
    try:
        network.eval()
        with torch.no_grad():
            network(torch.zeros(1, int(in_channels), side, side, side))
    finally:
        for h in handles:
            h.remove()
        network.train(was_training)
    per_voxel = 4.0 * total[0] / side ** 3
    params = sum(p.numel() for p in network.parameters())
    return per_voxel, 4.0 * 4 * params


def patch_and_batch(shape: Sequence[int], spacing: Sequence[float], stride: int, per_voxel: float,
                    fixed_bytes: float, budget_bytes: float, dataset_voxels: float) -> Dict[str, Any]:
    """The window (``roi_size``) and patches per optimizer step for the median ``shape`` at ``spacing``.

    Returns ``{"roi_size", "patches", "estimate_bytes", "fits"}`` (``fits`` False when even the
    smallest window does not fit ``budget_bytes``)."""
    def cost(roi: Sequence[int], n: int) -> float:
        return n * math.prod(roi) * per_voxel * BACKWARD_FACTOR + fixed_bytes

    def to_stride(v: float) -> int:
        return max(stride, int(math.ceil(v / stride)) * stride)

    inv = 1.0 / np.asarray(spacing, dtype=np.float64)
    start = inv * (PATCH_VOXELS_START / np.prod(inv)) ** (1.0 / 3.0)
    roi = [to_stride(min(s, m)) for s, m in zip(start, shape)]
    while cost(roi, MIN_PATCHES) > budget_bytes:
        ratios = [r / max(m, 1) if r > stride else -1.0 for r, m in zip(roi, shape)]
        axis = int(np.argmax(ratios))
        if ratios[axis] < 0:
            break
        roi[axis] -= stride
    fits = cost(roi, MIN_PATCHES) <= budget_bytes
    by_memory = int((budget_bytes - fixed_bytes) // max(cost(roi, 1) - fixed_bytes, 1.0))
    by_data = int(round(DATASET_FRACTION_PER_STEP * dataset_voxels / math.prod(roi)))
    patches = max(MIN_PATCHES, min(by_memory, by_data))
    return {"roi_size": roi, "patches": patches, "estimate_bytes": cost(roi, patches), "fits": fits}


def split_patches(patches: int, num_samples: int) -> Tuple[int, int]:
    """``(batch_size, num_samples)`` with ``batch_size * num_samples <= patches`` (the loader takes
    ``num_samples`` patches from each of ``batch_size`` cases per step)."""
    n = max(1, min(int(num_samples), int(patches)))
    return max(1, int(patches) // n), n


def intensity_setting(fingerprint: Dict[str, Any]) -> Tuple[Dict[str, Any], str]:
    """The ``intensity`` normalisation for the fingerprint's channels; returns ``(setting, why)``."""
    mods = [m.upper() for m in fingerprint["modalities"]]
    if len(mods) == 1 and mods[0] == "CT":
        st = fingerprint["intensity"][0]
        setting = {"mode": "clip_zscore", "clip": [round(st["p0.5"], 3), round(st["p99.5"], 3)],
                   "mean": round(st["mean"], 4), "std": round(max(st["std"], 1e-6), 4)}
        return setting, "CT: clip to the foreground 0.5-99.5 percentiles, z-score with the foreground mean/std"
    fractions = [c["nonzero_bbox_fraction"] for c in fingerprint["cases"]]
    nonzero = bool(fractions) and float(np.median(fractions)) < 0.75
    what = "/".join(m or "unknown" for m in fingerprint["modalities"]) or "unknown"
    return {"mode": "zscore", "nonzero": nonzero}, (
        f"{what}: per-case z-score" + (" over the non-zero voxels (their box is < 75 % of the image)" if nonzero else ""))


def decide(fingerprint: Dict[str, Any], network_probe: Callable[[int], Tuple[float, float, int]],
           memory_gb: Optional[float], num_samples: int) -> Tuple[Dict[str, Any], Dict[str, str], Dict[str, Any]]:
    """``(overrides, reasons, memory)`` for a fingerprint. ``network_probe(in_channels)`` returns
    ``(bytes per voxel, fixed bytes, stride)`` of the bundle's network."""
    cases = fingerprint["cases"]
    spacings, shapes = [c["spacing"] for c in cases], [c["shape"] for c in cases]
    spacing, why_spacing = target_spacing(spacings, shapes)
    shape = median_shape(spacings, shapes, spacing)
    n_channels = len(fingerprint["modalities"])
    per_voxel, fixed, stride = network_probe(n_channels)
    budget = float(DEFAULT_MEMORY_GB if memory_gb is None else memory_gb) * 1024 ** 3
    dataset_voxels = float(sum(math.prod(np.asarray(c["shape"]) * np.asarray(c["spacing"]) / np.asarray(spacing))
                               for c in cases))
    pb = patch_and_batch(shape, spacing, stride, per_voxel, fixed, budget, dataset_voxels)
    batch, samples = split_patches(pb["patches"], num_samples)
    intensity, why_intensity = intensity_setting(fingerprint)
    labels = fingerprint["labels"]
    overrides = {"pixdim": spacing, "roi_size": pb["roi_size"], "batch_size": batch, "num_samples": samples,
                 "intensity": intensity, "in_channels": n_channels,
                 "num_classes": max([int(k) for k in labels] + [0]) + 1, "labels": labels}
    reasons = {
        "pixdim": why_spacing,
        "roi_size": (f"median shape {shape} at that spacing, multiples of the network stride {stride}, "
                     f"2 patches within {budget / 1024 ** 3:g} GB" + ("" if pb["fits"] else " (does NOT fit: smallest window)")),
        "batch_size": f"{pb['patches']} patches per step (memory, <= 5 % of the dataset, >= 2) = batch_size x num_samples",
        "num_samples": "patches per case per step",
        "intensity": why_intensity,
        "in_channels": "image channels", "num_classes": "background + labels", "labels": "dataset.json / label values",
    }
    memory = {"budget_gb": budget / 1024 ** 3, "estimate_gb": pb["estimate_bytes"] / 1024 ** 3,
              "activation_bytes_per_voxel": per_voxel, "stride": stride, "median_shape": shape, "fits": pb["fits"]}
    return overrides, reasons, memory
