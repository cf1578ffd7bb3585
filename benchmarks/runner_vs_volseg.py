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

    python benchmarks/runner_vs_volseg.py --shape 512 512 200 --repeats 3
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


def commands(bundle: Path, scan: Path, out: Path, classes: int, backend: str) -> Dict[str, List[str]]:
    over = {"network_def#out_channels": str(classes)} if classes != 2 else {}
    runner = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs/inference.json"),
              "--bundle_root", str(bundle), "--output_dir", str(out / "runner"), "--datalist", json.dumps([str(scan)]),
              "--dataloader#num_workers", "0"]
    volseg = [sys.executable, "-m", "volseg", "predict", "-i", str(scan), "-o", str(out / "volseg.nii.gz"),
              "-m", str(bundle), "--quiet", "--backend", backend]
    for k, v in over.items():
        runner += [f"--{k}", v]
        volseg += ["--set", f"{k}={v}"]
    return {"runner": runner, "volseg": volseg}


def agreement(out: Path) -> float:
    import nibabel as nib

    ref = next((out / "runner").rglob("*_trans.nii.gz"))
    a = np.asarray(nib.load(str(out / "volseg.nii.gz")).dataobj)
    b = np.rint(np.asarray(nib.load(str(ref)).dataobj)).astype(a.dtype)
    return float((a == b).mean())


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
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--warm", action="store_true", help="also time both warm, in this process")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "volseg_bench_runner"))
    args = ap.parse_args(list(argv) or None)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    bundle = make_bundle(work, args.weights, args.classes)
    scan = make_scan(work, args.shape, args.spacing)
    out = work / "out"
    cmds = commands(bundle, scan, out, args.classes, args.backend)
    runs: Dict[str, List[Dict[str, float]]] = {"runner": [], "volseg": []}
    for i in range(args.repeats):
        for name in ("runner", "volseg"):
            runs[name].append(timed(cmds[name]))
            print(f"run {i + 1} {name}: {runs[name][-1]['wall_s']:.1f} s, {runs[name][-1]['rss_gb']:.2f} GB",
                  flush=True)
    res: Dict[str, Any] = {"shape": args.shape, "spacing": args.spacing, "classes": args.classes,
                           "weights": args.weights, "backend": args.backend, "repeats": args.repeats}
    for name, rs in runs.items():
        res[f"{name}_wall_s"] = statistics.median(r["wall_s"] for r in rs)
        res[f"{name}_rss_gb"] = max(r["rss_gb"] for r in rs)
    res["cold_speedup"] = res["runner_wall_s"] / res["volseg_wall_s"]
    res["rss_ratio"] = res["volseg_rss_gb"] / res["runner_rss_gb"]
    res["agreement"] = agreement(out)
    if args.warm:
        w = warm(bundle, scan, out, args.classes, max(1, args.repeats))
        res.update({"warm_runner_s": w["runner"], "warm_volseg_s": w["volseg"],
                    "warm_speedup": w["runner"] / w["volseg"]})
    print(json.dumps(res, indent=2))
    print(f"cold: runner {res['runner_wall_s']:.1f} s / {res['runner_rss_gb']:.2f} GB | volseg "
          f"{res['volseg_wall_s']:.1f} s / {res['volseg_rss_gb']:.2f} GB | {res['cold_speedup']:.2f}x, RSS ratio "
          f"{res['rss_ratio']:.2f} | agreement {res['agreement']:.6f}")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
