"""This CPU's convolution limits and the network's forward pass per backend / precision, in one run.

1. Limits: conv3d GFLOP/s at fp32 and bf16 (32->32, 3^3, 64^3, channels-last; 256->256, 3^3,
   6^3, batch 4), the "limit" of issue 11.
2. The model-zoo spleen UNet (MONAI ``UNet(3, 1, 2, (16,32,64,128,256), (2,2,2,2),
   num_res_units=2, norm="batch")``) on one ``sw_batch_size`` 4 batch of 96^3 windows, per
   backend of ``volseg.inference.backends`` (eager = plain MONAI/PyTorch in the same process,
   same weights), interleaved A B A B, median of ``--repeats``: s per batch, GFLOP/s, share of
   the fp32 limit, agreement with eager.
3. First use: building each artifact in a fresh process with an empty Inductor cache. Warm use:
   a NEW process that loads the cached artifact and runs (import, load, first call, steady call).
4. The allocator: glibc default vs ``mallopt`` (``backends.tune_malloc``, which ``make_forward``
   applies on CPU) vs tcmalloc (``LD_PRELOAD``), each in its own process running the eager network.
5. bf16 accuracy on trained weights: the UNet trained for a few CPU minutes on 48^3 crops of
   phantoms (target: lungs, a smooth shape; weights cached under the user cache, not in git),
   |Dice(bf16) - Dice(fp32)| and voxel agreement on a held-out phantom.

    python benchmarks/conv_limits.py                 # everything (~15 min on 2 busy cores)
    python benchmarks/conv_limits.py --quick         # 1 repeat, no artifacts/children/accuracy: smoke test
    python benchmarks/conv_limits.py --skip accuracy malloc
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import torch

WINDOW = (4, 1, 96, 96, 96)
SECTIONS = ("limits", "network", "artifacts", "malloc", "accuracy")
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"  # Debian libtcmalloc-minimal4


def spleen_unet(seed: int = 0) -> torch.nn.Module:
    """The zoo spleen bundle's network (random weights unless loaded)."""
    from monai.networks.nets import UNet

    torch.manual_seed(seed)
    return UNet(3, 1, 2, (16, 32, 64, 128, 256), (2, 2, 2, 2), num_res_units=2, norm="batch").eval()


