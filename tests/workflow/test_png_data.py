"""PNG pairing, palette and transform checks (errors name the file and the problem)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.workflow.conftest import write_png_pairs
from volseg.data.png import (
    DEFAULT_PALETTE,
    labels_to_rgb,
    load_png_label,
    pair_png_folders,
    parse_palette,
    rgb_to_labels,
)
from volseg.errors import ConfigError, InputError
from volseg.transforms.png2d import load_png_gray, median_filter_2d, png2d_transforms


def test_pairs_sorted_recursive_and_suffixes(tmp_path: Path) -> None:
    img, lab = tmp_path / "img", tmp_path / "lab"
    for rel in ("b/2.png", "a/1.png", "a/10.png"):
        (img / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (4, 4)).save(img / rel)
    for rel in ("b/2_mask.png", "a/1.png", "a/10_label.png"):
        (lab / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(lab / rel)
    pairs = pair_png_folders(img, lab)
    assert [p["name"] for p in pairs] == ["a/1", "a/10", "b/2"]
    assert pairs[2]["label"].endswith("b/2_mask.png") and pairs[1]["label"].endswith("a/10_label.png")


def test_count_mismatch_and_unpaired_in_one_error(tmp_path: Path) -> None:
    img_dir, lab_dir = write_png_pairs(tmp_path, n=4)
    (lab_dir / "case_01.png").unlink()
    (lab_dir / "case_03.png").rename(lab_dir / "other.png")
    with pytest.raises(InputError) as err:
        pair_png_folders(img_dir, lab_dir)
    msg = str(err.value)
    assert "4 images but 3 labels" in msg
    assert "case_01.png" in msg and "case_03.png" in msg and "other.png" in msg
    assert "\n" not in msg


def test_non_png_file_is_listed(tmp_path: Path) -> None:
    img_dir, lab_dir = write_png_pairs(tmp_path, n=2)
    (img_dir / "notes.txt").write_text("x")
    Image.new("L", (4, 4)).save(lab_dir / "scan.jpg")
    with pytest.raises(InputError, match=r"non-PNG files: .*notes\.txt.*scan\.jpg"):
        pair_png_folders(img_dir, lab_dir)


def test_png_suffix_but_not_png(tmp_path: Path) -> None:
    bad = tmp_path / "fake.png"
    Image.new("L", (4, 4)).save(bad, format="JPEG")
    with pytest.raises(InputError, match="fake.png: not a PNG"):
        load_png_gray(bad)


def test_unknown_colour_names_file_colour_and_count(tmp_path: Path) -> None:
    rgb = np.zeros((5, 4, 3), np.uint8)
    rgb[0, :3] = (255, 0, 0)
    rgb[1, 0] = (0, 0, 255)
    path = tmp_path / "lab.png"
    Image.fromarray(rgb).save(path)
    with pytest.raises(InputError) as err:
        load_png_label(path)
    msg = str(err.value)
    assert str(path) in msg and "RGB(255, 0, 0) in 3 pixels" in msg
    lab = load_png_label(path, nearest_colour=True)
    assert lab.shape == (4, 5)  # (X, Y) = (columns, rows)
    assert lab[0, 1] == 1 and lab[0, 0] == 0 and lab.dtype == np.uint8


def test_palette_round_trip_and_json_forms() -> None:
    labels = np.array([[0, 1], [2, 1]], np.uint8)
    rgb = labels_to_rgb(labels)
    assert tuple(rgb[0, 1]) == DEFAULT_PALETTE[1] == (0, 0, 255)
    np.testing.assert_array_equal(rgb_to_labels(rgb), labels)
    assert parse_palette({"0": "#000000", "3": [255, 0, 0]}) == {0: (0, 0, 0), 3: (255, 0, 0)}
    with pytest.raises(ConfigError, match="same colour"):
        parse_palette({0: (0, 0, 0), 1: (0, 0, 0)})
    with pytest.raises(ConfigError, match="no palette colour"):
        labels_to_rgb(np.array([7]))


def test_gray_16bit_and_orientation(tmp_path: Path) -> None:
    arr = np.zeros((3, 5), np.uint16)
    arr[0, 4] = 65535
    path = tmp_path / "g16.png"
    Image.fromarray(arr).save(path)
    img = load_png_gray(path)
    assert img.shape == (5, 3) and img.dtype == np.float32
    assert img[4, 0] == pytest.approx(1.0) and img.sum() == pytest.approx(1.0)


def test_preset_resizes_labels_nearest_and_filters(tmp_path: Path) -> None:
    img_dir, lab_dir = write_png_pairs(tmp_path, n=1, size=40)
    item = {"image": str(img_dir / "case_00.png"), "label": str(lab_dir / "case_00.png")}
    out = png2d_transforms("val", spatial_size=(64, 48), median_kernel=3)(item)
    assert tuple(out["image"].shape) == (1, 64, 48) and tuple(out["label"].shape) == (1, 64, 48)
    assert set(np.unique(out["label"].numpy()).tolist()) == {0.0, 1.0, 2.0}
    assert 0.0 <= float(out["image"].min()) and float(out["image"].max()) <= 1.0
    noisy = np.zeros((1, 9, 9), np.float32)
    noisy[0, 4, 4] = 1.0
    assert median_filter_2d(noisy, 3).max() == 0.0
    with pytest.raises(ConfigError, match="odd"):
        median_filter_2d(noisy, 4)


def test_label_size_mismatch(tmp_path: Path) -> None:
    img_dir, lab_dir = write_png_pairs(tmp_path, n=1, size=16)
    Image.new("RGB", (8, 8)).save(lab_dir / "case_00.png")
    item = {"image": str(img_dir / "case_00.png"), "label": str(lab_dir / "case_00.png")}
    with pytest.raises(InputError, match="label size 8x8 differs"):
        png2d_transforms("val")(item)


def test_palette_mode_labels(tmp_path: Path) -> None:
    idx = np.array([[0, 1, 2, 2]], np.uint8)
    img = Image.fromarray(idx, mode="P")
    img.putpalette([0, 0, 0, 200, 10, 10, 10, 200, 10] + [0] * 759)
    img.save(tmp_path / "voc.png")  # indices are classes: read as indices, whatever the colours
    np.testing.assert_array_equal(load_png_label(tmp_path / "voc.png"), idx.T)
    big = Image.fromarray(np.array([[0, 7]], np.uint8), mode="P")
    big.putpalette([0, 0, 0] * 7 + [0, 0, 255] + [0] * 744)
    big.save(tmp_path / "p7.png")  # index 7 is not a class: its colour (blue) decides
    np.testing.assert_array_equal(load_png_label(tmp_path / "p7.png"), np.array([[0], [1]]))


def test_binary_gray_masks_need_a_palette_entry(tmp_path: Path) -> None:
    arr = np.zeros((4, 6), np.uint8)
    arr[1:3, 2:4] = 255
    Image.fromarray(arr).save(tmp_path / "m.png")
    with pytest.raises(InputError, match=r"m\.png: grayscale label.*RGB\(255, 255, 255\) in 4 pixels.*0/255 masks"):
        load_png_label(tmp_path / "m.png")
    lab = load_png_label(tmp_path / "m.png", palette={"0": [0, 0, 0], "1": [255, 255, 255]})
    assert lab.sum() == 4 and lab[2, 1] == 1
