"""Convert an image (DICOM folder/file, NIfTI, NRRD, MHA) to NIfTI/NRRD/MHA with exact geometry,
or (``--to png-slices``) to a folder of PNG slices (with ``--label`` colour label PNGs)."""
from __future__ import annotations

import argparse

from volseg.commands._options import add_nan_to

HELP = "convert DICOM/NIfTI/NRRD/MHA to .nii/.nii.gz/.nrrd/.mha, or to PNG slices"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="DICOM folder or file, .nii/.nii.gz, .nrrd, .mha/.mhd")
    parser.add_argument("output", help="output file (.nii, .nii.gz, .nrrd, .mha, .mhd) or folder for --to png-slices")
    parser.add_argument("--series", default=None, metavar="UID", help="DICOM SeriesInstanceUID (or unique prefix)")
    parser.add_argument("--resample", action="store_true",
                        help="resample DICOM series with missing slices, uneven spacing or gantry tilt onto a uniform orthogonal grid")
    parser.add_argument("--mask", action="store_true", help="the input is a label map: write uint8/uint16")
    parser.add_argument("--label", default=None, metavar="MASK", help="label map to export with --to png-slices")
    parser.add_argument("--to", default="volume", choices=("volume", "png-slices"), help="output kind (default: volume)")
    add_nan_to(parser)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from volseg._atomic import validate_output
    from volseg.errors import ConfigError
    from volseg.io.readers import read_image

    if args.label and args.to != "png-slices":
        raise ConfigError("--label is only used with --to png-slices")
    validate_output(args.output, [args.input, args.label], "folder" if args.to == "png-slices" else "volume")
    image = read_image(args.input, series=args.series, resample=args.resample,
                       nonfinite="error" if args.nan_to is None else args.nan_to)
    if args.to == "png-slices":
        from volseg.data.png_slices import volume_to_png_slices

        res = volume_to_png_slices(image.to_metatensor(), args.label, args.output)
        print(f"wrote {res.get('n_slices', '?')} slices to {args.output}")
        return 0
    from volseg.io import save_mask, save_volume

    if image.shape[0] != 1:
        raise ConfigError(f"{args.input}: {image.shape[0]} channels; convert writes single-channel images")
    if args.mask:
        save_mask(image, image, args.output, inputs=[args.input])
    else:
        save_volume(image, args.output, inputs=[args.input])
    print(f"wrote {Path(args.output)} ({' x '.join(str(s) for s in image.shape[1:])})")
    return 0
