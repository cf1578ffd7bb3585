"""Does ``volseg plan`` help? The same bundle trained for the same epochs with and without a plan.

Two datasets of synthetic chest phantoms (``volseg.data.write_phantom_dataset``):

* ``far``: far from the bundle's defaults: 0.6 x 0.6 x 5 mm voxels (160 x 160 x 24) on the
  MRI-like intensity scale (``modality="MR"``: background ~0, tissue up to ~3400 units);
* ``default``: the phantoms the bundle was made for (CT in HU, 1.5 x 1.5 x 2.5 mm, 96 x 96 x 64).

Per dataset and seed, ``ct_unet3d`` trains twice with the same network (channels 8-16-32-64), epochs,
learning rate and patches per step: once with the bundle's own ``pixdim`` 1.5 x 1.5 x 2 mm and HU
window (its 96^3 window scaled to 64^3 for the CPU), once with the plan of
``plan_dataset(..., memory_gb=M)``, ``M`` chosen so the planned window holds about as many voxels
(equal compute). ``seed`` sets the split (2 validation cases of 8), the initialisation and the
augmentation; both arms of a seed share it. Printed: validation mean Dice (lung, lesion) after the
last epoch, on each run's grid, and on the source grid (``volseg.inference.Predictor`` +
``evaluate_case``), per seed, then the mean and standard deviation of the planned - default difference.

    python benchmarks/plan_vs_defaults.py                  # both datasets, seeds 0 1 2 (~15 min, 2 cores)
    python benchmarks/plan_vs_defaults.py --datasets far --seeds 0 --epochs 4
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "ct_unet3d"
DATASETS = {
    "far": {"modality": "MR", "shape": (120, 120, 16), "spacing": (0.6, 0.6, 5.0)},
    "default": {"modality": "CT", "shape": (48, 48, 32), "spacing": (1.5, 1.5, 2.5)},
}
COMMON = {"channels": [8, 16, 32], "learning_rate": 0.003, "device": "cpu", "cache_rate": 1.0,
          "num_workers": 0, "batch_size": 1, "num_samples": 2}
DEFAULT_ROI = [32, 32, 32]


def make_data(work: Path, name: str, n_cases: int) -> Path:
    from volseg.data import write_phantom_dataset

    out = work / name
    if not (out / "dataset.json").is_file():
        spec = DATASETS[name]
        write_phantom_dataset(out, n_cases, seed=100, progress=False, modality=spec["modality"],
                              shape=spec["shape"], spacing=spec["spacing"])
    return out


def equal_compute_plan(data: Path) -> Dict[str, Any]:
    """The plan whose window is the largest that holds no more voxels than ``DEFAULT_ROI`` (same compute)."""
    from volseg.planning import dataset_fingerprint, plan_dataset

    fp = dataset_fingerprint(data, progress=False)
    target = float(np.prod(DEFAULT_ROI))
    best = None
    for gb in np.geomspace(0.02, 8.0, 40):
        res = plan_dataset(data, bundle=BUNDLE, memory_gb=float(gb), overrides=COMMON, fingerprint=fp)
        if np.prod(res["plan"]["roi_size"]) <= target:
            best = res
    if best is None:
        raise SystemExit("no memory budget gives a window within the default's voxels")
    return best


def source_grid_dice(run_dir: Path, cases: List[Dict[str, str]]) -> float:
    """Mean Dice over labels 1, 2 of the trained bundle's masks on the source grid of ``cases``."""
    from volseg.inference import Predictor
    from volseg.inference.evaluation import evaluate_case
    from volseg.io import load_volume

    predictor = Predictor(run_dir, device="cpu", backend="eager")
    dice = []
    for case in cases:
        mask = predictor(load_volume(case["image"]))
        rows = evaluate_case(mask, load_volume(case["label"]), labels=[1, 2])
        dice += [r["dice"] for r in rows]
    return float(np.mean(dice))


def train(data: Path, out: Path, overrides: Dict[str, Any]) -> Dict[str, Any]:
    from volseg.training import load_split, run_bundle

    t0 = time.perf_counter()
    res = run_bundle(BUNDLE, data, output_dir=out, overrides=overrides)
    last = res["history"][-1]
    val = load_split(data, seed=overrides["seed"])["val"]
    return {"val_dice": last["val_mean_dice"], "lung": last.get("dice_lung"), "lesion": last.get("dice_lesion"),
            "source_dice": source_grid_dice(out, val), "seconds": time.perf_counter() - t0}


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    work = Path(args.work or tempfile.mkdtemp(prefix="volseg_plan_bench_"))
    results: Dict[str, Any] = {}
    for name in args.datasets:
        data = make_data(work, name, args.cases)
        planned = equal_compute_plan(data)
        plan = planned["plan"]
        print(f"[{name}] plan (memory {planned['memory']['budget_gb']:.3g} GB): {json.dumps(plan)}", flush=True)
        rows = []
        for seed in args.seeds:
            base = dict(COMMON, max_epochs=args.epochs, val_interval=args.epochs, seed=seed)
            default = train(data, work / f"{name}_default_s{seed}", dict(base, roi_size=DEFAULT_ROI))
            with_plan = train(data, work / f"{name}_plan_s{seed}", {**base, **plan, "batch_size": COMMON["batch_size"],
                                                                    "num_samples": COMMON["num_samples"]})
            rows.append({"seed": seed, "default": default, "plan": with_plan})
            print(f"[{name}] seed {seed}: val Dice " + " | ".join(
                f"{arm} {r['val_dice']:.3f} (lung {r['lung']:.3f}, lesion {r['lesion']:.3f}; source grid "
                f"{r['source_dice']:.3f}; {r['seconds']:.0f} s)" for arm, r in (("default", default), ("plan", with_plan))),
                flush=True)
        for key in ("val_dice", "source_dice"):
            diff = [r["plan"][key] - r["default"][key] for r in rows]
            sd = statistics.stdev(diff) if len(diff) > 1 else float("nan")
            print(f"[{name}] {key}: default {statistics.mean(r['default'][key] for r in rows):.3f}, plan "
                  f"{statistics.mean(r['plan'][key] for r in rows):.3f}, plan - default {statistics.mean(diff):+.3f} "
                  f"+- {sd:.3f} (sd over {len(diff)} seeds; min {min(diff):+.3f})", flush=True)
        results[name] = {"plan": plan, "rows": rows}
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(f"results: {work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
