"""The bundles that ship with volseg (``ct_unet3d``, ``ct_deeplab3d``, ``mri_unet3d``, ``lung_png2d``).

They live at the repository's top level (``bundles/<name>``) and are installed inside the wheel as
package data of ``volseg._bundles`` (``pyproject.toml``: ``package-dir``). :func:`shipped_root` finds
them there through ``importlib.resources``, else in the source checkout (an editable install, or
running from the repository).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import List, Optional

from volseg.errors import ConfigError


def _installed() -> Optional[Path]:
    root = resources.files("volseg").joinpath("_bundles")
    return Path(str(root)) if root.is_dir() else None


def _checkout() -> Optional[Path]:
    root = Path(__file__).resolve().parents[2] / "bundles"
    return root if root.is_dir() and (root.parent / "volseg" / "__init__.py").is_file() else None


def shipped_root() -> Path:
    """The folder holding the shipped bundles: inside the installed package, else the checkout's ``bundles/``."""
    root = _installed() or _checkout()
    if root is None:
        raise ConfigError("volseg's bundles are missing from this installation (neither volseg/_bundles "
                          "nor a source checkout's bundles/): reinstall volseg")
    return root


def list_bundles() -> List[str]:
    """Names of the shipped bundles (folders with ``configs/``), sorted."""
    return sorted(p.name for p in shipped_root().iterdir() if (p / "configs").is_dir())


def find_bundle(name: str) -> Path:
    """The shipped bundle ``name`` (e.g. ``"ct_unet3d"``); ConfigError listing the available ones."""
    root = shipped_root()
    path = root / name
    if not name or "/" in name or "\\" in name or not (path / "configs").is_dir():
        raise ConfigError(f"bundle {name!r} not found in {root}; available: {', '.join(list_bundles()) or 'none'}")
    return path
