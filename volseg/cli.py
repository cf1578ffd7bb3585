"""The ``volseg`` command: a thin layer over the library API.

Each sub-command lives in ``volseg/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``; those modules import nothing heavy at module level, so ``volseg --help``
stays instant. User errors (:class:`volseg.errors.VolsegError`) print one line and exit 1;
any other exception prints one line too, unless ``--debug`` asks for the traceback. Library
logging shows warnings only; ``-v`` adds its notes (INFO), ``--debug`` everything (DEBUG).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import List, Optional

from volseg import __version__

COMMANDS = ("info", "convert", "fetch", "phantom", "networks", "plan", "train", "predict", "optimize", "evaluate",
            "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="volseg",
        description="3D medical image segmentation on MONAI: DICOM/NIfTI in, aligned NIfTI/DICOM SEG masks out.",
    )
    parser.add_argument("--version", action="version", version=f"volseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the library's notes (INFO logging; default: warnings only)")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = importlib.import_module(f"volseg.commands.{name}")
        p = sub.add_parser(name, help=mod.HELP, description=mod.__doc__)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def setup_logging(level: int) -> None:
    """Console logging of volseg and the libraries under it (MONAI, ignite) at ``level``: one line per
    message; progress is shown by the progress bars, not by INFO lines."""
    logging.basicConfig(level=level, format="%(message)s")
    logging.getLogger().setLevel(level)


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    debug = bool(getattr(args, "debug", False))
    setup_logging(logging.DEBUG if debug else logging.INFO if getattr(args, "verbose", False) else logging.WARNING)
    if not debug:
        import warnings

        warnings.simplefilter("ignore")
    from volseg.errors import VolsegError

    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("volseg: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `volseg info x | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0
    except VolsegError as exc:
        if debug:
            raise
        print(f"volseg: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the CLI must not show tracebacks without --debug
        if debug:
            raise
        msg = " ".join(str(exc).split()) or exc.__class__.__name__
        print(f"volseg: error: {exc.__class__.__name__}: {msg} (run with --debug for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
