"""PNG datasets for the 2D workflow: pairing image and label folders, checking every pair, and the
seeded train / validation / test split.

Reading and writing single PNGs (grey images, colour label maps, the palette) lives in
:mod:`volseg.io.png`.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from volseg.errors import ConfigError, InputError
from volseg.io.png import _listing

PathLike = Union[str, "os.PathLike[str]"]
LABEL_SUFFIXES = ("_label", "_labels", "_mask", "_seg", "_gt")
SPLIT_BY = ("image", "folder", "prefix")


def _collect(folder: Path) -> Tuple[Dict[str, Path], List[str]]:
    pngs: Dict[str, Path] = {}
    others: List[str] = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        if p.suffix.lower() == ".png":
            pngs[p.relative_to(folder).with_suffix("").as_posix()] = p
        else:
            others.append(str(p))
    return pngs, others


def _label_key(key: str) -> str:
    stem = key.rsplit("/", 1)
    name = stem[-1]
    for suffix in LABEL_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            stem[-1] = name[: -len(suffix)]
            return "/".join(stem)
    return key


def pair_png_folders(image_dir: PathLike, label_dir: PathLike) -> List[Dict[str, str]]:
    """Pair image and label PNGs found recursively under two folders.

    Files pair by relative path without extension (``a/b/x.png`` with ``a/b/x.png``); a label
    named ``x_mask.png`` / ``x_label.png`` / ``x_seg.png`` / ``x_gt.png`` also pairs with ``x.png``.
    Returns ``[{"image": str, "label": str, "name": "a/b/x"}, ...]`` sorted by name.
    Raises ONE InputError listing every problem: missing/empty folders, non-PNG files,
    unequal counts, unpaired images and labels. Hidden files and folders (``.*``) are skipped.
    """
    image_dir, label_dir = Path(image_dir), Path(label_dir)
    for d, what in ((image_dir, "image"), (label_dir, "label")):
        if not d.is_dir():
            raise InputError(f"{what} folder does not exist", d)
    images, img_other = _collect(image_dir)
    labels_raw, lab_other = _collect(label_dir)
    problems: List[str] = []
    if img_other or lab_other:
        problems.append(f"non-PNG files: {_listing(img_other + lab_other)}")
    if not images:
        problems.append(f"no PNG images in {image_dir}")
    if not labels_raw:
        problems.append(f"no PNG labels in {label_dir}")
    labels: Dict[str, Path] = {}
    for key, path in labels_raw.items():
        labels[key if key in images else _label_key(key)] = path
    if len(images) != len(labels_raw):
        problems.append(f"{len(images)} images but {len(labels_raw)} labels")
    no_label = [str(images[k]) for k in images if k not in labels]
    no_image = [str(labels[k]) for k in labels if k not in images]
    if no_label:
        problems.append(f"images without a label: {_listing(no_label)}")
    if no_image:
        problems.append(f"labels without an image: {_listing(no_image)}")
    if problems:
        raise InputError("; ".join(problems), f"{image_dir} + {label_dir}")
    return [{"image": str(images[k]), "label": str(labels[k]), "name": k} for k in sorted(images)]


def find_png_folders(dataset_dir: PathLike) -> Tuple[Path, Path]:
    """The image and label folders of a PNG dataset: ``images/`` plus ``labels/`` (or ``masks/``)."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise InputError("dataset folder does not exist", root)
    image_dir = next((root / n for n in ("images", "imagesTr", "image") if (root / n).is_dir()), None)
    label_dir = next((root / n for n in ("labels", "masks", "labelsTr", "label", "mask") if (root / n).is_dir()), None)
    if image_dir is None or label_dir is None:
        raise InputError("expected sub-folders images/ and labels/ (or masks/) holding PNG files", root)
    return image_dir, label_dir


