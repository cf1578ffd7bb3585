"""Helpers shared by the benchmark scripts: peak memory of a fresh child process."""
from __future__ import annotations

import resource
import subprocess
import sys
from typing import Sequence


def peak_rss_gb() -> float:
    """This process's peak resident memory in GB: ``VmHWM`` from /proc (Linux). ``ru_maxrss`` is only
    the fallback: Linux carries the parent's RSS at fork into a child's ru_maxrss across exec, so a
    child forked from a big parent would report the parent's size."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024 ** 2
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def child_peak_rss(script: str, args: Sequence[str]) -> float:
    """Run ``script args`` in a new Python process; its last stdout line is its peak RSS in GB."""
    out = subprocess.run([sys.executable, script, *args], capture_output=True, encoding="utf-8", errors="replace")
    if out.returncode != 0:
        raise RuntimeError(f"child {list(args)} failed:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def report(res: dict, first_s: float, agreement: str) -> None:
    """Print ``res`` as JSON and the one-line summary (times, compile, ratio, agreement)."""
    import json

    print(json.dumps(res, indent=2))
    print(f"plain MONAI {res['plain_s']:.2f} s | volseg {res['volseg_s']:.2f} s (first call "
          f"{first_s:.1f} s) | speed-up {res['ratio']:.2f}x | {agreement}")
