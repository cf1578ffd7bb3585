"""volseg.training handlers on a plain ignite Engine: patience in optimizer steps, the short-epoch
warning, early stopping on a lower-is-better metric, and pixel accuracy."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

from volseg.errors import ConfigError
from volseg.training import PixelAccuracy, TrainingRecorder


def _recorder(tmp_path, evaluator=None, **kw) -> TrainingRecorder:
    net = torch.nn.Linear(2, 2)
    return TrainingRecorder(tmp_path, net, torch.optim.SGD(net.parameters(), lr=0.1), evaluator=evaluator,
                            progress=False, plot=False, tensorboard=False, **kw)


def _run(recorder: TrainingRecorder, steps: int, epochs: int = 1):
    from ignite.engine import Engine

    engine = Engine(lambda e, b: {"loss": torch.tensor(1.0)})
    recorder.attach(engine)
    engine.run(list(range(steps)), max_epochs=epochs)
    return engine


@pytest.mark.parametrize("steps,val_interval,expected", [(5, 2, 10), (50, 1, 3), (1000, 1, 3)])
def test_patience_counts_optimizer_steps(tmp_path, steps, val_interval, expected):
    """ceil(100 steps / (steps per epoch * val_interval)) validations, never fewer than ``patience``."""
    rec = _recorder(tmp_path, patience=3, patience_steps=100, val_interval=val_interval)
    _run(rec, steps)
    assert rec.effective_patience == expected


def test_short_epochs_warn(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="volseg.training.handlers"):
        _run(_recorder(tmp_path / "a", min_steps_per_epoch=8), 5)
    assert "an epoch is only 5 optimizer step(s) (fewer than 8)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="volseg.training.handlers"):
        _run(_recorder(tmp_path / "b", min_steps_per_epoch=8), 8)
    assert "optimizer step" not in caplog.text


def test_lower_is_better_stops_and_restores_the_best_weights(tmp_path):
    """mode="min": 0.5, 0.3, 0.4, 0.35 -> best at epoch 2; patience 2 stops after epoch 4 and the
    network holds epoch 2's weights again (as model.pt does)."""
    losses = iter([0.5, 0.3, 0.4, 0.35, 0.1, 0.1])
    evaluator = SimpleNamespace(state=SimpleNamespace(metrics={}))
    rec = _recorder(tmp_path, evaluator=evaluator, key_metric="val_loss", mode="min", patience=2)
    from ignite.engine import Engine, Events

    net = rec.network
    engine = Engine(lambda e, b: {"loss": torch.tensor(1.0)})

    @engine.on(Events.EPOCH_COMPLETED)
    def _validate_and_step(e):  # runs before the recorder (attached first): fake validation + a weight change
        evaluator.state.metrics = {"val_loss": next(losses)}
        with torch.no_grad():
            net.weight.fill_(float(e.state.epoch))

    rec.attach(engine)
    engine.run([0], max_epochs=6)
    assert engine.state.epoch == 4 and rec.best_epoch == 2 and rec.best_metric == pytest.approx(0.3)
    assert torch.all(net.weight == 2.0)
    saved = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert torch.all(saved["weight"] == 2.0)
    with pytest.raises(ConfigError, match="'max' or 'min'"):
        _recorder(tmp_path, mode="lowest")


def test_pixel_accuracy_on_scores_and_one_hot():
    from ignite.engine import Engine

    label = torch.tensor([[[0, 1], [2, 2]]], dtype=torch.float32)  # (1, X, Y) class indices
    scores = torch.nn.functional.one_hot(torch.tensor([[0, 1], [2, 0]]), 3).permute(2, 0, 1).float() * 5
    one_hot = torch.nn.functional.one_hot(label[0].long(), 3).permute(2, 0, 1).float()
    outputs = iter([[{"pred": scores, "label": label}], [{"pred": one_hot, "label": one_hot}]])
    engine = Engine(lambda e, b: next(outputs))
    PixelAccuracy(name="acc").attach(engine)
    engine.run([0, 1], max_epochs=1)
    assert engine.state.metrics["acc"] == pytest.approx(7 / 8)
