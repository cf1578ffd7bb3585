"""The one reader of dataset layouts: MSD ``dataset.json`` (through MONAI's ``load_decathlon_datalist``)
and nnU-Net ``imagesTr/`` + ``labelsTr/`` folders, for training (:func:`load_datalist`) and prediction
(:func:`dataset_images`, :func:`dataset_source`)."""
from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from volseg.errors import ConfigError, InputError
from volseg.formats import LABEL_MAP_SUFFIXES, NIFTI_SUFFIXES, full_suffix

PathLike = Union[str, "os.PathLike[str]"]
Entry = Dict[str, Any]
# nnU-Net file names: <case>[_<channel 0000>]<suffix>
_NIFTI = re.compile(r"^(?P<case>.+?)(?:_(?P<ch>\d{4}))?(" + "|".join(re.escape(s) for s in LABEL_MAP_SUFFIXES) + ")$")


def _read_json(index: Path) -> Dict[str, Any]:
    try:
        spec = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read dataset.json ({exc})", index) from None
    if not isinstance(spec, dict):
        raise InputError("dataset.json must be a JSON object", index)
    return spec


def read_dataset_json(index: PathLike, key: str = "training", labelled: bool = True) -> List[Entry]:
    """The ``key`` list (``"training"``, ``"validation"``, ``"test"``) of an MSD ``dataset.json`` as
    ``[{"image": path or [paths], "label": ..., ...}]`` with paths made absolute against the file's
    folder by MONAI's ``load_decathlon_datalist``; ``[]`` when the list is absent or empty.
    ``labelled``: every entry needs a ``label``; ``test`` may list bare image paths (MSD). Entries
    MONAI would fail on are one ``InputError`` naming the first bad one."""
    from monai.data import load_decathlon_datalist

    path = Path(index).expanduser().absolute()
    items = _read_json(path).get(key)
    if items is None or items == []:
        return []
    if not isinstance(items, list):
        raise InputError(f"dataset.json '{key}' must be a list of entries", path)
    needed = ("image", "label") if labelled else ("image",)
    for i, it in enumerate(items):
        bare = key == "test" and not labelled and isinstance(it, str) and isinstance(items[0], str)
        if not bare and not (isinstance(it, dict) and all(isinstance(it.get(k), (str, list)) for k in needed)):
            form = "{" + ", ".join(f'"{k}": ...' for k in needed) + "}"
            raise InputError(f"{key}[{i}] must be {form}, got {it!r}", path)
    return load_decathlon_datalist(path, is_segmentation=True, data_list_key=key)


def _msd(base: Path) -> Tuple[List[Entry], Optional[List[Entry]]]:
    path = base / "dataset.json"
    if not isinstance(_read_json(path).get("training"), list):
        raise InputError("dataset.json has no 'training' list of {\"image\", \"label\"} entries", path)
    return read_dataset_json(path, "training"), (read_dataset_json(path, "validation") or None)


def dataset_images(index: PathLike) -> List[str]:
    """The images to predict that a ``dataset.json`` lists: its ``test`` images, else ``validation``,
    else ``training`` (absolute paths; one file or series folder each)."""
    path = Path(index)
    for key in ("test", "validation", "training"):
        entries = read_dataset_json(path, key, labelled=False)
        if entries:
            bad = [e["image"] for e in entries if not isinstance(e["image"], str)]
            if bad:
                raise InputError(f"dataset.json '{key}' has multi-channel images (lists of files): {bad[0]!r}; "
                                 "predict takes one file or series per case", path)
            return [e["image"] for e in entries]
    raise InputError("dataset.json lists no images under 'test', 'validation' or 'training'", path)


def dataset_source(path: PathLike) -> Path:
    """Where the images of ``path`` are listed: a folder's ``dataset.json``, else its ``imagesTs/``,
    else its ``imagesTr/``, else ``path`` itself (a file, a series or a folder of volumes)."""
    p = Path(path)
    if p.is_dir():
        for candidate in (p / "dataset.json", p / "imagesTs", p / "imagesTr"):
            if candidate.exists():
                return candidate
    return p


def _nnunet(base: Path) -> List[Entry]:
    images, labels = base / "imagesTr", base / "labelsTr"
    label_files = {}
    for f in sorted(labels.iterdir()):
        m = _NIFTI.match(f.name)
        if m:
            label_files[m.group("case")] = str(f.resolve())
    cases: Dict[str, List[Tuple[int, str]]] = {}
    for f in sorted(images.iterdir()):
        m = _NIFTI.match(f.name)
        if m:
            cases.setdefault(m.group("case"), []).append((int(m.group("ch") or 0), str(f.resolve())))
        elif f.is_dir():  # a DICOM series folder named after the case
            cases.setdefault(f.name, []).append((0, str(f.resolve())))
    out: List[Entry] = []
    for case, chans in sorted(cases.items()):
        files = [p for _, p in sorted(chans)]
        out.append({"image": files[0] if len(files) == 1 else files,
                    "label": label_files.get(case, str(labels / f"{case}.nii.gz"))})
    return out


