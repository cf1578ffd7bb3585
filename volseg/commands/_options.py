"""Options several commands share, defined once (commands import this, never each other)."""
from __future__ import annotations

import argparse


def add_nan_to(parser: argparse.ArgumentParser) -> None:
    """``--nan-to VALUE``: the non-finite voxel policy of :func:`volseg.io.load_volume` (default: refuse)."""
    parser.add_argument("--nan-to", type=float, default=None, metavar="VALUE",
                        help="replace NaN/Inf voxels by VALUE (e.g. -1000 for CT; with a warning); "
                             "default: refuse such images")


class ValueThenOverrides(argparse.Action):
    """``--opt VALUE [key=value ...]``: the first value is the option's, the rest are overrides
    (so ``key=value`` pairs may follow any option, which a plain ``nargs="*"`` positional cannot)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values[0])
        namespace.overrides = list(getattr(namespace, "overrides", None) or []) + list(values[1:])
