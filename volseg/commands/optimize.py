"""volseg optimize: build a bundle's fast forward pass once (an AOTInductor package, or an OpenVINO model),
so that every later `volseg predict -m BUNDLE` on this machine loads it in about a second instead of
compiling. The artifact is tied to the weights, the torch version, this CPU's instruction set, the
window (sw_batch_size x channels x roi_size) and the precision; predict falls back to the eager
network, with a one-line note, whenever any of them differs."""
from __future__ import annotations

import argparse
import importlib.util

HELP = "build a bundle's compiled forward pass once (AOTInductor / OpenVINO) for fast predicts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="trained bundle folder (configs/inference.json + models/model.pt)")
    parser.add_argument("--backend", default="auto", choices=["auto", "openvino", "aoti"],
                        help="openvino: OpenVINO model (needs `pip install openvino`; the faster one measured); "
                             "aoti: AOTInductor package; auto (default): openvino when installed, else aoti")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                        help="bf16 only on CPUs with AVX512-BF16 or AMX (else fp32, with a note)")
    parser.add_argument("--roi-size", type=int, nargs="+", default=None, metavar="N",
                        help="window size in voxels (default: the bundle's); must match what predict uses")
    parser.add_argument("--sw-batch-size", type=int, default=None, help="windows per call (default: the bundle's)")
    parser.add_argument("--user-cache", action="store_true",
                        help="write to the user cache instead of BUNDLE/models/optimized (a read-only bundle)")


def run(args: argparse.Namespace) -> int:
    from volseg.errors import ConfigError
    from volseg.inference.backends import build_artifact, resolve_precision, window_shape
    from volseg.inference.predictor import Predictor

    pred = Predictor(args.bundle, device="cpu", backend="eager", roi_size=args.roi_size,
                     sw_batch_size=args.sw_batch_size, progress=False)
    if pred.spec is None:
        raise ConfigError("the bundle's inferer is not a sliding window: there is no fixed window to build for",
                          args.bundle)
    if any(r is None or int(r) <= 0 for r in pred.spec.roi_size):
        raise ConfigError("the bundle's window takes the image's size on some axis; give --roi-size", args.bundle)
    window = window_shape(pred.network, pred.spec.sw_batch_size, pred.spec.roi_size, pred.in_channels)
    precision = resolve_precision(args.precision, "cpu")
    out = None if args.user_cache else pred.cache_dir
    backend = args.backend
    if backend == "auto":
        backend = "openvino" if importlib.util.find_spec("openvino") is not None else "aoti"
    path = build_artifact(pred.network, window, backend, precision, cache_dir=out)
    print(f"wrote {path} ({backend} {precision}, window {'x'.join(map(str, window))}); "
          f"volseg predict -m {args.bundle} loads it")
    return 0
