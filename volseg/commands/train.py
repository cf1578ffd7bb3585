"""Train a volseg MONAI bundle (``bundles/ct_unet3d`` ...) on a dataset folder (MSD ``dataset.json``
or nnU-Net ``imagesTr/`` + ``labelsTr/``), the same workflow as
``python -m monai.bundle run training --config_file BUNDLE/configs/train.json --dataset_dir DIR``.

Examples:
  volseg train bundles/ct_unet3d --dataset-dir data/phantoms --output-dir runs/ct max_epochs=20 device=cpu
  volseg train ct_unet3d --dataset-dir DIR resume=true
  volseg train bundles/ct_unet3d --dataset-dir DIR --multi-gpu 2
  volseg train lung_png2d --dataset-dir my_pngs --recipe seed
"""
from __future__ import annotations

import argparse

HELP = "train a bundle (ct_unet3d, ct_deeplab3d, mri_unet3d, ...) on a dataset folder"


class _ValueThenOverrides(argparse.Action):
    """``--opt VALUE [key=value ...]``: the first value is the option's, the rest are overrides
    (so ``key=value`` pairs may follow any option, which a plain ``nargs="*"`` positional cannot)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values[0])
        namespace.overrides = list(getattr(namespace, "overrides", None) or []) + list(values[1:])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", nargs="+", action=_ValueThenOverrides, metavar="BUNDLE [key=value ...]",
                        help="bundle folder, or the name of a bundle shipped with volseg (e.g. ct_unet3d), then "
                             "top-level bundle keys, values as JSON: max_epochs=5 roi_size=[64,64,64] device=cpu")
    parser.add_argument("--dataset-dir", required=True, nargs="+", action=_ValueThenOverrides, metavar="DIR",
                        help="dataset folder (MSD dataset.json or imagesTr/labelsTr; lung_png2d: images/ + "
                             "labels/ PNGs)")
    parser.add_argument("--output-dir", default=None, nargs="+", action=_ValueThenOverrides, metavar="DIR",
                        help="where models/ and logs/ go (default: the bundle folder; runs/NAME for a bundle "
                             "given by name)")
    parser.add_argument("--recipe", default=None, nargs="+", action=_ValueThenOverrides, metavar="NAME",
                        help="a named set of settings the bundle ships (configs/recipe_NAME.json), e.g. lung_png2d's "
                             "'seed' (the Keras tutorial's recipe); default: the bundle's own settings")
    parser.add_argument("--multi-gpu", default="0", nargs="+", action=_ValueThenOverrides, metavar="N",
                        help="train with N processes through torchrun and multi_gpu_train.json (DDP)")
    parser.add_argument("--trust-bundle", action="store_true",
                        help="run the bundle's configs even if they use code outside volseg's safe subset "
                             "(a bundle is code: see docs/security.md)")
    parser.set_defaults(overrides=[])


def run(args: argparse.Namespace) -> int:
    import json
    import subprocess
    import sys
    from pathlib import Path

    from volseg.errors import ConfigError, InputError
    from volseg.bundles.config import parse_overrides
    from volseg.training.handlers import format_test_line
    from volseg.training.recipes import recipe_config_files
    from volseg.training.run import run_bundle

    overrides = parse_overrides(args.overrides)
    try:
        args.multi_gpu = int(args.multi_gpu)
    except ValueError as exc:
        raise ConfigError(f"--multi-gpu takes a number of processes, got {args.multi_gpu!r}") from exc
    bundle = Path(args.bundle)
    if not (bundle / "configs").is_dir():
        if bundle.name == args.bundle and "/" not in args.bundle:
            from volseg.bundles.shipped import find_bundle

            bundle = find_bundle(args.bundle)
            if args.output_dir is None:  # never into the installed package
                args.output_dir = str(Path("runs") / args.bundle)
        else:
            raise ConfigError(f"not a bundle folder (no configs/): {bundle}")
    if not Path(args.dataset_dir).is_dir():
        raise InputError("dataset folder not found", args.dataset_dir)
    if args.multi_gpu:
        if args.multi_gpu < 1:
            raise ConfigError(f"--multi-gpu must be >= 1, got {args.multi_gpu}")
        cfgs = [str(p) for p in recipe_config_files(bundle, args.recipe, multi_gpu=True)]
        from volseg.bundles.trust import check_bundle_files

        check_bundle_files(cfgs, trusted=args.trust_bundle)
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.multi_gpu}",
               "-m", "monai.bundle", "run", "training", "--config_file", json.dumps(cfgs),
               "--meta_file", str(bundle / "configs" / "metadata.json"),
               "--logging_file", str(bundle / "configs" / "logging.conf"),
               "--bundle_root", str(bundle), "--dataset_dir", str(args.dataset_dir)]
        if args.output_dir:
            cmd += ["--output_dir", str(args.output_dir)]
        for k, v in overrides.items():
            cmd += [f"--{k}", v if isinstance(v, str) else json.dumps(v)]
        return subprocess.call(cmd)
    result = run_bundle(bundle, args.dataset_dir, output_dir=args.output_dir, overrides=overrides,
                        config_files=recipe_config_files(bundle, args.recipe), trusted=args.trust_bundle)
    best = result["best_metric"]
    test = f"; {format_test_line(result['test_metrics'])}" if result.get("test_metrics") else ""
    print(f"trained {result['epochs']} epoch(s); best {result.get('key_metric', 'val_mean_dice')} "
          f"{'n/a' if best is None else f'{best:.4f}'} at epoch {result['best_epoch']}{test}; "
          f"model: {result['model_path']}")
    return 0
