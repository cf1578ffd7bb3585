"""Benchmark: ``volseg convert`` of the real 512x512x48 lung CT DICOM series vs SimpleITK.

The series is written by plastimatch from pyradiomics' ``lung1_image.nrrd`` (fetched with
``volseg.data.fetch_samples``). Prints median wall times of N runs (default 3) for:
``volseg convert DICOMDIR out.nii.gz`` as a CLI process, SimpleITK ImageSeriesReader + WriteImage
as a CLI process (``python -c``), and both in-process (no interpreter start). Usage::

    python benchmarks/io_convert.py [--repeats 3] [--workdir /tmp/volseg_bench]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SITK_SNIPPET = (
    "import sys, SimpleITK as sitk; r = sitk.ImageSeriesReader(); "
    "r.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(sys.argv[1])); "
    "sitk.WriteImage(r.Execute(), sys.argv[2], True)"
)


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    plm = shutil.which("plastimatch")
    if plm is None:
        print("plastimatch not installed (Debian package plastimatch)", file=sys.stderr)
        return 1
    from volseg.data import fetch_samples

    work = Path(args.workdir or tempfile.mkdtemp(prefix="volseg_bench_"))
    dcm = work / "lung1_dicom"
    if not dcm.exists():
        subprocess.run([plm, "convert", "--input", str(fetch_samples() / "lung1_image.nrrd"), "--output-dicom",
                        str(dcm)], check=True, capture_output=True)
    out_v, out_s = work / "volseg.nii.gz", work / "sitk.nii.gz"
    volseg_cli = [sys.executable, "-m", "volseg", "convert", str(dcm), str(out_v)]
    sitk_cli = [sys.executable, "-c", SITK_SNIPPET, str(dcm), str(out_s)]
    rows = [
        ("volseg convert (CLI process)", _median_time(lambda: subprocess.run(volseg_cli, check=True, capture_output=True), args.repeats)),
        ("SimpleITK read+write (CLI process)", _median_time(lambda: subprocess.run(sitk_cli, check=True, capture_output=True), args.repeats)),
    ]
    import SimpleITK as sitk

    from volseg.io import save_volume
    from volseg.io.readers import read_image

    def sitk_inproc():
        r = sitk.ImageSeriesReader()
        r.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(dcm)))
        sitk.WriteImage(r.Execute(), str(out_s), True)

    rows.append(("volseg read_image+save_volume (in-process)", _median_time(lambda: save_volume(read_image(dcm), out_v), args.repeats)))
    rows.append(("SimpleITK read+write (in-process)", _median_time(sitk_inproc, args.repeats)))
    print(f"lung1 CT series 512x512x48 (plastimatch DICOM), median of {args.repeats}:")
    for name, t in rows:
        print(f"  {name:45s} {t:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
