"""Train a volseg MONAI bundle (``bundles/ct_unet3d`` ...) on a dataset folder (MSD ``dataset.json``
or nnU-Net ``imagesTr/`` + ``labelsTr/``), the same workflow as
``python -m monai.bundle run training --config_file BUNDLE/configs/train.json --dataset_dir DIR``.

Examples:
  volseg train bundles/ct_unet3d --dataset-dir data/phantoms --output-dir runs/ct max_epochs=20 device=cpu
  volseg train ct_unet3d --dataset-dir DIR resume=true
  volseg train bundles/ct_unet3d --dataset-dir DIR --multi-gpu 2
  volseg train lung_png2d --dataset-dir my_pngs --recipe seed
  volseg train ct_unet3d --dataset-dir DIR --plan plan.json           # settings from `volseg plan`
  volseg train ct_unet3d --dataset-dir DIR --init-from runs/ct --freeze-encoder 5   # fine-tune
"""
from __future__ import annotations

import argparse

from volseg.commands._options import ValueThenOverrides

HELP = "train a bundle (ct_unet3d, ct_deeplab3d, mri_unet3d, ...) on a dataset folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", nargs="+", action=ValueThenOverrides, metavar="BUNDLE [key=value ...]",
                        help="bundle folder, or the name of a bundle shipped with volseg (e.g. ct_unet3d), then "
                             "top-level bundle keys, values as JSON: max_epochs=5 roi_size=[64,64,64] device=cpu")
    parser.add_argument("--dataset-dir", required=True, nargs="+", action=ValueThenOverrides, metavar="DIR",
                        help="dataset folder (MSD dataset.json or imagesTr/labelsTr; lung_png2d: images/ + "
                             "labels/ PNGs)")
    parser.add_argument("--output-dir", default=None, nargs="+", action=ValueThenOverrides, metavar="DIR",
                        help="where models/ and logs/ go (default: the bundle folder; runs/NAME for a bundle "
                             "given by name)")
    parser.add_argument("--recipe", default=None, nargs="+", action=ValueThenOverrides, metavar="NAME",
                        help="a named set of settings the bundle ships (configs/recipe_NAME.json), e.g. lung_png2d's "
                             "'seed' (the Keras tutorial's recipe); default: the bundle's own settings")
    parser.add_argument("--multi-gpu", default="0", nargs="+", action=ValueThenOverrides, metavar="N",
                        help="train with N processes through torchrun and multi_gpu_train.json (DDP)")
    parser.add_argument("--trust-bundle", action="store_true",
                        help="run the bundle's configs even if they use code outside volseg's safe subset "
                             "(a bundle is code: see docs/security.md)")
    parser.add_argument("--plan", default=None, nargs="+", action=ValueThenOverrides, metavar="PLAN",
                        help="a plan from `volseg plan` (JSON of bundle keys: pixdim, roi_size, intensity, ...); "
                             "key=value overrides win over it")
    parser.add_argument("--init-from", default=None, nargs="+", action=ValueThenOverrides, metavar="MODEL",
                        help="start from the weights of MODEL (bundle folder or model.pt, e.g. a model-zoo "
                             "bundle's) whose names and shapes match; the rest is newly initialised")
    parser.add_argument("--freeze-encoder", default="0", nargs="+", action=ValueThenOverrides, metavar="EPOCHS",
                        help="with --init-from: keep the encoder (down path) fixed for the first EPOCHS epochs")
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
        args.freeze_encoder = int(args.freeze_encoder)
    except ValueError as exc:
        raise ConfigError(f"--multi-gpu and --freeze-encoder take a number, got {exc}") from exc
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
    overrides = _plan_and_init(bundle, args, overrides)
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


def _plan_and_init(bundle, args: argparse.Namespace, overrides: dict) -> dict:
    """Overrides from ``--plan`` (under the key=value ones), ``--init-from`` and ``--freeze-encoder``;
    each key must be one the bundle's ``train.json`` has."""
    import json
    from pathlib import Path

    from volseg.errors import ConfigError
    from volseg.planning import read_plan

    extra = {}
    if args.plan:
        extra.update(read_plan(args.plan))
    if args.init_from:
        from volseg.training.finetune import find_weights

        find_weights(args.init_from)  # a missing model fails now, not after the dataset is cached
        extra["init_from"] = str(Path(args.init_from).expanduser().resolve())
    if args.freeze_encoder:
        if not args.init_from:
            raise ConfigError("--freeze-encoder needs --init-from (freezing a random encoder trains nothing)")
        extra["freeze_encoder"] = args.freeze_encoder
    if extra:
        keys = json.loads((Path(bundle) / "configs" / "train.json").read_text())
        missing = sorted(k for k in extra if k not in keys)
        if missing:
            raise ConfigError(f"{bundle}: configs/train.json has no key {', '.join(missing)} "
                              "(a plan made for another bundle, or a bundle without fine-tuning support)")
    return {**extra, **overrides}