def _check(entries: List[Entry], base: Path, check_headers: bool) -> None:
    problems: List[str] = []
    for e in entries:
        for key in ("image", "label"):
            for p in (e[key] if isinstance(e[key], list) else [e[key]]):
                if not os.path.exists(p):
                    problems.append(f"{p} ({key}): missing")
                elif check_headers:
                    msg = _header_problem(Path(p))
                    if msg:
                        problems.append(f"{p} ({key}): {msg}")
    if problems:
        raise InputError(f"{len(problems)} bad datalist entr{'y' if len(problems) == 1 else 'ies'}: "
                         + "; ".join(problems), base)


def _header_problem(p: Path) -> Optional[str]:
    """Cheap readability check: NIfTI header / a DICOM folder with files; ``None`` when fine."""
    try:
        if p.is_dir():
            return None if any(f.is_file() for f in p.rglob("*")) else "empty folder"
        if full_suffix(p) in NIFTI_SUFFIXES:
            import nibabel as nib

            nib.load(str(p)).header.get_data_shape()
        elif p.stat().st_size == 0:
            return "empty file"
    except Exception as exc:  # noqa: BLE001 - any reader failure is reported per file
        return f"unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})"
    return None


def load_datalist(dataset_dir: PathLike, val_fraction: float = 0.2, seed: int = 0, check: bool = True,
                  check_headers: bool = True) -> Tuple[List[Entry], List[Entry]]:
    """``(train_list, val_list)`` of ``{"image": path, "label": path}`` dicts with absolute paths.

    ``dataset_dir`` holds an MSD ``dataset.json`` (relative paths resolved against it; its
    ``validation`` list is used when present) or nnU-Net ``imagesTr/`` + ``labelsTr/`` (``case_0000.nii.gz``
    channel files pair with ``case.nii.gz``; DICOM series folders allowed as images). Otherwise a
    seeded split keeps ``val_fraction`` (at least one case) for validation. Every missing or
    unreadable file is listed in one ``InputError``.
    """
    base = Path(dataset_dir).expanduser()
    if not base.is_dir():
        raise InputError("dataset folder not found", base)
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if (base / "dataset.json").is_file():
        train, val = _msd(base)
    elif (base / "imagesTr").is_dir() and (base / "labelsTr").is_dir():
        train, val = _nnunet(base), None
    else:
        raise InputError("no dataset.json and no imagesTr/ + labelsTr/ folders (MSD or nnU-Net layout expected)", base)
    if not train:
        raise InputError("the dataset lists no training cases", base)
    if check:
        _check(train + (val or []), base, check_headers)
    if val is None:
        order = list(range(len(train)))
        random.Random(int(seed)).shuffle(order)
        n_val = max(1, int(round(len(train) * float(val_fraction)))) if val_fraction > 0 and len(train) > 1 else 0
        val = [train[i] for i in sorted(order[:n_val])]
        train = [train[i] for i in sorted(order[n_val:])]
    return train, val


def dataset_metadata(dataset_dir: PathLike) -> Dict[str, Any]:
    """``{"modalities": {channel: name}, "labels": {value: name}}`` from the folder's ``dataset.json``
    (MSD ``modality`` / ``labels`` ``{"1": "lung"}``, or nnU-Net v2 ``channel_names`` / ``labels``
    ``{"lung": 1}``); empty dicts when there is no ``dataset.json`` or it does not say."""
    path = Path(dataset_dir).expanduser() / "dataset.json"
    if not path.is_file():
        return {"modalities": {}, "labels": {}}
    spec = _read_json(path)
    mods = spec.get("modality") or spec.get("channel_names") or {}
    modalities = {int(k): str(v) for k, v in mods.items() if str(k).isdigit()} if isinstance(mods, dict) else {}
    labels: Dict[int, str] = {}
    for k, v in (spec.get("labels") or {}).items() if isinstance(spec.get("labels"), dict) else []:
        if str(k).isdigit():
            labels[int(k)] = str(v)
        elif isinstance(v, int) or str(v).isdigit():
            labels[int(v)] = str(k)
    return {"modalities": modalities, "labels": labels}
