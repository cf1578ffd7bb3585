"""Ignite handlers for the training bundles: per-label Dice, progress bar, and the recorder that
keeps the metric history and writes checkpoints, ``logs/metrics.csv``, TensorBoard and ``logs/curves.png``."""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import torch

from volseg._atomic import atomic_path
from volseg.errors import ConfigError
from volseg.io.tables import write_csv
from volseg.metrics import dice_per_label
from volseg.training.setup import is_rank0, unwrap

logger = logging.getLogger(__name__)


def _scalar(value: Any) -> float:
    return float(value) if not isinstance(value, torch.Tensor) else float(value.float().mean())


class PerLabelDice:
    """Evaluator handler: Dice per foreground label pooled over the validation set (the summed
    voxel counts of all images: MONAI's ``ConfusionMatrixMetric`` "f1 score" with
    ``compute_sample=False``), stored as ``engine.state.metrics["dice_<name>"]``; NaN for a label in
    no image nor prediction. ``labels`` maps label value -> name (``{"1": "lung"}``); outputs are
    one-hot ``(C, ...)`` (after ``AsDiscreted(to_onehot)``)."""

    def __init__(self, labels: Mapping[Any, str], pred_key: str = "pred", label_key: str = "label"):
        from monai.metrics import ConfusionMatrixMetric

        self.labels = {int(k): str(v) for k, v in dict(labels).items() if int(k) != 0}
        self.pred_key, self.label_key = pred_key, label_key
        self._metric = ConfusionMatrixMetric(include_background=True, metric_name="f1 score", compute_sample=False,
                                             reduction="sum_batch")

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._update)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._finish)

    def _reset(self, engine: Any) -> None:
        self._metric.reset()

    def _update(self, engine: Any) -> None:
        for item in engine.state.output:
            pred, lab = item[self.pred_key].detach(), item[self.label_key].detach()
            self._metric(y_pred=(pred[None] > 0.5).float(), y=(lab[None] > 0.5).float().to(pred.device))

    def _finish(self, engine: Any) -> None:
        scores = self._metric.aggregate()[0].cpu() if self._metric.get_buffer() is not None else None
        for k, name in self.labels.items():
            ok = scores is not None and k < scores.shape[0]
            engine.state.metrics[f"dice_{name}"] = float(scores[k]) if ok else float("nan")


class PixelAccuracy:
    """Trainer or evaluator handler: the fraction of pixels / voxels whose predicted class is the
    label's, over the epoch, as ``engine.state.metrics[name]``. ``pred``: scores or one-hot
    ``(C, ...)``; ``label``: class indices ``(1, ...)`` or one-hot ``(C, ...)``."""

    def __init__(self, name: str = "val_accuracy", pred_key: str = "pred", label_key: str = "label"):
        self.name, self.pred_key, self.label_key = name, pred_key, label_key
        self._right, self._total = 0, 0

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._update)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._finish)

    def _reset(self, engine: Any) -> None:
        self._right, self._total = 0, 0

    def _update(self, engine: Any) -> None:
        out = engine.state.output
        with torch.no_grad():
            for item in out if isinstance(out, list) else [out]:
                pred, lab = item[self.pred_key].detach(), item[self.label_key].detach()
                p = pred.argmax(0) if pred.shape[0] > 1 else pred[0].round()
                g = lab.argmax(0) if lab.shape[0] > 1 else lab[0].round()
                self._right += int((p.long() == g.long().to(p.device)).sum())
                self._total += int(g.numel())

    def _finish(self, engine: Any) -> None:
        engine.state.metrics[self.name] = self._right / self._total if self._total else float("nan")


