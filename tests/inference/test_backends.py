"""The forward-pass backends: eager is plain PyTorch bit for bit, no backend touches the caller's
network, artifacts are cached and loaded by later processes, and every failure falls back to eager."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from volseg.errors import ConfigError
from volseg.inference import backends
from volseg.inference.backends import Forward, artifact_key, make_forward, resolve_precision

WINDOW = (3, 1, 32, 32, 32)


def _net(seed: int = 0, norm: str = "batch") -> torch.nn.Module:
    from volseg.networks import create_network

    torch.manual_seed(seed)
    net = create_network("unet", spatial_dims=3, channels=(4, 8, 16), strides=(2, 2), num_res_units=1, norm=norm)
    with torch.no_grad():  # non-trivial batch-norm statistics, so a lost or changed buffer shows
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _snapshot(net: torch.nn.Module) -> dict:
    return {k: (v.clone(), v.stride(), v.dtype) for k, v in net.state_dict().items()}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test gets an empty user cache, so nothing is read from or written to the real one."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


@pytest.mark.parametrize("batch", [3, 2, 1])
def test_eager_is_plain_pytorch_bit_for_bit(batch: int) -> None:
    net = _net()
    x = torch.randn(batch, 1, 32, 32, 32)
    with torch.no_grad():
        ref = net(x)
    forward = make_forward(net, WINDOW, "cpu", backend="eager")
    assert forward.backend == "eager" and forward.precision == "fp32"
    got = forward(x)
    assert got.dtype == torch.float32 and torch.equal(got, ref)


def test_auto_without_an_artifact_is_eager_and_never_builds(monkeypatch) -> None:
    builds = []
    monkeypatch.setattr(backends, "build_artifact", lambda *a, **k: builds.append(a))
    net = _net()
    x = torch.randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        ref = net(x)
    forward = make_forward(net, WINDOW, "cpu", backend="auto")
    assert forward.backend == "eager"
    assert torch.equal(forward(x), ref)
    assert builds == []  # auto must not compile inside a command


@pytest.mark.parametrize("backend", ["eager", "channels_last", "auto"])
def test_no_backend_modifies_the_callers_network(backend: str) -> None:
    net = _net()
    before = _snapshot(net)
    x = torch.randn(3, 1, 32, 32, 32)
    with torch.no_grad():
        ref = net(x)
    forward = make_forward(net, WINDOW, "cpu", backend=backend)
    got = forward(x)
    after = _snapshot(net)
    assert before.keys() == after.keys()
    for k, (value, stride, dtype) in before.items():
        assert torch.equal(after[k][0], value) and after[k][1] == stride and after[k][2] == dtype, k
    with torch.no_grad():
        assert torch.equal(net(x), ref)  # the caller's network still gives its own answer
    assert (got.argmax(1) == ref.argmax(1)).float().mean().item() >= 0.9999
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_channels_last_runs_a_channels_last_copy() -> None:
    net = _net()
    forward = make_forward(net, WINDOW, "cpu", backend="channels_last")
    assert forward.backend == "channels_last"
    seen = []
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv3d))
    hook = conv.register_forward_hook(lambda *a: seen.append(1))
    forward(torch.randn(1, 1, 32, 32, 32))
    hook.remove()
    assert seen == []  # the caller's modules did not run


@pytest.mark.parametrize("batch", [1, 2, 3, 5])
def test_fixed_batch_artifacts_take_any_batch(batch: int) -> None:
    net = _net()

    def static_batch(x: torch.Tensor) -> torch.Tensor:
        assert x.shape[0] == 3, "an artifact is built for exactly N windows"
        return net(x)

    forward = Forward(static_batch, "aoti", "fp32", "cpu", batch=3, fixed_batch=True)
    x = torch.randn(batch, 1, 32, 32, 32)
    with torch.no_grad():
        ref = net(x)
    got = forward(x)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_a_failing_backend_falls_back_to_eager_with_a_note(caplog) -> None:
    net = _net()

    def broken(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("kernel exploded")

    forward = Forward(broken, "aoti", "fp32", "cpu", batch=3, fixed_batch=True,
                      fallback=lambda: make_forward(net, WINDOW, "cpu", backend="eager"))
    x = torch.randn(2, 1, 32, 32, 32)
    with caplog.at_level(logging.WARNING, logger="volseg.inference.backends"):
        got = forward(x)
    with torch.no_grad():
        assert torch.equal(got, net(x))
    assert forward.backend == "eager"
    assert any("kernel exploded" in r.getMessage() for r in caplog.records)


def test_a_broken_cached_artifact_falls_back_to_eager(tmp_path, caplog) -> None:
    net = _net()
    cache = tmp_path / "optimized"
    cache.mkdir()
    (cache / f"{artifact_key(net, WINDOW, 'aoti', 'fp32')}.pt2").write_bytes(b"not a package")
    x = torch.randn(3, 1, 32, 32, 32)
    with caplog.at_level(logging.WARNING, logger="volseg.inference.backends"):
        forward = make_forward(net, WINDOW, "cpu", backend="auto", cache_dir=cache)
    assert forward.backend == "eager"
    with torch.no_grad():
        assert torch.equal(forward(x), net(x))
    assert len([r for r in caplog.records if "cannot load" in r.getMessage()]) == 1


def test_artifact_key_tracks_weights_window_and_precision() -> None:
    net = _net()
    key = artifact_key(net, WINDOW, "aoti", "fp32")
    assert key == artifact_key(_net(), WINDOW, "aoti", "fp32")  # same weights, new object
    other = _net()
    with torch.no_grad():
        next(other.parameters())[0].view(-1)[0] += 1e-3
    assert artifact_key(other, WINDOW, "aoti", "fp32") != key
    other = _net()
    with torch.no_grad():
        next(b for n, b in other.named_buffers() if n.endswith("running_var")).mul_(2)
    assert artifact_key(other, WINDOW, "aoti", "fp32") != key  # buffers count too
    assert artifact_key(net, (2, 1, 32, 32, 32), "aoti", "fp32") != key
    assert artifact_key(net, WINDOW, "aoti", "bf16") != key
    assert artifact_key(net, WINDOW, "openvino", "fp32") != key


def test_precision_policy(monkeypatch, caplog) -> None:
    monkeypatch.setattr(backends, "cpu_supports_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("fp32", "cpu") == "fp32"
    with caplog.at_level(logging.WARNING, logger="volseg.inference.backends"):
        assert resolve_precision("bf16", "cpu") == "fp32"
        assert resolve_precision("fp16", "cpu") == "fp32"
    assert len(caplog.records) == 2
    monkeypatch.setattr(backends, "cpu_supports_bf16", lambda: True)
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "cpu") == "fp32"  # reduced precision on CPU is opt-in
    assert resolve_precision("auto", "cuda") == "fp16"
    assert resolve_precision("fp16", "cuda") == "fp16"
    with pytest.raises(ConfigError, match="precision"):
        resolve_precision("int8", "cpu")


def test_bf16_autocasts_and_returns_float32_logits(monkeypatch) -> None:
    monkeypatch.setattr(backends, "cpu_supports_bf16", lambda: True)
    net = _net()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        ref = net(x)
    for backend in ("eager", "auto"):
        forward = make_forward(net, (1, 1, 16, 16, 16), "cpu", backend=backend, precision="bf16")
        got = forward(x)
        assert forward.precision == "bf16" and got.dtype == torch.float32 and got.shape == ref.shape
        assert not torch.equal(got, ref)  # it really ran in bf16
        assert (got.argmax(1) == ref.argmax(1)).float().mean().item() > 0.9


def test_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="backend"):
        make_forward(_net(), WINDOW, "cpu", backend="tensorrt")


def test_cuda_only_options_fall_back_on_cpu_windows(caplog) -> None:
    net = _net()
    with caplog.at_level(logging.WARNING, logger="volseg.inference.backends"):
        forward = make_forward(net, WINDOW, "cpu", backend="auto", precision="fp16")
    assert forward.precision == "fp32"
    assert caplog.records


def test_openvino_artifact_matches_eager(tmp_path) -> None:
    pytest.importorskip("openvino", reason="optional backend: pip install openvino")
    net = _net()
    forward = make_forward(net, WINDOW, "cpu", backend="openvino")
    assert forward.backend == "openvino" and forward.artifact is not None
    assert Path(os.environ["XDG_CACHE_HOME"]) in forward.artifact.parents
    outs = []
    for batch in (3, 1):
        x = torch.randn(batch, 1, 32, 32, 32)
        with torch.no_grad():
            ref = net(x)
        got = forward(x)
        assert got.shape == ref.shape and got.dtype == torch.float32
        torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-3)
        outs.append((got, got.clone()))
    assert all(torch.equal(a, b) for a, b in outs)  # a later call does not overwrite an earlier output
    assert make_forward(net, WINDOW, "cpu", backend="auto").backend in ("aoti", "openvino")  # found, not rebuilt


_CHILD = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_backends import _net
from volseg.inference.backends import make_forward
net = _net()
forward = make_forward(net, {window!r}, "cpu", backend="auto", cache_dir={cache!r})
x = torch.randn(2, 1, 32, 32, 32)
with torch.no_grad():
    ref = net(x)
got = forward(x)
print(forward.backend, float((got - ref).abs().max()), (got.argmax(1) == ref.argmax(1)).float().mean().item())
"""


