"""The lung_png2d recipe comparison of the bundle's docs/README.md (about 1 to 2 hours on 2 busy CPU cores).

    python docs/scripts/png2d_recipes.py --out /tmp/png2d_recipes --seeds 0 1

A small real-image PNG set like the one in issue 13 (a head CT as RGB grey PNGs, labels air /
bone / soft tissue): the 109 axial slices of the pyradiomics chest CTs lung1 and lung2
(``volseg.data.fetch_samples()``) as RGB grey PNGs (window -1000..400 HU) with colour labels
by HU threshold: black air and lung (< -200 HU), blue bone (>= 300 HU, 1.6 % of the pixels),
green soft tissue. Threshold labels on real images: a check that a recipe learns a small class,
not anatomy. Each recipe (``default``, ``seed``) trains once per seed, as
``volseg train lung_png2d --recipe R seed=S base_channels=8 roi_size=[64,64]`` does (65 training
slices, batch 16: 5 optimizer steps per epoch); the split (``split_seed`` 42) is the same for all.
Prints test Dice per class for every run.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
LABELS = {"1": "bone", "2": "soft"}


def make_set(out: Path, samples: Path) -> None:
    """``out/images`` (RGB grey) + ``out/labels`` (palette PNGs) from lung1 and lung2."""
    from PIL import Image

    from docs.scripts.lung_png2d_real import read
    from volseg.data.png_slices import window_to_uint8
    from volseg.io.png import save_label_png

    (out / "images").mkdir(parents=True, exist_ok=True)
    for case in ("lung1", "lung2"):
        ct, _ = read(samples / f"{case}_image.nrrd")
        lab = np.where(ct >= 300, 1, np.where(ct >= -200, 2, 0)).astype(np.uint8)
        grey = window_to_uint8(ct, (-1000, 400))
        for k in range(ct.shape[2]):
            name = f"{case}_z{k:04d}.png"
            Image.fromarray(np.repeat(grey[:, :, k].T[..., None], 3, axis=2)).save(out / "images" / name)
            save_label_png(lab[:, :, k], out / "labels" / name)


def main() -> None:
    from volseg.training import recipe_config_files, run_bundle

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=Path, help="folder with lung1_image.nrrd ... (default: fetch_samples())")
    ap.add_argument("--out", type=Path, default=Path("png2d_recipes"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--recipes", nargs="+", default=["seed", "default"])
    args = ap.parse_args()
    if args.samples is None:
        from volseg.data import fetch_samples

        args.samples = Path(fetch_samples())
    data = args.out / "pngs"
    if not (data / "labels").is_dir():
        make_set(data, args.samples)
    bundle = REPO / "bundles" / "lung_png2d"
    rows = []
    for recipe in args.recipes:
        for seed in args.seeds:
            res = run_bundle(bundle, data, output_dir=args.out / f"{recipe}_{seed}",
                             config_files=recipe_config_files(bundle, recipe),
                             overrides={"seed": seed, "base_channels": 8, "roi_size": [64, 64], "labels": LABELS})
            test = res["test_metrics"]
            rows.append({"recipe": recipe, "seed": seed, "epochs": res["epochs"], "best_epoch": res["best_epoch"],
                         "test_accuracy": round(test["accuracy"], 4),
                         **{f"test_dice_{k}": None if v is None else round(v, 3) for k, v in test["dice"].items()}})
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
