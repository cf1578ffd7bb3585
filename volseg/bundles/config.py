"""Read a MONAI bundle's configs the way ``python -m monai.bundle run`` does.

A bundle is a folder ``configs/`` (``inference.json`` or ``.yaml``/``.yml``, ``metadata.json``,
optional ``scripts/`` package imported by ``_target_: scripts...``) plus ``models/``. Config
files are merged in order (as ``--config_file "['a.json','b.yaml']"``), ``metadata.json`` is read
as ``_meta_``, overrides are set by id (``#`` paths allowed) before anything is built, and the
bundle root goes on ``sys.path`` so its ``scripts`` import.
"""
from __future__ import annotations

import ast
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from volseg.errors import ConfigError, InputError, VolsegError, exception_chain

PathLike = Union[str, "os.PathLike[str]"]
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt")


@dataclass
class BundleSource:
    """Where a bundle's parts are: ``root`` (``bundle_root``), the config files in merge order,
    ``metadata.json`` (or ``None``) and, when given apart from the configs, the weights file."""

    root: Path
    config_files: List[Path]
    metadata_file: Optional[Path] = None
    weights: Optional[Path] = None
    metadata: Dict[str, Any] = field(default_factory=dict)


def parse_value(text: str) -> Any:
    """A command-line value as MONAI's runner reads it: JSON, else a Python literal, else the string."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(items: Sequence[str]) -> Dict[str, Any]:
    """``["max_epochs=3", "inferer#overlap=0.5", "device=cpu"]`` -> ``{id: value}``."""
    out: Dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value (e.g. inferer#overlap=0.5)")
        out[key.strip()] = parse_value(value)
    return out


def _config_in(folder: Path, name: str) -> Optional[Path]:
    for suffix in CONFIG_SUFFIXES:
        candidate = folder / "configs" / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _root_of(config_file: Path) -> Path:
    return config_file.parent.parent if config_file.parent.name == "configs" else config_file.parent


def locate_bundle(model: PathLike, config: Union[PathLike, Sequence[PathLike], None] = None,
                  name: str = "inference") -> BundleSource:
    """Find the configs and weights for ``model`` (a bundle folder, a training output folder with
    ``models/model.pt``, or a weights file) and ``config`` (a bundle folder, a config file or a list
    of config files; default: ``model``'s own ``configs/<name>.json|yaml``)."""
    m = Path(model)
    if not m.exists():
        raise InputError("model bundle not found", m)
    weights: Optional[Path] = None
    if m.is_file():
        if m.suffix.lower() not in WEIGHT_SUFFIXES:
            raise InputError(f"a model is a bundle folder or a weights file ({', '.join(WEIGHT_SUFFIXES)})", m)
        weights = m
    if config is None:
        folder = (m.parent.parent if m.parent.name == "models" else m.parent) if m.is_file() else m
        found = _config_in(folder, name)
        if found is None:
            hint = "; give --config BUNDLE (the bundle that trained it)" if (folder / "models").is_dir() else ""
            raise InputError(f"not a MONAI bundle: configs/{name}.json (or .yaml) is missing{hint}", folder)
        files = [found]
    else:
        items = [config] if isinstance(config, (str, os.PathLike)) else list(config)
        files = []
        for item in items:
            p = Path(item)
            if p.is_dir():
                found = _config_in(p, name)
                if found is None:
                    raise InputError(f"not a MONAI bundle: configs/{name}.json (or .yaml) is missing", p)
                files.append(found)
            elif p.is_file() and p.suffix.lower() in CONFIG_SUFFIXES:
                files.append(p)
            else:
                raise InputError(f"config must be a bundle folder or a {'/'.join(CONFIG_SUFFIXES)} file", p)
        if weights is None and m.resolve() != _root_of(files[0]).resolve():
            weights = m / "models" / "model.pt"
            if not weights.is_file():
                raise InputError("no models/model.pt in the model folder", m)
    root = _root_of(files[0])
    meta = root / "configs" / "metadata.json"
    source = BundleSource(root=root.resolve(), config_files=[f.resolve() for f in files],
                          metadata_file=meta.resolve() if meta.is_file() else None,
                          weights=None if weights is None else weights.resolve())
    if source.metadata_file is not None:
        try:
            source.metadata = json.loads(source.metadata_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read metadata.json: {exc}", source.metadata_file) from None
    return source


def use_bundle_imports(root: Path) -> None:
    """Put ``root`` first on ``sys.path`` so the bundle's ``scripts`` package imports, forgetting a
    ``scripts`` package another bundle imported before (each bundle names its own ``scripts``)."""
    root_s = str(root)
    loaded = sys.modules.get("scripts")
    if loaded is not None:
        origin = str(Path(getattr(loaded, "__file__", "") or "").parent.parent)
        if origin != root_s:
            for name in [n for n in sys.modules if n == "scripts" or n.startswith("scripts.")]:
                del sys.modules[name]
    if root_s in sys.path:
        sys.path.remove(root_s)
    sys.path.insert(0, root_s)


def read_parser(source: BundleSource, overrides: Optional[Mapping[str, Any]] = None) -> Any:
    """A ``monai.bundle.ConfigParser`` over ``source``'s config files (merged in order) with
    ``metadata.json`` as ``_meta_``, ``bundle_root`` set to the bundle folder, then ``overrides``."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    try:
        parser.read_config([str(f) for f in source.config_files])
    except Exception as exc:  # noqa: BLE001 - malformed JSON/YAML
        raise InputError(f"cannot read the bundle config: {_first_line(exc)}", source.config_files[0]) from None
    if source.metadata:
        parser.read_meta(source.metadata)
    parser["bundle_root"] = str(source.root)
    for key, value in (overrides or {}).items():
        try:
            parser[key] = value
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ConfigError(f"cannot set {key!r}: {_first_line(exc)}", source.config_files[0]) from None
    use_bundle_imports(source.root)
    return parser


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def unwrap_error(exc: BaseException) -> Optional[VolsegError]:
    """The ``VolsegError`` inside MONAI's wrapping ``RuntimeError``s (``applying transform ...``,
    ``Component to instantiate must ...``), if any. volseg's one home for this: every caller that
    runs MONAI code (bundle parser, transforms, engine, training) unwraps through it."""
    return next((e for e in exception_chain(exc) if isinstance(e, VolsegError)), None)


def build(parser: Any, item: str, where: PathLike) -> Any:
    """``parser.get_parsed_content(item)``, with MONAI's wrapped errors turned into one-line volseg errors."""
    try:
        return parser.get_parsed_content(item)
    except VolsegError:
        raise
    except Exception as exc:  # noqa: BLE001 - MONAI wraps config errors in several types
        inner = unwrap_error(exc)
        if inner is not None:
            raise inner from None
        root = list(exception_chain(exc))[-1]
        raise ConfigError(f"cannot build {item!r}: {_first_line(root)}", where) from None


def channel_labels(metadata: Mapping[str, Any]) -> Dict[int, str]:
    """``{label: name}`` from ``network_data_format.outputs.pred.channel_def`` (model-zoo style),
    background left out; ``{}`` when absent."""
    try:
        channels = metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
        return {int(k): str(v) for k, v in channels.items() if int(k) != 0}
    except (KeyError, TypeError, ValueError, AttributeError):
        return {}
