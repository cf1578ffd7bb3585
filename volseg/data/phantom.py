"""Synthetic chest CT phantoms in HU with known labels (0 background, 1 lung, 2 lesion).

Anatomy is laid out in voxel-index space (axis 0 patient left-right, axis 1 anterior-posterior
with the spine at high index, axis 2 along the body) and placed in the world by ``direction``
and ``origin``; sizes are physical (mm), so any shape, spacing and orientation works.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]
PHANTOM_LABELS = {1: "lung", 2: "lesion"}
HU = {"air": -1000.0, "fat": -100.0, "soft": 40.0, "lung": -850.0, "bone": 700.0, "lesion": 30.0}
MR_UNITS_PER_HU = 2.0


def mr_like(image_hu: np.ndarray) -> np.ndarray:
    """An MRI-like intensity scale for a phantom: ``|2 (HU + 1000)|`` (background ~0, arbitrary positive
    units up to ~3400, the same tissue contrast). Far from a CT window: every tissue above 400 units
    (lesions, soft tissue, bone) lands at the top of the default ``hu_window`` [-1000, 400]."""
    return np.abs((np.asarray(image_hu, dtype=np.float32) - HU["air"]) * MR_UNITS_PER_HU)


@dataclass
class Phantom:
    """``image`` (1, X, Y, Z) float32 HU and ``label`` (1, X, Y, Z) uint8 MetaTensors, RAS ``affine`` 4x4."""

    image: Any
    label: Any
    affine: np.ndarray


def phantom_affine(shape: Sequence[int], spacing: Sequence[float], direction: Optional[np.ndarray] = None,
                   origin: Optional[Sequence[float]] = None) -> np.ndarray:
    """RAS affine; default direction ``diag(-1, -1, 1)`` (LPS-like axial, as from DICOM CT), centred on 0 mm."""
    d = np.diag([-1.0, -1.0, 1.0]) if direction is None else np.asarray(direction, dtype=np.float64)
    if d.shape != (3, 3):
        from volseg.errors import ConfigError

        raise ConfigError(f"direction must be a 3x3 matrix of RAS direction cosines, got shape {d.shape}")
    aff = np.eye(4)
    aff[:3, :3] = d @ np.diag(np.asarray(spacing, dtype=np.float64))
    if origin is None:
        centre = (np.asarray(shape, dtype=np.float64) - 1) / 2
        aff[:3, 3] = -aff[:3, :3] @ centre
    else:
        aff[:3, 3] = np.asarray(origin, dtype=np.float64)
    return aff


def _smooth_noise(rng: np.random.Generator, shape, sigma_vox) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    n = rng.standard_normal(shape).astype(np.float32)
    n = gaussian_filter(n, sigma=sigma_vox, mode="wrap")
    return n / (n.std() + 1e-6)


def make_phantom(
    shape: Sequence[int] = (96, 96, 64),
    spacing: Sequence[float] = (1.5, 1.5, 2.5),
    seed: int = 0,
    n_lesions: int = 2,
    direction: Optional[np.ndarray] = None,
    origin: Optional[Sequence[float]] = None,
) -> Phantom:
    """A chest CT phantom: air, body (soft tissue ~40 HU with fat rim), two lungs (-850 HU, vessel
    texture), spine and ribs (+700 HU) and ``n_lesions`` round lesions (~30 HU, radius 8-20 mm,
    clipped to fit) inside the lungs. Deterministic by ``seed``; ``shape`` (X, Y, Z) voxels,
    ``spacing`` mm, ``direction`` 3x3 RAS cosines (columns = index axes)."""
    from volseg.io._geometry import make_metatensor

    shape = tuple(int(s) for s in shape)
    spacing = tuple(float(s) for s in spacing)
    if len(shape) != 3 or len(spacing) != 3 or min(shape) < 4:
        from volseg.errors import ConfigError

        raise ConfigError(f"phantom shape must be 3 sizes >= 4 and spacing 3 values, got {shape}, {spacing}")
    rng = np.random.default_rng(seed)
    ext = np.array(shape) * np.array(spacing)  # mm
    ax = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)]
    x, y, z = np.meshgrid(*ax, indexing="ij")
    jit = lambda a, b: float(rng.uniform(a, b))  # noqa: E731

    bx, by = ext[0] * jit(0.40, 0.45), ext[1] * jit(0.30, 0.36)
    body_r = (x / bx) ** 2 + (y / by) ** 2
    body = body_r <= 1.0
    fat = body & (body_r > (1 - 8.0 / min(bx, by)) ** 2)
    image = np.full(shape, HU["air"], dtype=np.float32)
    image[body] = HU["soft"]
    image[fat] = HU["fat"]

    # lungs: ellipsoids left and right of the mediastinum
    lx, ly, lz = bx * jit(0.34, 0.38), by * jit(0.58, 0.66), ext[2] * jit(0.36, 0.42)
    cx, cy, cz = bx * 0.45, -by * 0.05, jit(-0.05, 0.05) * ext[2]
    lungs = np.zeros(shape, dtype=bool)
    lung_centres = []
    for sign in (-1.0, 1.0):
        c = (sign * cx, cy, cz)
        lung_centres.append(c)
        lungs |= ((x - c[0]) / lx) ** 2 + ((y - c[1]) / ly) ** 2 + ((z - c[2]) / lz) ** 2 <= 1.0
    lungs &= body & ~fat
    sig = [max(0.5, 1.5 / s) for s in spacing]
    vessels = np.abs(_smooth_noise(rng, shape, sig)) < 0.08
    lung_tex = HU["lung"] + 25.0 * rng.standard_normal(shape).astype(np.float32)
    lung_tex[vessels] = -250.0 + 60.0 * rng.standard_normal(int(vessels.sum())).astype(np.float32)
    image[lungs] = lung_tex[lungs]

    # spine behind the mediastinum (high axis-1 index = posterior), ribs as a ring segment
    sr = min(bx, by) * 0.18
    spine = (x / sr) ** 2 + ((y - by * 0.72) / sr) ** 2 <= 1.0
    ring = (body_r > (1 - 14.0 / min(bx, by)) ** 2) & (body_r <= (1 - 9.0 / min(bx, by)) ** 2)
    ribs = ring & (np.cos(z / 12.0 * np.pi) > 0.55) & (y > -by * 0.6)
    bone = (spine | ribs) & body
    image[bone] = HU["bone"]
    lungs &= ~bone

    label = np.zeros(shape, dtype=np.uint8)
    label[lungs] = 1
    # lesions: spheres well inside one lung, radius 8-20 mm clipped to 60 % of the lung's smallest semi-axis
    rmax = min(20.0, 0.6 * min(lx, ly, lz))
    rmin = min(8.0, rmax)
    for i in range(int(n_lesions)):
        c = lung_centres[i % 2]
        r = jit(rmin, rmax)
        u = rng.uniform(-1, 1, size=3)
        u = u / max(1.0, np.linalg.norm(u))
        room = np.maximum(np.array([lx, ly, lz]) - r * 1.2, 0.0)
        p = np.array(c) + u * room * 0.6
        d = np.sqrt(((x - p[0])) ** 2 + ((y - p[1])) ** 2 + ((z - p[2])) ** 2)
        bump = 1.0 + 0.12 * _smooth_noise(rng, shape, [max(1.0, 4.0 / s) for s in spacing])
        lesion = (d <= r * bump) & lungs
        image[lesion] = HU["lesion"] + 15.0 * rng.standard_normal(int(lesion.sum())).astype(np.float32)
        label[lesion] = 2
    soft_noise = 18.0 * rng.standard_normal(shape).astype(np.float32)
    image[body & ~lungs] += soft_noise[body & ~lungs]
    image[~body] += 10.0 * rng.standard_normal(int((~body).sum())).astype(np.float32)
    image = np.round(image)

    affine = phantom_affine(shape, spacing, direction, origin)
    meta = {"filename_or_obj": f"phantom_seed{seed}", "source_format": "phantom", "modality": "CT"}
    img_t = make_metatensor(image[None].astype(np.float32), affine, meta)
    lab_t = make_metatensor(label[None], affine, dict(meta))
    return Phantom(image=img_t, label=lab_t, affine=affine)


def write_phantom_dataset(
    out_dir: PathLike,
    n_cases: int = 4,
    seed: int = 0,
    layout: str = "msd",
    progress: bool = True,
    modality: str = "CT",
    **phantom_kw: Any,
) -> Path:
    """Write ``imagesTr/case_XXX.nii.gz``, ``labelsTr/case_XXX.nii.gz`` and an MSD ``dataset.json``.

    Case ``i`` uses seed ``seed + i``. ``modality`` ``"MR"`` writes the images on the MRI-like
    scale of :func:`mr_like` (and ``"MR"`` in ``dataset.json``). Returns the dataset folder.
    """
    from tqdm import tqdm

    from volseg._atomic import atomic_path
    from volseg.io._geometry import make_metatensor
    from volseg.errors import ConfigError
    from volseg.io.writers import save_mask, save_volume

    if layout != "msd":
        raise ConfigError(f"unknown phantom dataset layout {layout!r}; valid: msd")
    if int(n_cases) < 1:
        raise ConfigError(f"n_cases must be >= 1, got {n_cases}")
    if modality not in ("CT", "MR"):
        raise ConfigError(f"phantom modality must be CT or MR, got {modality!r}")
    out = Path(out_dir)
    training = []
    for i in tqdm(range(int(n_cases)), desc="phantoms", disable=not progress, leave=False):
        ph = make_phantom(seed=int(seed) + i, **phantom_kw)
        if modality == "MR":
            meta = {k: v for k, v in ph.image.meta.items() if k != "affine"}
            image = make_metatensor(mr_like(ph.image.numpy()), ph.affine, {**meta, "modality": "MR"})
            ph = Phantom(image=image, label=ph.label, affine=ph.affine)
        name = f"case_{i:03d}.nii.gz"
        save_volume(ph.image, out / "imagesTr" / name)
        save_mask(ph.label, ph.image, out / "labelsTr" / name)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    ds: Dict[str, Any] = {
        "name": "volseg-phantom",
        "description": (f"Synthetic chest {modality} phantoms ({'HU' if modality == 'CT' else 'MRI-like scale'}) "
                        "with lung and lesion labels, made by volseg"),
        "reference": "volseg.data.make_phantom",
        "licence": "CC0",
        "tensorImageSize": "3D",
        "modality": {"0": modality},
        "labels": {"0": "background", **{str(k): v for k, v in PHANTOM_LABELS.items()}},
        "numTraining": len(training),
        "numTest": 0,
        "training": training,
        "test": [],
    }
    with atomic_path(out / "dataset.json") as tmp:
        tmp.write_text(json.dumps(ds, indent=2) + "\n")
    return out
