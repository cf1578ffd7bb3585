"""PNG images and colour label maps: one reader policy for training and inference, and the writer.

Grey images (:func:`read_png_gray`, used by ``load_volume`` and so by training and inference):
8- and 16-bit grey PNGs, grey+alpha, and RGB / RGBA / palette PNGs whose colours are all grey
(R = G = B) are read as one grey channel with the values stored in the file. True colour images
are refused. ``meta["png_max"]`` is the full scale of the file's bit depth (1, 255 or 65535): the
2D workflow divides by it (:func:`volseg.transforms.png2d.slice_intensity`), so an image maps to
the same [0, 1] values whether it is trained on or predicted.

Label maps are colour coded with a palette ``{class: (R, G, B)}`` (:data:`DEFAULT_PALETTE`:
black 0 background, blue 1 tumour, green 2 lung); JSON-friendly forms are accepted too
(``{"1": [0, 0, 255]}`` or ``{"1": "#0000ff"}``). :func:`load_png_label` reads them,
:func:`save_label_png` writes them back in the same format.

Array order follows the rest of volseg: a 2D array is ``(X, Y)`` = (column, row), i.e. the
transpose of PIL's ``(row, column)`` order, so ``png[x, y]`` is pixel column ``x``, row ``y``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from volseg._atomic import atomic_path, check_not_input
from volseg.errors import ConfigError, InputError
from volseg.io._geometry import RawImage

PathLike = Union[str, "os.PathLike[str]"]
RGB = Tuple[int, int, int]

DEFAULT_PALETTE: Dict[int, RGB] = {0: (0, 0, 0), 1: (0, 0, 255), 2: (0, 255, 0)}
_MAX_LISTED = 10


# -- palette ------------------------------------------------------------------------------------
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


def rgb_to_labels(rgb: np.ndarray, palette: Optional[Mapping] = None, nearest_colour: bool = False,
                  path: Optional[PathLike] = None) -> np.ndarray:
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
    lut = np.zeros(len(uniq), dtype=np.uint8 if max(pal) <= 255 else np.uint16)
    unknown = []
    pal_rgb = np.array(list(pal.values()), dtype=np.float64)
    pal_idx = np.array(list(pal.keys()))
    for n, code in enumerate(uniq.tolist()):
        if code in pal_codes:
            lut[n] = pal_codes[code]
            continue
        colour = ((code >> 16) & 255, (code >> 8) & 255, code & 255)
        if nearest_colour:
            lut[n] = pal_idx[int(np.argmin(((pal_rgb - np.array(colour, dtype=np.float64)) ** 2).sum(axis=1)))]
        else:
            unknown.append((int(counts[n]), colour))
    if unknown:
        unknown.sort(reverse=True)
        listed = _listing([f"RGB{c} in {k} pixels" for k, c in unknown])
        known = ", ".join(f"{i}=RGB{c}" for i, c in pal.items())
        raise InputError(f"label colour(s) not in the palette: {listed} (palette: {known}; "
                         "add them to the palette or use nearest_colour=True)", path)
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


# -- reading ------------------------------------------------------------------------------------
def _check_png_header(path: PathLike, limit: Optional[int]) -> None:
    """The size a PNG's IHDR claims, checked before PIL decodes (or refuses) it."""
    import struct

    from volseg.io._checks import check_claim
    from volseg.io._checks import max_voxels as check_max_voxels

    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(29)
    if len(head) < 29 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return  # not a PNG: PIL says so
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 4)
    check_claim((width, height, channels), max(1, depth // 8), p, check_max_voxels(limit), p.stat().st_size,
                "deflate", what="pixels")


def read_png(path: PathLike, keep_palette_indices: bool = False, limit: Optional[int] = None) -> np.ndarray:
    """Read a PNG as stored: ``(X, Y)`` for single-channel, ``(X, Y, C)`` for RGB/RGBA.

    Palette-mode ("P") PNGs become RGB(A), or stay ``(X, Y)`` indices with ``keep_palette_indices``;
    grey+alpha becomes RGBA. 16-bit grey stays uint16 (PIL's 32-bit "I" mode is cast back). The
    size the header claims is checked against ``limit`` pixels (default ``$VOLSEG_MAX_VOXELS``)
    and the file size before decoding.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        _check_png_header(path, limit)
        with Image.open(path) as img:
            if img.format != "PNG":
                raise InputError(f"not a PNG file (format {img.format})", path)
            if img.mode == "P" and not keep_palette_indices:
                img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
            elif img.mode in ("LA", "PA"):
                img = img.convert("RGBA")
            arr = np.array(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"not a readable PNG image ({exc.__class__.__name__}: {exc})", path) from None
    if arr.dtype == np.int32:  # PIL "I": a 16-bit grey PNG
        arr = arr.astype(np.uint16)
    if arr.ndim == 3:
        return np.ascontiguousarray(arr.transpose(1, 0, 2))
    return np.ascontiguousarray(arr.T)


def png_full_scale(arr: np.ndarray) -> float:
    """The full scale of a PNG array's bit depth: 1 (1-bit), 255 (8-bit) or 65535 (16-bit)."""
    if arr.dtype == np.bool_:
        return 1.0
    return 255.0 if arr.dtype == np.uint8 else 65535.0


def read_png_gray(path: PathLike, limit: Optional[int] = None) -> RawImage:
    """A grey PNG as ``(1, X, Y)`` float32 holding the stored values, X = image column, Y = image row.

    RGB / RGBA / palette PNGs are accepted when every pixel is grey (R = G = B, alpha ignored);
    a true colour image raises InputError (colour label maps: :func:`load_png_label`).
    ``meta["png_max"]`` is the bit depth's full scale (:func:`png_full_scale`): the one intensity
    policy of the 2D workflow divides by it. The affine is a 3x3 2D identity (1 pixel = 1 mm,
    origin at the top-left pixel centre). ``limit``: the most pixels accepted (see :func:`read_png`).
    """
    arr = read_png(path, limit=limit)
    if arr.ndim == 3:
        rgb = arr[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise InputError("colour PNG: images must be grey (R = G = B); colour label maps are read "
                             "with volseg.io.load_png_label", path)
        arr = rgb[..., 0]
    return RawImage(arr[None].astype(np.float32), np.eye(3),
                    {"filename_or_obj": str(path), "source_format": "png", "modality": "",
                     "png_max": png_full_scale(arr)})


def load_png_label(path: PathLike, palette: Optional[Mapping] = None, nearest_colour: bool = False) -> np.ndarray:
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


# -- writing ------------------------------------------------------------------------------------
def save_label_png(mask: Any, path: PathLike, palette: Optional[Mapping] = None,
                   inputs: Iterable[PathLike] = ()) -> Path:
    """Write a label map ``(X, Y)`` or ``(1, X, Y)`` as an RGB PNG coloured with ``palette``.

    The format :func:`load_png_label` reads (and the 2D workflow's label PNGs come in): 8-bit RGB,
    pixel column ``x``, row ``y`` = ``mask[x, y]``, so ``load_png_label(save_label_png(m, p)) == m``.
    Values must be integral palette classes (ConfigError lists the missing ones). The write is
    atomic; ``path`` may not be one of ``inputs``. Returns ``path``.
    """
    from PIL import Image

    arr = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise InputError(f"a label PNG needs a 2D mask (X, Y) or (1, X, Y), got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
        raise InputError("mask has non-integer values: pass a label map (argmax), not probabilities")
    rgb = labels_to_rgb(np.rint(arr).astype(np.int64), palette)
    check_not_input(path, inputs)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(rgb.transpose(1, 0, 2)), mode="RGB").save(tmp, format="PNG")
    return Path(path)


def bundle_palette(bundle: PathLike) -> Optional[Dict[int, RGB]]:
    """The label palette of a bundle folder: the top-level ``palette`` of ``configs/inference.json``
    (else ``configs/train.json``), as :func:`parse_palette` returns it; ``None`` when neither has one.

    Read as plain JSON (no config code runs); a ``"@key"`` reference is followed within the file.
    """
    cfg_dir = Path(bundle) / "configs"
    for name in ("inference.json", "train.json"):
        cfg_path = cfg_dir / name
        if not cfg_path.is_file():
            continue
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read bundle config ({exc})", cfg_path) from None
        value, seen = cfg.get("palette"), set()
        while isinstance(value, str) and value.startswith("@") and value not in seen:
            seen.add(value)
            value = cfg.get(value[1:])
        if isinstance(value, Mapping):
            return parse_palette(value)
        if value is not None:
            raise ConfigError(f"'palette' must be a mapping class -> (R, G, B), got {value!r}", cfg_path)
    return None
