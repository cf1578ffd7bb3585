"""volseg.io.tables: the one CSV writer (metrics, stats, evaluation, test metrics)."""
from __future__ import annotations

import csv
from pathlib import Path


def test_write_csv_columns_blanks_and_floats(tmp_path: Path) -> None:
    from volseg.io.tables import write_csv

    rows = [{"epoch": 1, "loss": 0.123456789}, {"epoch": 2, "loss": 0.5, "val_mean_dice": None, "note": "a,b"}]
    out = write_csv(rows, tmp_path / "m.csv", float_format=".6g")
    assert out == tmp_path / "m.csv"
    with open(out, newline="", encoding="utf-8") as fh:
        back = list(csv.DictReader(fh))
    assert list(back[0]) == ["epoch", "loss", "val_mean_dice", "note"]  # every key, in order of first use
    assert back[0] == {"epoch": "1", "loss": "0.123457", "val_mean_dice": "", "note": ""}
    assert back[1] == {"epoch": "2", "loss": "0.5", "val_mean_dice": "", "note": "a,b"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv"]  # no temporary left


def test_write_csv_fixed_fields_and_plain_floats(tmp_path: Path) -> None:
    from volseg.io.tables import csv_text

    text = csv_text([{"b": 0.1 + 0.2, "a": float("inf")}], fields=["a", "b"])
    assert text == "a,b\r\ninf,0.30000000000000004\r\n"  # repr: nothing lost
