"""Segmentation metrics: MONAI's, with the conventions volseg reports.

MONAI's ``compute_dice`` / ``DiceMetric`` give the Dice of one image and channel; what MONAI has no
single call for is a table per label of two label maps with a stated answer when a label is in
neither. :func:`dice_per_label` is that one volseg function (evaluation, per-case Dice of the
training bundles); the pooled Dice over a validation set is MONAI's ``ConfusionMatrixMetric``
("f1 score" of the summed counts, :class:`volseg.training.PerLabelDice`).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable


def _tensor(x: Any) -> Any:
    import torch

    return x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(x)


def dice_per_label(pred: Any, ref: Any, labels: Iterable[int], empty: float = math.nan) -> Dict[int, float]:
    """``{label: Dice}`` of label maps ``pred`` and ``ref`` (same shape, e.g. ``(X, Y, Z)``, numpy or
    torch) for each of ``labels``, by MONAI's ``compute_dice``. A label in neither map gets ``empty``
    (NaN by default: no evidence; evaluation reports 1.0 there, as MONAI with ``ignore_empty=False``);
    a label in only one map gets 0. One label at a time, so memory stays two boolean masks."""
    from monai.metrics import compute_dice

    p, r = _tensor(pred), _tensor(ref)
    if tuple(p.shape) != tuple(r.shape):
        from volseg.errors import InputError

        raise InputError(f"prediction shape {tuple(p.shape)} differs from reference shape {tuple(r.shape)}")
    out: Dict[int, float] = {}
    for lab in labels:
        pb, rb = p == int(lab), r == int(lab)
        if not bool(pb.any()) and not bool(rb.any()):
            out[int(lab)] = float(empty)
            continue
        out[int(lab)] = float(compute_dice(pb[None, None].float(), rb[None, None].float(), include_background=True,
                                           ignore_empty=False)[0, 0])
    return out
