"""The whole prediction pipeline, volseg vs a plain MONAI script, side by side in one process.

One CT (a chest phantom, int16 HU, LPS-like axes, 0.8 x 0.8 x 1.5 mm) as NIfTI or as a DICOM
series, one ``ct_unet3d`` bundle with seeded random weights, the same network, ROI (96^3), overlap
(0.25), ``sw_batch_size`` (4) and preprocessing (orient RAS, resample to 1.5 x 1.5 x 2 mm, HU
window -> [0, 1], crop to the body). Both write a uint8 mask on the source grid.

* plain MONAI: ``LoadImaged`` + ``EnsureChannelFirstd`` + the same transforms ->
  ``sliding_window_inference`` -> ``AsDiscreted(argmax)`` -> ``Invertd`` (nearest) -> ``SaveImaged``.
* volseg: ``volseg.predict(input, output, predictor=Predictor(bundle))``; the Predictor (and its
  one-off ``torch.compile``) is built once, as for a batch of cases; its first call is reported apart.

Prints the median time of each over ``--repeats`` (interleaved), the ratio, voxel agreement of the
two masks (all voxels, and off exact nearest-neighbour ties) and whether their affines match; ``--rss`` adds the peak RSS of each path in its own
child process (compile included for volseg).

    python benchmarks/pipeline_vs_monai.py --shape 512 512 200
    python benchmarks/pipeline_vs_monai.py --shape 512 512 200 --input dicom --rss
    python benchmarks/pipeline_vs_monai.py --quick
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or loaded by path (tests)
from _common import child_peak_rss, peak_rss_gb, report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPACING = (0.8, 0.8, 1.5)


def make_bundle(work: Path) -> Path:
    """A copy of ``bundles/ct_unet3d``'s configs with seeded random weights in ``models/model.pt``."""
    from volseg.training import build_network

    bundle = work / "bundle"
    if not (bundle / "models" / "model.pt").is_file():
        shutil.copytree(ROOT / "bundles" / "ct_unet3d" / "configs", bundle / "configs", dirs_exist_ok=True)
        torch.manual_seed(0)
        net = build_network(name="unet", spatial_dims=3, in_channels=1, out_channels=3)
        (bundle / "models").mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), bundle / "models" / "model.pt")
    return bundle


def make_input(work: Path, shape: Sequence[int], kind: str) -> Path:
    """The phantom CT as ``ct.nii.gz`` (int16 HU) or a DICOM series folder ``ct_dicom/`` (cached)."""
    from volseg.data import make_phantom
    from volseg.io import save_volume, write_dicom_series

    tag = "x".join(map(str, shape))
    path = work / (f"ct_{tag}.nii.gz" if kind == "nifti" else f"ct_{tag}_dicom")
    if not path.exists():
        ph = make_phantom(shape=tuple(shape), spacing=SPACING, seed=0)
        img = ph.image.clone()
        img.data = torch.round(img.data).to(torch.int16)
        if kind == "nifti":
            save_volume(img, path)
        else:
            write_dicom_series(img, path)
    return path


def plain_pipeline(bundle: Path) -> Any:
    """A plain MONAI script: ``run(input, out_dir)`` writes ``<name>_seg.nii.gz`` and returns its path."""
    from monai.inferers import sliding_window_inference
    from monai.transforms import (AsDiscreted, Compose, CropForegroundd, EnsureChannelFirstd, EnsureTyped,
                                  Invertd, LoadImaged, Orientationd, SaveImaged, ScaleIntensityRanged, Spacingd)

    from volseg.training import build_network

    cfg = json.loads((bundle / "configs" / "inference.json").read_text())
    net = build_network(name="unet", spatial_dims=3, in_channels=1, out_channels=3)
    net.load_state_dict(torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True))
    net.eval()
    lo, hi = cfg["hu_window"]
    pre = Compose([
        LoadImaged("image"), EnsureChannelFirstd("image"),
        EnsureTyped("image", dtype=torch.float32, track_meta=True), Orientationd("image", axcodes="RAS"),
        Spacingd("image", pixdim=cfg["pixdim"], mode="bilinear"),
        ScaleIntensityRanged("image", a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True),
        CropForegroundd("image", source_key="image", select_fn=lambda x: x > 0, margin=2, allow_smaller=True),
    ])

    def run(path: Path, out_dir: Path) -> Path:
        data = pre({"image": str(path)})
        with torch.no_grad():
            data["pred"] = sliding_window_inference(data["image"][None], cfg["roi_size"], cfg["sw_batch_size"], net,
                                                    overlap=cfg["overlap"], mode="gaussian")[0]
        post = Compose([
            AsDiscreted("pred", argmax=True),
            Invertd("pred", transform=pre, orig_keys="image", nearest_interp=True, to_tensor=True),
            SaveImaged("pred", output_dir=str(out_dir), output_postfix="seg", output_dtype=np.uint8,
                       separate_folder=False, resample=False, print_log=False),
        ])
        post(data)
        return next(out_dir.glob("*_seg.nii.gz"))

    return run


