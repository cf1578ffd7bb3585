"""Fine-tuning from few labels: a pre-trained model fine-tuned on 2 labelled cases of a shifted
distribution against the same bundle trained from scratch on them, at equal epochs.

* pre-training: ``ct_unet3d`` (channels 8-16-32, 32^3 window) on 8 CT chest phantoms
  (``write_phantom_dataset``, 48 x 48 x 32 at 1.5 x 1.5 x 2.5 mm), ``--pre-epochs`` epochs.
* shifted distribution: phantoms of other seeds whose lesions are larger (dilated by 2 voxels
  inside the lung) and ground-glass (-350 +- 30 HU instead of 30 HU soft tissue);
  2 cases train, 4 validate (``dataset.json`` ``training`` / ``validation``).
* arms, each ``--epochs`` epochs, same settings and seed: ``scratch``; ``finetune``
  (``init_from`` the pre-trained bundle); ``finetune+freeze`` (encoder frozen for the first third).
  For reference, the pre-trained model as it is (one epoch at learning rate 0: weights unchanged).

Prints validation Dice (mean over lung and lesion, and per label) after the last epoch, per seed,
and the mean and standard deviation over seeds of fine-tuned - scratch.

    python benchmarks/finetune_few_labels.py                # seeds 0 1 2 (~10 min on 2 cores)
    python benchmarks/finetune_few_labels.py --seeds 0 --epochs 6 --pre-epochs 10
    python benchmarks/finetune_few_labels.py --arms        # only the pre-trained model's figure
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
PHANTOM = {"shape": (48, 48, 32), "spacing": (1.5, 1.5, 2.5)}
ARMS = {"scratch": {}, "finetune": {}, "finetune+freeze": {"freeze_encoder": 1}}
COMMON = {"channels": [8, 16, 32], "roi_size": [32, 32, 32], "learning_rate": 0.003, "device": "cpu",
          "cache_rate": 1.0, "num_workers": 0, "batch_size": 1, "num_samples": 2}


def shift_lesions(dataset: Path, grow_voxels: int = 2, hu: float = -350.0, seed: int = 0) -> None:
    """Rewrite every case of ``dataset``: lesions grown by ``grow_voxels`` inside the lung, ground-glass ``hu``."""
    import nibabel as nib
    from scipy.ndimage import binary_dilation

    rng = np.random.default_rng(seed)
    for lab_path in sorted((dataset / "labelsTr").glob("*.nii.gz")):
        img_path = dataset / "imagesTr" / lab_path.name
        img_nii, lab_nii = nib.load(str(img_path)), nib.load(str(lab_path))
        img, lab = img_nii.get_fdata().astype(np.float32), np.asarray(lab_nii.dataobj).astype(np.uint8)
        lesion = binary_dilation(lab == 2, iterations=grow_voxels) & (lab >= 1)
        lab[lesion] = 2
        img[lesion] = hu + 30.0 * rng.standard_normal(int(lesion.sum()))
        nib.save(nib.Nifti1Image(np.round(img).astype(np.float32), img_nii.affine), str(img_path))
        nib.save(nib.Nifti1Image(lab, lab_nii.affine), str(lab_path))


def make_data(work: Path) -> Dict[str, Path]:
    from volseg.data import write_phantom_dataset

    pre, shifted = work / "pretrain_data", work / "shifted_data"
    if not (pre / "dataset.json").is_file():
        write_phantom_dataset(pre, 8, seed=200, progress=False, **PHANTOM)
    if not (shifted / "dataset.json").is_file():
        write_phantom_dataset(shifted, 6, seed=300, progress=False, n_lesions=3, **PHANTOM)
        shift_lesions(shifted)
        spec = json.loads((shifted / "dataset.json").read_text())
        spec["validation"] = spec["training"][2:]
        spec["training"] = spec["training"][:2]
        (shifted / "dataset.json").write_text(json.dumps(spec, indent=2))
    return {"pretrain": pre, "shifted": shifted}


def train(data: Path, out: Path, overrides: Dict[str, Any]) -> Dict[str, Any]:
    from volseg.training import run_bundle

    t0 = time.perf_counter()
    res = run_bundle(BUNDLE, data, output_dir=out, overrides=overrides)
    last = res["history"][-1]
    return {"dice": last["val_mean_dice"], "lung": last["dice_lung"], "lesion": last["dice_lesion"],
            "seconds": time.perf_counter() - t0}


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=12, help="fine-tuning / from-scratch epochs")
    ap.add_argument("--pre-epochs", type=int, default=20)
    ap.add_argument("--arms", nargs="*", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    work = Path(args.work or tempfile.mkdtemp(prefix="volseg_finetune_bench_"))
    data = make_data(work)
    pre_dir = work / "pretrained"
    if not (pre_dir / "models" / "model.pt").is_file():
        pre = train(data["pretrain"], pre_dir, dict(COMMON, max_epochs=args.pre_epochs, val_interval=args.pre_epochs,
                                                    seed=0))
        print(f"pre-trained {args.pre_epochs} epochs on 6 CT phantoms: val Dice {pre['dice']:.3f} "
              f"(lung {pre['lung']:.3f}, lesion {pre['lesion']:.3f}; {pre['seconds']:.0f} s)", flush=True)
    as_is = train(data["shifted"], work / "pretrained_as_is",
                  dict(COMMON, max_epochs=1, val_interval=1, seed=0, learning_rate=0.0, init_from=str(pre_dir)))
    print(f"pre-trained model as it is on the shifted validation cases: val Dice {as_is['dice']:.3f} "
          f"(lung {as_is['lung']:.3f}, lesion {as_is['lesion']:.3f})", flush=True)
    arms = {name: {"init_from": str(pre_dir), **extra} if name != "scratch" else {}
            for name, extra in ARMS.items() if name in args.arms}
    for arm in arms.values():
        if "freeze_encoder" in arm:
            arm["freeze_encoder"] = max(1, args.epochs // 3)
    if not arms:
        return 0
    rows = []
    for seed in args.seeds:
        row: Dict[str, Any] = {"seed": seed}
        for arm, extra in arms.items():
            over = dict(COMMON, max_epochs=args.epochs, val_interval=args.epochs, seed=seed, **extra)
            row[arm] = train(data["shifted"], work / f"{arm}_s{seed}", over)
        rows.append(row)
        print(f"seed {seed}: " + " | ".join(f"{arm} {row[arm]['dice']:.3f} (lung {row[arm]['lung']:.3f}, lesion "
                                            f"{row[arm]['lesion']:.3f})" for arm in arms), flush=True)
    for arm in arms:
        vals = [r[arm]["dice"] for r in rows]
        print(f"{arm}: val Dice {statistics.mean(vals):.3f} (lesion "
              f"{statistics.mean(r[arm]['lesion'] for r in rows):.3f})", flush=True)
    for arm in [a for a in arms if a != "scratch" and "scratch" in arms]:
        diff = [r[arm]["dice"] - r["scratch"]["dice"] for r in rows]
        sd = statistics.stdev(diff) if len(diff) > 1 else float("nan")
        print(f"{arm} - scratch: {statistics.mean(diff):+.3f} +- {sd:.3f} (sd over {len(diff)} seeds; "
              f"min {min(diff):+.3f})", flush=True)
    (work / "results.json").write_text(json.dumps(rows, indent=2))
    print(f"results: {work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