def _time(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def interleaved(cases: Dict[str, Callable[[], object]], repeats: int, warmup: bool = True) -> Dict[str, float]:
    """Median seconds per case, the cases run in turn (A B C A B C ...) so load changes hit all alike."""
    if warmup:
        for fn in cases.values():
            fn()
    times: Dict[str, List[float]] = {k: [] for k in cases}
    for r in range(repeats):
        for k, fn in cases.items():
            times[k].append(_time(fn))
            _note(f"round {r + 1}: {k} {times[k][-1]:.3f} s")
    return {k: statistics.median(v) for k, v in times.items()}


def _note(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- 1. limits ----------------------------------------------------------------------------------
def conv_limits(repeats: int) -> Dict[str, float]:
    """GFLOP/s of two conv3d shapes at fp32 and bf16 (channels-last 3D, no grad). Where the CPU has no
    native bf16, only the small shape is run in bf16 (emulated: a figure, not a limit worth using)."""
    from volseg.inference.backends import cpu_supports_bf16

    shapes = {"conv3d 32->32 3^3 64^3": (1, 32, 32, 64), "conv3d 256->256 3^3 6^3 x4": (4, 256, 256, 6)}
    cases, flops = {}, {}
    for name, (n, cin, cout, s) in shapes.items():
        for prec, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            if prec == "bf16" and s > 8 and not cpu_supports_bf16():
                continue
            conv = torch.nn.Conv3d(cin, cout, 3, padding=1, bias=False).to(dtype=dtype,
                                                                              memory_format=torch.channels_last_3d)
            x = torch.randn(n, cin, s, s, s, dtype=dtype).contiguous(memory_format=torch.channels_last_3d)
            cases[f"{name} {prec}"] = (lambda c=conv, x=x: torch.no_grad()(c)(x))
            flops[f"{name} {prec}"] = 2.0 * n * cout * s ** 3 * cin * 27 / 1e9
    med = interleaved(cases, repeats)
    return {k: flops[k] / v for k, v in med.items()}


# -- 2. the network per backend ------------------------------------------------------------------
def network_backends(repeats: int, cache: Path, limit: float) -> Dict[str, Dict[str, float]]:
    from volseg.inference.backends import artifact_key, cpu_supports_bf16, find_artifact, make_forward
    from volseg.networks import model_summary

    net = spleen_unet()
    gflop = model_summary(net, WINDOW)["gflop"]
    x = torch.randn(*WINDOW, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = net(x)
    forwards = {"monai eager fp32": lambda: torch.no_grad()(net)(x)}
    kinds = [("channels_last", "fp32"), ("aoti", "fp32"), ("openvino", "fp32")]
    if cpu_supports_bf16():
        kinds += [("eager", "bf16"), ("channels_last", "bf16"), ("aoti", "bf16"), ("openvino", "bf16")]
    for backend, prec in kinds:
        if backend in ("aoti", "openvino") and find_artifact(artifact_key(net, WINDOW, backend, prec), cache) is None:
            continue  # not built (section skipped, or openvino not installed): never compile here
        f = make_forward(net, WINDOW, "cpu", backend=backend, precision=prec, cache_dir=cache)
        if f.backend != backend:
            continue
        forwards[f"{backend} {prec}"] = (lambda f=f: f(x))
    med = interleaved(forwards, repeats)
    out = {}
    for k, s in med.items():
        y = forwards[k]() if k != "monai eager fp32" else ref
        out[k] = {"s_per_batch": s, "gflops": gflop / s, "of_fp32_limit": gflop / s / limit,
                  "vs_monai_eager": med["monai eager fp32"] / s,
                  "max_abs_diff": float((y - ref).abs().max()),
                  "argmax_agreement": (y.argmax(1) == ref.argmax(1)).float().mean().item()}
    out["_gflop_per_batch"] = {"value": gflop}
    return out


# -- 3. artifacts: first use and warm new-process use ------------------------------------------------
def _child(args: List[str], env: Dict[str, str] = None) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, encoding="utf-8", errors="replace",
                          env=dict(os.environ, PYTHONWARNINGS="ignore", **(env or {})))
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_build(backend: str, cache: str) -> dict:
    from volseg.inference.backends import build_artifact

    net = spleen_unet()
    t = time.perf_counter()
    path = build_artifact(net, WINDOW, backend, "fp32", cache_dir=cache)
    return {"build_s": time.perf_counter() - t, "path": str(path)}


def child_warm(backend: str, cache: str, start: float) -> dict:
    """One new process as ``volseg predict`` meets it: import, network, forward, first and steady call."""
    t_import = time.time() - start
    from volseg.inference.backends import make_forward

    net = spleen_unet()
    x = torch.randn(*WINDOW)
    t = time.perf_counter()
    f = make_forward(net, WINDOW, "cpu", backend=backend, cache_dir=cache)
    make_s = time.perf_counter() - t
    first = _time(lambda: f(x))
    steady = statistics.median(_time(lambda: f(x)) for _ in range(2))
    return {"backend": f.backend, "process_to_import_s": t_import, "make_forward_s": make_s, "first_call_s": first,
            "steady_call_s": steady}


def artifacts(repeats: int, cache: Path) -> dict:
    """Build cost (fresh process, empty Inductor cache) and warm new-process cost per backend."""
    out: Dict[str, dict] = {"build": {}, "warm": {}}
    backends = ["aoti"]
    try:
        import openvino  # noqa: F401

        backends.append("openvino")
    except ImportError:
        pass
    for b in backends:
        with tempfile.TemporaryDirectory() as inductor:
            out["build"][b] = _child(["--child", "build", "--backend", b, "--cache", str(cache)],
                                     env={"TORCHINDUCTOR_CACHE_DIR": inductor})
    runs: Dict[str, List[dict]] = {b: [] for b in ["eager"] + backends}
    for _ in range(repeats):
        for b in runs:
            runs[b].append(_child(["--child", "warm", "--backend", b, "--cache", str(cache), "--start",
                                   repr(time.time())]))
    for b, rs in runs.items():
        out["warm"][b] = {k: statistics.median(r[k] for r in rs) for k in rs[0] if k != "backend"}
        out["warm"][b]["ran"] = rs[0]["backend"]
    return out


# -- 4. allocator -------------------------------------------------------------------------------------
def child_malloc(mode: str) -> dict:
    import resource

    if mode == "mallopt":
        from volseg.inference.backends import tune_malloc

        tune_malloc()
    net = spleen_unet()
    x = torch.randn(*WINDOW)
    with torch.no_grad():
        net(x)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        s = statistics.median(_time(lambda: net(x)) for _ in range(3))
    return {"steady_call_s": s, "minor_faults_per_call": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / 3}


def malloc(repeats: int) -> dict:
    modes = {"glibc": {}, "mallopt": {}}
    if os.path.exists(TCMALLOC):
        modes["tcmalloc"] = {"LD_PRELOAD": TCMALLOC}
    runs: Dict[str, List[dict]] = {m: [] for m in modes}
    for _ in range(repeats):
        for m, env in modes.items():
            runs[m].append(_child(["--child", "malloc", "--mode", m], env=env))
    return {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in runs.items()}


# -- 5. bf16 accuracy on trained weights ---------------------------------------------------------------
def _phantom(seed: int):
    from volseg.data import make_phantom

    ph = make_phantom(shape=(96, 96, 64), spacing=(3.0, 3.0, 4.0), seed=seed)
    x = ((ph.image.as_tensor().float() + 1000.0) / 1400.0).clamp(0, 1)  # (1, X, Y, Z), HU window [-1000, 400]
    return x, (ph.label.as_tensor()[0] > 0).long()  # lungs (lesions inside them included)


def trained_unet(steps: int = 200) -> torch.nn.Module:
    """The spleen UNet trained to segment the lungs of phantoms (``steps`` Adam steps on pairs of 48^3
    crops, ~2 min on 2 idle cores); cached in the user cache (never in git)."""
    import platformdirs

    path = Path(platformdirs.user_cache_dir("volseg")) / "benchmarks" / "spleen_unet_phantom_lungs_{steps}.pt"
    net = spleen_unet(seed=0)
    if path.is_file():
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval()
    data = [_phantom(seed) for seed in range(4)]
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    net.train()
    start = time.time()
    for _ in range(steps):
        xs, ys = [], []
        for _ in range(2):
            x, y = data[int(torch.randint(len(data), (1,), generator=gen))]
            o = [int(torch.randint(s - 47, (1,), generator=gen)) for s in x.shape[1:]]
            xs.append(x[:, o[0]:o[0] + 48, o[1]:o[1] + 48, o[2]:o[2] + 48])
            ys.append(y[o[0]:o[0] + 48, o[1]:o[1] + 48, o[2]:o[2] + 48])
        opt.zero_grad()
        loss = loss_fn(net(torch.stack(xs)), torch.stack(ys))
        loss.backward()
        opt.step()
    _note(f"trained {steps} steps in {(time.time() - start) / 60:.1f} min, last loss {loss.item():.4f}")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return net.eval()


def bf16_accuracy() -> dict:
    """Dice of the trained UNet on a held-out phantom at fp32 and bf16 autocast (emulated where the CPU
    lacks bf16: the same rounding, slower), and their voxel agreement."""
    net = trained_unet()
    x, truth = _phantom(seed=11)

    def dice(pred: torch.Tensor) -> float:
        inter = ((pred == 1) & (truth == 1)).sum().item()
        return 2 * inter / ((pred == 1).sum().item() + (truth == 1).sum().item())

    with torch.no_grad():
        fp32 = net(x[None])[0].argmax(0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = net(x[None])[0].float().argmax(0)
    d32, d16 = dice(fp32), dice(bf16)
    return {"dice_fp32": d32, "dice_bf16": d16, "abs_dice_diff": abs(d32 - d16),
            "voxel_agreement": (fp32 == bf16).float().mean().item(), "voxels": fp32.numel()}


# -- main ---------------------------------------------------------------------------------------------
def main(argv: Sequence[str] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="1 repeat; limits and in-process network only")
    p.add_argument("--skip", nargs="*", default=[], choices=SECTIONS)
    p.add_argument("--cache", default=None, help="artifact folder (default: a temporary one)")
    p.add_argument("--child", choices=("build", "warm", "malloc"), help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--start", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        res = {"build": lambda: child_build(args.backend, args.cache),
               "warm": lambda: child_warm(args.backend, args.cache, args.start),
               "malloc": lambda: child_malloc(args.mode)}[args.child]()
        print(json.dumps(res))
        return res
    from volseg.inference.backends import cpu_flags

    skip = set(args.skip) | ({"artifacts", "malloc", "accuracy"} if args.quick else set())
    repeats = 1 if args.quick else args.repeats
    flags = cpu_flags()
    res: dict = {"cpu": {"threads": torch.get_num_threads(), "torch": torch.__version__,
                         "capability": torch.backends.cpu.get_cpu_capability(),
                         "flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16"})}}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache or tmp)
        res["limits"] = conv_limits(repeats)
        limit = max(v for k, v in res["limits"].items() if k.endswith("fp32"))
        res["fp32_limit_gflops"] = limit
        if "artifacts" not in skip:
            res["artifacts"] = artifacts(repeats, cache)
        if "network" not in skip:
            res["network"] = network_backends(repeats, cache, limit)
    if "malloc" not in skip:
        res["malloc"] = malloc(repeats)
    if "accuracy" not in skip:
        res["bf16_accuracy"] = bf16_accuracy()
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
