"""Shared inference pieces: device resolution and mirrored test-time augmentation."""
from __future__ import annotations

import pytest
import torch

from volseg.errors import ConfigError


def test_tta_averages_mirrorings():
    from volseg.inference.core import mirror_tta

    class Asym(torch.nn.Module):  # depends on position: mirroring changes its output
        def forward(self, x):
            ramp = torch.linspace(0, 1, x.shape[2]).view(1, 1, -1, 1)
            return torch.cat([torch.zeros_like(x), x * ramp], 1)

    x = torch.ones(1, 1, 6, 4)
    p = mirror_tta(Asym(), 2)(x)
    # averaged over flips (logits), the ramp becomes symmetric along axis 2
    torch.testing.assert_close(p, torch.flip(p, [2]))
    torch.testing.assert_close(p[:, 1], torch.full_like(p[:, 1], 0.5))


def test_resolve_device():
    from volseg.inference.core import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="invalid device"):
        resolve_device("gpu0")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("CPU").type == "cpu"


def test_one_resolve_device(monkeypatch):
    """The training bundles' ``volseg.training.resolve_device`` is the inference one; under torchrun
    ``auto`` picks this rank's GPU."""
    import volseg.inference
    import volseg.training
    from volseg.inference.core import resolve_device

    assert volseg.training.resolve_device is volseg.inference.resolve_device is resolve_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cuda:1")
    monkeypatch.delenv("LOCAL_RANK")
    assert resolve_device(None) == torch.device("cuda")
