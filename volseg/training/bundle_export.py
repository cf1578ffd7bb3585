"""Turn a training run's output folder into a self-contained bundle ``volseg predict -m`` reads."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from volseg._atomic import atomic_path
from volseg.errors import ConfigError

PathLike = Union[str, "os.PathLike[str]"]

# keys that describe where and on what a run happened, not the model: never baked into inference.json
_RUN_KEYS = frozenset({"bundle_root", "output_dir", "dataset_dir", "device", "resume", "max_epochs"})


def export_bundle(bundle_root: PathLike, output_dir: PathLike, overrides: Optional[Mapping[str, Any]] = None) -> Path:
    """Make ``output_dir`` a self-contained bundle: copy ``configs/``, ``docs/`` and ``LICENSE`` from
    ``bundle_root`` and set the training run's settings (``overrides``, e.g. ``base_channels``) as
    top-level keys of the copied ``inference.json``, so ``volseg predict -m output_dir`` rebuilds
    the same network. Nothing is copied when both folders are the same. Returns ``output_dir``.
    """
    import shutil

    src, dst = Path(bundle_root), Path(output_dir)
    if not (src / "configs").is_dir():
        raise ConfigError(f"bundle_root has no configs/ folder: {src}")
    if src.resolve() == dst.resolve():
        return dst
    for name in ("configs", "docs"):
        if (src / name).is_dir():
            shutil.copytree(src / name, dst / name, dirs_exist_ok=True)
    if (src / "LICENSE").is_file():
        shutil.copy2(src / "LICENSE", dst / "LICENSE")
    inf = dst / "configs" / "inference.json"
    if overrides and inf.is_file():
        cfg = json.loads(inf.read_text())
        cfg.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items()
                    if k in cfg and k not in _RUN_KEYS})
        cfg["bundle_root"] = str(dst.resolve())
        with atomic_path(inf) as tmp:
            tmp.write_text(json.dumps(cfg, indent=4) + "\n")
    return dst


class BundleExport:
    """Ignite handler for ``train.json``: when training completes, make ``output_dir`` a
    self-contained bundle (:func:`export_bundle`) with the run's model ``settings`` (``@roi_size``,
    ``@channels``, ...), whether the run came from ``volseg train`` or ``python -m monai.bundle run``."""

    def __init__(self, bundle_root: PathLike, output_dir: PathLike, settings: Optional[Mapping[str, Any]] = None):
        self.bundle_root, self.output_dir, self.settings = bundle_root, output_dir, dict(settings or {})
        self.exported: Optional[Path] = None

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Any = None) -> None:
        from volseg.training.setup import is_rank0

        if is_rank0():
            self.exported = export_bundle(self.bundle_root, self.output_dir, self.settings)
