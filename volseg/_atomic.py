"""Atomic writes (temp file in the same folder + rename), groups of outputs that appear together,
output validation before any work, and input protection.

Temporaries are hidden and named ``.<name>.vstmp-<host>-<pid>-<random>.tmp<suffix>`` (folders:
``.tmpdir``) beside their final path. They are created with mode ``0666`` / ``0777`` minus the
umask, so outputs get the usual ``0644`` / ``0755`` under umask 0022. A run killed with SIGKILL
cannot clean up: every later volseg write into the same folder first sweeps the temporaries whose
process is gone (same host) or that are older than :data:`STALE_AFTER_S` (any host).
A full disk (``ENOSPC``, quota, file size limit) is an ``InputError`` naming the final path.
"""
from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import os
import re
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from volseg.errors import ConfigError, InputError, VolsegError, exception_chain
from volseg.formats import OUTPUT_SUFFIXES, full_suffix

PathLike = Union[str, "os.PathLike[str]"]

STALE_AFTER_S = 24 * 3600  # a temporary this old is swept even if a process with its PID is alive
_TMP_RE = re.compile(r"^\..*\.vstmp-([0-9a-f]{6})-(\d+)-[0-9a-f]{8}\.tmp")
# tempfile.mkstemp/mkdtemp names of volseg before 0.1.x: swept only once stale (no PID to ask)
_OLD_TMP_RE = re.compile(r"^\.(.+)\.[a-z0-9_]{8}\.tmp(\.[a-z.]+)?$")
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_FULL_TEXT = ("no space left on device", "disk quota exceeded", "file too large", "file write failed")
_DENIED_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}

OUTPUT_KINDS = ("volume", "mask", "folder", "mask-or-folder")
# names that are clearly files, refused where a folder is expected (``-o x.txt``)
_FILE_LIKE = {".txt", ".csv", ".json", ".yaml", ".yml", ".png", ".jpg", ".jpeg", ".pdf", ".html", ".log",
              ".pt", ".pth", ".onnx", ".zip", ".tar.gz", ".npy", ".npz", ".h5", ".raw", ".zraw", ".nhdr"}


def check_not_input(output: PathLike, inputs: Iterable[PathLike]) -> None:
    """Raise if ``output`` would overwrite (or lie inside) one of ``inputs``."""
    out = Path(output).resolve()
    for item in inputs:
        if item is None:
            continue
        src = Path(item).resolve()
        if out == src or (src.is_dir() and src in out.parents and out.exists()):
            raise VolsegError("refusing to overwrite an input", output)


# ---------------------------------------------------------------- temporaries


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def _tmp_name(final: Path, folder: bool = False) -> Path:
    tag = f"vstmp-{_host_tag()}-{os.getpid()}-{secrets.token_hex(4)}"
    suffix = ".tmpdir" if folder else f".tmp{full_suffix(final)}"
    return final.parent / f".{final.name[:100]}.{tag}{suffix}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def sweep_temporaries(folder: PathLike) -> List[Path]:
    """Remove volseg temporaries in ``folder`` left by dead processes (or older than STALE_AFTER_S).

    Returns the paths removed. Called before every atomic write into a folder.
    """
    removed: List[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    host, now = _host_tag(), time.time()
    for e in entries:
        if not e.name.startswith("."):
            continue
        m, legacy = _TMP_RE.match(e.name), _OLD_TMP_RE.match(e.name)
        if m is None and (legacy is None or (legacy.group(2) or "") != full_suffix(legacy.group(1))):
            continue
        try:
            old = now - e.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S
            pid = int(m.group(2)) if m is not None and m.group(1) == host else os.getpid()
            if not (old or (pid != os.getpid() and not _pid_alive(pid))):
                continue
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            removed.append(Path(e.path))
        except OSError:
            continue
    return removed


def write_error(exc: BaseException, final: PathLike) -> Optional[VolsegError]:
    """The one-line ``InputError`` for a failed write of ``final`` (full disk, no permission), or ``None``.

    Looks through the exception chain, so wrapped errors (SimpleITK, torch.save) are recognised too.
    """
    for cur in exception_chain(exc):
        if isinstance(cur, VolsegError):
            return None
        code = getattr(cur, "errno", None)
        text = " ".join(str(cur).split()).lower()
        if code in _FULL_ERRNOS or any(t in text for t in _FULL_TEXT):
            why = os.strerror(code) if code in _FULL_ERRNOS else " ".join(str(cur).split())[:120]
            return InputError(f"cannot write: no space left on the device or file size limit reached ({why})", final)
        if code in _DENIED_ERRNOS:
            return InputError(f"cannot write: {os.strerror(code).lower()} in folder {Path(final).parent}", final)
    return None


def _mkdir(folder: Path, final: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"cannot write: {folder} is a file, not a folder", final) from None
    except OSError as exc:
        raise (write_error(exc, final) or InputError(f"cannot create folder {folder} ({exc.strerror})", final)) from exc


def _new_tmp(final: Path, folder: bool = False) -> Path:
    """Create an empty hidden temporary (file or folder) beside ``final``, honouring the umask."""
    _mkdir(final.parent, final)
    sweep_temporaries(final.parent)
    for _ in range(20):
        tmp = _tmp_name(final, folder)
        try:
            if folder:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666))
            return tmp
        except FileExistsError:
            continue
        except OSError as exc:
            raise (write_error(exc, final) or InputError(f"cannot write ({exc.strerror})", final)) from exc
    raise InputError("cannot create a temporary file beside it", final)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------- groups


