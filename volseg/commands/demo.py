"""Run the whole pipeline on synthetic CT phantoms: train a small 3D U-Net bundle on CPU,
predict a held-out phantom from a DICOM series, write the NIfTI mask, DICOM SEG, overlay PNG,
curves, stats and an evaluation table, and print where each file is and the Dice reached.
Nothing is downloaded (unless --data real)."""
from __future__ import annotations

import argparse

HELP = "end-to-end demo: phantoms -> train 3D U-Net -> predict -> mask, DICOM SEG, overlay, Dice"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="volseg_demo", metavar="DIR",
                        help="output folder (default: ./volseg_demo)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny run (< ~1 min) that checks the pipeline, not the accuracy")
    parser.add_argument("--data", choices=("synthetic", "real"), default="synthetic",
                        help="synthetic phantoms (default, offline) or the pyradiomics lung CTs (fetched)")


def run(args: argparse.Namespace) -> int:
    from volseg.demo import format_summary, run_demo

    summary = run_demo(args.out, quick=args.quick, data=args.data)
    print(format_summary(summary))
    return 0
