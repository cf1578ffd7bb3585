"""The 2D PNG segmentation workflow (Keras lung-tumour tutorial style) on MONAI / PyTorch.

image + label PNG folders -> seeded 60/20/20 split -> 2D network, Adam, cross-entropy (or
DiceCE) -> accuracy and Dice per epoch -> early stopping on validation loss restoring the best
weights -> ``models/model.pt``, ``logs/metrics.csv``, ``logs/curves.png`` (accuracy and loss,
train vs validation), ``eval/samples.png`` (image | label | prediction) and
``eval/test_metrics.{json,csv}``.

:func:`train_png2d` is the plain function; :class:`PNG2DTrainer` is the config-friendly class
the ``lung_png2d`` bundle instantiates (``"$@workflow.run()"``).
"""
from __future__ import annotations

import copy
import csv
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from volseg._atomic import atomic_path
from volseg.errors import ConfigError, InputError
from volseg.training.bundle_export import export_bundle
from volseg.workflows.png2d_plots import plot_curves, plot_sample_grid

PathLike = Union[str, "os.PathLike[str]"]
logger = logging.getLogger(__name__)
LOSSES = ("ce", "dicece")
__all__ = ["PNG2DTrainer", "train_png2d", "split_cases", "split_groups", "Slice2DInferer", "export_bundle",
           "plot_curves", "plot_sample_grid", "confusion_counts", "dice_from_counts"]
HISTORY_FIELDS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_dice")


def split_cases(
    items: Sequence[Any], fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 42
) -> Tuple[List[Any], List[Any], List[Any]]:
    """Shuffle ``items`` with ``seed`` and cut them into train / validation / test by ``fractions``.

    Validation and test get ``round(n * fraction)`` items each (at least one each when
    ``n >= 3`` and the fraction is positive); train gets the rest.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ConfigError(f"split fractions must be three non-negative numbers summing to 1 (got {list(fractions)})")
    n = len(items)
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * fractions[1]))
    n_test = int(round(n * fractions[2]))
    if n >= 3:
        n_val = max(n_val, 1 if fractions[1] > 0 else 0)
        n_test = max(n_test, 1 if fractions[2] > 0 else 0)
    n_train = n - n_val - n_test
    if n_train < 1:
        raise InputError(f"only {n} image/label pairs: too few to split into train/validation/test")
    pick = [items[i] for i in order]
    return pick[:n_train], pick[n_train:n_train + n_val], pick[n_train + n_val:]


SPLIT_BY = ("image", "folder", "prefix")


def group_key(name: str, split_by: str = "image") -> str:
    """The unit a split keeps together: the image itself, its folder (``a/b/x`` -> ``a/b``) or its
    name before the last underscore (``lung1_z0033`` -> ``lung1``, as written by ``--to png-slices``)."""
    if split_by == "image":
        return name
    if split_by == "folder":
        return name.rsplit("/", 1)[0] if "/" in name else ""
    if split_by == "prefix":
        base = name.rsplit("/", 1)[-1]
        return name[: len(name) - len(base)] + (base.rsplit("_", 1)[0] if "_" in base else base)
    raise ConfigError(f"unknown split_by {split_by!r}; valid: {', '.join(SPLIT_BY)}")


def split_groups(
    pairs: Sequence[Mapping[str, str]], fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 42,
    split_by: str = "image",
) -> Tuple[List[Any], List[Any], List[Any]]:
    """:func:`split_cases` over groups of pairs (see :func:`group_key`), so slices of one patient
    never land in both training and test."""
    if split_by == "image":
        return split_cases(list(pairs), fractions, seed)
    groups: Dict[str, List[Any]] = {}
    for p in pairs:
        groups.setdefault(group_key(p["name"], split_by), []).append(p)
    if len(groups) < 3:
        raise InputError(f"split_by={split_by!r} finds only {len(groups)} group(s) {sorted(groups)}: "
                         "need at least 3 for train/validation/test")
    parts = split_cases(sorted(groups), fractions, seed)
    return tuple([p for key in part for p in groups[key]] for part in parts)  # type: ignore[return-value]


def confusion_counts(pred: "np.ndarray", ref: "np.ndarray", num_classes: int) -> "np.ndarray":
    """Per-class ``[tp, fp, fn]`` counts ``(num_classes, 3)`` (int64) of two label maps of equal shape."""
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    ref = np.asarray(ref).reshape(-1).astype(np.int64)
    cm = np.bincount(ref * num_classes + pred, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    tp = np.diag(cm)
    return np.stack([tp, cm.sum(axis=0) - tp, cm.sum(axis=1) - tp], axis=1)


def dice_from_counts(counts: "np.ndarray") -> List[float]:
    """Dice per class from :func:`confusion_counts` (NaN where prediction and reference are both empty)."""
    out = []
    for tp, fp, fn in np.asarray(counts):
        denom = 2 * tp + fp + fn
        out.append(float(2 * tp / denom) if denom > 0 else float("nan"))
    return out


def _mean_fg(dice: Sequence[float]) -> float:
    vals = [d for d in dice[1:] if not math.isnan(d)]
    return float(np.mean(vals)) if vals else float("nan")


def resolve_device(device: Optional[str] = "auto"):
    """``"auto"`` -> CUDA when available, else CPU; otherwise ``torch.device(device)``."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}; valid: auto, cpu, cuda, cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA device is available")
    return dev


