"""The network forward pass of sliding-window inference (the "backend"), at fp32 or reduced precision.

:func:`make_forward` returns a :class:`Forward`: ``forward(x)`` takes windows ``(B, C, *roi)``
with ``B <= N`` and returns float32 logits ``(B, L, *roi)`` on the device. It never modifies the
caller's network: the eager backend *is* ``network(x)`` (bit-identical), every other backend
runs a copy or a separate compiled artifact.

Backends (CPU unless noted):

- ``eager``: ``network(x)`` under ``torch.no_grad()`` (autocast when the precision is reduced;
  any device).
- ``channels_last``: a channels-last copy of the network (oneDNN's preferred layout; any device).
- ``aoti``: an AOTInductor package (``torch._inductor.aoti_compile_and_package``, weights frozen
  in) built once per (weights, torch version, CPU ISA, window shape, precision) and loaded in
  about a second by later processes.
- ``openvino``: an OpenVINO model (optional ``openvino`` package) saved once, compiled per process.
- ``auto``: a cached ``openvino`` / ``aoti`` artifact when one exists for this case, else
  ``eager`` (fp32) or ``channels_last`` (reduced precision); it never compiles, because a build
  costs tens of seconds, more than one scan gains (``volseg optimize BUNDLE`` builds it once).

Artifacts are looked up in ``cache_dir`` (e.g. a bundle's ``models/optimized``) and then in the
user cache (``platformdirs.user_cache_dir("volseg")/backends``); a build asked for by an explicit
``backend="aoti"`` writes to the user cache. A cache miss, an artifact that fails to load or an
unsupported CPU falls back with a one-line log note, never an error.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Union

import torch
from torch import nn

from volseg.errors import ConfigError

BACKENDS = ("auto", "eager", "channels_last", "aoti", "openvino")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ARTIFACT_BACKENDS = ("openvino", "aoti")  # auto's order of preference (measured: docs/benchmarks.md)
PathLike = Union[str, "os.PathLike[str]"]
log = logging.getLogger(__name__)

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# the CPU features that decide which kernels a compiled artifact may contain
_ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
              "amx_tile", "amx_bf16", "amx_fp16", "amx_int8")


_MALLOC_TUNED = False


# -- hardware and precision -------------------------------------------------------------------
def tune_malloc() -> bool:
    """Keep large freed blocks in glibc's heap instead of returning each to the OS (``mallopt``
    ``M_MMAP_THRESHOLD`` 1 GiB, ``M_TRIM_THRESHOLD`` 2 GiB): a network's >32 MB activations are then
    not page-faulted afresh on every call (130k -> 1.2k minor faults per spleen-UNet batch, ~1.2x;
    most of what tcmalloc via ``LD_PRELOAD`` gives, without re-executing the process). Once per
    process; ``False`` where glibc is absent. Freed memory stays in the process (peak RSS unchanged)."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        _MALLOC_TUNED = bool(libc.mallopt(-3, 1 << 30)) and bool(libc.mallopt(-1, 1 << 31))
    except (OSError, AttributeError):
        return False
    log.debug("glibc malloc tuned for large activations (%s)", _MALLOC_TUNED)
    return _MALLOC_TUNED



