"""Real CT/MRI samples with tumour labels from the pyradiomics 3.0.1 source distribution (PyPI).

The sdist ships ``data/`` (BSD-3, images from public TCIA collections): ``lung1_image.nrrd``
(512x512x48 chest CT, 0.57x0.57x5 mm) with ``lung1_label.nrrd``, ``lung2``, ``brain1``, ``brain2``
(T1 MRI) and ``breast1``. They are single cases: good for geometry and end-to-end checks, too
few to claim generalisation.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Optional, Union

from volseg.errors import InputError

PathLike = Union[str, "os.PathLike[str]"]
PACKAGE = "pyradiomics"
VERSION = "3.0.1"
SDIST = f"{PACKAGE}-{VERSION}.tar.gz"
SAMPLE_FILES = tuple(
    f"{case}_{kind}.nrrd" for case in ("lung1", "lung2", "brain1", "brain2", "breast1") for kind in ("image", "label")
)


def default_cache_dir() -> Path:
    """``$VOLSEG_CACHE`` if set, else ``~/.cache/volseg``."""
    env = os.environ.get("VOLSEG_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "volseg"


def fetch_samples(cache_dir: Optional[PathLike] = None, quiet: bool = True) -> Path:
    """Download (once) the pyradiomics 3.0.1 sdist with pip and extract its ``data/`` folder.

    Returns ``<cache>/pyradiomics-3.0.1/data`` holding ``lung1_image.nrrd`` etc. Idempotent: an
    existing complete extraction is reused without network access.
    """
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    data = cache / f"{PACKAGE}-{VERSION}" / "data"
    if all((data / f).is_file() for f in SAMPLE_FILES):
        return data
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / SDIST
    if not sdist.is_file():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
               f"{PACKAGE}=={VERSION}", "-d", str(cache)]
        if quiet:
            cmd.append("--quiet")
        res = subprocess.run(cmd, capture_output=True, encoding="utf-8", errors="replace")
        if res.returncode != 0 or not sdist.is_file():
            tail = " ".join((res.stderr or res.stdout).split())[-300:]
            raise InputError(f"could not download {PACKAGE}=={VERSION} from PyPI with pip ({tail})", cache)
    _extract_data(sdist, cache)
    missing = [f for f in SAMPLE_FILES if not (data / f).is_file()]
    if missing:
        raise InputError(f"sample files missing after extraction: {', '.join(missing)}", sdist)
    return data


def _extract_data(sdist: Path, cache: Path) -> None:
    """Extract only ``pyradiomics-3.0.1/data/*`` (no absolute or parent paths), atomically per file."""
    prefix = f"{PACKAGE}-{VERSION}/data/"
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            for m in tar.getmembers():
                if not m.isfile() or not m.name.startswith(prefix) or ".." in Path(m.name).parts:
                    continue
                dest = cache / m.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f".{dest.name}.tmp")
                src = tar.extractfile(m)
                if src is None:
                    continue
                with src, open(tmp, "wb") as out:
                    out.write(src.read())
                os.replace(tmp, dest)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(f"cannot extract the sample archive ({exc}); delete it and retry", sdist) from exc
