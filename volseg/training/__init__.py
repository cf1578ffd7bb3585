"""Training-bundle pieces: setup builders, handlers (resume, history, checkpoints, CSV, curves,
early stop, fine-tuning) and :func:`run_bundle`. Names load lazily so ``import volseg.training`` stays light."""
from __future__ import annotations

from volseg._lazy import lazy_getattr

_LAZY = {
    "run_bundle": "volseg.training.run",
    "parse_overrides": "volseg.bundles.config",
    "TrainingRecorder": "volseg.training.handlers",
    "PerLabelDice": "volseg.training.handlers",
    "write_curves": "volseg.training.handlers",
    "PerCaseDiceWriter": "volseg.training.handlers",
    "resolve_device": "volseg.training.setup",
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
