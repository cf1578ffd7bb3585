"""PNG pairing, palette and transform checks (errors name the file and the problem), and the one
preprocessing training and inference share."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.workflow.conftest import write_png_pairs
from volseg.data.png import check_png_pairs, pair_png_folders
from volseg.errors import ConfigError, InputError
from volseg.io.png import DEFAULT_PALETTE, labels_to_rgb, load_png_label, parse_palette, read_png_gray, rgb_to_labels
from volseg.transforms.png2d import median_filter_2d, png2d_transforms

REPO = Path(__file__).resolve().parents[2]


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
        read_png_gray(bad)


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
    raw = read_png_gray(path)
    assert raw.shape == (1, 5, 3) and raw.array.dtype == np.float32 and raw.meta["png_max"] == 65535.0
    img = png2d_transforms("infer", spatial_size=(5, 3), median_kernel=0)({"image": str(path)})["image"]
    assert img[0, 4, 0] == pytest.approx(1.0) and float(img.sum()) == pytest.approx(1.0)


def _png_variants(tmp_path: Path) -> dict:
    """The same grey picture stored five ways, plus a dark 16-bit image (max 200 of 65535)."""
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (12, 10)).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    files = {"L": grey, "RGB": rgb, "RGBA": np.concatenate([rgb, np.full((12, 10, 1), 200, np.uint8)], axis=2),
             "I16": grey.astype(np.uint16) * 257, "dark16": (grey.astype(np.uint16) * 200) // 255}
    paths = {}
    for name, arr in files.items():
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray(arr).save(paths[name])
    return paths


def test_training_and_inference_preprocess_a_png_identically(tmp_path: Path) -> None:
    """One loader and one bit-depth policy: train.json's validation preprocessing and inference.json's
    preprocessing give the same tensor for every storage of a grey PNG (16-bit scaled by 65535, even dark)."""
    from monai.bundle import ConfigParser

    paths = _png_variants(tmp_path)
    label = tmp_path / "lab.png"
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(label)
    parsed = {}
    for name in ("train.json", "inference.json"):
        parser = ConfigParser()
        parser.read_config(str(REPO / "bundles" / "lung_png2d" / "configs" / name))
        parser["roi_size"] = [16, 12]
        parsed[name] = parser.get_parsed_content("validate#preprocessing" if name == "train.json" else "preprocessing")
    ref = None
    for name, path in paths.items():
        train = parsed["train.json"]({"image": str(path), "label": str(label)})["image"]
        infer = parsed["inference.json"]({"image": str(path)})["image"]
        assert tuple(train.shape) == (1, 16, 12)
        np.testing.assert_array_equal(train.numpy(), infer.numpy(), err_msg=name)
        if name == "dark16":
            assert float(train.max()) <= 200 / 65535 + 1e-6, "16-bit PNGs are scaled by the dtype range"
        elif ref is None:
            ref = train.numpy()
        else:
            np.testing.assert_allclose(train.numpy(), ref, atol=1e-6, err_msg=name)


def test_colour_images_stop_training_and_inference_alike(tmp_path: Path) -> None:
    img_dir, lab_dir = write_png_pairs(tmp_path, n=3)
    colour = np.zeros((32, 32, 3), np.uint8)
    colour[..., 0] = 200
    Image.fromarray(colour).save(img_dir / "case_01.png")
    with pytest.raises(InputError, match=r"1 bad PNG pair.*case_01\.png: colour PNG"):
        check_png_pairs(pair_png_folders(img_dir, lab_dir))
    with pytest.raises(InputError, match=r"case_01\.png: colour PNG"):
        png2d_transforms("infer")({"image": str(img_dir / "case_01.png")})


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
