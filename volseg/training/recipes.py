"""Training recipes: named sets of top-level overrides a bundle keeps as extra config files,
``configs/recipe_<name>.json``, merged after ``configs/train.json``.

``volseg train lung_png2d --recipe seed`` and
``python -m monai.bundle run training --config_file "['configs/train.json','configs/recipe_seed.json']"``
run the same configuration; keys given on the command line still override the recipe's.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Union

from volseg.errors import ConfigError

PathLike = Union[str, "os.PathLike[str]"]
PREFIX = "recipe_"


def list_recipes(bundle: PathLike) -> List[str]:
    """Names of the recipes a bundle folder ships (``configs/recipe_<name>.json``), sorted."""
    return sorted(p.stem[len(PREFIX):] for p in (Path(bundle) / "configs").glob(f"{PREFIX}*.json"))


def recipe_config_files(bundle: PathLike, recipe: Optional[str] = None, multi_gpu: bool = False) -> List[Path]:
    """The config files to train ``bundle`` with: ``train.json``, ``multi_gpu_train.json`` when
    ``multi_gpu``, then ``recipe_<recipe>.json``. An unknown recipe raises ConfigError listing the valid ones."""
    cfg = Path(bundle) / "configs"
    files = [cfg / "train.json"] + ([cfg / "multi_gpu_train.json"] if multi_gpu else [])
    if recipe and recipe != "default":
        path = cfg / f"{PREFIX}{recipe}.json"
        if not path.is_file():
            valid = ", ".join(["default", *list_recipes(bundle)])
            raise ConfigError(f"bundle {Path(bundle).name!r} has no recipe {recipe!r}; valid: {valid}")
        files.append(path)
    return files
