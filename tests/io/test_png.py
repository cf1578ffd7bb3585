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


def test_grey_rgb_rgba_and_palette_pngs_read_as_one_grey_channel(tmp_path):
    """One reader policy: R = G = B colour PNGs are grey images; the bit depth's full scale is in meta."""
    grey = (np.arange(20).reshape(4, 5) * 12).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "l.png")
    Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(tmp_path / "rgb.png")
    rgba = np.concatenate([np.repeat(grey[..., None], 3, axis=2), np.full((4, 5, 1), 128, np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(grey).convert("P").save(tmp_path / "p.png")
    for name in ("l", "rgb", "rgba", "p"):
        img = load_volume(tmp_path / f"{name}.png")
        np.testing.assert_array_equal(img[0].numpy(), grey.T.astype(np.float32), err_msg=name)
        assert img.meta["png_max"] == 255.0
    Image.fromarray((grey.astype(np.uint16) * 3)).save(tmp_path / "g16.png")
    assert load_volume(tmp_path / "g16.png").meta["png_max"] == 65535.0  # dtype range, whatever the values


def test_save_label_png_round_trip_palette_and_orientation(tmp_path):
    from volseg.errors import ConfigError
    from volseg.io import load_png_label, save_label_png

    mask = np.zeros((7, 5), np.uint8)  # (X, Y) = (columns, rows)
    mask[6, 0] = 1  # top-right pixel
    mask[0, 4] = 2  # bottom-left pixel
    out = save_label_png(mask, tmp_path / "m.png", {"0": [0, 0, 0], "1": [255, 0, 0], "2": "#00ff00"})
    with Image.open(out) as im:  # an independent read: PIL's (row, column)
        assert im.mode == "RGB" and im.size == (7, 5)
        rgb = np.asarray(im)
    assert tuple(rgb[0, 6]) == (255, 0, 0) and tuple(rgb[4, 0]) == (0, 255, 0) and rgb.sum() == 2 * 255
    back = load_png_label(out, {"0": [0, 0, 0], "1": [255, 0, 0], "2": [0, 255, 0]})
    np.testing.assert_array_equal(back, mask)
    save_label_png(mask[None].astype(np.float32), tmp_path / "c.png")  # (1, X, Y) float, default palette
    np.testing.assert_array_equal(load_png_label(tmp_path / "c.png"), mask)
    with pytest.raises(ConfigError, match=r"\[7\] have no palette colour"):
        save_label_png(mask * 0 + 7, tmp_path / "bad.png")
    with pytest.raises(InputError, match="non-integer"):
        save_label_png(mask * 0.5, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_bundle_palette_from_configs(tmp_path):
    import json
    from pathlib import Path

    from volseg.errors import ConfigError
    from volseg.io import bundle_palette

    repo = Path(__file__).resolve().parents[2]
    assert bundle_palette(repo / "bundles" / "lung_png2d") == {0: (0, 0, 0), 1: (0, 0, 255), 2: (0, 255, 0)}
    assert bundle_palette(repo / "bundles" / "ct_unet3d") is None
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "inference.json").write_text(json.dumps({"palette": "@pal", "pal": {"1": "#ff0000"}}))
    assert bundle_palette(tmp_path) == {1: (255, 0, 0)}
    (tmp_path / "configs" / "inference.json").write_text(json.dumps({"palette": [1, 2]}))
    with pytest.raises(ConfigError, match="must be a mapping"):
        bundle_palette(tmp_path)
