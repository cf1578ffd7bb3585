"""PNG reading: grayscale 8/16-bit -> (1, X, Y) float32, X = column; colour PNGs refused."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from volseg.errors import InputError
from volseg.io import load_volume


@pytest.mark.parametrize("dtype,mode", [(np.uint8, "L"), (np.uint16, "I;16")])
def test_grayscale_png(tmp_path, dtype, mode):
    rows, cols = 5, 7
    arr = (np.arange(rows * cols).reshape(rows, cols) * (300 if dtype == np.uint16 else 7)).astype(dtype)
    Image.fromarray(arr).save(tmp_path / "g.png")
    img = load_volume(tmp_path / "g.png")
    assert img.shape == (1, cols, rows) and img.dtype.is_floating_point
    np.testing.assert_array_equal(img[0].numpy(), arr.T.astype(np.float32))
    assert img.affine.shape == (3, 3) and img.meta["source_format"] == "png"
    with pytest.raises(InputError, match="expected a 3D image, got 2D"):
        load_volume(tmp_path / "g.png", ndim=3)


def test_colour_png_refused(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[1, 1] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    with pytest.raises(InputError, match="colour PNG.*load_png_label") as exc:
        load_volume(tmp_path / "c.png")
    assert "c.png" in str(exc.value)
    grey_rgb = np.repeat(np.arange(16, dtype=np.uint8).reshape(4, 4, 1), 3, axis=2)
    Image.fromarray(grey_rgb).save(tmp_path / "g.png")
    np.testing.assert_array_equal(load_volume(tmp_path / "g.png")[0].numpy(), grey_rgb[..., 0].T)


def test_png_saves_as_2d(tmp_path):
    from volseg.io import save_mask, save_volume

    arr = (np.arange(35).reshape(5, 7) * 7).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "g.png")
    img = load_volume(tmp_path / "g.png")
    save_volume(img, tmp_path / "g.nii.gz")
    save_mask(img > 100, img, tmp_path / "m.nrrd")
    back = load_volume(tmp_path / "m.nrrd")
    assert back.shape == (1, 7, 5)
    np.testing.assert_allclose(back.affine.numpy(), img.affine.numpy())
    np.testing.assert_array_equal(back[0].numpy(), (arr.T > 100).astype(np.float32))
