"""Fetch the real CT/MRI samples with tumour labels from the pyradiomics 3.0.1 source
distribution on PyPI into a cache (default ~/.cache/volseg, or $VOLSEG_CACHE)."""
from __future__ import annotations

import argparse

HELP = "download the real CT/MRI samples (pyradiomics 3.0.1 sdist) into a cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", default=None, help="cache folder (default: $VOLSEG_CACHE or ~/.cache/volseg)")


def run(args: argparse.Namespace) -> int:
    from volseg.data.samples import SAMPLE_FILES, fetch_samples

    folder = fetch_samples(args.cache_dir)
    print(folder)
    for name in SAMPLE_FILES:
        print(f"  {name}")
    return 0
