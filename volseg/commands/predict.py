"""volseg predict: segment DICOM/NIfTI/NRRD/MHA volumes with a trained bundle (sliding window, masks on the source grid)."""
from __future__ import annotations

import argparse

from volseg.commands._options import add_nan_to

HELP = "segment volumes with a trained bundle: NIfTI masks / DICOM SEG on the source grid"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", required=True,
                        help="DICOM series folder, .nii/.nii.gz/.nrrd/.mha file, folder of volumes, or dataset.json")
    parser.add_argument("-o", "--output", required=True,
                        help="mask file (.nii.gz, .seg.dcm or .png, one input) or output folder (<case>.nii.gz, "
                             "or <case>.png for PNG inputs)")
    parser.add_argument("-m", "--model", required=True,
                        help="MONAI bundle folder (configs/inference.json or .yaml + models/model.pt), a training "
                             "output folder (models/model.pt; give --config) or a weights file")
    parser.add_argument("--config", nargs="+", default=None, metavar="PATH",
                        help="the bundle that defines the inference (folder or config files, merged in order); "
                             "default: the model folder's configs/inference.json|yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="set a bundle config item before anything is built, as monai.bundle run's --KEY VALUE "
                             "(any id, '#' paths: --set inferer#overlap=0.5); repeatable")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the full-size mask is kept")
    parser.add_argument("--sw-device", default=None, choices=["cpu", "cuda"],
                        help="where the network windows run and are blended, a few slabs at a time (default: "
                             "--device); --device cpu --sw-device cuda fits volumes larger than GPU memory")
    parser.add_argument("--roi-size", type=int, nargs="+", default=None, metavar="N",
                        help="sliding-window size in voxels (default: the bundle's)")
    parser.add_argument("--overlap", type=float, default=None, help="window overlap 0..1 (default: the bundle's, else 0.25)")
    parser.add_argument("--sw-batch-size", type=int, default=None, help="windows per network call")
    parser.add_argument("--tta", action="store_true", help="average all mirrorings of the spatial axes (2^dims x slower)")
    parser.add_argument("--no-amp", action="store_true", help="no float16 autocast on CUDA (same as --precision fp32)")
    parser.add_argument("--backend", default="auto", choices=["auto", "eager", "channels_last", "aoti", "openvino"],
                        help="the network's forward pass. auto: a pass built once by `volseg optimize` when one "
                             "matches (loads in about a second), else plain PyTorch; never compiles per process. "
                             "eager: plain PyTorch; channels_last; aoti/openvino: build the artifact if missing")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                        help="auto: fp32 on CPU, float16 autocast on CUDA where the bundle uses AMP; bf16: CPUs "
                             "with AVX512-BF16/AMX or CUDA (else fp32, with a note)")
    parser.add_argument("--format", default="auto", choices=["auto", "nifti", "png", "dicom-seg", "both"],
                        help="mask format. auto: from the -o name, else a colour label PNG in the bundle's palette "
                             "for PNG inputs and NIfTI otherwise; dicom-seg/both need a DICOM input")
    parser.add_argument("--save-probabilities", nargs="?", const="uint8", default=False, choices=["uint8", "float32"],
                        help="also write <case>_prob.nii.gz (uint8 x 1/255, or float32)")
    parser.add_argument("--stats", action="store_true", help="write <case>_stats.csv/.json: voxels, mL, mean intensity")
    parser.add_argument("--overlay", action="store_true", help="write <case>_overlay.png (radiological display)")
    parser.add_argument("--uncertainty", action="store_true",
                        help="also write <case>_uncertainty.nii.gz: predictive entropy (0 certain .. 1 uniform) over "
                             "the mirrored TTA passes (and MC dropout where the network has dropout); adds "
                             "mean_uncertainty per label to --stats and a heat-map row to --overlay (implies --tta)")
    parser.add_argument("--keep-largest", action="store_true", help="keep the largest connected component per label")
    parser.add_argument("--series", default=None, metavar="UID", help="DICOM SeriesInstanceUID (or unique prefix)")
    add_nan_to(parser)
    parser.add_argument("--trust-bundle", action="store_true",
                        help="let the bundle run code outside volseg's safe subset (its own scripts/, arbitrary $ "
                             "expressions): only for bundles you trust; see docs/security.md")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from volseg.bundles.config import parse_overrides
    from volseg.inference.batch import predict

    result = predict(
        args.input, args.output, model=args.model, config=args.config, overrides=parse_overrides(args.overrides),
        device=args.device, sw_device=args.sw_device,
        roi_size=args.roi_size, overlap=args.overlap, sw_batch_size=args.sw_batch_size, tta=args.tta,
        amp=not args.no_amp, precision=args.precision, keep_largest=args.keep_largest, format=args.format,
        save_probabilities=args.save_probabilities, stats=args.stats, overlay=args.overlay, series=args.series,
        backend=args.backend, progress=not args.quiet, trust_bundle=args.trust_bundle, nan_to=args.nan_to,
        uncertainty=args.uncertainty,
    )
    n = len(result) if isinstance(result, dict) else 1
    print(f"wrote {n} case(s) to {args.output}")
    return 0