class SplitMetricsWriter:
    """Evaluator handler for the held-out test split: at the end of the run writes
    ``output_dir/test_metrics.json`` and ``.csv`` (accuracy, loss, Dice per class pooled over the
    split and their mean, from the evaluator's metrics, ``prefix`` stripped) and ``samples.png``
    (image | label | prediction for the ``n_samples`` images with the most label classes, then the
    most foreground), and prints one line with every class's Dice (rank 0). ``self.metrics`` keeps them.
    """

    def __init__(self, output_dir: Any, split: str = "test", prefix: str = "test_", n_samples: int = 4,
                 palette: Optional[Mapping] = None):
        self.out = Path(str(output_dir))
        self.split, self.prefix, self.n_samples, self.palette = split, prefix, int(n_samples), palette
        self.metrics: Dict[str, Any] = {}
        self._n = 0
        self._samples: List[Any] = []

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._update)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _reset(self, engine: Any) -> None:
        self._n, self._samples = 0, []

    def _update(self, engine: Any) -> None:
        out = engine.state.output
        for item in out if isinstance(out, list) else [out]:
            self._n += 1
            if self.n_samples < 1:
                continue
            from monai.metrics import compute_dice

            pred, label = item["pred"].detach().cpu(), item["label"].detach().cpu()  # one-hot (C, X, Y)
            lab = label.argmax(0).numpy()
            score = (len(set(lab[lab > 0].ravel().tolist())), int((lab > 0).sum()))
            dice = float(torch.nanmean(compute_dice(pred[None], label[None], include_background=False)))
            self._samples.append((score, self._n, item["image"].detach().cpu()[0].numpy(), lab,
                                  pred.argmax(0).numpy(), f"prediction (Dice {dice:.2f})"))
            self._samples = sorted(self._samples, key=lambda s: (s[0], -s[1]), reverse=True)[: self.n_samples]

    def _write(self, engine: Any) -> None:
        import json

        raw = {k[len(self.prefix):] if k.startswith(self.prefix) else k: _scalar(v)
               for k, v in engine.state.metrics.items()}
        dice = {k[5:]: v for k, v in raw.items() if k.startswith("dice_")}
        valid = [v for v in dice.values() if v == v]
        m: Dict[str, Any] = {"split": self.split, "n_images": self._n}
        m.update({k: v for k, v in raw.items() if not k.startswith("dice_")})
        m["dice"] = {k: (v if v == v else None) for k, v in dice.items()}
        m["mean_dice"] = sum(valid) / len(valid) if valid else None
        self.metrics = m
        if not is_rank0():
            return
        with atomic_path(self.out / "test_metrics.json") as tmp:
            tmp.write_text(json.dumps(m, indent=2) + "\n")
        rows = [{"metric": f"{k}_{name}" if name else k, "value": val}
                for k, v in m.items() for name, val in (v.items() if isinstance(v, dict) else [(None, v)])]
        write_csv(rows, self.out / "test_metrics.csv", fields=["metric", "value"], float_format=".6g")
        if self._samples:
            from volseg.training.plots import plot_sample_grid

            best = sorted(self._samples, key=lambda s: s[1])
            plot_sample_grid([s[2] for s in best], [s[3] for s in best], [s[4] for s in best],
                             self.out / "samples.png", palette=self.palette, titles=[s[5] for s in best])
        print(format_test_line(m) + f" -> {self.out / 'test_metrics.json'}", flush=True)


def format_test_line(metrics: Mapping[str, Any]) -> str:
    """``test (22 images): accuracy 0.9871, Dice tumour 0.612, lung 0.975 (mean 0.794)``."""
    def num(v: Any, fmt: str = ".3f") -> str:
        return "n/a" if v is None or v != v else format(v, fmt)

    parts = [f"{metrics.get('split', 'test')} ({metrics.get('n_images', 0)} images)"]
    if "accuracy" in metrics:
        parts.append(f"accuracy {num(metrics['accuracy'], '.4f')}")
    dice = metrics.get("dice") or {}
    if dice:
        parts.append("Dice " + ", ".join(f"{k} {num(v)}" for k, v in dice.items())
                     + f" (mean {num(metrics.get('mean_dice'))})")
    return parts[0] + ": " + ", ".join(parts[1:])


