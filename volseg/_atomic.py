"""Atomic writes (temp file in the same folder + rename) and input protection."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Union

from volseg.errors import VolsegError

PathLike = Union[str, "os.PathLike[str]"]

_DOUBLE_SUFFIXES = (".nii.gz", ".tar.gz", ".seg.dcm")


def full_suffix(path: PathLike) -> str:
    """The suffix that selects a file format, e.g. ``.nii.gz`` (lower case)."""
    name = Path(path).name.lower()
    for s in _DOUBLE_SUFFIXES:
        if name.endswith(s):
            return s
    return Path(name).suffix


def check_not_input(output: PathLike, inputs: Iterable[PathLike]) -> None:
    """Raise if ``output`` would overwrite (or lie inside) one of ``inputs``."""
    out = Path(output).resolve()
    for item in inputs:
        if item is None:
            continue
        src = Path(item).resolve()
        if out == src or (src.is_dir() and src in out.parents and out.exists()):
            raise VolsegError("refusing to overwrite an input", output)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` that keeps its format suffix; rename on success.

    On any exception the temporary file is removed and ``path`` is left untouched, so a
    failed write never leaves partial output::

        with atomic_path("mask.nii.gz") as tmp:
            nib.save(img, tmp)
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = full_suffix(final)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".tmp{suffix}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Like :func:`atomic_path` for a folder of outputs (e.g. PNG slices): built aside, then renamed."""
    import shutil

    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
