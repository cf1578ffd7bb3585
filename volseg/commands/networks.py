"""List the registered segmentation networks, or summarise one (parameters, MACs per forward pass)."""
from __future__ import annotations

import argparse
import json

HELP = "list networks; --summary NAME prints parameters and MACs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--summary", metavar="NAME", help="build NAME and count parameters and MACs")
    parser.add_argument("--spatial-dims", type=int, default=3, choices=(2, 3))
    parser.add_argument("--size", type=int, default=96, help="input edge length in voxels (default 96)")
    parser.add_argument("--in-channels", type=int, default=1)
    parser.add_argument("--out-channels", type=int, default=2)


def run(args: argparse.Namespace) -> int:
    from volseg.networks.registry import describe_networks

    if not args.summary:
        names = describe_networks()
        if args.json:
            print(json.dumps(names, indent=2))
        else:
            width = max(len(n) for n in names)
            for name, text in names.items():
                print(f"{name:<{width}}  {text}")
        return 0
    from volseg.networks import create_network
    from volseg.networks.summary import format_summary, model_summary

    net = create_network(args.summary, spatial_dims=args.spatial_dims, in_channels=args.in_channels,
                         out_channels=args.out_channels)
    summary = model_summary(net, (1, args.in_channels) + (args.size,) * args.spatial_dims)
    print(json.dumps(summary, indent=2) if args.json else f"{args.summary}: {format_summary(summary)}")
    return 0
