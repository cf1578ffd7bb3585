"""Plan training settings for a dataset, nnU-Net style: read every case once (spacings, shapes,
foreground intensities, class volumes) and write the bundle keys that fit it: ``pixdim`` (median
spacing; anisotropic axes get their 10th percentile), ``roi_size`` (median shape within the memory
budget), ``batch_size``/``num_samples``, ``intensity`` (CT: clip to the foreground 0.5-99.5
percentiles + z-score; MRI and others: per-case z-score), ``num_classes``/``labels``.

Writes PLAN.json (bundle overrides only), PLAN_fingerprint.json and PLAN_fingerprint.png beside it.

Examples:
  volseg plan data/phantoms -o plan.json --bundle ct_unet3d
  volseg train ct_unet3d --dataset-dir data/phantoms --plan plan.json
  python -m monai.bundle run training --config_file "['B/configs/train.json','plan.json']" --dataset_dir DIR
"""
from __future__ import annotations

import argparse

from volseg.commands._options import ValueThenOverrides

HELP = "plan bundle settings (spacing, window, batch, intensity normalisation) from a dataset's fingerprint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", nargs="+", action=ValueThenOverrides, metavar="DATASET [key=value ...]",
                        help="dataset folder (MSD dataset.json or imagesTr/labelsTr), then bundle keys the "
                             "training run will use, e.g. channels=[8,16,32] (the window is sized for that network)")
    parser.add_argument("-o", "--output", required=True, nargs="+", action=ValueThenOverrides, metavar="PLAN.json",
                        help="plan file to write")
    parser.add_argument("--bundle", default=None, nargs="+", action=ValueThenOverrides, metavar="B",
                        help="bundle folder or name the plan is for (default: ct_unet3d for CT, else mri_unet3d)")
    parser.add_argument("--memory-gb", default=None, nargs="+", action=ValueThenOverrides, metavar="N",
                        help="training memory budget in GB for the window and batch (default: 8, nnU-Net's)")
    parser.add_argument("--trust-bundle", action="store_true",
                        help="build the bundle's network even if its config uses code outside volseg's safe "
                             "subset (a bundle is code: see docs/security.md)")
    parser.set_defaults(overrides=[])


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from volseg._atomic import check_not_input
    from volseg.errors import ConfigError, InputError
    from volseg.planning import format_report, plan_dataset, plan_paths, write_plan
    from volseg.bundles.config import parse_overrides

    try:
        memory_gb = None if args.memory_gb is None else float(args.memory_gb)
    except ValueError as exc:
        raise ConfigError(f"--memory-gb takes a number of GB, got {args.memory_gb!r}") from exc
    if not Path(args.dataset).is_dir():
        raise InputError("dataset folder not found", args.dataset)
    for p in plan_paths(args.output).values():
        check_not_input(p, [args.dataset])
    result = plan_dataset(args.dataset, bundle=args.bundle, memory_gb=memory_gb,
                          overrides=parse_overrides(args.overrides), trusted=args.trust_bundle)
    print(format_report(result))
    paths = write_plan(result, args.output)
    print(f"wrote {paths['plan']} (train with --plan {paths['plan']}), {paths['fingerprint']}, {paths['png']}")
    return 0
