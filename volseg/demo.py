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
from typing import Any, Dict, List, Optional, Union

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


def find_bundle(name: str) -> Path:
    """Locate ``bundles/<name>``: beside the package (editable / source checkout), inside it
    (``volseg/bundles``, when shipped as package data), or under the current folder."""
    import volseg

    pkg = Path(volseg.__file__).resolve().parent
    candidates = [pkg.parent / "bundles" / name, pkg / "bundles" / name, Path.cwd() / "bundles" / name]
    for c in candidates:
        if (c / "configs").is_dir():
            return c
    found = sorted({p.name for c in candidates if c.parent.is_dir() for p in c.parent.iterdir() if (p / "configs").is_dir()})
    raise ConfigError(
        f"bundle {name!r} not found (looked in {', '.join(str(c) for c in candidates)}); "
        f"available: {', '.join(found) or 'none'}. Install volseg from its source tree (pip install -e .)"
    )


def _phantoms(data_dir: Path, n_cases: int, **phantom_kw: Any) -> Path:
    from volseg.data import write_phantom_dataset

    write_phantom_dataset(data_dir, n_cases, **phantom_kw)
    return data_dir


def hold_out_last(dataset_dir: Path, held_dir: Path) -> Dict[str, Path]:
    """Move the last training case of an MSD-style dataset (``dataset.json`` or ``imagesTr/`` +
    ``labelsTr/``) out to ``held_dir``, so training never sees it. Returns its ``image``/``truth`` paths."""
    import shutil

    held_dir.mkdir(parents=True, exist_ok=True)
    index = dataset_dir / "dataset.json"
    if index.is_file():
        meta = json.loads(index.read_text())
        cases = meta.get("training") or []
        if len(cases) < 2:
            raise ConfigError(f"{index} needs at least 2 training cases to hold one out")
        case = cases.pop()
        meta["numTraining"] = len(cases)
        for key in ("validation", "test"):
            if key in meta:
                meta[key] = [c for c in meta[key] if c != case]
        index.write_text(json.dumps(meta, indent=2) + "\n")
        src = {"image": dataset_dir / case["image"], "truth": dataset_dir / case["label"]}
    else:
        images = sorted((dataset_dir / "imagesTr").iterdir())
        labels = sorted((dataset_dir / "labelsTr").iterdir())
        if len(images) < 2 or len(images) != len(labels):
            raise ConfigError(f"{dataset_dir} needs at least 2 paired cases in imagesTr/ and labelsTr/")
        src = {"image": images[-1], "truth": labels[-1]}
    out = {}
    for key, path in src.items():
        dst = held_dir / f"{key}_{path.name}"
        shutil.move(str(path), str(dst))
        out[key] = dst
    return out


def _held_out(out: Path, dataset: Path) -> Dict[str, Any]:
    """The last phantom, never trained on, as a file and as a DICOM series (written by volseg)."""
    from volseg.io import load_volume, write_dicom_series

    held = hold_out_last(dataset, out / "heldout")
    held["dicom"] = out / "heldout" / "dicom"
    write_dicom_series(load_volume(held["image"]), held["dicom"])
    return held


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
    from volseg.inference.evaluation import evaluate
    from volseg.training import run_bundle

    profile = PROFILES["quick" if quick else "full"]
    files: Dict[str, str] = {}
    if data == "synthetic":
        dataset = _phantoms(out / "data", profile["n_cases"] + 1, **profile["phantom"])
        held = _held_out(out, dataset)
        pred_input = held["dicom"]
        files["held-out phantom (DICOM series)"] = str(held["dicom"])
        files["held-out truth"] = str(held["truth"])
    else:
        held = _real(out)
        dataset = held["data"]
        pred_input = held["image"]
    overrides = dict(profile["overrides"])
    train = run_bundle(find_bundle("ct_unet3d"), dataset, output_dir=out / "model", overrides=overrides)
    model_dir = out / "model"
    mask = out / "prediction" / "mask.nii.gz"
    _cli(["predict", "-i", str(pred_input), "-o", str(mask), "-m", str(model_dir), "--device", "cpu",
          "--format", "both" if data == "synthetic" else "nifti", "--stats", "--overlay"])
    table = evaluate(mask, held["truth"], out / "evaluation")
    dice = _mean_dice(table)
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


def _cli(argv: List[str]) -> None:
    """Run a volseg command in this process (it prints its own one-line error on failure)."""
    from volseg.cli import main

    if main(argv):
        raise ConfigError(f"the demo stopped: 'volseg {argv[0]}' failed (message above)")


def _first(folder: Path, pattern: str) -> Optional[Path]:
    hits = sorted(folder.rglob(pattern)) if folder.is_dir() else []
    return hits[0] if hits else None


def _existing(paths: Dict[str, Optional[Path]]) -> Dict[str, str]:
    return {k: str(v) for k, v in paths.items() if v is not None and Path(v).exists()}


def _mean_dice(table: Any) -> float:
    """Mean foreground Dice from ``volseg.inference.evaluation``'s result (dict, list of rows or DataFrame-like)."""
    import math

    rows: List[Dict[str, Any]]
    if isinstance(table, dict) and "mean_dice" in table:
        return float(table["mean_dice"])
    if isinstance(table, dict) and "summary" in table and isinstance(table["summary"], dict):
        return _mean_dice(table["summary"])
    if isinstance(table, dict) and "cases" in table:
        rows = list(table["cases"])
    elif isinstance(table, list):
        rows = table
    else:
        raise ConfigError(f"cannot read Dice from the evaluation result ({type(table).__name__})")
    vals = [float(r["dice"]) for r in rows if r.get("dice") is not None and not math.isnan(float(r["dice"]))]
    return float(sum(vals) / len(vals)) if vals else float("nan")


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
