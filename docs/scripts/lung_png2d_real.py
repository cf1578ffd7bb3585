"""The real-CT figures of docs/tutorial_2d.md section 6 (about 2 minutes on 2 CPU cores).

    python docs/scripts/lung_png2d_real.py --samples DIR --out /tmp/lung_png2d_real

DIR holds the pyradiomics 3.0.1 ``data/`` files (``lung1_image.nrrd`` ...); without
``--samples`` they come from ``volseg.data.fetch_samples()``. lung1 is cut into PNG pairs
(tumour label + a lung class from an HU threshold), a 2D U-Net is trained on its slices, and
both lung1 and lung2 volumes are predicted through ``bundles/lung_png2d/configs/inference.json``.
Training is the bundle's (``volseg.training.run_bundle``) with a smaller network and settings.
Prints Dice per class and the mask's affine against SimpleITK's reading of the NRRD.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
PALETTE = {"0": [0, 0, 0], "1": [0, 0, 255], "2": [0, 255, 0]}
NET = {"_target_": "monai.networks.nets.UNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 3,
       "channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 1}


def read(path: Path):
    """SimpleITK (independent reader): array (X, Y, Z) and voxel -> RAS affine."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    lps = np.eye(4)
    lps[:3, :3] = np.array(img.GetDirection()).reshape(3, 3) @ np.diag(img.GetSpacing())
    lps[:3, 3] = img.GetOrigin()
    return sitk.GetArrayFromImage(img).transpose(2, 1, 0).astype(np.float32), np.diag([-1, -1, 1, 1]) @ lps


def three_classes(ct: np.ndarray, tumour: np.ndarray) -> np.ndarray:
    """0 background, 1 tumour (expert label), 2 lung (HU < -400, not touching the border: a threshold mask)."""
    from scipy import ndimage

    air = ct < -400
    lab, n = ndimage.label(air)
    border = set(np.unique(np.r_[lab[0].ravel(), lab[-1].ravel(), lab[:, 0].ravel(), lab[:, -1].ravel()]).tolist())
    sizes = ndimage.sum(air, lab, range(1, n + 1))
    keep = [i + 1 for i, s in enumerate(sizes) if (i + 1) not in border and s > 5000]
    lung = ndimage.binary_opening(np.isin(lab, keep), iterations=1)
    return np.where(tumour > 0, 1, np.where(lung, 2, 0)).astype(np.uint8)


def main() -> None:
    import torch
    from monai.bundle import run as bundle_run
    from monai.data import MetaTensor

    from volseg.data.png import png_split
    from volseg.data.png_slices import volume_to_png_slices
    from volseg.training import run_bundle

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=Path, help="folder with lung1_image.nrrd ... (default: fetch_samples())")
    ap.add_argument("--out", type=Path, default=Path("lung_png2d_real"))
    ap.add_argument("--epochs", type=int, default=40)
    args = ap.parse_args()
    if args.samples is None:
        from volseg.data import fetch_samples

        args.samples = Path(fetch_samples())
    out = args.out
    shutil.rmtree(out, ignore_errors=True)
    (out / "scans").mkdir(parents=True)
    refs = {}
    for case in ("lung1", "lung2"):
        ct, aff = read(args.samples / f"{case}_image.nrrd")
        tumour, _ = read(args.samples / f"{case}_label.nrrd")
        refs[case] = (three_classes(ct, tumour), aff)
        shutil.copy(args.samples / f"{case}_image.nrrd", out / "scans" / f"{case}.nrrd")
        if case == "lung1":
            image = MetaTensor(torch.from_numpy(ct[None]), affine=torch.from_numpy(aff))
            volume_to_png_slices(image, refs[case][0], out / "lung1_png", window=(-1000, 400), palette=PALETTE)
    res = run_bundle(REPO / "bundles" / "lung_png2d", out / "lung1_png", output_dir=out / "run",
                     overrides={"network_def": NET, "palette": PALETTE, "max_epochs": args.epochs, "batch_size": 8,
                                "patience": 5, "patience_steps": 0, "learning_rate": 3e-3, "device": "cpu",
                                "seed": 0})
    split = png_split(out / "lung1_png", seed=42)
    bundle_run(config_file=str(REPO / "bundles" / "lung_png2d" / "configs" / "inference.json"),
               input_dir=str(out / "scans"), output_dir=str(out / "run"), network_def=NET)
    import nibabel as nib

    rows = {"train": {"epochs_run": res["epochs"], "best_epoch": res["best_epoch"],
                      **{f"n_{k}": len(v) for k, v in split.items()}},
            "test_slices": res["test_metrics"]["dice"]}
    for case, (ref, aff) in refs.items():
        m = nib.load(out / "run" / "predictions" / f"{case}_seg.nii.gz")
        pred = np.asarray(m.dataobj)
        dice = {name: float(2 * ((pred == c) & (ref == c)).sum() / max((pred == c).sum() + (ref == c).sum(), 1))
                for c, name in ((1, "tumour"), (2, "lung"))}
        rows[case] = {"dice": dice, "affine_max_diff_mm": float(np.abs(m.affine - aff).max()),
                      "predicted_tumour_voxels": int((pred == 1).sum()), "tumour_voxels": int((ref == 1).sum())}
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