class PNG2DTrainer:
    """Train and test a 2D segmentation network on a folder of PNG image/label pairs.

    Data: ``dataset_dir`` with ``images/`` + ``labels/`` (or ``masks/``), or ``image_dir`` and
    ``label_dir`` given directly (see :func:`volseg.data.png.pair_png_folders`); ``split_by``
    ``"folder"`` or ``"prefix"`` keeps each patient's slices in one split. Images are
    ``(1, X, Y)`` in [0, 1]; labels class indices from ``palette``.
    ``network`` is a ``torch.nn.Module`` taking ``(B, 1, X, Y)`` and returning
    ``(B, num_classes, X, Y)`` logits; by default ``unet_classic`` 2D with ``base_channels``.
    Early stopping watches validation loss (every ``val_interval`` epochs): after ``patience``
    validations without an improvement larger than ``min_delta`` training stops, and the best
    epoch's weights are restored (``restore_best``) before the model is saved and tested.
    """

    def __init__(
        self,
        dataset_dir: Optional[PathLike] = None,
        output_dir: PathLike = ".",
        image_dir: Optional[PathLike] = None,
        label_dir: Optional[PathLike] = None,
        network: Any = None,
        num_classes: int = 3,
        base_channels: int = 64,
        palette: Optional[Mapping] = None,
        class_names: Optional[Mapping] = None,
        nearest_colour: bool = False,
        spatial_size: Optional[Sequence[int]] = (256, 256),
        median_kernel: int = 3,
        scale: str = "dtype",
        augment: bool = False,
        split: Sequence[float] = (0.6, 0.2, 0.2),
        split_by: str = "image",
        seed: int = 42,
        loss: str = "ce",
        learning_rate: float = 1e-3,
        max_epochs: int = 50,
        batch_size: int = 16,
        patience: int = 3,
        min_delta: float = 0.0,
        restore_best: bool = True,
        n_samples: int = 4,
        device: Optional[str] = "auto",
        num_workers: int = 0,
        val_interval: int = 1,
        cache_rate: float = 1.0,
        distributed: bool = False,
        bundle_root: Optional[PathLike] = None,
        inference_overrides: Optional[Mapping[str, Any]] = None,
        progress: bool = True,
    ):
        if loss.lower() not in LOSSES:
            raise ConfigError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
        if min(int(max_epochs), int(batch_size), int(patience), int(val_interval)) < 1:
            raise ConfigError("max_epochs, batch_size, patience and val_interval must be positive integers")
        self.dataset_dir, self.image_dir, self.label_dir = dataset_dir, image_dir, label_dir
        self.output_dir = Path(output_dir)
        self.network = network
        self.num_classes, self.base_channels = int(num_classes), int(base_channels)
        self.palette, self.nearest_colour = palette, bool(nearest_colour)
        self.class_names = {int(k): str(v) for k, v in (class_names or {}).items()}
        self.spatial_size = None if spatial_size is None else tuple(int(s) for s in spatial_size)
        self.median_kernel, self.scale, self.augment = int(median_kernel), scale, bool(augment)
        self.split, self.seed, self.loss = tuple(split), int(seed), loss.lower()
        group_key("x", split_by)
        self.split_by = split_by
        self.learning_rate, self.max_epochs, self.batch_size = float(learning_rate), int(max_epochs), int(batch_size)
        self.patience, self.min_delta, self.restore_best = int(patience), float(min_delta), bool(restore_best)
        self.n_samples, self.device, self.num_workers, self.progress = int(n_samples), device, int(num_workers), progress
        self.val_interval, self.cache_rate, self.distributed = int(val_interval), float(cache_rate), bool(distributed)
        self.bundle_root = None if bundle_root is None else Path(bundle_root)
        self.inference_overrides = dict(inference_overrides or {})
        self.history: List[Dict[str, float]] = []

    # data ----------------------------------------------------------------------------------
    def pairs(self) -> List[Dict[str, str]]:
        """The image/label pairs (``pair_png_folders``), errors listing every bad file."""
        from volseg.data.png import find_png_folders, pair_png_folders

        image_dir, label_dir = self.image_dir, self.label_dir
        if image_dir is None or label_dir is None:
            if self.dataset_dir is None:
                raise ConfigError("give dataset_dir (with images/ and labels/) or image_dir and label_dir")
            image_dir, label_dir = find_png_folders(self.dataset_dir)
        return pair_png_folders(image_dir, label_dir)

    def _loader(self, items, stage: str, shuffle: bool):
        import torch
        from monai.data import CacheDataset, DataLoader

        from volseg.transforms.png2d import png2d_transforms

        xform = png2d_transforms(
            stage, self.spatial_size, self.median_kernel, self.palette, self.nearest_colour, self.scale,
            augment=self.augment, load=False,
        )
        ds = CacheDataset(items, xform, cache_rate=self.cache_rate, num_workers=0, progress=False)
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers, generator=gen)

    def build_network(self):
        """The network to train: ``self.network`` or ``unet_classic`` 2D from the volseg registry."""
        if self.network is not None:
            return self.network
        from volseg.networks import create_network

        return create_network(
            "unet_classic", spatial_dims=2, in_channels=1, out_channels=self.num_classes,
            base_channels=self.base_channels,
        )

    # one pass ------------------------------------------------------------------------------
    def _epoch(self, net, loader, loss_fn, device, optimizer=None, reduce: bool = False) -> Dict[str, Any]:
        import torch

        train = optimizer is not None
        net.train(train)
        total_loss, n_px, n_correct, n_items = 0.0, 0, 0, 0
        counts = np.zeros((self.num_classes, 3), dtype=np.int64)
        with torch.set_grad_enabled(train):
            for batch in loader:
                img = batch["image"].to(device)
                lab = batch["label"].to(device).long()
                logits = net(img)
                loss = loss_fn(logits, lab)
                if train:
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                pred = logits.argmax(1, keepdim=True)
                total_loss += float(loss.detach()) * img.shape[0]
                n_items += img.shape[0]
                n_correct += int((pred == lab).sum())
                n_px += lab.numel()
                counts += confusion_counts(pred.cpu().numpy(), lab.cpu().numpy(), self.num_classes)
        if reduce:
            import torch.distributed as dist

            vec = torch.tensor([total_loss, n_items, n_correct, n_px, *counts.reshape(-1).tolist()],
                               dtype=torch.float64, device=device)
            dist.all_reduce(vec)
            vals = vec.cpu().numpy()
            total_loss, n_items, n_correct, n_px = float(vals[0]), int(vals[1]), int(vals[2]), int(vals[3])
            counts = vals[4:].astype(np.int64).reshape(counts.shape)
        dice = dice_from_counts(counts)
        return {"loss": total_loss / max(n_items, 1), "accuracy": n_correct / max(n_px, 1), "dice": dice}

    def _loss_fn(self):
        import torch

        if self.loss == "dicece":
            from monai.losses import DiceCELoss

            return DiceCELoss(to_onehot_y=True, softmax=True)
        ce = torch.nn.CrossEntropyLoss()
        return lambda logits, lab: ce(logits, lab[:, 0])

    # main ----------------------------------------------------------------------------------
    def _data(self):
        """Load and split every pair once: ``(train, val, test)`` lists of loaded item dicts."""
        from volseg.transforms.png2d import load_png_pairs

        pairs = self.pairs()
        parts = split_groups(pairs, self.split, self.seed, self.split_by)
        loaded = load_png_pairs(pairs, self.palette, self.nearest_colour, self.scale)
        top = max(int(d["label"].max()) for d in loaded)
        if top >= self.num_classes:
            raise ConfigError(f"labels hold class {top} but the network has num_classes={self.num_classes}")
        if self.spatial_size is None:
            sizes = sorted({tuple(d["image"].shape[1:]) for d in loaded})
            if len(sizes) > 1:
                raise ConfigError(f"PNGs have different sizes {sizes[:5]}: set spatial_size (roi_size) to resize them")
        by_name = {p["name"]: dict(d, name=p["name"]) for p, d in zip(pairs, loaded)}
        return tuple([by_name[p["name"]] for p in part] for part in parts)

    def _setup_distributed(self):
        """``(rank, world_size, device)``; starts the process group (nccl on CUDA, gloo on CPU) when asked."""
        import torch
        import torch.distributed as dist

        if not self.distributed:
            return 0, 1, resolve_device(self.device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if self.device in (None, "auto") and torch.cuda.is_available():
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        else:
            device = resolve_device(self.device)
        return dist.get_rank(), dist.get_world_size(), device

    def _train_loader(self, items, world: int):
        if world == 1:
            return self._loader(items, "train", shuffle=True)
        from monai.data import DataLoader
        from torch.utils.data.distributed import DistributedSampler

        ds = self._loader(items, "train", shuffle=False).dataset
        sampler = DistributedSampler(ds, shuffle=True, seed=self.seed)
        return DataLoader(ds, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers)

    def run(self) -> Dict[str, Any]:
        """Train, early-stop, restore the best epoch, save and test. Returns a summary dict.

        With ``distributed=True`` (under ``torchrun``) each rank trains on its shard of the
        training set through DDP; every rank validates on the whole validation set (so all
        stop at the same epoch) and only rank 0 writes files.
        """
        import torch
        from monai.utils import set_determinism
        from tqdm.auto import tqdm

        train_items, val_items, test_items = self._data()
        if not val_items:
            raise ConfigError("early stopping needs a validation set: the split gives it no pairs")
        rank, world, device = self._setup_distributed()
        main = rank == 0
        set_determinism(self.seed)
        train_loader = self._train_loader(train_items, world)
        val_loader = self._loader(val_items, "val", shuffle=False)
        test_loader = self._loader(test_items, "val", shuffle=False) if test_items else None
        net = self.build_network().to(device)
        model = net
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.learning_rate)
        loss_fn = self._loss_fn()
        best_loss, best_epoch, best_state, wait = math.inf, 0, None, 0
        stopped_early = False
        self.history = []
        bar = tqdm(range(1, self.max_epochs + 1), desc="png2d train", unit="epoch", disable=not (self.progress and main))
        for epoch in bar:
            if hasattr(train_loader.sampler, "set_epoch"):
                train_loader.sampler.set_epoch(epoch)
            tr = self._epoch(model, train_loader, loss_fn, device, optimizer, reduce=world > 1)
            if epoch % self.val_interval and epoch != self.max_epochs:
                nan = float("nan")
                self.history.append({"epoch": epoch, "train_loss": tr["loss"], "train_accuracy": tr["accuracy"],
                                     "val_loss": nan, "val_accuracy": nan, "val_dice": nan})
                continue
            va = self._epoch(net, val_loader, loss_fn, device)
            row = {
                "epoch": epoch, "train_loss": tr["loss"], "train_accuracy": tr["accuracy"],
                "val_loss": va["loss"], "val_accuracy": va["accuracy"], "val_dice": _mean_fg(va["dice"]),
            }
            self.history.append(row)
            bar.set_postfix(loss=f"{tr['loss']:.3f}", val_loss=f"{va['loss']:.3f}", val_dice=f"{row['val_dice']:.3f}")
            if va["loss"] < best_loss - self.min_delta:
                best_loss, best_epoch, wait = va["loss"], epoch, 0
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in net.state_dict().items()})
            else:
                wait += 1
            if main:
                self._write_logs(best_epoch)
                self._save_checkpoint(net, optimizer, epoch, best_epoch)
            if wait >= self.patience:
                stopped_early = epoch < self.max_epochs
                logger.info("early stopping at epoch %d: best validation loss %.4f at epoch %d", epoch, best_loss, best_epoch)
                break
        if self.restore_best and best_state is not None:
            net.load_state_dict(best_state)
        model_path = self.output_dir / "models" / "model.pt"
        summary = {
            "epochs_run": len(self.history), "best_epoch": best_epoch, "best_val_loss": best_loss,
            "stopped_early": stopped_early, "restored_best": bool(self.restore_best and best_state is not None),
            "n_train": len(train_items), "n_val": len(val_items), "n_test": len(test_items),
            "model": str(model_path), "metrics_csv": str(self.output_dir / "logs" / "metrics.csv"),
            "curves": str(self.output_dir / "logs" / "curves.png"),
            "split": {"train": [p["name"] for p in train_items], "val": [p["name"] for p in val_items],
                      "test": [p["name"] for p in test_items]},
        }
        if not main:
            return summary
        with atomic_path(model_path) as tmp:
            torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, tmp)
        summary.update(self._test(net, device, test_items, test_loader, val_items, val_loader))
        if self.bundle_root is not None:
            summary["bundle"] = str(export_bundle(self.bundle_root, self.output_dir, self.inference_overrides))
        return summary

    def _test(self, net, device, test_items, test_loader, val_items, val_loader) -> Dict[str, Any]:
        if test_items:
            items, loader, name = test_items, test_loader, "test"
        else:
            items, loader, name = val_items, val_loader, "validation"
        ev = self._epoch(net, loader, self._loss_fn(), device)
        metrics = self._write_metrics(ev, name, len(items))
        return {"test_metrics": metrics, "samples": self._write_samples(net, loader, device)}

    def evaluate(self, model_path: Optional[PathLike] = None) -> Dict[str, Any]:
        """Test a saved model (default ``output_dir/models/model.pt``) on the same seeded test split.

        Writes ``eval/test_metrics.{json,csv}`` and ``eval/samples.png``; returns the metrics.
        """
        import torch

        path = Path(model_path) if model_path is not None else self.output_dir / "models" / "model.pt"
        if not path.is_file():
            raise InputError("model file not found (train first)", path)
        train_items, val_items, test_items = self._data()
        device = resolve_device(self.device)
        net = self.build_network().to(device)
        try:
            net.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        except (RuntimeError, KeyError) as exc:
            raise InputError(f"weights do not fit the network ({str(exc).splitlines()[0]})", path) from None
        test_loader = self._loader(test_items, "val", shuffle=False) if test_items else None
        val_loader = self._loader(val_items, "val", shuffle=False)
        return self._test(net, device, test_items, test_loader, val_items, val_loader)

    # outputs -------------------------------------------------------------------------------
    def _save_checkpoint(self, net, optimizer, epoch: int, best_epoch: int) -> None:
        import torch

        state = {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                 "best_epoch": best_epoch, "history": list(self.history)}
        with atomic_path(self.output_dir / "models" / "checkpoint_last.pt") as tmp:
            torch.save(state, tmp)

    def _write_logs(self, best_epoch: int) -> None:
        logs = self.output_dir / "logs"
        with atomic_path(logs / "metrics.csv") as tmp:
            with open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(HISTORY_FIELDS))
                w.writeheader()
                for row in self.history:
                    w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        plot_curves(self.history, logs / "curves.png", best_epoch=best_epoch)

    def _names(self) -> Dict[int, str]:
        from volseg.data.png import DEFAULT_CLASS_NAMES

        from volseg.data.png import DEFAULT_PALETTE, parse_palette

        names = dict(DEFAULT_CLASS_NAMES) if parse_palette(self.palette) == DEFAULT_PALETTE else {}
        names.update(self.class_names)
        return {c: names.get(c, f"class_{c}") for c in range(self.num_classes)}

    def _write_metrics(self, ev: Dict[str, Any], split: str, n: int) -> Dict[str, Any]:
        names = self._names()
        out = {"split": split, "n_images": n, "loss": ev["loss"], "accuracy": ev["accuracy"],
               "mean_dice": _mean_fg(ev["dice"]),
               "dice": {names[c]: (None if math.isnan(d) else d) for c, d in enumerate(ev["dice"])}}
        ev_dir = self.output_dir / "eval"
        with atomic_path(ev_dir / "test_metrics.json") as tmp:
            tmp.write_text(json.dumps(out, indent=2) + "\n")
        with atomic_path(ev_dir / "test_metrics.csv") as tmp:
            with open(tmp, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["metric", "value"])
                w.writerow(["split", split])
                w.writerow(["n_images", n])
                for key in ("loss", "accuracy", "mean_dice"):
                    w.writerow([key, f"{out[key]:.6g}"])
                for name, d in out["dice"].items():
                    w.writerow([f"dice_{name}", "" if d is None else f"{d:.6g}"])
        return out

    def _write_samples(self, net, loader, device, max_scan: int = 256) -> Optional[str]:
        """``eval/samples.png``: the ``n_samples`` most informative images (most label classes, then most
        foreground) among the first ``max_scan``, in data order, with label and prediction."""
        import torch

        if self.n_samples < 1:
            return None
        cands = []
        net.eval()
        with torch.no_grad():
            for batch in loader:
                logits = net(batch["image"].to(device))
                for i in range(batch["image"].shape[0]):
                    lab = batch["label"][i, 0].numpy().astype(np.int64)
                    score = (len(np.unique(lab[lab > 0])), int((lab > 0).sum()))
                    cands.append((score, len(cands), batch["image"][i, 0].numpy(), lab,
                                  logits[i].argmax(0).cpu().numpy()))
                if len(cands) >= max_scan:
                    break
        best = sorted(sorted(cands, key=lambda c: c[0], reverse=True)[: self.n_samples], key=lambda c: c[1])
        path = self.output_dir / "eval" / "samples.png"
        plot_sample_grid([c[2] for c in best], [c[3] for c in best], [c[4] for c in best], path,
                         palette=self.palette, num_classes=self.num_classes)
        return str(path)


