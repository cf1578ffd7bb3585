"""Tiny synthetic PNG pairs for the 2D workflow: three classes, tumour in blue."""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
import pytest

BLUE, GREEN, BLACK = (0, 0, 255), (0, 255, 0), (0, 0, 0)


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