@pytest.mark.slow
def test_aoti_package_built_once_is_used_by_a_new_process(tmp_path) -> None:
    net = _net()
    cache = tmp_path / "optimized"
    path = backends.build_artifact(net, WINDOW, "aoti", "fp32", cache_dir=cache)
    assert path.parent == cache and path.suffix == ".pt2"
    code = _CHILD.format(tests=str(Path(__file__).parent), window=WINDOW, cache=str(cache))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", timeout=300,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    backend, diff, agree = proc.stdout.split()[-3:]
    assert backend == "aoti" and float(diff) < 1e-4 and float(agree) >= 0.9999


@pytest.mark.parametrize("backend", ["openvino", pytest.param("aoti", marks=pytest.mark.slow)])
def test_volseg_optimize_writes_the_artifact_predict_finds(backend: str, tmp_path, capsys) -> None:
    if backend == "openvino":
        pytest.importorskip("openvino", reason="optional backend: pip install openvino")
    from tests.conftest import make_bundle
    from volseg.cli import main
    from volseg.inference.backends import bundle_cache_dir, window_shape
    from volseg.inference.predictor import Predictor

    bundle = make_bundle(tmp_path / "bundle", roi=(16, 16, 16))
    assert main(["optimize", str(bundle), "--backend", backend]) == 0
    assert "wrote" in capsys.readouterr().out
    files = list(bundle_cache_dir(bundle).iterdir())
    assert len(files) == 1 and files[0].name.startswith(f"{backend}-fp32-")
    pred = Predictor(bundle, device="cpu", backend="eager")
    window = window_shape(pred.network, pred.spec.sw_batch_size, pred.spec.roi_size, pred.in_channels)
    assert window == [2, 1, 16, 16, 16]
    forward = make_forward(pred.network, window, "cpu", cache_dir=bundle_cache_dir(bundle))
    assert forward.backend == backend and forward.artifact == files[0]
    x = torch.linspace(-1000, 1000, 2 * 16 ** 3).reshape(2, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(forward(x), pred.network(x), rtol=1e-4, atol=1e-4)
    assert make_forward(pred.network, window, "cpu").backend == "eager"  # not in the user cache


def test_autocast_inferer_trains_in_bf16_only_when_asked(monkeypatch) -> None:
    from monai.inferers import SimpleInferer

    from volseg.inference.backends import AutocastInferer

    monkeypatch.setattr(backends, "cpu_supports_bf16", lambda: True)
    net = _net().train()
    x = torch.randn(2, 1, 16, 16, 16)
    torch.manual_seed(1)
    ref = SimpleInferer()(x, net)
    for off in (AutocastInferer(SimpleInferer(), "cpu", enabled=False), AutocastInferer(SimpleInferer(), "cuda")):
        torch.manual_seed(1)
        assert off.precision == "fp32" and torch.equal(off(x, net), ref)
    bf16 = AutocastInferer(SimpleInferer(), torch.device("cpu"), enabled=True)
    out = bf16(x, net)
    assert bf16.precision == "bf16" and out.dtype == torch.float32 and not torch.equal(out, ref)
    out.square().mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and g.dtype == torch.float32 for g in grads)


