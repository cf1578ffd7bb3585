"""Write a synthetic chest CT phantom dataset (MSD layout: imagesTr, labelsTr, dataset.json)
with labels 0 background, 1 lung, 2 lesion."""
from __future__ import annotations

import argparse

HELP = "write a synthetic CT phantom dataset (lung + lesion labels)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", help="output dataset folder")
    parser.add_argument("--cases", type=int, default=4, help="number of cases (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first case (default 0)")
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 96, 64), metavar=("X", "Y", "Z"),
                        help="voxels per case (default 96 96 64)")
    parser.add_argument("--spacing", type=float, nargs=3, default=(1.5, 1.5, 2.5), metavar=("SX", "SY", "SZ"),
                        help="voxel size in mm (default 1.5 1.5 2.5)")
    parser.add_argument("--lesions", type=int, default=2, help="lesions per case (default 2)")
    parser.add_argument("--modality", choices=("CT", "MR"), default="CT",
                        help="CT (HU, default) or MR: the same anatomy on an MRI-like scale (background ~0, "
                             "arbitrary units up to ~3400)")


def run(args: argparse.Namespace) -> int:
    from volseg.data.phantom import write_phantom_dataset

    out = write_phantom_dataset(args.out_dir, n_cases=args.cases, seed=args.seed, shape=tuple(args.shape),
                                spacing=tuple(args.spacing), n_lesions=args.lesions, modality=args.modality)
    print(f"wrote {args.cases} phantom case(s) to {out} (dataset.json, imagesTr, labelsTr)")
    return 0
