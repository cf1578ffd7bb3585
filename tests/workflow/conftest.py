"""Tiny synthetic data for the 2D workflow: PNG pairs (three classes, tumour in blue), a small CT with a
lung and a tumour on an LPS-stored grid, and a fixed 2D threshold network."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Tuple

import numpy as np
import pytest

BLUE, GREEN, BLACK = (0, 0, 255), (0, 255, 0), (0, 0, 0)
# voxel -> RAS: LPS-stored axes (x to patient left, y to posterior), anisotropic, shifted origin
AFFINE = np.array([[-0.7, 0, 0, 120.0], [0, -0.8, 0, 95.0], [0, 0, 2.5, -40.0], [0, 0, 0, 1]])


def make_png_case(rng: np.random.Generator, size: int = 32) -> Tuple[np.ndarray, np.ndarray]:
    """One synthetic slice ``(rows, cols)``: gray body, dark lung (class 2), bright tumour (class 1)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    cy, cx = size / 2 + rng.uniform(-2, 2), size / 2 + rng.uniform(-2, 2)
    lung = ((yy - cy) / (size * 0.35)) ** 2 + ((xx - cx) / (size * 0.3)) ** 2 < 1
    ty, tx = cy + rng.uniform(-4, 4), cx + rng.uniform(-4, 4)
    tumour = ((yy - ty) ** 2 + (xx - tx) ** 2 < rng.uniform(9, 25)) & lung
    img = np.full((size, size), 120.0, np.float32)
    img[lung] = 30.0
    img[tumour] = 220.0
    img += rng.normal(0, 8, img.shape)
    labels = np.zeros((size, size), np.uint8)
    labels[lung] = 2
    labels[tumour] = 1
    return np.clip(img, 0, 255).astype(np.uint8), labels


def write_png_pairs(root: Path, n: int = 20, size: int = 32, seed: int = 0) -> Tuple[Path, Path]:
    """Write ``n`` pairs to ``root/images/case_XX.png`` and colour labels to ``root/labels/``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    img_dir, lab_dir = root / "images", root / "labels"
    img_dir.mkdir(parents=True)
    lab_dir.mkdir(parents=True)
    lut = np.array([BLACK, BLUE, GREEN], np.uint8)
    for i in range(n):
        img, lab = make_png_case(rng, size)
        Image.fromarray(img).save(img_dir / f"case_{i:02d}.png")
        Image.fromarray(lut[lab]).save(lab_dir / f"case_{i:02d}.png")
    return img_dir, lab_dir


@pytest.fixture
def png_dataset(tmp_path: Path) -> Path:
    write_png_pairs(tmp_path / "pngdata")
    return tmp_path / "pngdata"


def ct_with_lung_and_tumour() -> tuple:
    """Body -50 HU, lung -800 HU (label 2), tumour +300 HU (label 1): ``(X, Y, Z) = (40, 36, 7)``."""
    x, y, z = np.meshgrid(np.arange(40), np.arange(36), np.arange(7), indexing="ij")
    lung = ((x - 18) / 12.0) ** 2 + ((y - 17) / 10.0) ** 2 < 1
    tumour = ((x - 22) ** 2 + (y - 14) ** 2 < 10) & (z >= 2) & (z <= 4)
    ct = np.full(x.shape, -50.0, np.float32)
    ct[lung] = -800.0
    ct[tumour] = 300.0
    lab = np.zeros(x.shape, np.uint8)
    lab[lung] = 2
    lab[tumour] = 1
    return ct, lab


def threshold_net_2d() -> Any:
    """A fixed 2D 'model' on [0, 1] input: lung below 0.4, tumour above 0.8 (window -1000..400 HU)."""
    import torch

    net = torch.nn.Conv2d(1, 3, 1)
    with torch.no_grad():
        net.weight[:, 0, 0, 0] = torch.tensor([0.0, 20.0, -10.0])
        net.bias[:] = torch.tensor([0.0, -16.0, 4.0])
    return net.eval()
