"""Training epoch time: volseg's ``ct_unet3d`` bundle vs the model zoo's ``spleen_ct_segmentation``
``train.json`` (unmodified, ``tests/data/zoo``), both through ``python -m monai.bundle run`` (the
default ``run`` entry of each ``train.json``).

Same data (``--cases`` chest phantoms written as an MSD ``imagesTr``/``labelsTr`` dataset, labels
made binary: lung and lesion -> 1, the zoo network has 2 outputs), same patch (96^3), batch 2 and
4 crops per case. The zoo config takes its training cases as ``images[:-9]`` (the last 9 are its
validation set), so ``--cases 9 + N`` trains on N cases; volseg's bundle gets the same N as its
training split (``val_fraction`` set so that 9 are held out). Validation is switched off on both
(``val_interval`` past the last epoch); only command-line overrides are used. The figure is the
wall time of epochs 2.. (epoch 1 includes caching and first-call set-up), from each run's log.

    python benchmarks/train_vs_zoo.py --cases 12 --epochs 3
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "tests" / "data" / "zoo"


def dataset(work: Path, cases: int) -> Path:
    """An MSD-style dataset of ``cases`` phantoms (160x160x120 at 1 x 1 x 1.6 mm: 96^3 crops fit after
    the zoo's 1.5 x 1.5 x 2 mm resampling), binary labels."""
    import nibabel as nib

    from volseg.data import write_phantom_dataset

    out = work / f"phantoms_{cases}"
    if (out / "dataset.json").is_file():
        return out
    write_phantom_dataset(out, n_cases=cases, shape=(160, 160, 120), spacing=(1.0, 1.0, 1.6), progress=False)
    for lab in sorted((out / "labelsTr").glob("*.nii.gz")):
        img = nib.load(str(lab))
        binary = (np.asarray(img.dataobj) > 0).astype(np.uint8)
        nib.save(nib.Nifti1Image(binary, img.affine, img.header), str(lab))
    return out


def _run(cmd: List[str], log: Path) -> float:
    t = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed; see {log}")
    return wall


def _seconds(hms: str) -> float:
    h, m, s = hms.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def zoo_epochs(log: Path) -> List[float]:
    """Epoch times from ignite's ``Epoch[N] Complete. Time taken: HH:MM:SS.fff``."""
    return [_seconds(m) for m in re.findall(r"Epoch\[\d+\] Complete\. Time taken: ([0-9:.]+)", log.read_text())]


def volseg_epochs(log: Path) -> List[float]:
    """Epoch times from volseg's ``epoch N/M: loss X (T s)`` line."""
    return [float(m) for m in re.findall(r"epoch \d+/\d+: loss [0-9.]+ \(([0-9.]+) s\)", log.read_text())]


def main(argv: Sequence[str] = ()) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=12, help="phantoms; the zoo config validates on the last 9")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "volseg_bench_train"))
    args = ap.parse_args(list(argv) or None)
    if args.cases < 10:
        ap.error("--cases must be at least 10 (the zoo config holds out the last 9)")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = dataset(work, args.cases)
    n_train = args.cases - 9

    zoo = work / "zoo_spleen"
    shutil.rmtree(zoo, ignore_errors=True)
    shutil.copytree(ZOO / "spleen_ct_segmentation", zoo)
    (zoo / "models").mkdir()
    zoo_cmd = [sys.executable, "-m", "monai.bundle", "run",
               "--meta_file", str(zoo / "configs/metadata.json"), "--config_file", str(zoo / "configs/train.json"),
               "--logging_file", str(zoo / "configs/logging.conf"), "--bundle_root", str(zoo),
               "--dataset_dir", str(data), "--epochs", str(args.epochs), "--val_interval", str(args.epochs + 1)]
    ours = ROOT / "bundles" / "ct_unet3d" / "configs"
    out = work / "volseg_ct_unet3d"
    shutil.rmtree(out, ignore_errors=True)
    volseg_cmd = [sys.executable, "-m", "monai.bundle", "run",
                  "--meta_file", str(ours / "metadata.json"), "--config_file", str(ours / "train.json"),
                  "--bundle_root", str(ours.parent), "--output_dir", str(out), "--dataset_dir", str(data),
                  "--max_epochs", str(args.epochs), "--val_interval", str(args.epochs + 1),
                  "--val_fraction", str(9 / args.cases), "--num_classes", "2", "--labels", json.dumps({"1": "lung"})]
    res: Dict[str, Any] = {"cases": args.cases, "train_cases": n_train, "epochs": args.epochs}
    for name, cmd, parse in (("zoo", zoo_cmd, zoo_epochs), ("volseg", volseg_cmd, volseg_epochs)):
        log = work / f"{name}.log"
        res[f"{name}_wall_s"] = _run(cmd, log)
        epochs = parse(log)
        if len(epochs) != args.epochs:
            raise RuntimeError(f"{name}: found {len(epochs)} epoch times in {log}, expected {args.epochs}")
        res[f"{name}_epochs_s"] = epochs
        res[f"{name}_epoch_s"] = float(np.median(epochs[1:] if len(epochs) > 1 else epochs))
        print(f"{name}: epochs {', '.join(f'{e:.1f}' for e in epochs)} s; command {res[f'{name}_wall_s']:.1f} s",
              flush=True)
    res["speedup"] = res["zoo_epoch_s"] / res["volseg_epoch_s"]
    print(json.dumps(res, indent=2))
    print(f"epoch (median of epochs 2..): zoo spleen train.json {res['zoo_epoch_s']:.1f} s | volseg ct_unet3d "
          f"{res['volseg_epoch_s']:.1f} s | {res['speedup']:.2f}x ({n_train} training cases, 96^3 patches, "
          "batch 2 x 4 crops)")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
