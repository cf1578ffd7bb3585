"""volseg evaluate: Dice, HD95 and mean surface distance (mm) of predicted masks against references."""
from __future__ import annotations

import argparse

HELP = "Dice, HD95 and mean surface distance (mm) of predicted masks against reference masks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, help="predicted mask file, or folder of <case>.nii.gz")
    parser.add_argument("--ref", required=True, help="reference mask file, or folder matched by case name")
    parser.add_argument("--labels", type=int, nargs="+", default=None, metavar="L",
                        help="labels to score (default: all non-zero labels present)")
    parser.add_argument("-o", "--output", default=None,
                        help="CSV file per case and label (+ <stem>_summary.csv beside it) or a folder; "
                             "default: evaluation.csv beside --pred")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from volseg.inference.evaluation import evaluate, format_summary

    pred = Path(args.pred)
    out = Path(args.output) if args.output else (pred if pred.is_dir() else pred.parent) / "evaluation.csv"
    result = evaluate(args.pred, args.ref, output=out, labels=args.labels)
    print(format_summary(result["summary"]))
    print(f"wrote {out}")
    return 0