def test_cpu_forwards_tune_glibc_malloc_once(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(backends, "tune_malloc", lambda: calls.append(1) or True)
    make_forward(_net(), WINDOW, "cpu", backend="eager")
    assert calls == [1]
    if sys.platform.startswith("linux"):
        monkeypatch.undo()
        assert backends.tune_malloc() is True and backends.tune_malloc() is True  # idempotent


def test_works_inside_sliding_window_inference() -> None:
    from monai.inferers import sliding_window_inference

    net = _net()
    img = torch.rand(1, 1, 40, 37, 33)
    with torch.no_grad():  # as a predictor calls it: outputs are blended in place afterwards
        ref = sliding_window_inference(img, (32, 32, 32), 2, net, overlap=0.25, mode="gaussian")
        for backend in ("eager", "channels_last"):
            forward = make_forward(net, (2, 1, 32, 32, 32), "cpu", backend=backend)
            got = sliding_window_inference(img, (32, 32, 32), 2, forward, overlap=0.25, mode="gaussian")
            assert (got.argmax(1) == ref.argmax(1)).float().mean().item() >= 0.9999
            if backend == "eager":
                assert torch.equal(got, ref)


@pytest.mark.slow
def test_benchmark_quick_mode_runs() -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "predict_vs_monai.py"
    spec = importlib.util.spec_from_file_location("predict_vs_monai", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--quick"])
    assert res["agreement"] >= 0.9999
    assert res["plain_s"] > 0 and res["volseg_s"] > 0


def test_cli_choices_are_the_librarys() -> None:
    """The CLI spells its choices out (so ``--help`` needs no torch); they must be the library's own."""
    from volseg.cli import build_parser
    from volseg.inference import backends, batch

    def choices(command: str, option: str) -> tuple:
        sub = next(a for a in build_parser()._subparsers._group_actions if a.dest == "command").choices[command]
        return tuple(next(a for a in sub._actions if option in a.option_strings).choices)

    assert choices("predict", "--backend") == backends.BACKENDS
    assert choices("predict", "--precision") == backends.PRECISIONS
    assert choices("predict", "--format") == batch.FORMATS
    assert choices("predict", "--save-probabilities") == batch.PROB_FORMATS
    assert choices("optimize", "--backend") == ("auto", *backends.ARTIFACT_BACKENDS)  # auto: the first installed
