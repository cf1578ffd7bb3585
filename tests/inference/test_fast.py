"""The fast inference path gives the eager network's answer (no timed assertions here)."""
from __future__ import annotations

import warnings

import pytest
import torch

from volseg.errors import ConfigError
from volseg.inference.fast import FastForward, optimize_for_inference
from volseg.networks import create_network


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_network("unet", spatial_dims=3, out_channels=3, channels=(4, 8, 16), strides=(2, 2)).eval()


@pytest.mark.parametrize("backend", ["eager", "compiled", "auto"])
def test_backend_matches_eager_argmax(backend: str) -> None:
    x = torch.randn(2, 1, 32, 32, 32)
    ref_net = _net()
    with torch.inference_mode():
        ref = ref_net(x)
    fast = optimize_for_inference(_net(), (32, 32, 32), "cpu", backend=backend)
    got = fast(x)
    assert got.shape == ref.shape and got.is_contiguous()
    assert (got.argmax(1) == ref.argmax(1)).float().mean().item() >= 0.9999
    assert torch.allclose(got, ref, atol=1e-3)
    assert torch.equal(fast(x), got)  # deterministic on repeat calls


def test_compile_failure_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = FastForward(_net(), backend="compiled")

    def broken() -> None:
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(fast, "_compile", broken)
    x = torch.randn(1, 1, 32, 32, 32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fast(x)
    assert any("eager" in str(w.message) for w in caught)
    with torch.inference_mode():
        assert torch.allclose(out, _net()(x), atol=1e-5)


def test_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="valid: auto, eager, compiled"):
        optimize_for_inference(_net(), (32, 32, 32), backend="openvino")


def test_works_inside_sliding_window_inference() -> None:
    from monai.inferers import sliding_window_inference

    img = torch.rand(1, 1, 40, 37, 33)
    with torch.no_grad():  # as volseg's predictor calls it: outputs are blended in place afterwards
        ref = sliding_window_inference(img, (32, 32, 32), 2, _net(), overlap=0.25, mode="gaussian")
        got = sliding_window_inference(img, (32, 32, 32), 2, optimize_for_inference(_net(), (32, 32, 32)),
                                       overlap=0.25, mode="gaussian")
    assert (got.argmax(1) == ref.argmax(1)).float().mean().item() >= 0.9999


@pytest.mark.slow
def test_benchmark_quick_mode_runs() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "predict_vs_monai.py"
    spec = importlib.util.spec_from_file_location("predict_vs_monai", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--quick"])
    assert res["agreement"] >= 0.9999
    assert res["plain_s"] > 0 and res["volseg_s"] > 0