@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where it cannot be read, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_supports_bf16() -> bool:
    """Native bf16 arithmetic (AVX512-BF16 or AMX-BF16); elsewhere bf16 is emulated and slower than fp32."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def resolve_precision(precision: str, device: Any) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for ``device``. ``auto``: fp16 autocast on CUDA, fp32 elsewhere
    (reduced precision on CPU must be asked for). A precision the hardware lacks falls back with a note."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    kind = torch.device(device).type
    if kind == "cuda":
        if precision == "auto":
            return "fp16"
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            log.warning("precision bf16: this GPU has no bf16; using fp16")
            return "fp16"
        return precision
    if precision in ("auto", "fp32") or kind != "cpu":
        if precision not in ("auto", "fp32"):
            log.warning("precision %s is not supported on %s; using fp32", precision, kind)
        return "fp32"
    if precision == "bf16" and cpu_supports_bf16():
        return "bf16"
    log.warning("precision %s: this CPU has no native %s (AVX512-BF16/AMX); using fp32", precision, precision)
    return "fp32"


class AutocastInferer:
    """A MONAI inferer run under CPU autocast (bf16 by default): training / validation at reduced
    precision on CPUs with AVX512-BF16 or AMX; float32 outputs. A no-op (``inferer`` itself) when
    ``enabled`` is false, on CUDA (MONAI's engines do CUDA AMP with their ``amp`` flag) and where
    the CPU lacks the precision (fp32, with a note). Bundles: ``train.json`` ``cpu_amp``.
    """

    def __init__(self, inferer: Callable[..., Any], device: Any = "cpu", enabled: bool = True, precision: str = "bf16"):
        self.inferer = inferer
        device = torch.device(device)
        use = bool(enabled) and device.type == "cpu"
        self.precision = resolve_precision(precision, device) if use else "fp32"

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.precision == "fp32":
            return self.inferer(inputs, network, *args, **kwargs)
        with torch.autocast("cpu", dtype=_DTYPES[self.precision]):
            out = self.inferer(inputs, network, *args, **kwargs)
        return out.float() if isinstance(out, torch.Tensor) else out


# -- artifacts ----------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """Where built artifacts live: ``platformdirs.user_cache_dir("volseg") / "backends"``."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("volseg")) / "backends"


def weights_digest(network: nn.Module) -> str:
    """SHA-256 of the network's class, parameter/buffer names, dtypes, shapes and values."""
    h = hashlib.sha256(f"{type(network).__module__}.{type(network).__qualname__}".encode())
    for name, t in network.state_dict().items():
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def artifact_key(network: nn.Module, window_shape: Sequence[int], backend: str, precision: str) -> str:
    """Name of the artifact for this (weights, torch version, CPU ISA, window ``(N, C, *roi)``, precision)."""
    fields = {
        "weights": weights_digest(network),
        "torch": torch.__version__,
        "isa": [f for f in _ISA_FLAGS if f in cpu_flags()] + [torch.backends.cpu.get_cpu_capability()],
        "window": [int(s) for s in window_shape],
        "precision": precision,
        "backend": backend,
    }
    if backend == "openvino":
        fields["openvino"] = _openvino_version()
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]
    return f"{backend}-{precision}-{digest}"


def _artifact_name(key: str) -> str:
    return f"{key}.pt2" if key.startswith("aoti") else key  # openvino: a folder (model.xml + model.bin)


def bundle_cache_dir(bundle: PathLike) -> Path:
    """Where ``volseg optimize`` writes a bundle's artifacts: ``BUNDLE/models/optimized``."""
    return Path(bundle) / "models" / "optimized"


