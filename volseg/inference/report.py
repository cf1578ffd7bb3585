"""Results people look at: per-label statistics (voxels, mL, mean intensity) and a PNG overlay montage."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from volseg._atomic import atomic_path
from volseg.io.tables import write_csv

PathLike = Any
COLOURS = ["#ff3030", "#30c0ff", "#ffd000", "#30ff60", "#ff60ff", "#ff9020", "#a070ff", "#ffffff"]


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def label_stats(mask: Any, image: Any, affine: Any, labels: Optional[Mapping[int, str]] = None,
                modality: str = "", uncertainty: Any = None) -> List[Dict[str, Any]]:
    """One row per label (the ``labels`` given, else those present): ``label``, ``name``, ``voxels``,
    ``volume_ml`` (voxel count x |det(affine)| mm^3 / 1000) and ``mean_intensity`` of the source's
    first channel (HU for CT; ``None`` for an empty label); with an ``uncertainty`` map ``(X, Y, Z)``
    also ``mean_uncertainty`` over the label. ``mask`` ``(X, Y, Z)``, ``image`` ``(C, X, Y, Z)``."""
    m = _np(mask)
    m = m[0] if m.ndim == 4 else m
    img = _np(image)
    img = img[0] if img.ndim == m.ndim + 1 else img
    voxel_mm3 = float(abs(np.linalg.det(np.asarray(_np(affine), dtype=np.float64)[:3, :3])))
    ids = sorted(int(k) for k in labels) if labels else [int(v) for v in np.unique(m) if v != 0]
    unit = "HU" if modality.upper() == "CT" else ""
    unc = None if uncertainty is None else _np(uncertainty).reshape(m.shape)
    rows = []
    for lab in ids:
        sel = m == lab
        n = int(sel.sum())
        mean = float(img[sel].astype(np.float64).mean()) if n else None
        row = {"label": lab, "name": (labels or {}).get(lab, str(lab)), "voxels": n,
               "volume_ml": round(n * voxel_mm3 / 1000.0, 4),
               "mean_intensity": None if mean is None else round(mean, 3), "intensity_unit": unit}
        if unc is not None:
            row["mean_uncertainty"] = round(float(unc[sel].astype(np.float64).mean()), 4) if n else None
        rows.append(row)
    return rows


def write_stats(rows: Sequence[Mapping[str, Any]], csv_path: PathLike, json_path: PathLike,
                case: str = "") -> None:
    """Write ``rows`` from :func:`label_stats` as CSV and JSON (atomic)."""
    fields = ["case", "label", "name", "voxels", "volume_ml", "mean_intensity", "intensity_unit"]
    if any("mean_uncertainty" in r for r in rows):
        fields.append("mean_uncertainty")
    write_csv([{"case": case, **r} for r in rows], csv_path, fields=fields)
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps({"case": case, "labels": list(rows)}, indent=2))


def _canonical(arr: np.ndarray, affine: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Reorder/flip ``arr`` (X, Y, Z) so its axes point to R, A, S; returns (array, spacing mm)."""
    import nibabel.orientations as nio

    ornt = nio.io_orientation(affine)
    out = nio.apply_orientation(arr, ornt)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    spacing = spacing[ornt[:, 0].astype(int).argsort()]
    return out, spacing


def _views(vol: np.ndarray, msk: np.ndarray, centre: Sequence[int], sp: np.ndarray):
    """Radiological 2D views (rows top->bottom, cols left->right) of RAS-ordered arrays.
    Axial: patient right on image left, anterior up. Coronal: right on left, superior up.
    Sagittal: anterior on left, superior up. Yields (title, image, mask, aspect)."""
    x, y, z = centre
    yield "axial", vol[:, :, z].T[::-1, ::-1], msk[:, :, z].T[::-1, ::-1], sp[1] / sp[0]
    yield "coronal", vol[:, y, :].T[::-1, ::-1], msk[:, y, :].T[::-1, ::-1], sp[2] / sp[0]
    yield "sagittal", vol[x, :, :].T[::-1, ::-1], msk[x, :, :].T[::-1, ::-1], sp[2] / sp[1]


