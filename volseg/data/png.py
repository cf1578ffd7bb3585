"""PNG folders for the 2D workflow: image/label pairing and the colour palette of label PNGs.

Label PNGs are colour coded. The default palette (:data:`DEFAULT_PALETTE`) is

====== ================ ===========
class  colour (R, G, B)  name
====== ================ ===========
0      (0, 0, 0)        background (black)
1      (0, 0, 255)      tumour (blue)
2      (0, 255, 0)      lung (green)
====== ================ ===========

A palette is a mapping ``class index -> (R, G, B)``; JSON-friendly forms are accepted too
(``{"1": [0, 0, 255]}`` or ``{"1": "#0000ff"}``). Single-channel (grayscale / palette-mode)
label PNGs are read as class indices directly.

Array order follows the rest of volseg: a 2D array is ``(X, Y)`` = (column, row), i.e. the
transpose of PIL's ``(row, column)`` order, so ``png[x, y]`` is pixel column ``x``, row ``y``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from volseg.errors import ConfigError, InputError

PathLike = Union[str, "os.PathLike[str]"]
RGB = Tuple[int, int, int]

DEFAULT_PALETTE: Dict[int, RGB] = {0: (0, 0, 0), 1: (0, 0, 255), 2: (0, 255, 0)}
DEFAULT_CLASS_NAMES: Dict[int, str] = {0: "background", 1: "tumour", 2: "lung"}
LABEL_SUFFIXES = ("_label", "_labels", "_mask", "_seg", "_gt")
_MAX_LISTED = 10


def _parse_colour(value: object) -> RGB:
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if len(text) != 6:
            raise ConfigError(f"palette colour {value!r} is not '#rrggbb'")
        try:
            return tuple(int(text[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
        except ValueError:
            raise ConfigError(f"palette colour {value!r} is not '#rrggbb'") from None
    try:
        rgb = tuple(int(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ConfigError(f"palette colour {value!r} is not an (R, G, B) triple") from None
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ConfigError(f"palette colour {value!r} is not an (R, G, B) triple of 0..255")
    return rgb  # type: ignore[return-value]


def parse_palette(palette: Optional[Mapping] = None) -> Dict[int, RGB]:
    """Normalise a palette to ``{class_index: (R, G, B)}``; ``None`` gives :data:`DEFAULT_PALETTE`.

    Raises ConfigError when indices are not non-negative integers, colours are malformed or
    two classes share a colour.
    """
    if palette is None:
        return dict(DEFAULT_PALETTE)
    out: Dict[int, RGB] = {}
    for key, value in dict(palette).items():
        try:
            idx = int(key)
        except (TypeError, ValueError):
            raise ConfigError(f"palette class index {key!r} is not an integer") from None
        if idx < 0 or idx > 65535:
            raise ConfigError(f"palette class index {idx} is out of range 0..65535")
        out[idx] = _parse_colour(value)
    if not out:
        raise ConfigError("palette is empty")
    colours = list(out.values())
    dup = sorted({c for c in colours if colours.count(c) > 1})
    if dup:
        raise ConfigError(f"palette gives several classes the same colour: {dup}")
    return dict(sorted(out.items()))


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" ... and {more} more" if more > 0 else "")


def rgb_to_labels(
    rgb: np.ndarray,
    palette: Optional[Mapping] = None,
    nearest_colour: bool = False,
    path: Optional[PathLike] = None,
) -> np.ndarray:
    """Map an RGB image ``(..., 3)`` (uint8) to class indices ``(...)`` (uint8, uint16 past 255).

    A colour missing from the palette raises InputError naming ``path``, the colour and its pixel
    count, unless ``nearest_colour`` is True (then the closest palette colour, Euclidean in RGB, wins).
    """
    pal = parse_palette(palette)
    arr = np.asarray(rgb)
    if arr.ndim < 1 or arr.shape[-1] != 3:
        raise InputError(f"expected an RGB label image, got array shape {arr.shape}", path)
    flat = arr.reshape(-1, 3).astype(np.int64)
    codes = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    uniq, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    pal_codes = {(r << 16) | (g << 8) | b: idx for idx, (r, g, b) in pal.items()}
    dtype = np.uint8 if max(pal) <= 255 else np.uint16
    lut = np.zeros(len(uniq), dtype=dtype)
    unknown = []
    pal_rgb = np.array(list(pal.values()), dtype=np.float64)
    pal_idx = np.array(list(pal.keys()))
    for n, code in enumerate(uniq.tolist()):
        if code in pal_codes:
            lut[n] = pal_codes[code]
            continue
        colour = ((code >> 16) & 255, (code >> 8) & 255, code & 255)
        if nearest_colour:
            dist = ((pal_rgb - np.array(colour, dtype=np.float64)) ** 2).sum(axis=1)
            lut[n] = pal_idx[int(np.argmin(dist))]
        else:
            unknown.append((int(counts[n]), colour))
    if unknown:
        unknown.sort(reverse=True)
        listed = _listing([f"RGB{c} in {k} pixels" for k, c in unknown])
        known = ", ".join(f"{i}=RGB{c}" for i, c in pal.items())
        raise InputError(
            f"label colour(s) not in the palette: {listed} (palette: {known}; "
            "add them to the palette or use nearest_colour=True)",
            path,
        )
    return lut[inverse.reshape(-1)].reshape(arr.shape[:-1])


def labels_to_rgb(labels: np.ndarray, palette: Optional[Mapping] = None) -> np.ndarray:
    """Colour class indices ``(...)`` with the palette: ``(..., 3)`` uint8. Unknown indices raise ConfigError."""
    pal = parse_palette(palette)
    lab = np.asarray(labels).astype(np.int64)
    present = np.unique(lab)
    missing = [int(v) for v in present if int(v) not in pal]
    if missing:
        raise ConfigError(f"label value(s) {missing} have no palette colour (palette classes: {sorted(pal)})")
    lut = np.zeros((int(present.max()) + 1 if present.size else 1, 3), dtype=np.uint8)
    for idx, colour in pal.items():
        if idx < len(lut):
            lut[idx] = colour
    return lut[lab]


def read_png(path: PathLike, keep_palette_indices: bool = False) -> np.ndarray:
    """Read a PNG as stored: ``(X, Y)`` for single-channel, ``(X, Y, C)`` for RGB/RGBA.

    Palette-mode ("P") PNGs become RGB(A), or stay ``(X, Y)`` indices with ``keep_palette_indices``.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.format != "PNG":
                raise InputError(f"not a PNG file (format {img.format})", path)
            if img.mode == "P" and keep_palette_indices:
                pass
            elif img.mode == "P":
                img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
            elif img.mode in ("LA", "PA"):
                img = img.convert("RGBA")
            arr = np.array(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(f"cannot read PNG ({exc.__class__.__name__}: {exc})", path) from None
    if arr.ndim == 3:
        return np.ascontiguousarray(arr.transpose(1, 0, 2))
    return np.ascontiguousarray(arr.T)


def load_png_label(
    path: PathLike, palette: Optional[Mapping] = None, nearest_colour: bool = False
) -> np.ndarray:
    """Load a label PNG as class indices ``(X, Y)`` uint8.

    RGB(A) labels go through the palette (alpha ignored); single-channel labels are class
    indices already and must be palette classes. Palette-mode ("P") PNGs whose indices are all
    palette classes are read as indices (VOC style); otherwise by their colours.
    """
    pal = parse_palette(palette)
    arr = read_png(path, keep_palette_indices=True)
    if arr.ndim == 2 and not set(np.unique(arr).tolist()) <= set(pal):
        from PIL import Image

        with Image.open(path) as img:
            is_p = img.mode == "P"
        if is_p:
            arr = read_png(path)
    if arr.ndim == 3:
        return rgb_to_labels(arr[..., :3], pal, nearest_colour=nearest_colour, path=path)
    values = np.unique(arr)
    if set(values.tolist()) <= set(pal):
        return arr.astype(np.uint8 if max(pal) <= 255 else np.uint16)
    if arr.dtype != np.uint8:
        raise InputError(f"16-bit label values {values[:10].tolist()} are not palette classes {sorted(pal)}", path)
    # not class indices: read the gray levels as colours (v, v, v), e.g. white (255, 255, 255) masks
    try:
        return rgb_to_labels(np.repeat(arr[..., None], 3, axis=-1), pal, nearest_colour=nearest_colour, path=path)
    except InputError as exc:
        raise InputError(
            f"grayscale label: values are neither class indices {sorted(pal)} nor palette colours; {exc.message} "
            '(for 0/255 masks use palette {"0": [0, 0, 0], "1": [255, 255, 255]} with num_classes 2)',
            path,
        ) from None


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
