"""Resume is the same as never stopping: optimizer, scheduler, best metric and patience come back
from ``checkpoint_last.pt``, so a worse epoch after a resume cannot overwrite ``model.pt``.

The real ``TrainingRecorder`` on a real ignite ``Engine`` with a tiny deterministic model and
validation scores fixed per epoch (the bundles' own resume runs through ``run_bundle`` in
test_bundles.py, where the scores are whatever training gives).
"""
from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import pytest
import torch

# validation scores per epoch: epoch 1 is the best; epochs 2 and 3 are worse (3 better than 2)
SCORES = (0.8, 0.5, 0.6, 0.9)


def _train(out: Path, max_epochs: int, resume: bool, scores: Sequence[float] = SCORES, patience: int = 2):
    """Train a linear model with Adam + StepLR under TrainingRecorder; returns the recorder."""
    from ignite.engine import Engine, Events

    from volseg.training.handlers import TrainingRecorder

    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 4, generator=gen), torch.randn(8, 2, generator=gen)) for _ in range(3)]

    def step(engine, batch):
        x, y = batch
        opt.zero_grad()
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach())}

    trainer = Engine(step)
    evaluator = SimpleNamespace(state=SimpleNamespace(metrics={}))

    @trainer.on(Events.EPOCH_COMPLETED)
    def _validate_and_schedule(engine):
        evaluator.state.metrics = {"val_mean_dice": scores[engine.state.epoch - 1]}
        sched.step()

    rec = TrainingRecorder(out, net, opt, evaluator=evaluator, lr_scheduler=sched, patience=patience,
                           resume=resume, progress=False, plot=False, tensorboard=False)
    rec.attach(trainer)
    trainer.run(batches, max_epochs=max_epochs)
    return rec


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same_state(a, b, where: str = "") -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_same_state(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_state(x, y, f"{where}/{i}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    straight = _train(tmp_path / "straight", 4, resume=False)
    _train(tmp_path / "resumed", 2, resume=False)
    first_best = (tmp_path / "resumed" / "models" / "model.pt").read_bytes()
    resumed = _train(tmp_path / "resumed", 4, resume=True)
    # patience 2: epochs 2 and 3 do not beat epoch 1, so both runs stop after epoch 3
    assert [h["epoch"] for h in straight.history] == [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert straight.summary()["best_epoch"] == resumed.summary()["best_epoch"] == 1
    assert resumed.summary()["best_metric"] == pytest.approx(SCORES[0])
    # the worse epoch 3 after the resume did not overwrite the best model
    assert (tmp_path / "resumed" / "models" / "model.pt").read_bytes() == first_best
    _assert_same_state(_load(tmp_path / "resumed" / "models" / "model.pt"),
                       _load(tmp_path / "straight" / "models" / "model.pt"), "model.pt")
    # optimizer moments, step counts, the scheduler's lr and the weights after epoch 3 are the same
    a, b = _load(tmp_path / "straight" / "models" / "checkpoint_last.pt"), \
        _load(tmp_path / "resumed" / "models" / "checkpoint_last.pt")
    assert a["epoch"] == b["epoch"] == 3
    for key in ("model", "optimizer", "scheduler", "best_metric", "best_epoch", "bad_validations"):
        _assert_same_state(a[key], b[key], key)
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]


def test_resume_restores_the_optimizer_state_before_the_first_step(tmp_path):
    _train(tmp_path, 2, resume=False, patience=0)
    saved = _load(tmp_path / "models" / "checkpoint_last.pt")
    assert saved["optimizer"]["state"], "Adam keeps moments after two epochs"
    from ignite.engine import Engine, Events

    from volseg.training.handlers import TrainingRecorder

    torch.manual_seed(123)  # other initial weights: only the checkpoint can make them equal
    net = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    rec = TrainingRecorder(tmp_path, net, opt, resume=True, progress=False, plot=False, tensorboard=False)
    seen = {}
    engine = Engine(lambda e, b: {"loss": 0.0})
    rec.attach(engine)
    engine.add_event_handler(Events.STARTED, lambda e: seen.update(
        opt=copy.deepcopy(opt.state_dict()), net=copy.deepcopy(net.state_dict()), epoch=e.state.epoch))
    engine.run([0], max_epochs=3)
    assert seen["epoch"] == 2
    _assert_same_state(seen["opt"], saved["optimizer"], "optimizer")
    _assert_same_state(seen["net"], saved["model"], "model")