def window_shape(network: nn.Module, sw_batch_size: int, roi_size: Sequence[int],
                 in_channels: Optional[int] = None) -> List[int]:
    """``[N, C, *roi]`` for :func:`make_forward`; ``C`` defaults to ``network.in_channels``, else the
    first convolution's input channels."""
    if in_channels is None:
        in_channels = getattr(network, "in_channels", None)
    if in_channels is None:
        conv = next((m for m in network.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
        if conv is None:
            raise ConfigError("cannot tell the network's input channels; give in_channels")
        in_channels = conv.in_channels
    return [int(sw_batch_size), int(in_channels)] + [int(r) for r in roi_size]


def find_artifact(key: str, cache_dir: Optional[PathLike] = None) -> Optional[Path]:
    """The artifact called ``key`` in ``cache_dir`` or else the user cache, or ``None``."""
    dirs = ([Path(cache_dir)] if cache_dir is not None else []) + [default_cache_dir()]
    for d in dirs:
        path = d / _artifact_name(key)
        if path.exists():
            return path
    return None


class _Exportable(nn.Module):
    """``network`` with the precision policy baked in: autocast inside, float32 logits out."""

    def __init__(self, network: nn.Module, precision: str):
        super().__init__()
        self.network = network
        self.precision = precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.precision == "fp32":
            return self.network(x).float()
        with torch.autocast("cpu", dtype=_DTYPES[self.precision]):
            return self.network(x).float()


def build_artifact(network: nn.Module, window_shape: Sequence[int], backend: str = "aoti", precision: str = "fp32",
                   cache_dir: Optional[PathLike] = None) -> Path:
    """Build the ``aoti`` or ``openvino`` artifact for ``network`` on CPU windows ``(N, C, *roi)``
    into ``cache_dir`` (default: the user cache) and return its path (tens of seconds; atomic)."""
    if backend not in ARTIFACT_BACKENDS:
        raise ConfigError(f"backend {backend!r} has no artifact to build; choose one of {', '.join(ARTIFACT_BACKENDS)}")
    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"CPU artifacts are fp32 or bf16, not {precision!r}")
    key = artifact_key(network, window_shape, backend, precision)
    out = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    final = out / _artifact_name(key)
    model = _Exportable(_cpu_copy(network), precision).eval()
    example = torch.zeros(*[int(s) for s in window_shape])
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=out))
    try:
        if backend == "aoti":
            built = _build_aoti(model, example, tmp / final.name)
        else:
            built = _build_openvino(model, example, precision, tmp / "model")
        os.replace(built, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("built the %s artifact in %.0f s: %s", backend, time.perf_counter() - start, final)
    return final


def _cpu_copy(network: nn.Module) -> nn.Module:
    return copy.deepcopy(network).to("cpu").eval()


def _build_aoti(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    with torch.no_grad():
        program = torch.export.export(model, (example,))
    return Path(torch._inductor.aoti_compile_and_package(program, package_path=str(path),
                                                         inductor_configs={"freezing": True}))


def _openvino_version() -> Optional[str]:
    try:
        import openvino
    except ImportError:
        return None
    return str(openvino.__version__)


def _build_openvino(model: nn.Module, example: torch.Tensor, precision: str, folder: Path) -> Path:
    import openvino as ov

    with torch.no_grad():
        converted = ov.convert_model(model, example_input=example)
    folder.mkdir()
    ov.save_model(converted, str(folder / "model.xml"), compress_to_fp16=False)
    return folder


# -- the callable ------------------------------------------------------------------------------
def _channels_last(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 5:
        return x.contiguous(memory_format=torch.channels_last_3d)
    if x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


class Forward:
    """``forward(x)``: windows ``(B, C, *roi)``, ``1 <= B <= N`` -> float32 logits ``(B, L, *roi)`` on ``device``.

    ``backend`` / ``precision`` name what actually runs (after ``auto`` and any fallback);
    ``artifact`` is the loaded file, if any. Build it with :func:`make_forward`.
    """

    def __init__(self, run: Callable[[torch.Tensor], torch.Tensor], backend: str, precision: str, device: Any,
                 batch: int, fixed_batch: bool = False, artifact: Optional[Path] = None,
                 fallback: Optional[Callable[[], "Forward"]] = None):
        self._run = run
        self.backend, self.precision = backend, precision
        self.device = torch.device(device)
        self.batch, self.fixed_batch, self.artifact = int(batch), fixed_batch, artifact
        self._fallback = fallback

    def __repr__(self) -> str:
        where = f", artifact={str(self.artifact)!r}" if self.artifact else ""
        return f"Forward(backend={self.backend!r}, precision={self.precision!r}, device='{self.device}'{where})"

    @torch.no_grad()  # not inference_mode: callers may update the outputs in place
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        b = int(x.shape[0])
        if self.fixed_batch and b != self.batch:
            if b > self.batch:
                return torch.cat([self(part) for part in x.split(self.batch)])
            x = torch.cat([x, x.new_zeros((self.batch - b,) + tuple(x.shape[1:]))])
        try:
            y = self._run(x)
        except Exception as exc:  # noqa: BLE001 - a backend problem must never stop a prediction
            if self._fallback is None:
                raise
            log.warning("backend %s failed (%s); using the eager network", self.backend,
                        str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)
            replacement = self._fallback()
            self.__dict__.update(replacement.__dict__)
            return self(x[:b])
        return y[:b].float().contiguous() if self.fixed_batch else y.float().contiguous()


def _eager(network: nn.Module, device: torch.device, precision: str, batch: int) -> Forward:
    if precision == "fp32":
        return Forward(network, "eager", precision, device, batch)
    dtype = _DTYPES[precision]

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype):
            return network(x)

    return Forward(run, "eager", precision, device, batch)


def _channels_last_forward(network: nn.Module, device: torch.device, precision: str, batch: int,
                           spatial_dims: int) -> Forward:
    fmt = {3: torch.channels_last_3d, 2: torch.channels_last}.get(spatial_dims)
    if fmt is None:
        log.info("channels_last needs 2D or 3D windows; running eagerly")
        return _eager(network, device, precision, batch)
    model = copy.deepcopy(network).to(device=device, memory_format=fmt).eval()
    inner = _eager(model, device, precision, batch)._run
    return Forward(lambda x: inner(_channels_last(x)), "channels_last", precision, device, batch)


def _load_artifact(path: Path, backend: str, precision: str, device: torch.device, batch: int,
                   fallback: Callable[[], Forward]) -> Forward:
    if backend == "aoti":
        runner = torch._inductor.aoti_load_package(str(path))
        return Forward(runner, "aoti", precision, device, batch, fixed_batch=True, artifact=path, fallback=fallback)
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32", "PERFORMANCE_HINT": "LATENCY"}
    compiled = core.compile_model(core.read_model(str(path / "model.xml")), "CPU", config)

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(compiled(x.contiguous().numpy())[0])

    return Forward(run, "openvino", precision, device, batch, fixed_batch=True, artifact=path, fallback=fallback)


def make_forward(network: nn.Module, window_shape: Sequence[int], device: Any = "cpu", backend: str = "auto",
                 precision: str = "fp32", cache_dir: Optional[PathLike] = None) -> Forward:
    """The forward pass for windows of ``window_shape`` ``(N, C, *roi)`` on ``device`` (see the module doc).

    ``network`` (in eval mode, on ``device``) is never modified. ``backend`` in :data:`BACKENDS`,
    ``precision`` in :data:`PRECISIONS`; ``cache_dir`` is searched for artifacts before the user
    cache. An explicit ``aoti``/``openvino`` builds a missing artifact (once, into the user cache).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    device = torch.device(device)
    precision = resolve_precision(precision, device)
    if device.type == "cpu":
        tune_malloc()
    window = [int(s) for s in window_shape]
    batch, spatial_dims = window[0], len(window) - 2

    def eager() -> Forward:
        return _eager(network, device, precision, batch)

    def channels_last() -> Forward:
        return _channels_last_forward(network, device, precision, batch, spatial_dims)

    if backend == "eager":
        return eager()
    if backend == "channels_last":
        return channels_last()
    # without an artifact: eager at fp32 (bit-identical), channels-last where precision is reduced anyway
    default = eager if precision == "fp32" else channels_last
    if device.type != "cpu":
        if backend != "auto":
            log.warning("backend %s runs on CPU only; running on %s without it", backend, device.type)
        return default()
    candidates: List[str] = [backend] if backend != "auto" else list(ARTIFACT_BACKENDS)
    for name in candidates:
        if name == "openvino" and _openvino_version() is None:
            if backend == "openvino":
                log.warning("backend openvino: the openvino package is not installed (pip install openvino); "
                            "running without it")
            continue
        key = artifact_key(network, window, name, precision)
        path = find_artifact(key, cache_dir)
        if path is None and backend == name:
            log.info("building the %s artifact for this network and window %s once (about a minute)", name, window)
            try:
                path = build_artifact(network, window, name, precision)
            except Exception as exc:  # noqa: BLE001 - an unsupported network or compiler falls back
                log.warning("backend %s: build failed (%s); running without it", name, str(exc).splitlines()[0])
                log.debug("build failure", exc_info=True)
                return default()
        if path is None:
            continue
        try:
            return _load_artifact(path, name, precision, device, batch, eager)
        except Exception as exc:  # noqa: BLE001 - a stale or broken artifact falls back
            log.warning("backend %s: cannot load %s (%s); running without it", name, path,
                        str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)
            return default()
    if backend == "auto":
        log.debug("no cached artifact for this network and window (volseg optimize builds one)")
    return default()


__all__ = ["make_forward", "Forward", "BACKENDS", "PRECISIONS", "build_artifact", "find_artifact", "artifact_key",
           "bundle_cache_dir", "window_shape", "AutocastInferer", "tune_malloc",
           "resolve_precision", "cpu_supports_bf16", "default_cache_dir"]