class TrainingRecorder:
    """Trainer handler (the bundle's memory): resume, history, checkpoints, CSV, TensorBoard, curves, early stop.

    Each epoch appends ``{"epoch", "loss", "lr", "seconds", <trainer metrics>, <validation metrics>}``
    to the history. When a validation ran: the best ``key_metric`` (highest with ``mode="max"``,
    lowest with ``"min"``) saves ``models/model.pt`` (plain state_dict); ``patience`` validations
    without an improvement > ``min_delta`` stop training. ``patience_steps`` counts patience in
    optimizer steps instead: it becomes ``ceil(patience_steps / (steps per epoch * val_interval))``
    validations when that is more than ``patience``, so a small dataset (few steps per epoch) gets
    as much training between its chances as a large one. An epoch of fewer than
    ``min_steps_per_epoch`` optimizer steps logs a warning. When training ends (early stop or
    ``max_epochs``) and ``restore_best``, the network gets the best epoch's weights back. Every
    epoch writes ``models/checkpoint_last.pt`` (model, optimizer, scheduler, epoch, history) and
    ``logs/metrics.csv``; ``logs/curves.png`` is redrawn at most every ``plot_interval_s`` seconds
    (drawing takes seconds) and once more at the end.
    Files are written atomically and on rank 0 only. ``resume=True`` reloads
    ``checkpoint_last.pt`` at start.
    """

    def __init__(self, output_dir: Any, network: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 evaluator: Any = None, lr_scheduler: Any = None, key_metric: str = "val_mean_dice",
                 patience: int = 0, min_delta: float = 0.0, resume: bool = False, val_interval: int = 1,
                 progress: bool = True, plot: bool = True, tensorboard: bool = True, mode: str = "max",
                 patience_steps: int = 0, min_steps_per_epoch: int = 0, restore_best: bool = True,
                 plot_interval_s: float = 30.0):
        if mode not in ("max", "min"):
            raise ConfigError(f"early stopping mode must be 'max' or 'min', got {mode!r}")
        out = Path(str(output_dir))
        self.models, self.logs = out / "models", out / "logs"
        self.network, self.optimizer, self.evaluator, self.scheduler = network, optimizer, evaluator, lr_scheduler
        self.key_metric, self.patience, self.min_delta = key_metric, int(patience or 0), float(min_delta)
        self.sign = 1.0 if mode == "max" else -1.0
        self.patience_steps, self.min_steps = int(patience_steps or 0), int(min_steps_per_epoch or 0)
        self.resume, self.val_interval, self.restore_best = bool(resume), max(int(val_interval), 1), bool(restore_best)
        self.progress, self.plot, self.tensorboard = progress, plot, tensorboard
        self.plot_interval_s, self._plotted = float(plot_interval_s), -math.inf
        self.history: List[Dict[str, Any]] = []
        self.best_metric, self.best_epoch, self.bad_validations = -math.inf * self.sign, 0, 0
        self.effective_patience = self.patience
        self._best_state: Optional[Dict[str, torch.Tensor]] = None
        self._losses: List[float] = []
        self._bar: Any = None
        self._writer: Any = None
        self._t0 = 0.0
        self.rank0 = is_rank0()

    # -- wiring ----------------------------------------------------------------------------------
    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def summary(self) -> Dict[str, Any]:
        """``{"best_metric", "best_epoch", "epochs", "model_path", "history", ...}``."""
        return {"best_metric": self.best_metric if math.isfinite(self.best_metric) else None,
                "key_metric": self.key_metric, "best_epoch": self.best_epoch,
                "epochs": self.history[-1]["epoch"] if self.history else 0,
                "model_path": str(self.models / "model.pt"), "checkpoint": str(self.models / "checkpoint_last.pt"),
                "metrics_csv": str(self.logs / "metrics.csv"), "curves": str(self.logs / "curves.png"),
                "history": self.history}

    # -- events ----------------------------------------------------------------------------------
    def _started(self, engine: Any) -> None:
        ckpt = self.models / "checkpoint_last.pt"
        if self.resume and ckpt.is_file():
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
            unwrap(self.network).load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state.get("scheduler"):
                self.scheduler.load_state_dict(state["scheduler"])
            self.history = list(state.get("history", []))
            self.best_metric = float(state.get("best_metric", -math.inf * self.sign))
            self.best_epoch = int(state.get("best_epoch", 0))
            self.bad_validations = int(state.get("bad_validations", 0))
            engine.state.epoch = int(state["epoch"])
            engine.state.iteration = engine.state.epoch * engine.state.epoch_length
            if self.rank0:
                print(f"resumed from {ckpt} at epoch {engine.state.epoch}", flush=True)
            if engine.state.epoch >= engine.state.max_epochs:
                engine.terminate()
        self._plan_patience(int(engine.state.epoch_length or 0))
        if self.rank0 and self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.logs.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(log_dir=str(self.logs))

    def _plan_patience(self, steps: int) -> None:
        """Patience in validations from ``patience`` and ``patience_steps``; warn on short epochs."""
        if self.min_steps and 0 < steps < self.min_steps:
            logger.warning("an epoch is only %d optimizer step(s) (fewer than %d): validation and early stopping "
                           "see little training between checks; lower batch_size or add training images",
                           steps, self.min_steps)
        per_validation = max(steps, 1) * self.val_interval
        from_steps = math.ceil(self.patience_steps / per_validation) if self.patience_steps > 0 else 0
        self.effective_patience = max(self.patience, from_steps)
        if self.rank0 and self.effective_patience and self.patience_steps:
            print(f"early stopping: patience {self.effective_patience} validation(s) = "
                  f"{self.effective_patience * per_validation} optimizer steps ({steps} per epoch)", flush=True)

    def _epoch_started(self, engine: Any) -> None:
        import time

        self._t0 = time.perf_counter()
        self._losses = []
        if self.rank0 and self.progress:
            from tqdm import tqdm

            self._bar = tqdm(total=engine.state.epoch_length, leave=False, dynamic_ncols=True,
                             desc=f"epoch {engine.state.epoch}/{engine.state.max_epochs}")

    def _iteration(self, engine: Any) -> None:
        out = engine.state.output
        items = out if isinstance(out, list) else [out]
        loss = items[0].get("loss") if isinstance(items[0], dict) else None
        if loss is not None:
            self._losses.append(float(loss))
        if self._bar is not None:
            self._bar.update(1)
            if self._losses:
                self._bar.set_postfix(loss=f"{self._losses[-1]:.4f}")

    def _epoch_completed(self, engine: Any) -> None:
        import time

        if self._bar is not None:
            self._bar.close()
            self._bar = None
        epoch = int(engine.state.epoch)
        row: Dict[str, Any] = {"epoch": epoch, "loss": sum(self._losses) / max(len(self._losses), 1),
                               "lr": float(self.optimizer.param_groups[0]["lr"])}
        row.update({k: _scalar(v) for k, v in engine.state.metrics.items()})
        validated = self.evaluator is not None and epoch % self.val_interval == 0 and self.evaluator.state.metrics
        improved = False
        if validated:
            row.update({k: _scalar(v) for k, v in self.evaluator.state.metrics.items()})
            value = row.get(self.key_metric, float("nan"))
            if value == value and self.sign * (value - self.best_metric) > self.min_delta:
                self.best_metric, self.best_epoch, self.bad_validations, improved = value, epoch, 0, True
                if self.restore_best:
                    state = unwrap(self.network).state_dict()
                    self._best_state = {k: v.detach().cpu().clone() for k, v in state.items()}
            else:
                self.bad_validations += 1
        row["seconds"] = time.perf_counter() - self._t0
        self.history.append(row)
        if self.rank0:
            if improved:
                self._save(unwrap(self.network).state_dict(), self.models / "model.pt")
            self._save(self._checkpoint(epoch), self.models / "checkpoint_last.pt")
            self._write_csv()
            self._write_tb(row)
            if self.plot and time.perf_counter() - self._plotted >= self.plot_interval_s:
                self._write_curves()
            msg = f"epoch {epoch}/{engine.state.max_epochs}: loss {row['loss']:.4f} ({row['seconds']:.1f} s)"
            if validated:
                msg += (f", {self.key_metric} {row.get(self.key_metric, float('nan')):.4f} "
                        f"(best {self.best_metric:.4f} @ {self.best_epoch})")
            print(msg, flush=True)
        if validated and self.effective_patience > 0 and self.bad_validations >= self.effective_patience:
            if self.rank0:
                print(f"early stopping: no improvement of {self.key_metric} in {self.effective_patience} validations",
                      flush=True)
            engine.terminate()

    def _completed(self, engine: Any) -> None:
        if self.rank0 and self.plot and self.history:
            self._write_curves()
        if self.rank0 and not (self.models / "model.pt").is_file():
            # no validation ever ran (e.g. no validation cases): the last weights are the model
            self._save(unwrap(self.network).state_dict(), self.models / "model.pt")
            print("no validation metric: saved the last epoch's weights as models/model.pt", flush=True)
        elif self.restore_best:
            best = self._best_state
            if best is None and (self.models / "model.pt").is_file():  # best epoch was before a resume
                best = torch.load(self.models / "model.pt", map_location="cpu", weights_only=True)
            if best is not None:
                unwrap(self.network).load_state_dict(best)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- outputs ---------------------------------------------------------------------------------
    def _checkpoint(self, epoch: int) -> Dict[str, Any]:
        return {"model": unwrap(self.network).state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
                "epoch": epoch, "history": self.history, "best_metric": self.best_metric,
                "best_epoch": self.best_epoch, "bad_validations": self.bad_validations}

    def _write_curves(self) -> None:
        import time

        from volseg.training.plots import write_curves

        write_curves(self.history, self.logs / "curves.png", self.key_metric, best_epoch=self.best_epoch)
        self._plotted = time.perf_counter()

    @staticmethod
    def _save(obj: Any, path: Path) -> None:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)

    def _write_csv(self) -> None:
        write_csv(self.history, self.logs / "metrics.csv", float_format=".6g")

    def _write_tb(self, row: Mapping[str, Any]) -> None:
        if self._writer is None:
            return
        for k, v in row.items():
            if k != "epoch" and isinstance(v, (int, float)) and v == v:
                self._writer.add_scalar(k if k in ("loss", "lr", "seconds") else f"val/{k}", v, row["epoch"])
        self._writer.flush()


