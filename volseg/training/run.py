"""Run a volseg training bundle in-process through ``monai.bundle``'s workflow API."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

from volseg.errors import ConfigError

PathLike = Union[str, "os.PathLike[str]"]


def run_bundle(bundle: PathLike, dataset_dir: PathLike, output_dir: Optional[PathLike] = None,
               overrides: Optional[Mapping[str, Any]] = None, config_files: Optional[Sequence[PathLike]] = None,
               run_id: str = "training", trusted: bool = False) -> Dict[str, Any]:
    """Train ``bundle`` (a folder with ``configs/train.json``) on ``dataset_dir``.

    ``output_dir`` defaults to the bundle folder; ``overrides`` are top-level config keys
    (``max_epochs``, ``roi_size``, ``channels``, ...); ``config_files`` replace ``configs/train.json``
    (e.g. add ``multi_gpu_train.json``). Returns ``{"best_metric", "best_epoch", "epochs",
    "model_path", "metrics_csv", "curves", "history", "bundle"}`` and, when the bundle tests a held-out
    split (``test#handlers`` with a ``SplitMetricsWriter``), ``"test_metrics"``. A separate ``output_dir``
    becomes a self-contained trained bundle (configs with this run's settings + ``models/``),
    ready for ``volseg predict -m output_dir``. The configs are checked first
    (:func:`volseg.bundles.trust.check_bundle_files`): code outside the safe subset raises
    ``ConfigError`` unless ``trusted=True`` (``volseg train --trust-bundle``).
    """
    from monai.bundle import ConfigWorkflow

    root = Path(bundle)
    cfg_dir = root / "configs"
    if not (cfg_dir / "train.json").is_file() and not config_files:
        raise ConfigError(f"not a training bundle (no configs/train.json): {root}")
    files = [str(p) for p in (config_files or [cfg_dir / "train.json"])]
    from volseg.bundles.trust import check_bundle_files

    check_bundle_files(files, trusted=trusted)
    meta = cfg_dir / "metadata.json"
    override: Dict[str, Any] = {"bundle_root": str(root), "dataset_dir": str(dataset_dir)}
    if output_dir is not None:
        override["output_dir"] = str(output_dir)
    override.update(dict(overrides or {}))
    # The bundle's logging.conf (INFO lines from ignite for every epoch, on top of the progress bars)
    # is for `python -m monai.bundle run`; in process, logging is the caller's (volseg's CLI: warnings,
    # -v notes). MONAI warns that it skips the file: that warning is for its own runner's users.
    workflow_log = logging.getLogger("monai.bundle.workflows")
    level = workflow_log.level
    workflow_log.setLevel(logging.ERROR)
    try:
        wf = ConfigWorkflow(config_file=files if len(files) > 1 else files[0],
                            meta_file=str(meta) if meta.is_file() else None, logging_file=False,
                            run_id=run_id, workflow_type="train", **override)
    finally:
        workflow_log.setLevel(level)
    try:
        wf.initialize()
        wf.run()
    except RuntimeError as exc:  # monai.bundle wraps component errors: surface volseg's one-line error
        from volseg.bundles.config import unwrap_error

        cause = unwrap_error(exc)
        if cause is not None:
            raise cause from None
        raise
    from volseg.training.handlers import SplitMetricsWriter, TrainingRecorder

    recorders = [h for h in wf.parser.get_parsed_content("train#handlers") if isinstance(h, TrainingRecorder)]
    if not recorders:
        raise ConfigError(f"{files[0]}: train#handlers has no volseg.training.TrainingRecorder")
    result = recorders[0].summary()
    tests = [h for h in (wf.parser.get_parsed_content("test#handlers") if "test#handlers" in wf.parser else [])
             if isinstance(h, SplitMetricsWriter) and h.metrics]
    if tests:
        result["test_metrics"] = tests[0].metrics
    wf.finalize()
    if output_dir is not None and "model_path" in result:
        from volseg.training.bundle_export import BundleExport, export_bundle
        from volseg.training.setup import is_rank0

        exported = [h.exported for h in wf.parser.get_parsed_content("train#handlers")
                    if isinstance(h, BundleExport) and h.exported is not None]
        if exported:  # train.json's own BundleExport did it, as under python -m monai.bundle run
            result["bundle"] = str(exported[0])
        elif is_rank0():
            result["bundle"] = str(export_bundle(root, output_dir, overrides))
    return result
