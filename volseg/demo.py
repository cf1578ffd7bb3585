"""``volseg demo``: the whole product on a fresh machine, nothing downloaded.

synthetic CT phantoms -> train a small 3D U-Net through the ``ct_unet3d`` bundle on CPU ->
a held-out phantom written as NIfTI and as a DICOM series -> predict it from the DICOM series
(sliding window) -> NIfTI mask, DICOM SEG, overlay PNG, stats -> Dice against the phantom's
truth. ``--data real`` uses the pyradiomics lung CTs (fetched from PyPI) instead.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Dict, Optional, Union

from volseg.errors import ConfigError

PathLike = Union[str, "os.PathLike[str]"]

# training settings: full demo (< 5 min on 2 CPU cores, Dice >= 0.8) and --quick (< ~60 s, for tests)
_TRAIN = {"val_interval": 5, "batch_size": 2, "num_workers": 0, "cache_rate": 1.0, "learning_rate": 0.003,
          "seed": 0, "device": "cpu"}
MARKER = ".volseg_demo"
PROFILES: Dict[str, Dict[str, Any]] = {
    "full": {"n_cases": 8, "phantom": {"shape": (64, 64, 40), "spacing": (2.25, 2.25, 4.0)},
             "overrides": dict(_TRAIN, max_epochs=60, roi_size=[48, 48, 32], pixdim=[2.25, 2.25, 4.0],
                               channels=[8, 16, 32, 64], num_samples=2)},
    "quick": {"n_cases": 4, "phantom": {"shape": (64, 64, 40), "spacing": (2.25, 2.25, 4.0)},
              "overrides": dict(_TRAIN, max_epochs=6, val_interval=3, roi_size=[32, 32, 32],
                                pixdim=[2.25, 2.25, 4.0], channels=[8, 16, 32], num_samples=2)},
}


def _phantoms(out: Path, n_cases: int, **phantom_kw: Any) -> Dict[str, Path]:
    """``n_cases`` training phantoms (seeds ``0..n-1``) in ``out/data`` and one more (seed ``n``), never
    trained on, in ``out/heldout``: as NIfTI (image and truth) and as a DICOM series written by volseg."""
    from volseg.data import make_phantom, write_phantom_dataset
    from volseg.io import save_mask, save_volume, write_dicom_series

    data = write_phantom_dataset(out / "data", n_cases, **phantom_kw)
    ph = make_phantom(seed=n_cases, **phantom_kw)
    held = out / "heldout"
    save_volume(ph.image, held / "image.nii.gz")
    write_dicom_series(ph.image, held / "dicom")
    return {"data": data, "image": held / "image.nii.gz", "dicom": held / "dicom",
            "truth": save_mask(ph.label, ph.image, held / "truth.nii.gz")}


def _real(out: Path) -> Dict[str, Any]:
    """The pyradiomics lung CTs: lung1 trains, lung2 is held out (two cases: a pipeline check only)."""
    import shutil

    from volseg.data import fetch_samples

    samples = Path(fetch_samples())
    data = out / "data"
    (data / "imagesTr").mkdir(parents=True, exist_ok=True)
    (data / "labelsTr").mkdir(parents=True, exist_ok=True)
    shutil.copy(samples / "lung1_image.nrrd", data / "imagesTr" / "lung1.nrrd")
    shutil.copy(samples / "lung1_label.nrrd", data / "labelsTr" / "lung1.nrrd")
    return {"data": data, "image": samples / "lung2_image.nrrd", "truth": samples / "lung2_label.nrrd"}


def _fresh_out(out: Path) -> None:
    """Start from an empty folder; a previous demo's folder (it has the marker file) is cleared."""
    import shutil

    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise ConfigError(f"--out {out} exists and is not a volseg demo folder: choose a new or empty folder")
        for name in ("data", "heldout", "model", "prediction", "evaluation", "demo_summary.json"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("a volseg demo folder: 'volseg demo --out' may clear it\n")


def run_demo(out_dir: PathLike = "volseg_demo", quick: bool = False, data: str = "synthetic") -> Dict[str, Any]:
    """Run the demo into ``out_dir``; returns ``{"files": {what: path}, "dice": float, "seconds": float, ...}``."""
    if data not in ("synthetic", "real"):
        raise ConfigError(f"unknown demo data {data!r}; valid: synthetic, real")
    t0 = time.perf_counter()
    out = Path(out_dir)
    _fresh_out(out)
    from volseg.bundles.shipped import find_bundle
    from volseg.inference.batch import predict
    from volseg.inference.evaluation import evaluate
    from volseg.training import run_bundle

    profile = PROFILES["quick" if quick else "full"]
    files: Dict[str, str] = {}
    if data == "synthetic":
        held = _phantoms(out, profile["n_cases"], **profile["phantom"])
        pred_input = held["dicom"]
        files["held-out phantom (DICOM series)"] = str(held["dicom"])
        files["held-out truth"] = str(held["truth"])
    else:
        held = _real(out)
        pred_input = held["image"]
    overrides = dict(profile["overrides"])
    train = run_bundle(find_bundle("ct_unet3d"), held["data"], output_dir=out / "model", overrides=overrides)
    model_dir = out / "model"
    mask = out / "prediction" / "mask.nii.gz"
    predict(pred_input, mask, model=model_dir, device="cpu", format="both" if data == "synthetic" else "nifti",
            stats=True, overlay=True)
    dice = float(evaluate(mask, held["truth"], out / "evaluation")["mean_dice"])
    files.update(_existing({
        "trained model": model_dir / "models" / "model.pt",
        "training curves": model_dir / "logs" / "curves.png",
        "training metrics": model_dir / "logs" / "metrics.csv",
        "NIfTI mask": mask,
        "DICOM SEG": _first(out / "prediction", "*.dcm"),
        "overlay PNG": _first(out / "prediction", "*.png"),
        "stats": _first(out / "prediction", "*.csv"),
        "evaluation table": _first(out / "evaluation", "*.csv"),
    }))
    summary = {"files": files, "dice": dice, "seconds": time.perf_counter() - t0, "data": data,
               "quick": quick, "train": train}
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _first(folder: Path, pattern: str) -> Optional[Path]:
    hits = sorted(folder.rglob(pattern)) if folder.is_dir() else []
    return hits[0] if hits else None


def _existing(paths: Dict[str, Optional[Path]]) -> Dict[str, str]:
    return {k: str(v) for k, v in paths.items() if v is not None and Path(v).exists()}


def format_summary(summary: Dict[str, Any]) -> str:
    """Human-readable lines: where each file is and the Dice reached."""
    lines = [f"volseg demo ({summary['data']}{', quick' if summary['quick'] else ''}) "
             f"finished in {summary['seconds']:.0f} s"]
    width = max(len(k) for k in summary["files"]) if summary["files"] else 0
    lines += [f"  {k:<{width}}  {v}" for k, v in summary["files"].items()]
    lines.append(f"Dice on the held-out case: {summary['dice']:.3f}")
    if summary.get("data") == "real":
        lines.append("(one real training case and one held-out case: this checks the pipeline on real CT; "
                     "it cannot measure accuracy)")
    return "\n".join(lines)
