from __future__ import annotations

import json
from pathlib import Path

import pytest

from volseg.data import load_datalist
from volseg.errors import InputError


def _touch_nifti(path: Path) -> None:
    import nibabel as nib
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), str(path))


def _msd(root: Path, n: int, validation: bool = False) -> Path:
    items = []
    for i in range(n):
        _touch_nifti(root / "imagesTr" / f"c{i}.nii.gz")
        _touch_nifti(root / "labelsTr" / f"c{i}.nii.gz")
        items.append({"image": f"./imagesTr/c{i}.nii.gz", "label": f"./labelsTr/c{i}.nii.gz"})
    spec = {"training": items[:-1] if validation else items}
    if validation:
        spec["validation"] = items[-1:]
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


def test_msd_paths_resolved_and_seeded_split(tmp_path):
    root = _msd(tmp_path / "ds", 10)
    train, val = load_datalist(root, val_fraction=0.2, seed=3)
    assert len(train) == 8 and len(val) == 2
    assert all(Path(e["image"]).is_absolute() and Path(e["image"]).exists() for e in train + val)
    assert {e["image"] for e in train}.isdisjoint({e["image"] for e in val})
    assert load_datalist(root, val_fraction=0.2, seed=3) == (train, val)
    assert load_datalist(root, val_fraction=0.2, seed=4)[1] != val


def test_msd_validation_list_used(tmp_path):
    root = _msd(tmp_path / "ds", 4, validation=True)
    train, val = load_datalist(root)
    assert len(train) == 3 and [Path(e["image"]).name for e in val] == ["c3.nii.gz"]


def test_nnunet_channels_pair_with_labels(tmp_path):
    root = tmp_path / "nn"
    for case in ("a", "b"):
        _touch_nifti(root / "imagesTr" / f"{case}_0000.nii.gz")
        _touch_nifti(root / "imagesTr" / f"{case}_0001.nii.gz")
        _touch_nifti(root / "labelsTr" / f"{case}.nii.gz")
    train, val = load_datalist(root, val_fraction=0.5)
    entries = sorted(train + val, key=lambda e: e["label"])
    assert [Path(p).name for p in entries[0]["image"]] == ["a_0000.nii.gz", "a_0001.nii.gz"]
    assert Path(entries[0]["label"]).name == "a.nii.gz"


def test_every_bad_entry_in_one_error(tmp_path):
    root = _msd(tmp_path / "ds", 4)
    (root / "imagesTr" / "c0.nii.gz").unlink()
    (root / "labelsTr" / "c2.nii.gz").unlink()
    (root / "imagesTr" / "c3.nii.gz").write_bytes(b"not a nifti at all")
    with pytest.raises(InputError) as err:
        load_datalist(root)
    msg = str(err.value)
    assert "3 bad datalist entries" in msg and "\n" not in msg
    for name in ("imagesTr/c0.nii.gz", "labelsTr/c2.nii.gz", "imagesTr/c3.nii.gz"):
        assert name in msg
    assert "c1.nii.gz" not in msg


def test_not_a_dataset(tmp_path):
    with pytest.raises(InputError, match="MSD or nnU-Net"):
        load_datalist(tmp_path)
    with pytest.raises(InputError, match="not found"):
        load_datalist(tmp_path / "missing")


def test_prediction_reads_the_same_dataset_json(tmp_path):
    """Prediction lists test images (bare MSD strings or dicts), else validation, else training, from the
    one reader; paths are made absolute against the file's folder."""
    from volseg.data.datalist import dataset_images, dataset_source, read_dataset_json

    root = _msd(tmp_path / "ds", 3, validation=True)
    spec = json.loads((root / "dataset.json").read_text())
    assert dataset_images(root / "dataset.json") == [str(root / "imagesTr" / "c2.nii.gz")]  # validation
    spec["test"] = ["imagesTr/c0.nii.gz", "./imagesTr/c1.nii.gz"]
    (root / "dataset.json").write_text(json.dumps(spec))
    assert dataset_images(root / "dataset.json") == [str(root / "imagesTr" / f"c{i}.nii.gz") for i in (0, 1)]
    assert [e["label"] for e in read_dataset_json(root / "dataset.json")] == \
        [str(root / "labelsTr" / f"c{i}.nii.gz") for i in (0, 1)]
    assert read_dataset_json(root / "dataset.json", "nope") == []
    assert dataset_source(root) == root / "dataset.json"
    (root / "dataset.json").unlink()
    assert dataset_source(root) == root / "imagesTr" and dataset_source(root / "imagesTr") == root / "imagesTr"


def test_dataset_json_bad_entries_are_one_line_errors(tmp_path):
    from volseg.data.datalist import dataset_images

    index = tmp_path / "dataset.json"
    index.write_text(json.dumps({"training": [{"image": "a.nii.gz", "label": "a.nii.gz"}, {"label": "b.nii.gz"}]}))
    with pytest.raises(InputError, match=r"training\[1\] must be"):
        load_datalist(tmp_path)
    index.write_text(json.dumps({"test": [{"image": ["a_0000.nii.gz", "a_0001.nii.gz"]}]}))
    with pytest.raises(InputError, match="multi-channel"):
        dataset_images(index)
    index.write_text(json.dumps({"test": [], "training": []}))
    with pytest.raises(InputError, match="lists no images"):
        dataset_images(index)
    index.write_text("[1, 2]")
    with pytest.raises(InputError, match="JSON object"):
        dataset_images(index)