def split_cases(items: Sequence[Any], fractions: Sequence[float] = (0.6, 0.2, 0.2),
                seed: int = 42) -> Tuple[List[Any], List[Any], List[Any]]:
    """Shuffle ``items`` with ``seed`` and cut them into train / validation / test by ``fractions``.

    Validation and test get ``round(n * fraction)`` items each (at least one each when
    ``n >= 3`` and the fraction is positive); train gets the rest.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ConfigError(f"split fractions must be three non-negative numbers summing to 1 (got {list(fractions)})")
    n = len(items)
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = int(round(n * fractions[1])), int(round(n * fractions[2]))
    if n >= 3:
        n_val = max(n_val, 1 if fractions[1] > 0 else 0)
        n_test = max(n_test, 1 if fractions[2] > 0 else 0)
    n_train = n - n_val - n_test
    if n_train < 1:
        raise InputError(f"only {n} image/label pairs: too few to split into train/validation/test")
    pick = [items[i] for i in order]
    return pick[:n_train], pick[n_train:n_train + n_val], pick[n_train + n_val:]


def group_key(name: str, split_by: str = "image") -> str:
    """The unit a split keeps together: the image itself, its folder (``a/b/x`` -> ``a/b``) or its
    name before the last underscore (``lung1_z0033`` -> ``lung1``, as written by ``--to png-slices``)."""
    if split_by == "image":
        return name
    if split_by == "folder":
        return name.rsplit("/", 1)[0] if "/" in name else ""
    if split_by == "prefix":
        base = name.rsplit("/", 1)[-1]
        return name[: len(name) - len(base)] + (base.rsplit("_", 1)[0] if "_" in base else base)
    raise ConfigError(f"unknown split_by {split_by!r}; valid: {', '.join(SPLIT_BY)}")


def split_groups(pairs: Sequence[Mapping[str, str]], fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 42,
                 split_by: str = "image") -> Tuple[List[Any], List[Any], List[Any]]:
    """:func:`split_cases` over groups of pairs (see :func:`group_key`), so slices of one patient
    never land in both training and test."""
    if split_by == "image":
        return split_cases(list(pairs), fractions, seed)
    groups: Dict[str, List[Any]] = {}
    for p in pairs:
        groups.setdefault(group_key(p["name"], split_by), []).append(p)
    if len(groups) < 3:
        raise InputError(f"split_by={split_by!r} finds only {len(groups)} group(s) {sorted(groups)}: "
                         "need at least 3 for train/validation/test")
    parts = split_cases(sorted(groups), fractions, seed)
    return tuple([p for key in part for p in groups[key]] for part in parts)  # type: ignore[return-value]


def check_png_pairs(pairs: Sequence[Mapping[str, str]], palette: Optional[Mapping] = None,
                    nearest_colour: bool = False) -> None:
    """Read every pair once (images with :func:`volseg.io.png.read_png_gray`, labels with
    :func:`volseg.io.png.load_png_label`); ONE InputError lists every bad file (colour images,
    colours outside the palette, label size differing from its image)."""
    from volseg.io.png import load_png_label, read_png_gray

    problems: List[str] = []
    for pair in pairs:
        try:
            shape = read_png_gray(pair["image"]).shape[1:]
            lab = load_png_label(pair["label"], palette, nearest_colour)
            if lab.shape != shape:
                raise InputError(f"label size {lab.shape[0]}x{lab.shape[1]} differs from its image {pair['image']} "
                                 f"({shape[0]}x{shape[1]})", pair["label"])
        except InputError as exc:
            problems.append(str(exc))
    if problems:
        more = f" ... and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise InputError(f"{len(problems)} bad PNG pair(s): " + " | ".join(problems[:5]) + more)


def png_split(dataset_dir: Optional[PathLike] = None, image_dir: Optional[PathLike] = None,
              label_dir: Optional[PathLike] = None, split: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 42,
              split_by: str = "image", palette: Optional[Mapping] = None, nearest_colour: bool = False,
              num_classes: Optional[int] = None) -> Dict[str, List[Dict[str, str]]]:
    """The 2D workflow's datalists: ``{"train", "val", "test"}`` lists of ``{"image", "label", "name"}``.

    Pairs come from ``dataset_dir`` (``images/`` + ``labels/``, see :func:`find_png_folders`) or
    ``image_dir`` + ``label_dir``; every pair is read and checked first (:func:`check_png_pairs`),
    then split by :func:`split_groups` with ``split`` fractions and ``seed``. A palette class the
    network cannot output (``>= num_classes``) and an empty validation split raise ConfigError.
    """
    from volseg.io.png import parse_palette

    if split_by not in SPLIT_BY:
        raise ConfigError(f"unknown split_by {split_by!r}; valid: {', '.join(SPLIT_BY)}")
    top = max(parse_palette(palette))
    if num_classes is not None and top >= int(num_classes):
        raise ConfigError(f"the palette has class {top} but the network has num_classes={num_classes}")
    if image_dir is None or label_dir is None:
        if dataset_dir is None:
            raise ConfigError("give dataset_dir (with images/ and labels/) or image_dir and label_dir")
        image_dir, label_dir = find_png_folders(dataset_dir)
    pairs = pair_png_folders(image_dir, label_dir)
    check_png_pairs(pairs, palette, nearest_colour)
    train, val, test = split_groups(pairs, split, seed, split_by)
    if not val:
        raise ConfigError(f"the split {list(split)} gives no validation images: early stopping and the best "
                          "model need some")
    return {"train": train, "val": val, "test": test}
