"""Figures of a training run: ``logs/curves.png`` (loss, validation Dice, accuracy per epoch) and the
``samples.png`` grid (image | label | prediction) of a tested split."""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from volseg._atomic import atomic_path

PathLike = Union[str, "os.PathLike[str]"]


def _series(history: Sequence[Mapping[str, Any]], key: str):
    pts = [(r["epoch"], r[key]) for r in history if key in r and r[key] == r[key]]
    return tuple(zip(*pts)) if pts else None


def write_curves(history: Sequence[Mapping[str, Any]], path: PathLike, key_metric: str = "val_mean_dice",
                 best_epoch: int = 0) -> None:
    """Curves against epoch as a PNG: loss (training, and validation when recorded), validation
    Dice (mean and per label), and pixel accuracy (training vs validation) when recorded.
    ``best_epoch`` (the kept weights' epoch, by ``key_metric``) is marked with a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    keys = {k for r in history for k in r}
    dice_keys = [k for k in ("val_mean_dice",) if k in keys] + sorted(k for k in keys if k.startswith("dice_"))
    acc_keys = [k for k in ("train_accuracy", "val_accuracy") if k in keys]
    panels = [("loss", [("loss", "training"), ("val_loss", "validation")], None),
              ("validation Dice", [(k, k) for k in dice_keys], (0, 1))]
    if acc_keys:
        panels.append(("pixel accuracy", [(k, k.split("_")[0].replace("val", "validation").replace("train", "training"))
                                          for k in acc_keys], None))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (title, series, ylim) in zip(axes, panels):
        for key, label in series:
            pts = _series(history, key)
            if pts:
                ax.plot(*pts, "o-", ms=3, lw=2 if key == key_metric else 1, label=label)
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best epoch {best_epoch} ({key_metric})")
        ax.set(xlabel="epoch", title=title)
        if ylim:
            ax.set_ylim(*ylim)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def plot_sample_grid(images: Sequence[np.ndarray], labels: Sequence[np.ndarray], preds: Sequence[np.ndarray],
                     path: PathLike, palette: Optional[Mapping] = None, titles: Optional[Sequence[str]] = None) -> None:
    """One row per sample: image | label | prediction. Arrays are ``(X, Y)`` (shown with X across);
    labels and predictions are class indices coloured with ``palette`` (tab10 colours for classes
    the palette lacks); ``titles`` name the predictions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from volseg.io.png import labels_to_rgb, parse_palette

    pal = parse_palette(palette)
    top = max([int(np.max(a)) for a in list(labels) + list(preds)] + [0])
    for c in range(top + 1):
        pal.setdefault(c, tuple(int(v * 255) for v in plt.get_cmap("tab10")(c % 10)[:3]))
    n = max(len(images), 1)
    fig, axes = plt.subplots(n, 3, figsize=(9, 3 * n), squeeze=False)
    for r, (img, lab, pred) in enumerate(zip(images, labels, preds)):
        title = titles[r] if titles else "prediction"
        for c, (arr, name) in enumerate(((img, "image"), (lab, "label"), (pred, title))):
            ax = axes[r, c]
            if c == 0:
                ax.imshow(np.asarray(arr).T, cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(labels_to_rgb(np.asarray(arr).T, pal))
            ax.set_title(name, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
