"""Training-bundle pieces: setup builders, handlers (resume, history, checkpoints, CSV, curves,
early stop, accuracy, split metrics, fine-tuning), plots, recipes and :func:`run_bundle`. Names load lazily
so ``import volseg.training`` stays light."""
from __future__ import annotations

from volseg._lazy import lazy_getattr

_LAZY = {
    "run_bundle": "volseg.training.run",
    "parse_overrides": "volseg.bundles.config",
    "TrainingRecorder": "volseg.training.handlers",
    "PerLabelDice": "volseg.training.handlers",
    "PixelAccuracy": "volseg.training.handlers",
    "SplitMetricsWriter": "volseg.training.handlers",
    "format_test_line": "volseg.training.handlers",
    "write_curves": "volseg.training.plots",
    "plot_sample_grid": "volseg.training.plots",
    "seed_everything": "volseg.training.setup",
    "run_evaluator": "volseg.training.setup",
    "recipe_config_files": "volseg.training.recipes",
    "list_recipes": "volseg.training.recipes",
    "PerCaseDiceWriter": "volseg.training.handlers",
    "resolve_device": "volseg.inference.core",
    "init_distributed": "volseg.training.setup",
    "is_rank0": "volseg.training.setup",
    "make_dataset": "volseg.training.setup",
    "make_loader": "volseg.training.setup",
    "prepare_network": "volseg.training.setup",
    "unwrap": "volseg.training.setup",
    "load_split": "volseg.training.setup",
    "build_network": "volseg.training.setup",
    "export_bundle": "volseg.training.bundle_export",
    "BundleExport": "volseg.training.bundle_export",
    "InitFrom": "volseg.training.finetune",
    "read_state_dict": "volseg.training.finetune",
    "load_matching": "volseg.training.finetune",
}

__all__ = list(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
