"""volseg.bundles.shipped: the bundles that ship with volseg, found in the package or the checkout."""
from __future__ import annotations

from pathlib import Path

import pytest

from volseg.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_find_bundle_in_the_checkout_and_clear_error() -> None:
    from volseg.bundles import find_bundle, list_bundles

    assert find_bundle("lung_png2d") == REPO / "bundles" / "lung_png2d"
    assert list_bundles() == ["ct_deeplab3d", "ct_unet3d", "lung_png2d", "mri_unet3d"]
    with pytest.raises(ConfigError, match=r"bundle 'nope' not found .*available: ct_deeplab3d, ct_unet3d"):
        find_bundle("nope")
    with pytest.raises(ConfigError, match="not found"):
        find_bundle("../bundles/ct_unet3d")


def test_installed_bundles_come_first(tmp_path: Path, monkeypatch) -> None:
    """In a wheel the bundles are package data (``volseg/_bundles``): found there, before any checkout."""
    import volseg.bundles.shipped as shipped

    (tmp_path / "_bundles" / "ct_unet3d" / "configs").mkdir(parents=True)
    monkeypatch.setattr(shipped.resources, "files", lambda package: tmp_path)
    assert shipped.find_bundle("ct_unet3d") == tmp_path / "_bundles" / "ct_unet3d"
    assert shipped.list_bundles() == ["ct_unet3d"]


def test_wheel_ships_every_bundle_file() -> None:
    """pyproject's package-data patterns cover every tracked file of every bundle (a new config or
    doc would otherwise be missing from the wheel only)."""
    import subprocess
    from pathlib import PurePosixPath
    import tomllib

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "volseg._bundles"]
    tracked = subprocess.run(["git", "ls-files", "bundles"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    assert tracked

    def shipped(f: str) -> bool:  # setuptools' glob: '*' stays within one folder
        rel = PurePosixPath(f).relative_to("bundles")
        return any(len(rel.parts) == len(PurePosixPath(p).parts) and rel.match(p) for p in patterns)

    missed = [f for f in tracked if not shipped(f)]
    assert missed == []