class Slice2DInferer:
    """Run a 2D network on 2D batches ``(B, C, X, Y)`` directly and on 3D volumes ``(B, C, X, Y, Z)``
    slice by slice along ``spatial_dim`` (MONAI ``SliceInferer``), so one bundle serves PNGs and CT scans.
    """

    def __init__(self, roi_size: Sequence[int] = (256, 256), spatial_dim: int = 2, sw_batch_size: int = 16, **kwargs: Any):
        from monai.inferers import SliceInferer

        self.slice_inferer = SliceInferer(
            roi_size=tuple(int(r) for r in roi_size), spatial_dim=spatial_dim, sw_batch_size=sw_batch_size,
            progress=False, **kwargs,
        )

    def __call__(self, inputs, network, *args: Any, **kwargs: Any):
        if inputs.ndim == 4:
            return network(inputs, *args, **kwargs)
        if inputs.ndim != 5:
            raise InputError(f"a 2D model needs (B, C, X, Y) or (B, C, X, Y, Z) input, got shape {tuple(inputs.shape)}")
        return self.slice_inferer(inputs, network, *args, **kwargs)


def train_png2d(**kwargs: Any) -> Dict[str, Any]:
    """Plain-function form of :class:`PNG2DTrainer` (same keyword arguments); returns its summary."""
    return PNG2DTrainer(**kwargs).run()
