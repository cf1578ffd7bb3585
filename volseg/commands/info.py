"""Show an image's geometry: shape, spacing (mm), orientation code, RAS+ affine, modality,
DICOM series found and intensity range. ``--json`` prints one JSON object."""
from __future__ import annotations

import argparse

from volseg.commands._options import add_nan_to

HELP = "show an image's geometry, modality, series and intensity range"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="DICOM folder or file, .nii/.nii.gz, .nrrd, .mha/.mhd or .png")
    parser.add_argument("--json", action="store_true", help="print a JSON object")
    parser.add_argument("--series", default=None, metavar="UID", help="DICOM SeriesInstanceUID (or unique prefix)")
    parser.add_argument("--resample", action="store_true",
                        help="resample DICOM series with missing slices, uneven spacing or gantry tilt onto a uniform orthogonal grid")
    add_nan_to(parser)


def run(args: argparse.Namespace) -> int:
    import json

    from volseg.io.summary import describe, format_info

    info = describe(args.path, series=args.series, resample=args.resample,
                    nonfinite="error" if args.nan_to is None else args.nan_to)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
