"""PNG in, PNG out: ``volseg predict`` on a PNG slice writes a colour label PNG in the bundle's palette
(the format the labels came in), and a folder of PNGs gives a folder of such PNGs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.workflow.conftest import write_png_pairs

REPO = Path(__file__).resolve().parents[2]



@pytest.fixture
def png_run(tmp_path: Path) -> Path:
    """A trained-bundle folder: lung_png2d's configs with a fixed 1x1-conv 'model' that thresholds the
    synthetic slices (tumour > 0.8 -> 1, lung < 0.4 -> 2, body -> 0)."""
    run = tmp_path / "run"
    shutil.copytree(REPO / "bundles" / "lung_png2d" / "configs", run / "configs")
    inf = run / "configs" / "inference.json"
    cfg = json.loads(inf.read_text())
    cfg.update({"network_def": {"_target_": "torch.nn.Conv2d", "in_channels": 1, "out_channels": 3, "kernel_size": 1},
                "roi_size": [32, 32], "median_kernel": 0, "bundle_root": str(run)})
    inf.write_text(json.dumps(cfg, indent=1))
    net = torch.nn.Conv2d(1, 3, 1)
    with torch.no_grad():
        net.weight[:, 0, 0, 0] = torch.tensor([0.0, 20.0, -10.0])
        net.bias[:] = torch.tensor([0.0, -16.0, 4.0])
    (run / "models").mkdir()
    torch.save(net.state_dict(), run / "models" / "model.pt")
    return run


def _agreement(mask_png: Path, label_png: Path) -> float:
    from volseg.io import bundle_palette, load_png_label

    palette = bundle_palette(REPO / "bundles" / "lung_png2d")
    return float((load_png_label(mask_png, palette) == load_png_label(label_png, palette)).mean())


def test_predict_png_writes_a_palette_png(png_run: Path, tmp_path: Path) -> None:
    from volseg.cli import main

    img_dir, lab_dir = write_png_pairs(tmp_path / "pngs", n=1, size=32)
    out = tmp_path / "slice_mask.png"
    assert main(["predict", "-i", str(img_dir / "case_00.png"), "-o", str(out), "-m", str(png_run), "--quiet"]) == 0
    assert out.is_file()
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (32, 32)
        colours = {tuple(c) for c in np.asarray(im).reshape(-1, 3).tolist()}
    assert colours <= {(0, 0, 0), (0, 0, 255), (0, 255, 0)}
    assert _agreement(out, lab_dir / "case_00.png") > 0.95


def test_predict_png_folder_writes_a_folder_of_pngs(png_run: Path, tmp_path: Path) -> None:
    from volseg.cli import main

    img_dir, lab_dir = write_png_pairs(tmp_path / "pngs", n=3, size=32)
    out = tmp_path / "masks"
    assert main(["predict", "-i", str(img_dir), "-o", str(out), "-m", str(png_run), "--quiet"]) == 0
    written = sorted(out.glob("*.png"))
    assert len(written) == 3 and not list(out.glob("*.nii*"))
    for case in ("case_00", "case_01", "case_02"):
        mask = next(p for p in written if p.name.startswith(case))
        assert _agreement(mask, lab_dir / f"{case}.png") > 0.95
