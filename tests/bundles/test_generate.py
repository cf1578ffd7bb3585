"""The shipped bundles' configs come from one template (``python -m volseg.bundles.generate``) and
every bundle names its classes the same way in metadata, training and inference."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from volseg.bundles import generate
from volseg.bundles.shipped import list_bundles, shipped_root


def test_shipped_configs_match_the_template():
    assert generate.main(["--check", "--root", str(shipped_root())]) == 0, "run python -m volseg.bundles.generate"


def test_check_catches_a_hand_edit_and_write_repairs_it(tmp_path, capsys):
    root = tmp_path / "bundles"
    shutil.copytree(shipped_root(), root)
    path = root / "ct_unet3d" / "configs" / "inference.json"
    doc = json.loads(path.read_text())
    doc["labels"]["2"] = "nodule"
    path.write_text(json.dumps(doc, indent=4) + "\n")
    assert generate.main(["--check", "--root", str(root)]) == 1
    assert "ct_unet3d/configs/inference.json is stale" in capsys.readouterr().err
    assert generate.write(root) == ["ct_unet3d/configs/inference.json"]
    assert generate.stale(root) == []
    assert json.loads(path.read_text())["labels"]["2"] == "lesion"


@pytest.mark.parametrize("name", list_bundles())
def test_labels_agree_across_configs(name):
    configs = Path(shipped_root()) / name / "configs"
    meta = json.loads((configs / "metadata.json").read_text())
    channel_def = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert channel_def.get("0") == "background"
    classes = {k: v for k, v in channel_def.items() if k != "0"}
    for f in ("train.json", "inference.json"):
        doc = json.loads((configs / f).read_text())
        assert doc["labels"] == classes, f"{name}/{f}"
        assert doc["num_classes"] == len(channel_def), f"{name}/{f}"
        if "palette" in doc:
            assert set(doc["palette"]) == set(channel_def), f"{name}/{f}"