class _Group:
    """Temporaries waiting to be renamed onto their final paths, all together."""

    def __init__(self) -> None:
        self.pending: List[Tuple[Path, Path]] = []

    def tmp_for(self, final: PathLike) -> Path:
        """A new empty temporary file for ``final`` (same suffix), renamed when the group succeeds."""
        final = Path(final)
        tmp = _new_tmp(final)
        self.pending.append((tmp, final))
        return tmp

    def adopt(self, tmp: Path, final: PathLike) -> None:
        self.pending.append((Path(tmp), Path(final)))

    def abort(self) -> None:
        for tmp, _ in self.pending:
            _remove(tmp)
        self.pending = []

    def commit(self) -> None:
        """Rename every temporary onto its final path; on a failure put the old finals back."""
        done: List[Tuple[Path, Optional[Path]]] = []
        final = Path()
        try:
            for tmp, final in self.pending:
                backup = None
                if final.exists() or final.is_symlink():
                    backup = _tmp_name(final, final.is_dir())
                    os.replace(final, backup)
                done.append((final, backup))
                os.replace(tmp, final)
        except BaseException as exc:
            failed = final
            for final, backup in reversed(done):
                with contextlib.suppress(OSError):
                    if backup is not None:
                        if final.is_dir() and not final.is_symlink():
                            shutil.rmtree(final)
                        os.replace(backup, final)
                    else:
                        _remove(final)
            self.abort()
            err = write_error(exc, failed)
            if err is not None:
                raise err from exc
            raise
        for _, backup in done:
            if backup is not None:
                _remove(backup)
        self.pending = []


_GROUP: "contextvars.ContextVar[Optional[_Group]]" = contextvars.ContextVar("volseg_atomic_group", default=None)


@contextlib.contextmanager
def atomic_group() -> Iterator[Callable[[PathLike], Path]]:
    """Outputs written inside the block appear together, only if the whole block succeeds.

    Yields ``tmp_for(final_path) -> Path``, a temporary to write ``final_path`` into; every
    :func:`atomic_path` / :func:`atomic_dir` inside the block joins the group too, so library writers
    (``save_mask``, ``write_dicom_seg``, ...) need no change. On success all finals are renamed
    together (a failed rename restores the previous files); on any exception all temporaries are
    removed and no final is touched::

        with atomic_group():
            save_mask(mask, image, "case.nii.gz")
            write_stats(rows, "case_stats.csv", "case_stats.json")

    Groups nest: an inner group's outputs are handed to the outer one on success.
    """
    parent = _GROUP.get()
    group = _Group()
    token = _GROUP.set(group)
    try:
        yield group.tmp_for
    except BaseException:
        group.abort()
        raise
    finally:
        _GROUP.reset(token)
    if parent is not None:
        parent.pending.extend(group.pending)
    else:
        group.commit()


def _finish(tmp: Path, final: Path) -> None:
    parent = _GROUP.get()
    if parent is not None:
        parent.adopt(tmp, final)
        return
    solo = _Group()
    solo.adopt(tmp, final)
    solo.commit()


@contextlib.contextmanager
def _atomic(path: PathLike, folder: bool) -> Iterator[Path]:
    final = Path(path)
    tmp = _new_tmp(final, folder)
    try:
        yield tmp
        _finish(tmp, final)
    except BaseException as exc:
        _remove(tmp)
        err = write_error(exc, final)
        if err is not None:
            raise err from exc
        raise


