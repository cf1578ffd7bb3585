"""What ``volseg plan`` found, for people: a text report and a PNG of the fingerprint's histograms."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, List, Mapping, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]
AXES = ("R", "A", "S")


def _range(values: List[float]) -> str:
    return f"{min(values):.3g}-{max(values):.3g}"


def format_report(result: Mapping[str, Any]) -> str:
    """Fingerprint (spacing, shape, foreground intensity, class volumes) then the plan with its reasons."""
    fp, mem = result["fingerprint"], result["memory"]
    cases = fp["cases"]
    sp = np.asarray([c["spacing"] for c in cases])
    sh = np.asarray([c["shape"] for c in cases])
    labels = ", ".join(f"{k} {v}" for k, v in fp["labels"].items()) or "none"
    mods = ", ".join(m or "unknown" for m in fp["modalities"])
    lines = [f"dataset {fp['dataset']}: {fp['n_cases']} cases, {len(fp['modalities'])} channel(s) ({mods}), "
             f"labels {labels}",
             "spacing (mm, R x A x S): median " + " x ".join(f"{v:.3g}" for v in np.median(sp, 0))
             + "; range " + " x ".join(_range(list(sp[:, i])) for i in range(3)),
             "shape (voxels, R x A x S): median " + " x ".join(f"{v:g}" for v in np.median(sh, 0))
             + "; range " + " x ".join(_range(list(sh[:, i])) for i in range(3))]
    for c, st in enumerate(fp["intensity"]):
        lines.append(f"intensity channel {c} in the foreground: p0.5 {st['p0.5']:.4g}, median {st['p50']:.4g}, "
                     f"p99.5 {st['p99.5']:.4g}, mean {st['mean']:.4g} +- {st['std']:.4g}")
    for k, v in fp["class_volume_ml"].items():
        lines.append(f"class {k} ({fp['labels'].get(k, '')}): median {v['median']:.4g} mL "
                     f"(range {v['min']:.4g}-{v['max']:.4g}), in {v['cases']}/{fp['n_cases']} cases")
    lines.append(f"plan for {result['bundle']} (memory budget {mem['budget_gb']:g} GB, estimated "
                 f"{mem['estimate_gb']:.2f} GB; network stride {mem['stride']}):")
    for key, value in result["plan"].items():
        lines.append(f"  {key:<12} {json.dumps(value)}")
        lines.append(f"  {'':<12}   {result['reasons'].get(key, '')}")
    if result.get("dropped"):
        lines.append(f"  not in this bundle (left out): {', '.join(result['dropped'])}")
    return "\n".join(lines)


def plot_fingerprint(result: Mapping[str, Any], path: PathLike) -> Path:
    """PNG: spacing per axis (with the planned ``pixdim``), intensity histograms per channel
    (foreground and all voxels, log counts, with the clip range or percentiles) and class volumes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from volseg._atomic import atomic_path

    fp, plan = result["fingerprint"], result["plan"]
    n_int = len(fp["intensity"])
    fig, axes = plt.subplots(1, 2 + n_int, figsize=(4.2 * (2 + n_int), 3.8))
    ax = axes[0]
    sp = np.asarray([c["spacing"] for c in fp["cases"]])
    jitter = np.linspace(-0.2, 0.2, len(sp)) if len(sp) > 1 else np.zeros(1)
    for i in range(3):
        ax.scatter(i + jitter, sp[:, i], s=14, alpha=0.7, color=f"C{i}")
        if "pixdim" in plan:
            ax.hlines(plan["pixdim"][i], i - 0.35, i + 0.35, color="k", lw=2)
    ax.set_xticks(range(3), [f"{a} axis" for a in AXES])
    ax.set_xlim(-0.6, 2.6)
    ax.set_ylim(0, max(float(sp.max()), max(plan.get("pixdim", [0]))) * 1.15)
    ax.set(ylabel="spacing (mm)", title="spacing per case (bar: planned pixdim)")
    for c, st in enumerate(fp["intensity"]):
        ax = axes[1 + c]
        for key, label, colour in (("hist_all", "all voxels", "0.6"), ("hist_foreground", "foreground", "C3")):
            h = st[key]
            edges = np.asarray(h["edges"])
            ax.stairs(np.maximum(np.asarray(h["counts"]), 0.8), edges, label=label, color=colour, fill=key == "hist_all",
                      alpha=0.6 if key == "hist_all" else 1.0)
        clip = (plan.get("intensity") or {}).get("clip") or [st["p0.5"], st["p99.5"]]
        for v in clip:
            ax.axvline(v, ls="--", color="k", lw=1)
        ax.set_yscale("log")
        mod = fp["modalities"][c] or "unknown"
        ax.set(xlabel="intensity", ylabel="voxels (sampled)", title=f"channel {c} ({mod}); dashed: p0.5 / p99.5")
        ax.legend(fontsize=8)
    ax = axes[-1]
    names = [f"{k} {fp['labels'].get(k, '')}" for k in fp["class_volume_ml"]]
    vols = [[c["class_ml"][k] for c in fp["cases"] if k in c["class_ml"]] for k in fp["class_volume_ml"]]
    for i, v in enumerate(vols):
        ax.scatter(np.full(len(v), i) + np.linspace(-0.15, 0.15, len(v)), v, s=12)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    if any(vols):
        ax.set_yscale("log")
    ax.set(ylabel="mL per case", title="class volumes")
    fig.tight_layout()
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return out
