"""Compare predicted masks with reference masks: per case and label Dice, HD95 and mean surface distance (mm)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from volseg._atomic import check_not_input
from volseg.errors import InputError
from volseg.formats import LABEL_MAP_SUFFIXES, case_name
from volseg.io.tables import write_csv

METRICS = ("dice", "hd95_mm", "msd_mm")


def evaluate_case(pred: Any, ref: Any, labels: Optional[Sequence[int]] = None,
                  spacing: Optional[Sequence[float]] = None) -> List[Dict[str, Any]]:
    """Rows ``{label, dice, hd95_mm, msd_mm, pred_voxels, ref_voxels}`` for label maps ``(X, Y, Z)``
    on the same grid; ``spacing`` mm per axis (default: from ``ref.affine``, else 1). Both empty:
    Dice 1 and distances 0; one empty: Dice 0 and distances inf. MONAI metrics
    (:func:`volseg.metrics.dice_per_label`); the mean surface distance is symmetric."""
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    from volseg.metrics import dice_per_label

    def arr(x: Any) -> np.ndarray:
        a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        return a[0] if a.ndim == 4 else a

    p, r = arr(pred), arr(ref)
    if p.shape != r.shape:
        raise InputError(f"prediction shape {p.shape} differs from reference shape {r.shape}")
    if spacing is None:
        aff = getattr(ref, "affine", None)
        spacing = np.sqrt((np.asarray(aff, dtype=np.float64)[:3, :3] ** 2).sum(0)) if aff is not None else [1.0] * p.ndim
    spacing = [float(s) for s in spacing]
    if labels is None:
        labels = sorted({int(v) for v in np.unique(r) if v != 0} | {int(v) for v in np.unique(p) if v != 0})
    dice = dice_per_label(p, r, labels, empty=1.0)
    rows = []
    for lab in labels:
        pb, rb = p == lab, r == lab
        row: Dict[str, Any] = {"label": int(lab), "pred_voxels": int(pb.sum()), "ref_voxels": int(rb.sum()),
                               "dice": dice[int(lab)]}
        if not pb.any() and not rb.any():
            row.update(hd95_mm=0.0, msd_mm=0.0)
        elif not pb.any() or not rb.any():
            row.update(hd95_mm=math.inf, msd_mm=math.inf)
        else:
            tp = torch.from_numpy(pb[None, None].astype(np.float32))
            tr = torch.from_numpy(rb[None, None].astype(np.float32))
            row["hd95_mm"] = float(compute_hausdorff_distance(tp, tr, include_background=True, percentile=95,
                                                              spacing=spacing)[0, 0])
            row["msd_mm"] = float(compute_average_surface_distance(tp, tr, include_background=True, symmetric=True,
                                                                   spacing=spacing)[0, 0])
        rows.append(row)
    return rows


def _pairs(pred: Path, ref: Path) -> List[Tuple[str, Path, Path]]:
    if pred.is_file() and ref.is_file():
        return [(case_name(ref), pred, ref)]
    if pred.is_dir() and ref.is_dir():
        def listing(folder: Path) -> Dict[str, Path]:
            out = {}
            for f in sorted(folder.iterdir()):
                if f.is_file() and f.name.lower().endswith(LABEL_MAP_SUFFIXES) \
                        and not f.name.lower().endswith(("_prob.nii.gz",)):
                    out[case_name(f)] = f
            return out

        preds, refs = listing(pred), listing(ref)
        missing = sorted(set(refs) - set(preds))
        if missing:
            raise InputError(f"no prediction for {len(missing)} reference case(s): {', '.join(missing[:5])}", pred)
        if not refs:
            raise InputError("no reference masks (.nii.gz, .nrrd, .mha) found", ref)
        return [(name, preds[name], refs[name]) for name in sorted(refs)]
    for p in (pred, ref):
        if not p.exists():
            raise InputError("no such file or folder", p)
    raise InputError("--pred and --ref must both be files or both be folders", pred)


def summarize(rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per label mean and std (finite values only) of each metric, and how many cases were infinite."""
    out = []
    for lab in sorted({r["label"] for r in rows}):
        sel = [r for r in rows if r["label"] == lab]
        s: Dict[str, Any] = {"label": lab, "cases": len(sel)}
        for m in METRICS:
            v = np.array([r[m] for r in sel], dtype=np.float64)
            fin = v[np.isfinite(v)]
            s[f"{m}_mean"] = round(float(fin.mean()), 4) if fin.size else math.nan
            s[f"{m}_std"] = round(float(fin.std()), 4) if fin.size else math.nan
            if fin.size < v.size:
                s[f"{m}_infinite"] = int(v.size - fin.size)
        out.append(s)
    return out


def evaluate(pred: Any, ref: Any, output: Any = None, labels: Optional[Sequence[int]] = None,
             tol_mm: float = 1e-3) -> Dict[str, Any]:
    """Evaluate mask file/folder ``pred`` against ``ref`` (folders matched by case name). Grids must
    agree (shape, affine within ``tol_mm``). Returns ``{"cases": rows per case and label,
    "summary": per-label mean/std, "mean_dice": mean over all rows}``. ``output``: a ``.csv`` path
    (``<stem>_summary.csv`` is written beside it) or a folder (``evaluation.csv`` +
    ``evaluation_summary.csv`` inside)."""
    from tqdm.auto import tqdm

    from volseg.io import load_volume

    pred, ref = Path(pred), Path(ref)
    rows: List[Dict[str, Any]] = []
    for name, p, r in tqdm(_pairs(pred, ref), desc="evaluate", unit="case", disable=None):
        pv, rv = load_volume(p), load_volume(r)
        if tuple(pv.shape[1:]) != tuple(rv.shape[1:]):
            raise InputError(f"grid {tuple(pv.shape[1:])} differs from the reference's {tuple(rv.shape[1:])}", p)
        pa, ra = np.asarray(pv.affine, dtype=np.float64), np.asarray(rv.affine, dtype=np.float64)
        if not np.allclose(pa, ra, atol=tol_mm):
            raise InputError("affine differs from the reference's: the masks are not on the same grid", p)
        for row in evaluate_case(pv, rv, labels):
            rows.append({"case": name, **row})
    summary = summarize(rows)
    if output is not None:
        out = Path(output)
        if out.suffix.lower() != ".csv":
            out = out / "evaluation.csv"
        check_not_input(out, [pred, ref])
        write_csv(rows, out)
        write_csv(summary, out.with_name(f"{out.stem}_summary.csv"))
    dice = [r["dice"] for r in rows]
    return {"cases": rows, "summary": summary, "mean_dice": float(np.mean(dice)) if dice else math.nan}


def format_summary(summary: Sequence[Dict[str, Any]]) -> str:
    """A small text table of the per-label summary."""
    lines = [f"{'label':>5} {'cases':>5} {'Dice':>15} {'HD95 mm':>17} {'MSD mm':>17}"]
    for s in summary:
        cells = [f"{s[f'{m}_mean']:.4f} ± {s[f'{m}_std']:.4f}" for m in METRICS]
        lines.append(f"{s['label']:>5} {s['cases']:>5} {cells[0]:>15} {cells[1]:>17} {cells[2]:>17}")
    return "\n".join(lines)
