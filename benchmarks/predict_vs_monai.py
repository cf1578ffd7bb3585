"""volseg's sliding-window inference path vs plain MONAI, side by side in one process.

Same network (``create_network("unet")`` = MONAI UNet (16,32,64,128,256), 4.81 M params), same
weights, ROI, overlap, sw_batch_size and volume. Plain MONAI = ``sliding_window_inference`` +
``torch.argmax``; volseg = ``volseg.inference.sliding.blend_slabs`` (the same
windows and Gaussian weights, blended a few slabs at a time straight into a uint8 label map) with
the forward pass of ``volseg.inference.backends.make_forward`` (``--backend``, default ``auto``:
a cached artifact when ``volseg optimize`` built one, else the eager network). Runs are interleaved
and the median of ``--repeats`` is reported; the first call is reported separately. Peak RSS of each
path is measured in its own child
process (``--rss``), so the two do not contaminate each other.

    python benchmarks/predict_vs_monai.py --quick            # 128x128x64, smoke test (~1 min)
    python benchmarks/predict_vs_monai.py                    # 256x256x128 (~3 min on 2 cores)
    python benchmarks/predict_vs_monai.py --shape 512 512 200 --repeats 3
    python benchmarks/predict_vs_monai.py --rss --shape 512 512 600 --classes 3
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or loaded by path (tests)
from _common import child_peak_rss, peak_rss_gb, report  # noqa: E402


def build(classes: int, seed: int = 0) -> torch.nn.Module:
    from volseg.networks import create_network

    torch.manual_seed(seed)
    net = create_network("unet", spatial_dims=3, in_channels=1, out_channels=classes).eval()
    return net


def volume(shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    """A CT-like phantom scaled to [0, 1] (HU window -1000..400), ``(1, X, Y, Z)`` float32."""
    from volseg.data import make_phantom

    ph = make_phantom(shape=tuple(shape), spacing=(0.8, 0.8, 1.5), seed=seed)
    img = ph.image.as_tensor() if hasattr(ph.image, "as_tensor") else torch.as_tensor(ph.image)
    return ((img.float() + 1000.0) / 1400.0).clamp(0, 1)


def run_plain(net: torch.nn.Module, img: torch.Tensor, roi, overlap: float, swb: int) -> torch.Tensor:
    from monai.inferers import sliding_window_inference

    with torch.inference_mode():
        out = sliding_window_inference(img[None], roi, swb, net, overlap=overlap, mode="gaussian")
        return torch.argmax(out[0], dim=0).to(torch.uint8)


def run_volseg(fast, img: torch.Tensor, roi, overlap: float, swb: int) -> torch.Tensor:
    """volseg's streamed blend (``StreamingInferer``'s slabs), argmax slab by slab."""
    from volseg.inference.sliding import WindowSpec, blend_slabs

    spec = WindowSpec(roi_size=tuple(roi), sw_batch_size=swb, overlap=overlap, mode="gaussian")
    labels = torch.empty(img.shape[1:], dtype=torch.uint8)
    with torch.inference_mode():
        for z0, z1, slab in blend_slabs(img, fast, spec):
            labels[..., z0:z1] = slab.max(dim=0).indices
    return labels


def peak_rss(mode: str, args: argparse.Namespace) -> float:
    """Peak RSS (GB) of one path in a fresh child process."""
    return child_peak_rss(__file__, ["--child", mode, "--shape", *map(str, args.shape), "--classes",
                                     str(args.classes), "--overlap", str(args.overlap), "--sw-batch-size",
                                     str(args.sw_batch_size), "--backend", args.backend])


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads or torch.get_num_threads())
    net = build(args.classes)
    # a cheap float32 volume: the phantom generator's own float64 peak would mask the inference peak
    img = torch.rand((1, *args.shape), generator=torch.Generator().manual_seed(0))
    roi = (96, 96, 96)
    if args.child == "plain":
        run_plain(net, img, roi, args.overlap, args.sw_batch_size)
    else:
        from volseg.inference.backends import make_forward

        forward = make_forward(build(args.classes), (args.sw_batch_size, 1, *roi), "cpu", backend=args.backend)
        run_volseg(forward, img, roi, args.overlap, args.sw_batch_size)
    print(peak_rss_gb())


def main(argv: List[str] = None) -> Dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", type=int, nargs=3, default=[256, 256, 128])
    p.add_argument("--classes", type=int, default=2)
    p.add_argument("--overlap", type=float, default=0.25)
    p.add_argument("--sw-batch-size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--backend", default="auto", help="volseg forward backend (volseg.inference.backends.BACKENDS)")
    p.add_argument("--quick", action="store_true", help="128x128x64, 1 repeat: a smoke test")
    p.add_argument("--rss", action="store_true", help="also measure peak RSS of each path in a child process")
    p.add_argument("--child", choices=("plain", "volseg"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return {}
    if args.quick:
        args.shape, args.repeats = [128, 128, 64], 1
    if args.threads:
        torch.set_num_threads(args.threads)
    from volseg.inference.backends import make_forward

    roi = (96, 96, 96)
    img = volume(args.shape)
    plain_net = build(args.classes)
    fast = make_forward(build(args.classes), (args.sw_batch_size, 1, *roi), "cpu", backend=args.backend)  # same weights
    t0 = time.perf_counter()
    first = run_volseg(fast, img, roi, args.overlap, args.sw_batch_size)
    first_s = time.perf_counter() - t0
    t_plain, t_vs = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ref = run_plain(plain_net, img, roi, args.overlap, args.sw_batch_size)
        t_plain.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        got = run_volseg(fast, img, roi, args.overlap, args.sw_batch_size)
        t_vs.append(time.perf_counter() - t0)
    assert torch.equal(got, first)
    agree = (got == ref).float().mean().item()
    balance = torch.bincount(ref.flatten().long(), minlength=args.classes).float() / ref.numel()
    res = {
        "shape": args.shape, "threads": torch.get_num_threads(), "plain_s": statistics.median(t_plain),
        "volseg_s": statistics.median(t_vs), "volseg_first_call_s": first_s,
        "ratio": statistics.median(t_plain) / statistics.median(t_vs), "agreement": agree,
        "class_balance": [round(b, 4) for b in balance.tolist()],
    }
    if args.rss:
        res["plain_peak_rss_gb"] = peak_rss("plain", args)
        res["volseg_peak_rss_gb"] = peak_rss("volseg", args)
    report(res, first_s, f"argmax agreement {agree:.6f} ({fast!r})")
    return res


if __name__ == "__main__":
    main()