def atomic_path(path: PathLike) -> "contextlib.AbstractContextManager[Path]":
    """Yield a temporary path beside ``path`` that keeps its format suffix; rename on success.

    On any exception the temporary file is removed and ``path`` is left untouched, so a
    failed write never leaves partial output (inside :func:`atomic_group` the rename waits for
    the group)::

        with atomic_path("mask.nii.gz") as tmp:
            nib.save(img, tmp)
    """
    return _atomic(path, folder=False)


def atomic_dir(path: PathLike) -> "contextlib.AbstractContextManager[Path]":
    """Like :func:`atomic_path` for a folder of outputs (e.g. PNG slices): built aside, then renamed
    (an existing folder at ``path`` is replaced)."""
    return _atomic(path, folder=True)


def atomic_files(paths: Sequence[PathLike]) -> "contextlib.AbstractContextManager[Path]":
    """A temporary folder to write files named like ``paths`` (same folder) into; on success each
    file is renamed onto its path (e.g. ``.mhd`` + ``.zraw`` written by one library call)."""
    return _atomic_files([Path(p) for p in paths])


@contextlib.contextmanager
def _atomic_files(finals: List[Path]) -> Iterator[Path]:
    with atomic_group():
        tmpdir = _new_tmp(finals[0], folder=True)
        try:
            yield tmpdir
            for f in finals:
                moved = _new_tmp(f)
                os.replace(tmpdir / f.name, moved)
                _GROUP.get().adopt(moved, f)  # type: ignore[union-attr]
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)


# ---------------------------------------------------------------- validation


def _nearest_existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe_writable(folder: Path, shown: PathLike) -> None:
    anc = _nearest_existing(folder)
    if not anc.is_dir():
        raise InputError(f"cannot write: {anc} is a file, not a folder", shown)
    try:
        tmp = _new_tmp(anc / ".volseg-write-check")
    except InputError as exc:
        raise InputError(exc.message, shown) from None
    tmp.unlink(missing_ok=True)


def validate_output(path: PathLike, inputs: Iterable[Optional[PathLike]], kind: str) -> None:
    """Check an output path before any work is done; raise a one-line error if it cannot be used.

    ``kind``: ``"volume"`` (a file ending in ``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``, ``.mhd``),
    ``"mask"`` (``.nii.gz``, ``.nii``, ``.seg.dcm``, ``.dcm``), ``"folder"`` (a folder, existing or
    not; a name like ``x.txt`` is refused) or ``"mask-or-folder"`` (a mask file name, else a folder).
    Refused: an unknown file suffix (the message lists the valid ones), a file where a folder is
    expected or the reverse, a folder that cannot be written (probed by creating a temporary), the
    output being one of ``inputs`` or lying inside an input folder (a DICOM series folder). Nothing
    is created.
    """
    if kind not in OUTPUT_KINDS:
        raise ConfigError(f"unknown output kind {kind!r}; choose one of {', '.join(OUTPUT_KINDS)}")
    p = Path(path)
    out = p.resolve()
    for item in inputs:
        if item is None or not isinstance(item, (str, os.PathLike)):
            continue
        src = Path(item).resolve()
        if out == src:
            raise InputError("refusing to overwrite an input (the output is one of the inputs)", path)
        if src.is_dir() and src in out.parents:
            raise InputError(f"the output lies inside the input folder {item}: choose a folder outside it", path)
    suffix = full_suffix(p)
    if kind == "mask-or-folder":
        if suffix in OUTPUT_SUFFIXES["mask"]:
            kind = "mask"
        elif not p.is_dir() and (suffix in _FILE_LIKE or suffix in OUTPUT_SUFFIXES["volume"]):
            raise ConfigError(f"unknown mask file type {suffix!r}: use a file name ending in "
                              f"{', '.join(OUTPUT_SUFFIXES['mask'])}, or a folder", path)
        else:
            kind = "folder"
    if kind == "folder":
        if p.exists() and not p.is_dir():
            raise InputError("exists and is not a folder: give a folder for the outputs", path)
        if not p.exists() and (suffix in _FILE_LIKE or any(suffix in s for s in OUTPUT_SUFFIXES.values())):
            raise ConfigError(f"a folder is expected here, not a file name ending in {suffix!r}", path)
        _probe_writable(p, path)
        return
    valid = OUTPUT_SUFFIXES[kind]
    if suffix not in valid:
        raise ConfigError(f"unknown {kind} file type {suffix or '(no suffix)'!r}: use one of {', '.join(valid)}", path)
    if p.is_dir():
        raise InputError(f"is a folder: give a file name ending in {', '.join(valid)}", path)
    _probe_writable(p.parent, path)
