"""A dataset's fingerprint (nnU-Net's word): what the cases look like, read once.

Spacings and shapes are given per **RAS axis** (the order the bundles' ``Orientationd(RAS)`` +
``Spacingd(pixdim)`` use), whatever the files' own axis order. Intensity statistics are taken
over foreground voxels (label > 0), sampled per case, per channel.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np

from volseg.errors import InputError

PathLike = Union[str, "os.PathLike[str]"]
PERCENTILES = (0.5, 50.0, 99.5)
HIST_BINS = 64


def ras_spacing_shape(affine: np.ndarray, shape: Sequence[int]) -> Tuple[List[float], List[int]]:
    """Voxel size (mm) and size (voxels) along the R, A, S axes of an image with this RAS ``affine``."""
    import nibabel as nib

    from volseg.io._geometry import spacing_of

    ornt = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))
    vox = spacing_of(affine)
    spacing, size = [0.0] * 3, [0] * 3
    for i in range(3):
        spacing[int(ornt[i, 0])] = float(vox[i])
        size[int(ornt[i, 0])] = int(shape[i])
    return spacing, size


def _nonzero_bbox_fraction(image: np.ndarray) -> float:
    """Volume of the bounding box of the non-zero voxels (any channel) over the image volume."""
    nz = np.any(image != 0, axis=0)
    if not nz.any():
        return 1.0
    frac = 1.0
    for ax in range(nz.ndim):
        hit = np.flatnonzero(np.any(nz, axis=tuple(a for a in range(nz.ndim) if a != ax)))
        frac *= (hit[-1] - hit[0] + 1) / nz.shape[ax]
    return float(frac)


def _read_case(entry: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """``(image (C, X, Y, Z), label (X, Y, Z) int, affine, modality)`` of one datalist entry."""
    from volseg.io import load_volume
    from volseg.io._geometry import to_numpy

    files = entry["image"] if isinstance(entry["image"], list) else [entry["image"]]
    chans, affine, modality = [], None, ""
    for f in files:
        img = load_volume(f, ndim=3)
        chans.append(to_numpy(img).astype(np.float32))
        affine = affine if affine is not None else to_numpy(img.affine).astype(np.float64)
        modality = modality or str(img.meta.get("modality", "") or "")
    image = np.concatenate(chans, axis=0)
    label = np.rint(to_numpy(load_volume(entry["label"], ndim=3))[0]).astype(np.int64)
    if label.shape != image.shape[1:]:
        raise InputError(f"label grid {label.shape} differs from its image's {image.shape[1:]}", entry["label"])
    return image, label, affine, modality


def _stats(samples: np.ndarray) -> Dict[str, float]:
    if samples.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan"),
                **{f"p{p:g}": float("nan") for p in PERCENTILES}}
    pct = np.percentile(samples, PERCENTILES)
    return {"mean": float(samples.mean()), "std": float(samples.std()), "min": float(samples.min()),
            "max": float(samples.max()), **{f"p{p:g}": float(v) for p, v in zip(PERCENTILES, pct)}}


def _histogram(samples: np.ndarray, lo: float, hi: float) -> Dict[str, List[float]]:
    counts, edges = np.histogram(samples, bins=HIST_BINS, range=(lo, hi) if hi > lo else None)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def dataset_fingerprint(dataset_dir: PathLike, samples_per_case: int = 20000, seed: int = 0,
                        progress: bool = True) -> Dict[str, Any]:
    """Read every case of an MSD / nnU-Net dataset once (``volseg.data.load_datalist``, training and
    validation lists) and summarise it.

    Returns a JSON-ready dict: ``n_cases``; ``modalities`` (one name per channel, from
    ``dataset.json`` or the files, ``""`` if unknown); ``labels`` (``{"1": "lung"}``); per case
    ``cases[i]`` = ``{"image", "spacing" (mm, RAS axes), "shape" (RAS axes), "nonzero_bbox_fraction",
    "class_ml" {label: mL}}``; ``intensity`` per channel: foreground ``mean``, ``std``, ``min``,
    ``max``, ``p0.5``, ``p50``, ``p99.5`` (up to ``samples_per_case`` voxels per case) and
    histograms of the foreground and of all voxels (``hist_foreground``, ``hist_all``);
    ``class_volume_ml`` per label: ``median``, ``min``, ``max`` (mL) and ``cases`` (how many have it).
    """
    from tqdm.auto import tqdm

    from volseg.data.datalist import dataset_metadata, load_datalist

    train, val = load_datalist(dataset_dir, val_fraction=0.0, check=True)
    entries = train + val
    meta = dataset_metadata(dataset_dir)
    rng = np.random.default_rng(int(seed))
    cases: List[Dict[str, Any]] = []
    fg: List[List[np.ndarray]] = []
    everything: List[List[np.ndarray]] = []
    found_labels: set = set()
    file_modality = ""
    for entry in tqdm(entries, desc="fingerprint", unit="case", disable=not progress, leave=False):
        image, label, affine, modality = _read_case(entry)
        file_modality = file_modality or modality
        spacing, shape = ras_spacing_shape(affine, label.shape)
        voxel_ml = float(np.prod(spacing)) / 1000.0
        values, counts = np.unique(label, return_counts=True)
        found_labels |= {int(v) for v in values if v > 0}
        mask = label > 0
        n_fg = int(mask.sum())
        pick = rng.choice(n_fg, size=min(n_fg, samples_per_case), replace=False) if n_fg else np.zeros(0, int)
        pick_all = rng.choice(label.size, size=min(label.size, samples_per_case), replace=False)
        if not fg:
            fg = [[] for _ in range(image.shape[0])]
            everything = [[] for _ in range(image.shape[0])]
        if len(fg) != image.shape[0]:
            raise InputError(f"{image.shape[0]} image channel(s), other cases have {len(fg)}", str(entry["image"]))
        for c in range(image.shape[0]):
            fg[c].append(image[c][mask][pick])
            everything[c].append(image[c].reshape(-1)[pick_all])
        cases.append({"image": str(entry["image"]), "spacing": [round(s, 6) for s in spacing], "shape": shape,
                      "nonzero_bbox_fraction": round(_nonzero_bbox_fraction(image), 6),
                      "class_ml": {str(int(v)): round(float(n) * voxel_ml, 6) for v, n in zip(values, counts) if v > 0}})
    n_channels = len(fg)
    modalities = [meta["modalities"].get(c, file_modality if n_channels == 1 else "") for c in range(n_channels)]
    intensity = []
    for c in range(n_channels):
        f, a = np.concatenate(fg[c]), np.concatenate(everything[c])
        lo, hi = float(min(a.min(), f.min() if f.size else a.min())), float(max(a.max(), f.max() if f.size else a.max()))
        intensity.append({**_stats(f), "hist_foreground": _histogram(f, lo, hi), "hist_all": _histogram(a, lo, hi)})
    all_labels = sorted(found_labels | {k for k in meta["labels"] if k > 0})
    names = {str(k): meta["labels"].get(k, f"label_{k}") for k in all_labels}
    volumes = {}
    for k in all_labels:
        ml = [c["class_ml"][str(k)] for c in cases if str(k) in c["class_ml"]]
        volumes[str(k)] = {"median": float(np.median(ml)) if ml else 0.0, "min": float(min(ml)) if ml else 0.0,
                           "max": float(max(ml)) if ml else 0.0, "cases": len(ml)}
    return {"dataset": str(dataset_dir), "n_cases": len(cases), "modalities": modalities, "labels": names,
            "cases": cases, "intensity": intensity, "class_volume_ml": volumes}