class PerCaseDiceWriter:
    """Evaluator handler: Dice per case and label -> ``output_dir/dice_per_case.csv`` (atomic, rank 0).

    Columns: ``case`` (image file), ``dice_<name>`` per label, ``mean_dice``; NaN where a label is in
    neither prediction nor truth.
    """

    def __init__(self, labels: Mapping[Any, str], output_dir: Any, pred_key: str = "pred", label_key: str = "label",
                 image_key: str = "image"):
        self.labels = {int(k): str(v) for k, v in dict(labels).items() if int(k) != 0}
        self.path = Path(str(output_dir)) / "dice_per_case.csv"
        self.keys = (pred_key, label_key, image_key)
        self.rows: List[Dict[str, Any]] = []

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._update)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _update(self, engine: Any) -> None:
        pk, lk, ik = self.keys
        for item in engine.state.output:
            pred, lab = item[pk], item[lk]
            meta = getattr(item.get(ik), "meta", None) or getattr(pred, "meta", {}) or {}
            row: Dict[str, Any] = {"case": str(meta.get("filename_or_obj", len(self.rows)))}
            # one-hot (C, ...) -> label maps; NaN where a label is in neither
            dice = dice_per_label(pred.detach().argmax(0), lab.detach().argmax(0), self.labels)
            vals = []
            for k, name in self.labels.items():
                row[f"dice_{name}"] = dice[k]
                if dice[k] == dice[k]:
                    vals.append(dice[k])
            row["mean_dice"] = sum(vals) / len(vals) if vals else float("nan")
            self.rows.append(row)

    def _write(self, engine: Any) -> None:
        if not is_rank0() or not self.rows:
            return
        write_csv(self.rows, self.path, fields=list(self.rows[0]), float_format=".6f")
        print(f"per-case Dice ({len(self.rows)} cases) -> {self.path}", flush=True)
