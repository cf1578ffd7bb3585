"""Synthetic CT phantom: HU ranges, labels, determinism, orientation, MSD dataset."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from volseg.data import PHANTOM_LABELS, make_phantom, write_phantom_dataset


def test_phantom_content():
    ph = make_phantom(shape=(64, 64, 40), spacing=(1.5, 1.5, 2.5), seed=0)
    img, lab = ph.image[0].numpy(), ph.label[0].numpy()
    assert ph.image.shape == (1, 64, 64, 40) and ph.image.dtype.is_floating_point
    assert lab.dtype == np.uint8 and set(np.unique(lab)) == {0, 1, 2}
    assert PHANTOM_LABELS == {1: "lung", 2: "lesion"}
    assert abs(np.median(img[0]) + 1000) < 30  # air at the edge
    assert abs(np.median(img[lab == 1]) + 850) < 60
    assert abs(np.median(img[lab == 2]) - 30) < 20
    assert img.max() > 600  # bone
    vox = float(np.prod((1.5, 1.5, 2.5)))
    lesion_mm3 = (lab == 2).sum() * vox
    r = (3 * lesion_mm3 / (4 * np.pi * 2)) ** (1 / 3)  # two lesions, mean equivalent radius
    assert 6 <= r <= 20
    np.testing.assert_allclose(ph.image.affine.numpy(), ph.affine)
    assert nib.aff2axcodes(ph.affine) == ("L", "P", "S")


def test_phantom_deterministic_and_seeded():
    a, b, c = make_phantom((24, 24, 16), seed=5), make_phantom((24, 24, 16), seed=5), make_phantom((24, 24, 16), seed=6)
    assert np.array_equal(a.image.numpy(), b.image.numpy()) and np.array_equal(a.label.numpy(), b.label.numpy())
    assert not np.array_equal(a.image.numpy(), c.image.numpy())


def test_phantom_direction_origin():
    d = np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]])
    ph = make_phantom((16, 12, 8), spacing=(1, 2, 3), direction=d, origin=(5, 6, 7))
    np.testing.assert_allclose(ph.affine[:3, :3], d @ np.diag([1, 2, 3]))
    np.testing.assert_allclose(ph.affine[:3, 3], [5, 6, 7])


def test_write_phantom_dataset(tmp_path):
    out = write_phantom_dataset(tmp_path / "ds", n_cases=2, seed=3, shape=(24, 24, 16), progress=False)
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["numTraining"] == 2 and ds["modality"] == {"0": "CT"}
    assert ds["labels"] == {"0": "background", "1": "lung", "2": "lesion"}
    for i, item in enumerate(ds["training"]):
        assert item == {"image": f"./imagesTr/case_{i:03d}.nii.gz", "label": f"./labelsTr/case_{i:03d}.nii.gz"}
        img, lab = nib.load(str(out / item["image"])), nib.load(str(out / item["label"]))
        assert lab.get_data_dtype() == np.uint8 and img.get_data_dtype() == np.int16
        np.testing.assert_array_equal(img.affine, lab.affine)
        ref = make_phantom(shape=(24, 24, 16), seed=3 + i)
        np.testing.assert_array_equal(np.asarray(lab.dataobj), ref.label[0].numpy())


def test_bad_phantom_settings(tmp_path):
    from volseg.errors import ConfigError

    with pytest.raises(ConfigError):
        make_phantom(shape=(2, 2))
    with pytest.raises(ConfigError, match="valid: msd"):
        write_phantom_dataset(tmp_path, layout="nnunet")
