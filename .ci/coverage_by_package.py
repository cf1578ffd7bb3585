"""Print line coverage per volseg sub-package from the combined ``.coverage`` data (CI, after pytest).

Run from the repository root: ``python .ci/coverage_by_package.py [DATA_FILE]``. Files never
imported count as 0 % (coverage's ``source_pkgs`` lists them).
"""
from __future__ import annotations

import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path


def main(data_file: str = ".coverage") -> int:
    import coverage

    cov = coverage.Coverage(data_file=data_file)
    cov.load()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "coverage.json"
        cov.json_report(outfile=str(out))
        files = json.loads(out.read_text())["files"]
    totals = defaultdict(lambda: [0, 0])
    for path, info in files.items():
        parts = Path(path).parts
        if "volseg" not in parts:
            continue
        rest = parts[parts.index("volseg") + 1:]
        package = "volseg/" + rest[0] if len(rest) > 1 else "volseg (top level)"
        totals[package][0] += info["summary"]["num_statements"]
        totals[package][1] += info["summary"]["missing_lines"]
    print(f"\n{'package':<22} {'statements':>10} {'missed':>7} {'cover':>7}")
    all_st = all_miss = 0
    for package in sorted(totals):
        st, miss = totals[package]
        all_st, all_miss = all_st + st, all_miss + miss
        print(f"{package:<22} {st:>10} {miss:>7} {100.0 * (st - miss) / max(st, 1):>6.1f}%")
    print(f"{'TOTAL':<22} {all_st:>10} {all_miss:>7} {100.0 * (all_st - all_miss) / max(all_st, 1):>6.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