def volseg_pipeline(bundle: Path, backend: str) -> Any:
    from volseg.inference import Predictor, predict

    predictor = Predictor(bundle, device="cpu", backend=backend)

    def run(path: Path, out_dir: Path) -> Path:
        out = out_dir / "ct_mask.nii.gz"
        predict(str(path), str(out), predictor=predictor, progress=False)
        return out

    return run


def off_ties_agreement(bundle: Path, path: Path, ma: np.ndarray, mb: np.ndarray) -> float:
    """Agreement of the two masks over the source voxels that are not exactly half-way between two
    model-grid voxels (where nearest neighbour has two right answers: MONAI's float32 grid and
    volseg's exact indices may pick either)."""
    from volseg.inference import Predictor
    from volseg.inference.invert import tie_voxels
    from volseg.io import load_volume

    image = load_volume(str(path))
    model = Predictor(bundle, device="cpu", backend="eager").preprocess(image)["image"]
    tie = tie_voxels(model.affine, image.affine, ma.shape)
    return float((ma == mb)[~tie].mean())


def _timed(run: Any, path: Path, out_dir: Path) -> float:
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    t0 = time.perf_counter()
    run(path, out_dir)
    return time.perf_counter() - t0


def child(args: argparse.Namespace) -> None:
    work = Path(args.workdir)
    path = make_input(work, args.shape, args.input)
    bundle = make_bundle(work)
    run = plain_pipeline(bundle) if args.child == "plain" else volseg_pipeline(bundle, args.backend)
    _timed(run, path, work / f"out_child_{args.child}")
    print(peak_rss_gb())


def main(argv: List[str] = None) -> Dict[str, Any]:
    import nibabel as nib

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", type=int, nargs=3, default=[512, 512, 200])
    p.add_argument("--input", choices=("nifti", "dicom"), default="nifti")
    p.add_argument("--backend", choices=("auto", "eager", "channels_last", "aoti", "openvino"), default="auto")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "volseg-bench-pipeline"))
    p.add_argument("--quick", action="store_true", help="256x256x64, 1 repeat: a smoke test")
    p.add_argument("--rss", action="store_true", help="also measure peak RSS of each path in a child process")
    p.add_argument("--child", choices=("plain", "volseg"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.shape, args.repeats = [256, 256, 64], 1
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if args.child:
        child(args)
        return {}
    t0 = time.perf_counter()
    path = make_input(work, args.shape, args.input)
    bundle = make_bundle(work)
    print(f"input {path} ready ({time.perf_counter() - t0:.1f} s)", flush=True)
    plain = plain_pipeline(bundle)
    t0 = time.perf_counter()
    fast = volseg_pipeline(bundle, args.backend)
    first_s = _timed(fast, path, work / "out_volseg") + (time.perf_counter() - t0)
    t_plain, t_vs = [], []
    for _ in range(args.repeats):
        t_plain.append(_timed(plain, path, work / "out_plain"))
        t_vs.append(_timed(fast, path, work / "out_volseg"))
    a = nib.load(str(next((work / "out_plain").glob("*_seg.nii.gz"))))
    b = nib.load(str(work / "out_volseg" / "ct_mask.nii.gz"))
    ma, mb = np.asarray(a.dataobj).squeeze(), np.asarray(b.dataobj).squeeze()
    res: Dict[str, Any] = {
        "shape": args.shape, "input": args.input, "backend": args.backend, "threads": torch.get_num_threads(),
        "plain_s": statistics.median(t_plain), "volseg_s": statistics.median(t_vs),
        "volseg_first_call_s": first_s, "ratio": statistics.median(t_plain) / statistics.median(t_vs),
        "mask_shapes": [list(ma.shape), list(mb.shape)],
        "agreement": float((ma == mb).mean()) if ma.shape == mb.shape else None,
        "agreement_off_ties": off_ties_agreement(bundle, path, ma, mb),
        "affines_equal": bool(np.allclose(a.affine, b.affine, atol=1e-4)),
        "mask_dtypes": [a.get_data_dtype().name, b.get_data_dtype().name],
    }
    if args.rss:
        common = ["--shape", *map(str, args.shape), "--input", args.input, "--backend", args.backend,
                  "--workdir", str(work)]
        res["plain_peak_rss_gb"] = child_peak_rss(__file__, ["--child", "plain", *common])
        res["volseg_peak_rss_gb"] = child_peak_rss(__file__, ["--child", "volseg", *common])
    report(res, first_s, f"mask agreement {res['agreement']:.6f} ({res['agreement_off_ties']:.6f} off exact ties)")
    return res


if __name__ == "__main__":
    main()
