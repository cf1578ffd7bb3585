"""User-facing errors: one line, naming the file and the problem."""
from __future__ import annotations

import os
from typing import Optional, Union

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
