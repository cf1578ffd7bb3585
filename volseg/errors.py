"""User-facing errors: one line, naming the file and the problem."""
from __future__ import annotations

import os
from typing import Iterator, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


class VolsegError(Exception):
    """An error caused by the user's input or settings.

    The CLI prints ``volseg: error: <message>`` on one line and exits non-zero
    (no traceback unless ``--debug``). Library callers catch it like any exception.
    """

    def __init__(self, message: str, path: Optional[PathLike] = None):
        self.path = None if path is None else os.fspath(path)
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class InputError(VolsegError):
    """An input file or folder cannot be read or is not what the command needs."""


class ConfigError(VolsegError):
    """A setting, option, bundle or registry name is invalid."""


def exception_chain(exc: Optional[BaseException], limit: int = 50) -> Iterator[BaseException]:
    """``exc``, then what it wraps (``__cause__``, else ``__context__``), each once, at most ``limit``.

    The one walker of wrapped errors: :func:`volseg.bundles.config.unwrap_error` finds volseg's
    error inside MONAI's ``RuntimeError``s with it, ``volseg._atomic.write_error`` a full disk."""
    seen = set()
    while exc is not None and id(exc) not in seen and len(seen) < limit:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__
