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
    the same network. Nothing is copied when both folders are the same, or on a DDP rank other
    than 0. Returns ``output_dir``.
    """
    import shutil

    from volseg.training.setup import is_rank0

    src, dst = Path(bundle_root), Path(output_dir)
    if not (src / "configs").is_dir():
        raise ConfigError(f"bundle_root has no configs/ folder: {src}")
    if src.resolve() == dst.resolve() or not is_rank0():
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
