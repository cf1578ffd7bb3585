"""Plots of the 2D PNG workflow: training curves and the image | label | prediction grid."""
from __future__ import annotations

import os
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from volseg._atomic import atomic_path

PathLike = Union[str, "os.PathLike[str]"]


def plot_curves(history: Sequence[Mapping[str, float]], path: PathLike, best_epoch: int = 0) -> None:
    """Accuracy and loss curves (train vs validation) side by side as a PNG; best epoch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axes[0], "accuracy", "pixel accuracy"), (axes[1], "loss", "loss")):
        ax.plot(epochs, [r[f"train_{key}"] for r in history], "o-", label="train")
        ax.plot(epochs, [r[f"val_{key}"] for r in history], "s-", label="validation")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def plot_sample_grid(
    images: Sequence["np.ndarray"], labels: Sequence["np.ndarray"], preds: Sequence["np.ndarray"],
    path: PathLike, palette: Optional[Mapping] = None, num_classes: int = 3,
) -> None:
    """A grid with one row per sample: image | label | prediction. Arrays are ``(X, Y)``; labels in the palette."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from volseg.data.png import labels_to_rgb, parse_palette

    pal = parse_palette(palette)
    for c in range(num_classes):
        pal.setdefault(c, tuple(int(v * 255) for v in plt.get_cmap("tab10")(c % 10)[:3]))
    n = max(len(images), 1)
    fig, axes = plt.subplots(n, 3, figsize=(9, 3 * n), squeeze=False)
    for r, (img, lab, pred) in enumerate(zip(images, labels, preds)):
        from volseg.workflows.png2d import _mean_fg, confusion_counts, dice_from_counts

        d = dice_from_counts(confusion_counts(pred, lab, num_classes))
        for c, (arr, title) in enumerate(((img, "image"), (lab, "label"), (pred, f"prediction (Dice {_mean_fg(d):.2f})"))):
            ax = axes[r, c]
            if c == 0:
                ax.imshow(np.asarray(arr).T, cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(labels_to_rgb(np.asarray(arr).T, pal))
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
