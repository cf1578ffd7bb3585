"""volseg.metrics.dice_per_label (MONAI's compute_dice per label) and the pooled PerLabelDice handler,
both against Dice counted here with numpy."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch


def _np_dice(p: np.ndarray, r: np.ndarray) -> float:
    tot = p.sum() + r.sum()
    return 2.0 * np.logical_and(p, r).sum() / tot if tot else math.nan


def test_dice_per_label_against_numpy_and_the_empty_conventions() -> None:
    from volseg.metrics import dice_per_label

    rng = np.random.default_rng(0)
    pred, ref = rng.integers(0, 3, (12, 10, 6)), rng.integers(0, 3, (12, 10, 6))
    pred[pred == 2] = 1  # label 2 only in the reference: Dice 0
    got = dice_per_label(pred, torch.as_tensor(ref), [1, 2, 7])
    assert got[1] == pytest.approx(_np_dice(pred == 1, ref == 1), abs=1e-6)
    assert got[2] == 0.0
    assert math.isnan(got[7])  # in neither map
    assert dice_per_label(pred, ref, [7], empty=1.0) == {7: 1.0}


def test_per_label_dice_pools_counts_over_the_validation_set() -> None:
    """Pooled Dice (summed counts) differs from the mean of per-image Dice: the handler pools."""
    from volseg.training import PerLabelDice

    rng = np.random.default_rng(1)
    preds = [rng.integers(0, 3, (9, 8, 7)) for _ in range(3)]
    refs = [rng.integers(0, 3, (9, 8, 7)) for _ in range(3)]
    refs[1][refs[1] == 2] = 0
    preds[1][preds[1] == 2] = 0
    refs[2][:] = 0  # an image without label 1 or 2 in the reference

    def onehot(x: np.ndarray) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.as_tensor(x), 3).permute(3, 0, 1, 2).float()

    handler = PerLabelDice({"1": "lung", "2": "lesion"})
    engine = SimpleNamespace(state=SimpleNamespace(output=None, metrics={}))
    handler._reset(engine)
    for p, r in zip(preds, refs):
        engine.state.output = [{"pred": onehot(p), "label": onehot(r)}]
        handler._update(engine)
    handler._finish(engine)
    for k, name in ((1, "lung"), (2, "lesion")):
        pooled = _np_dice(np.concatenate([p == k for p in preds]), np.concatenate([r == k for r in refs]))
        assert engine.state.metrics[f"dice_{name}"] == pytest.approx(pooled, abs=1e-6)
