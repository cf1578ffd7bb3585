"""``volseg predict`` vs ``python -m monai.bundle run``: whole commands as users run them, and warm.

The bundle is the unmodified model-zoo ``spleen_ct_segmentation`` inference config
(``tests/data/zoo``; UNet 16-256, ROI 96, overlap 0.5, softmax -> bilinear ``Invertd`` -> argmax)
with weights overfit to a smooth target on phantoms (``--weights trained``, cached; the default) or
seeded random weights (``--weights random``). ``--classes 3`` sets ``network_def#out_channels`` on
both sides (the same override on the command line of each). The scan is a chest phantom CT (int16
HU NIfTI) of ``--shape`` at ``--spacing`` mm.

Cold: each command is a new process, interleaved (runner, volseg, runner, ...), ``--repeats`` times;
the table gives median wall time and peak RSS (``ru_maxrss`` of the command, read by a small
launcher process so nothing is inherited). MONAI's runner gets ``--dataloader#num_workers 0`` (one
scan: worker processes only add start-up time and memory). Warm (``--warm``): both built once in
this process, then timed per scan (MONAI: ``ConfigWorkflow.run()``; volseg: ``predict`` with one
``Predictor``). Also printed: voxel agreement of the two masks.

    python benchmarks/runner_vs_volseg.py --shape 512 512 200 --repeats 3 --backend eager auto \\
        --optimize openvino --warm
    python benchmarks/runner_vs_volseg.py --shape 512 512 600 --classes 3 --repeats 1 --weights random
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test helpers that overfit the zoo network

LAUNCHER = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE); "
            "dt = time.perf_counter() - t; "
            "sys.stderr.write(r.stderr.decode(errors='replace')[-3000:] if r.returncode else ''); "
            "print(r.returncode, dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2)")


def timed(cmd: Sequence[str]) -> Dict[str, float]:
    """Run ``cmd`` as a fresh process; wall seconds and its peak RSS in GB."""
    out = subprocess.run([sys.executable, "-c", LAUNCHER, *cmd], capture_output=True, encoding="utf-8")
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(out.stderr[-3000:])
    rc, wall, rss = out.stdout.split()
    if int(rc) != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed:\n{out.stderr[-3000:]}")
    return {"wall_s": float(wall), "rss_gb": float(rss)}


def make_bundle(work: Path, weights: str, classes: int) -> Path:
    from tests.bundles.conftest import copy_zoo, overfit, phantom_file, smooth_band, smooth_levels

    bundle = work / f"spleen_{weights}_{classes}"
    if (bundle / "models" / "model.pt").is_file():
        return bundle
    if bundle.exists():
        shutil.rmtree(bundle)
    copy_zoo("spleen_ct_segmentation", bundle)
    over = {"network_def#out_channels": classes} if classes != 2 else {}
    if weights == "trained":
        images = [phantom_file(work / "train", f"t{i}", (130, 120, 40), (1.0, 1.0, 2.5), seed=10 + i) for i in range(2)]
        target = smooth_band(0.25, 0.75, 1.0) if classes == 2 else smooth_levels([0.25, 0.75], 1.0)
        overfit(bundle, images, target, overrides=over, steps=150)
    else:
        import torch

        from volseg.bundles.config import build, locate_bundle, read_parser

        torch.manual_seed(0)
        net = build(read_parser(locate_bundle(bundle), over), "network_def", bundle)
        torch.save(net.state_dict(), bundle / "models" / "model.pt")
    return bundle


def make_scan(work: Path, shape: Sequence[int], spacing: Sequence[float]) -> Path:
    from tests.bundles.conftest import phantom_file

    name = "ct_" + "x".join(map(str, shape))
    path = work / f"{name}.nii.gz"
    return path if path.is_file() else phantom_file(work, name, tuple(shape), tuple(spacing), seed=7)


def commands(bundle: Path, scan: Path, out: Path, classes: int, backends: Sequence[str]) -> Dict[str, List[str]]:
    """``{"runner": cmd, "volseg <backend>": cmd, ...}``."""
    over = {"network_def#out_channels": str(classes)} if classes != 2 else {}
    runner = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs/inference.json"),
              "--bundle_root", str(bundle), "--output_dir", str(out / "runner"), "--datalist", json.dumps([str(scan)]),
              "--dataloader#num_workers", "0"]
    for k, v in over.items():
        runner += [f"--{k}", v]
    cmds = {"runner": runner}
    for b in backends:
        cmd = [sys.executable, "-m", "volseg", "predict", "-i", str(scan), "-o", str(out / f"volseg_{b}.nii.gz"),
               "-m", str(bundle), "--quiet", "--backend", b]
        cmds[f"volseg {b}"] = cmd + [a for k, v in over.items() for a in ("--set", f"{k}={v}")]
    return cmds


def _mask(path: Path) -> np.ndarray:
    import nibabel as nib

    return np.rint(np.asarray(nib.load(str(path)).dataobj)).astype(np.int16)


def agreement(out: Path, backend: str, against: str = "runner") -> float:
    """Voxel agreement of ``volseg_<backend>``'s mask with the runner's (or ``volseg_<against>``'s)."""
    ref = next((out / "runner").rglob("*_trans.nii.gz")) if against == "runner" else out / f"volseg_{against}.nii.gz"
    return float((_mask(out / f"volseg_{backend}.nii.gz") == _mask(ref)).mean())


def optimize(bundle: Path, backend: str) -> float:
    """``volseg optimize BUNDLE --backend B`` from an empty artifact folder, as a new process: seconds."""
    shutil.rmtree(bundle / "models" / "optimized", ignore_errors=True)
    return timed([sys.executable, "-m", "volseg", "optimize", str(bundle), "--backend", backend])["wall_s"]


def warm(bundle: Path, scan: Path, out: Path, classes: int, repeats: int) -> Dict[str, float]:
    """Both engines built once in this process, then timed per scan."""
    from monai.bundle import ConfigWorkflow

    from volseg.inference import Predictor, predict

    over = {"network_def#out_channels": classes} if classes != 2 else {}
    wf = ConfigWorkflow(config_file=str(bundle / "configs/inference.json"), workflow_type="infer",
                        bundle_root=str(bundle), output_dir=str(out / "warm_runner"), datalist=[str(scan)],
                        **{"dataloader#num_workers": 0}, **over)
    wf.initialize()
    predictor = Predictor(bundle, device="cpu", overrides=over)
    times: Dict[str, List[float]] = {"runner": [], "volseg": []}
    for _ in range(repeats):
        t = time.perf_counter()
        wf.run()
        times["runner"].append(time.perf_counter() - t)
        t = time.perf_counter()
        predict(scan, out / "warm.nii.gz", predictor=predictor, progress=False)
        times["volseg"].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: Sequence[str] = ()) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=3, default=[512, 512, 200])
    ap.add_argument("--spacing", type=float, nargs=3, default=[0.8, 0.8, 1.5])
    ap.add_argument("--classes", type=int, default=2)
    ap.add_argument("--weights", choices=["trained", "random"], default="trained")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backend", nargs="+", default=["auto"],
                    help="volseg backends to time, each as its own command (e.g. eager auto)")
    ap.add_argument("--optimize", default=None, choices=["openvino", "aoti"],
                    help="first run `volseg optimize` (timed, empty cache) so `auto` finds the artifact")
    ap.add_argument("--warm", action="store_true", help="also time both warm, in this process")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "volseg_bench_runner"))
    args = ap.parse_args(list(argv) or None)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    bundle = make_bundle(work, args.weights, args.classes)
    scan = make_scan(work, args.shape, args.spacing)
    out = work / "out"
    res: Dict[str, Any] = {"shape": args.shape, "spacing": args.spacing, "classes": args.classes,
                           "weights": args.weights, "backends": args.backend, "repeats": args.repeats}
    if args.optimize:
        res["optimize_s"] = optimize(bundle, args.optimize)
        print(f"volseg optimize --backend {args.optimize} (empty cache, new process): {res['optimize_s']:.1f} s",
              flush=True)
    else:
        shutil.rmtree(bundle / "models" / "optimized", ignore_errors=True)
    cmds = commands(bundle, scan, out, args.classes, args.backend)
    runs: Dict[str, List[Dict[str, float]]] = {name: [] for name in cmds}
    for i in range(args.repeats):
        for name, cmd in cmds.items():
            runs[name].append(timed(cmd))
            print(f"run {i + 1} {name}: {runs[name][-1]['wall_s']:.1f} s, {runs[name][-1]['rss_gb']:.2f} GB",
                  flush=True)
    for name, rs in runs.items():
        key = name.replace(" ", "_")
        res[f"{key}_wall_s"] = statistics.median(r["wall_s"] for r in rs)
        res[f"{key}_rss_gb"] = max(r["rss_gb"] for r in rs)
    lines = [f"runner: {res['runner_wall_s']:.1f} s, {res['runner_rss_gb']:.2f} GB peak RSS"]
    for b in args.backend:
        key = f"volseg_{b}"
        res[f"{key}_speedup"] = res["runner_wall_s"] / res[f"{key}_wall_s"]
        res[f"{key}_rss_ratio"] = res[f"{key}_rss_gb"] / res["runner_rss_gb"]
        res[f"{key}_agreement_runner"] = agreement(out, b)
        line = (f"volseg --backend {b}: {res[f'{key}_wall_s']:.1f} s ({res[f'{key}_speedup']:.2f}x), "
                f"{res[f'{key}_rss_gb']:.2f} GB (ratio {res[f'{key}_rss_ratio']:.2f}), "
                f"agreement with the runner {res[f'{key}_agreement_runner']:.6f}")
        if "eager" in args.backend and b != "eager":
            res[f"{key}_agreement_eager"] = agreement(out, b, "eager")
            line += f", with volseg eager {res[f'{key}_agreement_eager']:.6f}"
        lines.append(line)
    if args.warm:
        w = warm(bundle, scan, out, args.classes, max(1, args.repeats))
        res.update({"warm_runner_s": w["runner"], "warm_volseg_s": w["volseg"],
                    "warm_speedup": w["runner"] / w["volseg"]})
        lines.append(f"warm, in one process: runner {w['runner']:.1f} s, volseg (backend auto) {w['volseg']:.1f} s "
                     f"({res['warm_speedup']:.2f}x)")
    print(json.dumps(res, indent=2))
    print("\n".join(lines))
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
