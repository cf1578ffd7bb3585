"""Tables volseg writes (metrics, stats, evaluations): the one CSV writer, atomic."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from volseg._atomic import atomic_path

PathLike = Union[str, "os.PathLike[str]"]


def csv_text(rows: Iterable[Mapping[str, Any]], fields: Optional[Sequence[str]] = None,
             float_format: Optional[str] = None) -> str:
    """``rows`` as CSV text with a header. ``fields``: the columns in order (default: every key of
    every row, in order of first appearance); a missing value or ``None`` is an empty cell.
    ``float_format`` (e.g. ``".6g"``) formats floats, else ``repr``."""
    rows = list(rows)
    if fields is None:
        fields = []
        for r in rows:
            fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), restval="", lineterminator="\r\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (format(v, float_format) if float_format and isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def write_csv(rows: Iterable[Mapping[str, Any]], path: PathLike, fields: Optional[Sequence[str]] = None,
              float_format: Optional[str] = None) -> Path:
    """Write :func:`csv_text` of ``rows`` to ``path`` atomically (temp file + rename). Returns ``path``."""
    text = csv_text(rows, fields, float_format)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8", newline="")
    return Path(path)

