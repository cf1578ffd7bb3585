"""Write the shipped bundles' configs from one template and a small table of what differs.

    python -m volseg.bundles.generate            # rewrite bundles/*/configs from the table
    python -m volseg.bundles.generate --check    # exit 1 when a file is stale (a test runs this)

The 3D bundles (:data:`BUNDLES`: ``ct_unet3d``, ``ct_deeplab3d``, ``mri_unet3d``) get every config
from :mod:`volseg.bundles.templates`; their labels are written from the table row, once into
``metadata.json``'s ``channel_def`` and from there's row into ``train.json`` / ``inference.json``
(a test checks they agree). ``evaluate.json``, ``multi_gpu_train.json`` and ``logging.conf`` have
one source each. ``lung_png2d`` shares only ``multi_gpu_train.json`` and ``logging.conf``: its
training and inference (PNG pairs, a held-out test split, recipes, a palette) have almost nothing
in common with the 3D template, so a row for it would be its whole config; its own files stay
hand-written. Bundle ``docs/`` and ``LICENSE`` are not generated.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from volseg.bundles import templates


@dataclass(frozen=True)
class Bundle3D:
    """One 3D bundle: what differs from the template. ``labels``: ``{"1": "lung", ...}`` without
    background, the one place a bundle's classes are written."""

    name: str
    modality: str  # "CT" (HU window) or "MR" (z-score over non-zero voxels)
    network: str  # volseg.networks registry name
    network_text: str  # the family in words, for metadata.json
    task: str
    labels: Dict[str, str] = field(default_factory=dict)
    pixdim: Tuple[float, float, float] = (1.5, 1.5, 2.0)  # mm
    dataset_dir: str = "data/ct_phantoms"


BUNDLES: Tuple[Bundle3D, ...] = (
    Bundle3D("ct_unet3d", "CT", "unet", "residual U-Net", "Lung and lesion segmentation on chest CT",
             {"1": "lung", "2": "lesion"}),
    Bundle3D("ct_deeplab3d", "CT", "deeplab", "DeepLabV3+-style",
             "Lung and lesion segmentation on chest CT (DeepLabV3+-style 3D network)", {"1": "lung", "2": "lesion"}),
    Bundle3D("mri_unet3d", "MR", "unet", "residual U-Net", "Tumour segmentation on MRI (z-scored per channel)",
             {"1": "tumour"}, pixdim=(1.0, 1.0, 1.0), dataset_dir="data/mri"),
)
#: bundles that take only the files every bundle shares
SHARED_ONLY = ("lung_png2d",)


def _json(doc: Dict) -> str:
    return json.dumps(doc, indent=4) + "\n"


def render() -> Dict[str, str]:
    """``{"<bundle>/configs/<file>": text}`` for every generated file."""
    shared = {"multi_gpu_train.json": _json(templates.MULTI_GPU_TRAIN), "logging.conf": templates.LOGGING_CONF}
    files: Dict[str, str] = {}
    for b in BUNDLES:
        docs = {"metadata.json": templates.metadata(b), "train.json": templates.train_config(b),
                "inference.json": templates.inference_config(b), "evaluate.json": templates.EVALUATE}
        files.update({f"{b.name}/configs/{k}": _json(v) for k, v in docs.items()})
        files.update({f"{b.name}/configs/{k}": v for k, v in shared.items()})
    for name in SHARED_ONLY:
        files.update({f"{name}/configs/{k}": v for k, v in shared.items()})
    return files


def stale(root: Path) -> List[str]:
    """The generated files under ``root`` (the ``bundles/`` folder) that differ from :func:`render`."""
    out = []
    for rel, text in render().items():
        path = root / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            out.append(rel)
    return out


def write(root: Path) -> List[str]:
    """Rewrite the stale files under ``root`` (atomic); returns what changed."""
    from volseg._atomic import atomic_path

    changed = stale(root)
    files = render()
    for rel in changed:
        with atomic_path(root / rel) as tmp:
            Path(tmp).write_text(files[rel], encoding="utf-8")
    return changed


def _default_root() -> Optional[Path]:
    from volseg.bundles.shipped import _checkout

    return _checkout()


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m volseg.bundles.generate",
                                 description="write (or --check) the shipped bundles' configs from one template")
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when a file is stale")
    ap.add_argument("--root", default=None, help="the bundles/ folder (default: the source checkout's)")
    args = ap.parse_args(argv)
    root = Path(args.root) if args.root else _default_root()
    if root is None:
        print("no source checkout's bundles/ found: give --root", file=sys.stderr)
        return 2
    if args.check:
        bad = stale(root)
        for rel in bad:
            print(f"{root / rel} is stale: run python -m volseg.bundles.generate", file=sys.stderr)
        return 1 if bad else 0
    for rel in write(root):
        print(f"wrote {root / rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
