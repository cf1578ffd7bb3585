"""Training datalists from an MSD ``dataset.json`` or nnU-Net ``imagesTr/`` + ``labelsTr/`` folders."""
from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from volseg.errors import ConfigError, InputError

PathLike = Union[str, "os.PathLike[str]"]
Entry = Dict[str, Any]
_NIFTI = re.compile(r"^(?P<case>.+?)(?:_(?P<ch>\d{4}))?\.(nii\.gz|nii|nrrd|mha|mhd)$")


def _resolve(base: Path, value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_resolve(base, v) for v in value]
    p = Path(str(value))
    return str(p if p.is_absolute() else (base / p).resolve())


def _msd(base: Path) -> Tuple[List[Entry], Optional[List[Entry]]]:
    path = base / "dataset.json"
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read dataset.json ({exc})", path) from exc
    if not isinstance(spec, dict) or not isinstance(spec.get("training"), list):
        raise InputError("dataset.json has no 'training' list of {\"image\", \"label\"} entries", path)

    def fix(items: List[Any], what: str) -> List[Entry]:
        out = []
        for i, it in enumerate(items):
            if not isinstance(it, dict) or "image" not in it or "label" not in it:
                raise InputError(f"{what}[{i}] must be {{\"image\": ..., \"label\": ...}}, got {it!r}", path)
            out.append({k: (_resolve(base, v) if k in ("image", "label") else v) for k, v in it.items()})
        return out

    val = spec.get("validation")
    return fix(spec["training"], "training"), (fix(val, "validation") if isinstance(val, list) and val else None)


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
        if p.name.endswith((".nii", ".nii.gz")):
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
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read dataset.json ({exc})", path) from exc
    spec = spec if isinstance(spec, dict) else {}
    mods = spec.get("modality") or spec.get("channel_names") or {}
    modalities = {int(k): str(v) for k, v in mods.items() if str(k).isdigit()} if isinstance(mods, dict) else {}
    labels: Dict[int, str] = {}
    for k, v in (spec.get("labels") or {}).items() if isinstance(spec.get("labels"), dict) else []:
        if str(k).isdigit():
            labels[int(k)] = str(v)
        elif isinstance(v, int) or str(v).isdigit():
            labels[int(v)] = str(k)
    return {"modalities": modalities, "labels": labels}
