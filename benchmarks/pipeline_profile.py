"""Where ``volseg predict``'s time goes, stage by stage, on one scan with a zoo-style bundle.

Stages, timed in one warm process (the Predictor built once, as for a batch): read the scan,
the bundle's preprocessing, the network (every window, run apart so it is timed alone), the
rest of the streamed engine (blending, activation, inversion onto the scan's grid, argmax), and
writing the mask. Prints each stage's seconds and the pipeline overhead (everything but the
network) as a fraction of the network time. The bundle and scan are those of
``benchmarks/runner_vs_volseg.py`` (same work folder and options).

    python benchmarks/pipeline_profile.py --shape 512 512 200 --backend auto
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, Sequence

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from runner_vs_volseg import make_bundle, make_scan  # noqa: E402


def profile(bundle: Path, scan: Path, out: Path, backend: str, classes: int) -> Dict[str, float]:
    from volseg.inference import Predictor
    from volseg.inference.engine import model_slabs, run_chain
    from volseg.inference.sliding import window_slices
    from volseg.io import load_volume, save_mask

    over = {"network_def#out_channels": classes} if classes != 2 else {}
    pred = Predictor(bundle, device="cpu", backend=backend, overrides=over)
    t: Dict[str, float] = {}
    t0 = time.perf_counter()
    source = load_volume(scan)
    t["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    x = pred.preprocess(source)
    t["preprocess"] = time.perf_counter() - t0
    spec = pred._slab_spec(x)
    roi = spec.window(list(x.shape[1:]))
    size = [max(r, s) for r, s in zip(roi, x.shape[1:])]
    wins = window_slices(size, roi, spec.overlap)
    batch = torch.zeros((spec.sw_batch_size, x.shape[0], *roi))
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(0, len(wins), spec.sw_batch_size):
            pred.forward(batch)
    t["network"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    slabs = model_slabs(x, pred.forward, spec, pred.inferer, sw_device=pred.sw_device)
    res = run_chain(x, source, pred.chain, slabs, device=pred.device)
    t["engine_total"] = time.perf_counter() - t0
    t["blend_invert_argmax"] = max(t["engine_total"] - t["network"], 0.0)
    t0 = time.perf_counter()
    save_mask(res.value, source, out / "profile_mask.nii.gz")
    t["write"] = time.perf_counter() - t0
    t["windows"] = float(len(wins))
    t["forward"] = str(pred.forward)  # type: ignore[assignment]
    return t


def main(argv: Sequence[str] = ()) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=3, default=[512, 512, 200])
    ap.add_argument("--spacing", type=float, nargs=3, default=[0.8, 0.8, 1.5])
    ap.add_argument("--classes", type=int, default=2)
    ap.add_argument("--weights", choices=["trained", "random"], default="random")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--work", default="/tmp/volseg_bench_runner")
    args = ap.parse_args(list(argv) or None)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    bundle = make_bundle(work, args.weights, args.classes)
    scan = make_scan(work, args.shape, args.spacing)
    runs = [profile(bundle, scan, work, args.backend, args.classes) for _ in range(args.repeats)]
    res: Dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "forward"}
    res["forward"] = runs[0]["forward"]
    other = res["read"] + res["preprocess"] + res["blend_invert_argmax"] + res["write"]
    res["overhead_over_network"] = other / res["network"]
    print(json.dumps(res, indent=2))
    print(" | ".join(f"{k} {res[k]:.2f} s" for k in ("read", "preprocess", "network", "blend_invert_argmax", "write"))
          + f" | overhead {100 * res['overhead_over_network']:.0f}% of network time ({res['windows']:.0f} windows)")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
