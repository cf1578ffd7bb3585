"""Ignite handlers for the training bundles: per-label Dice, progress bar, and the recorder that
keeps the metric history and writes checkpoints, ``logs/metrics.csv``, TensorBoard and ``logs/curves.png``."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import torch

from volseg._atomic import atomic_path
from volseg.training.setup import is_rank0, unwrap


class PerLabelDice:
    """Evaluator handler: Dice per foreground label over the validation set, stored as
    ``engine.state.metrics["dice_<name>"]``. ``labels`` maps label value -> name (``{"1": "lung"}``)."""

    def __init__(self, labels: Mapping[Any, str], pred_key: str = "pred", label_key: str = "label"):
        self.labels = {int(k): str(v) for k, v in dict(labels).items() if int(k) != 0}
        self.pred_key, self.label_key = pred_key, label_key
        self._inter: Dict[int, float] = {}
        self._total: Dict[int, float] = {}

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._update)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._finish)

    def _reset(self, engine: Any) -> None:
        self._inter = {k: 0.0 for k in self.labels}
        self._total = {k: 0.0 for k in self.labels}

    def _update(self, engine: Any) -> None:
        for item in engine.state.output:
            pred, lab = item[self.pred_key], item[self.label_key]
            # after AsDiscreted(to_onehot): (C, ...) one-hot tensors
            for k in self.labels:
                if k < pred.shape[0]:
                    p, g = pred[k] > 0.5, lab[k] > 0.5
                    self._inter[k] += float((p & g).sum())
                    self._total[k] += float(p.sum() + g.sum())

    def _finish(self, engine: Any) -> None:
        for k, name in self.labels.items():
            tot = self._total.get(k, 0.0)
            engine.state.metrics[f"dice_{name}"] = 2 * self._inter[k] / tot if tot > 0 else float("nan")


class TrainingRecorder:
    """Trainer handler (the bundle's memory): resume, history, checkpoints, CSV, TensorBoard, curves, early stop.

    Each epoch appends ``{"epoch", "loss", "lr", "seconds", <validation metrics>}`` to the history.
    When a validation ran: the best ``key_metric`` saves ``models/model.pt`` (plain state_dict);
    ``patience`` validations without an improvement > ``min_delta`` stop training. Every epoch
    writes ``models/checkpoint_last.pt`` (model, optimizer, scheduler, epoch, history). Files are
    written atomically and on rank 0 only. ``resume=True`` reloads ``checkpoint_last.pt`` at start.
    """

    def __init__(self, output_dir: Any, network: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 evaluator: Any = None, lr_scheduler: Any = None, key_metric: str = "val_mean_dice",
                 patience: int = 0, min_delta: float = 0.0, resume: bool = False, val_interval: int = 1,
                 progress: bool = True, plot: bool = True, tensorboard: bool = True):
        out = Path(str(output_dir))
        self.models, self.logs = out / "models", out / "logs"
        self.network, self.optimizer, self.evaluator, self.scheduler = network, optimizer, evaluator, lr_scheduler
        self.key_metric, self.patience, self.min_delta = key_metric, int(patience or 0), float(min_delta)
        self.resume, self.val_interval = bool(resume), max(int(val_interval), 1)
        self.progress, self.plot, self.tensorboard = progress, plot, tensorboard
        self.history: List[Dict[str, Any]] = []
        self.best_metric, self.best_epoch, self.bad_validations = -math.inf, 0, 0
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
        engine.add_event_handler(Events.TERMINATE, self._completed)

    def summary(self) -> Dict[str, Any]:
        """``{"best_metric", "best_epoch", "epochs", "model_path", "history"}``."""
        return {"best_metric": None if self.best_metric == -math.inf else self.best_metric,
                "best_epoch": self.best_epoch, "epochs": self.history[-1]["epoch"] if self.history else 0,
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
            self.best_metric = float(state.get("best_metric", -math.inf))
            self.best_epoch = int(state.get("best_epoch", 0))
            self.bad_validations = int(state.get("bad_validations", 0))
            engine.state.epoch = int(state["epoch"])
            engine.state.iteration = engine.state.epoch * engine.state.epoch_length
            if self.rank0:
                print(f"resumed from {ckpt} at epoch {engine.state.epoch}", flush=True)
            if engine.state.epoch >= engine.state.max_epochs:
                engine.terminate()
        if self.rank0 and self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.logs.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(log_dir=str(self.logs))

    def _epoch_started(self, engine: Any) -> None:
        import time

        self._t0 = time.perf_counter()
        self._losses = []
        if self.rank0 and self.progress:
            from tqdm import tqdm

            self._bar = tqdm(total=engine.state.epoch_length, desc=f"epoch {engine.state.epoch}/{engine.state.max_epochs}",
                             leave=False, dynamic_ncols=True)

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
        validated = self.evaluator is not None and epoch % self.val_interval == 0 and self.evaluator.state.metrics
        improved = False
        if validated:
            for k, v in self.evaluator.state.metrics.items():
                row[k] = float(v) if not isinstance(v, torch.Tensor) else float(v.mean())
            value = row.get(self.key_metric, float("nan"))
            if value == value and value > self.best_metric + self.min_delta:
                self.best_metric, self.best_epoch, self.bad_validations, improved = value, epoch, 0, True
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
            if self.plot:
                write_curves(self.history, self.logs / "curves.png", self.key_metric)
            msg = f"epoch {epoch}/{engine.state.max_epochs}: loss {row['loss']:.4f} ({row['seconds']:.1f} s)"
            if validated:
                msg += f", {self.key_metric} {row.get(self.key_metric, float('nan')):.4f} (best {self.best_metric:.4f} @ {self.best_epoch})"
            print(msg, flush=True)
        if validated and self.patience > 0 and self.bad_validations >= self.patience:
            if self.rank0:
                print(f"early stopping: no improvement in {self.patience} validations", flush=True)
            engine.terminate()

    def _completed(self, engine: Any) -> None:
        if self.rank0 and not (self.models / "model.pt").is_file():
            # no validation ever ran (e.g. no validation cases): the last weights are the model
            self._save(unwrap(self.network).state_dict(), self.models / "model.pt")
            print("no validation metric: saved the last epoch's weights as models/model.pt", flush=True)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- outputs ---------------------------------------------------------------------------------
    def _checkpoint(self, epoch: int) -> Dict[str, Any]:
        return {"model": unwrap(self.network).state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
                "epoch": epoch, "history": self.history, "best_metric": self.best_metric,
                "best_epoch": self.best_epoch, "bad_validations": self.bad_validations}

    @staticmethod
    def _save(obj: Any, path: Path) -> None:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)

    def _write_csv(self) -> None:
        fields: List[str] = []
        for row in self.history:
            fields += [k for k in row if k not in fields]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields, restval="")
        w.writeheader()
        for row in self.history:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        with atomic_path(self.logs / "metrics.csv") as tmp:
            tmp.write_text(buf.getvalue())

    def _write_tb(self, row: Mapping[str, Any]) -> None:
        if self._writer is None:
            return
        for k, v in row.items():
            if k != "epoch" and isinstance(v, (int, float)) and v == v:
                self._writer.add_scalar(k if k in ("loss", "lr", "seconds") else f"val/{k}", v, row["epoch"])
        self._writer.flush()


def write_curves(history: Sequence[Mapping[str, Any]], path: Path, key_metric: str = "val_mean_dice") -> None:
    """Loss (left) and validation Dice per label (right) against epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [r["loss"] for r in history], "o-", color="tab:blue", ms=3)
    ax1.set(xlabel="epoch", ylabel="training loss (DiceCE)", title="loss")
    ax1.grid(alpha=0.3)
    keys = [key_metric] + sorted({k for r in history for k in r if k.startswith("dice_")})
    for k in keys:
        pts = [(r["epoch"], r[k]) for r in history if k in r and r[k] == r[k]]
        if pts:
            ax2.plot(*zip(*pts), "o-", ms=3, lw=2 if k == key_metric else 1, label=k)
    ax2.set(xlabel="epoch", ylabel="Dice", title="validation Dice", ylim=(0, 1))
    ax2.grid(alpha=0.3)
    if ax2.lines:
        ax2.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


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
            vals = []
            for k, name in self.labels.items():
                p, g = pred[k] > 0.5, lab[k] > 0.5
                tot = float(p.sum() + g.sum())
                d = 2 * float((p & g).sum()) / tot if tot > 0 else float("nan")
                row[f"dice_{name}"] = d
                if d == d:
                    vals.append(d)
            row["mean_dice"] = sum(vals) / len(vals) if vals else float("nan")
            self.rows.append(row)

    def _write(self, engine: Any) -> None:
        if not is_rank0() or not self.rows:
            return
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(self.rows[0]))
        w.writeheader()
        for r in self.rows:
            w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
        with atomic_path(self.path) as tmp:
            tmp.write_text(buf.getvalue())
        print(f"per-case Dice ({len(self.rows)} cases) -> {self.path}", flush=True)