def largest_component_centre(mask: np.ndarray) -> Tuple[int, ...]:
    """Voxel index of the centre of mass of the largest foreground component (volume centre if empty)."""
    from scipy import ndimage

    fg = mask > 0
    if not fg.any():
        return tuple(s // 2 for s in mask.shape)
    comp, n = ndimage.label(fg, structure=np.ones((3,) * mask.ndim, dtype=bool))
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    sel = comp == int(np.argmax(sizes))
    c = ndimage.center_of_mass(sel)
    idx = [int(round(v)) for v in c]
    # the centre of mass of a curved component may miss it: snap to its nearest voxel
    if not sel[tuple(idx)]:
        pts = np.argwhere(sel)
        idx = [int(v) for v in pts[np.argmin(((pts - np.array(c)) ** 2).sum(axis=1))]]
    return tuple(idx)


def save_overlay(image: Any, mask: Any, affine: Any, path: PathLike, labels: Optional[Mapping[int, str]] = None,
                 modality: str = "", title: str = "", uncertainty: Any = None) -> Path:
    """PNG montage: axial, coronal and sagittal slices through the largest mask component, mask
    outlined on the scan, radiological convention (patient right on image left, anterior/superior
    up). ``image`` ``(C, X, Y, Z)`` or ``(X, Y, Z)``, ``mask`` ``(X, Y, Z)``, ``affine`` RAS mm. An
    ``uncertainty`` map ``(X, Y, Z)`` (0..1) adds a second row: the same slices as a heat map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = _np(image).astype(np.float32, copy=False)
    img = img[0] if img.ndim == 4 else img
    m = _np(mask)
    m = m[0] if m.ndim == 4 else m
    aff = np.asarray(_np(affine), dtype=np.float64)
    vol, sp = _canonical(img, aff)
    msk, _ = _canonical(m, aff)
    centre = largest_component_centre(msk)
    lo, hi = (-1000.0, 400.0) if modality.upper() == "CT" else tuple(np.percentile(vol, [1, 99.5]))
    ids = sorted(int(k) for k in labels) if labels else [int(v) for v in np.unique(msk) if v != 0]
    rows = 1 if uncertainty is None else 2
    fig, axes = plt.subplots(rows, 3, figsize=(13, 5 * rows), facecolor="black", squeeze=False)
    if uncertainty is not None:
        unc, _ = _canonical(_np(uncertainty).reshape(m.shape).astype(np.float32), aff)
        for ax, (name, sl, ml, aspect) in zip(axes[1], _views(unc, msk, centre, sp)):
            heat = ax.imshow(sl, cmap="inferno", vmin=0.0, vmax=1.0, aspect=aspect, interpolation="nearest")
            ax.set_title(f"{name}: uncertainty", color="white")
            ax.axis("off")
        bar = fig.colorbar(heat, ax=list(axes[1]), fraction=0.02, pad=0.01)
        bar.set_label("predictive entropy (0 certain, 1 uniform)", color="white")
        bar.ax.tick_params(colors="white")
    for ax, (name, sl, ml, aspect) in zip(axes[0], _views(vol, msk, centre, sp)):
        ax.imshow(sl, cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
        for i, lab in enumerate(ids):
            if (ml == lab).any():
                ax.contour((ml == lab).astype(np.float32), levels=[0.5], colors=[COLOURS[i % len(COLOURS)]],
                           linewidths=1.2)
        ax.set_title(name, color="white")
        ax.axis("off")
    handles = [plt.Line2D([], [], color=COLOURS[i % len(COLOURS)], label=(labels or {}).get(lab, str(lab)))
               for i, lab in enumerate(ids)]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), facecolor="black", labelcolor="white")
    head = f"{title}  " if title else ""
    fig.suptitle(f"{head}radiological view: patient right on image left, anterior up (axial), "
                 f"anterior left (sagittal); slices through voxel {tuple(int(v) for v in centre)} (RAS-ordered)", color="white", fontsize=10)
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=80, facecolor="black", format="png")
    plt.close(fig)
    return out
