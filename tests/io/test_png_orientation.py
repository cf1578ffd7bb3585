"""Which PNG pixel is which voxel, checked with PIL and SimpleITK rather than volseg itself.

Convention (docs/architecture.md): a PNG loads as ``(1, X, Y)`` with X = image column (PIL's x,
SimpleITK's index 0) and Y = image row (PIL's y, top row first); ``volseg convert --to png-slices``
writes voxel ``(x, y, k)`` as pixel (column x, row y) of slice k. Images are non-square and every
pixel value is distinct, so a swapped or flipped axis cannot pass.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

ROWS, COLS = 5, 8


def _pattern(scale: int = 1) -> np.ndarray:
    """``(rows, cols)`` with a distinct value per pixel: 1 + 8 * row + col (times ``scale``)."""
    r, c = np.mgrid[:ROWS, :COLS]
    return (1 + COLS * r + c) * scale


def _write_png(path: Path, mode: str) -> Path:
    if mode == "L":
        im = Image.fromarray(_pattern(5).astype(np.uint8))
    elif mode == "I;16":
        im = Image.fromarray(_pattern(1000).astype(np.uint16))
    elif mode == "RGB":  # a grey image stored as RGB
        im = Image.fromarray(np.repeat(_pattern(5).astype(np.uint8)[..., None], 3, axis=2))
    else:  # "LA": grey + alpha
        grey = _pattern(5).astype(np.uint8)
        im = Image.fromarray(np.stack([grey, np.full_like(grey, 255)], -1), mode="LA")
    im.save(path)
    return path


def _pil_value(im: Image.Image, x: int, y: int) -> float:
    v = im.getpixel((x, y))  # PIL: (x = column, y = row)
    return float(v[0] if isinstance(v, tuple) else v)


@pytest.mark.parametrize("mode", ["L", "I;16", "RGB", "LA"])
def test_png_reads_column_as_x_and_row_as_y(mode, tmp_path):
    import SimpleITK as sitk

    from volseg.io import load_volume

    path = _write_png(tmp_path / "p.png", mode)
    img = load_volume(path)
    assert tuple(img.shape) == (1, COLS, ROWS)
    arr = img[0].numpy()
    with Image.open(path) as im:
        assert im.size == (COLS, ROWS)
        pil = np.array([[_pil_value(im, x, y) for y in range(ROWS)] for x in range(COLS)])
    np.testing.assert_array_equal(arr, pil)
    assert arr[0, 0] == pil[0, 0] and arr[COLS - 1, 0] == pil[COLS - 1, 0]  # top-left, top-right
    if mode == "LA":
        return  # SimpleITK cannot read grey + alpha PNGs (2 components of unsigned char)
    s = sitk.ReadImage(str(path))
    assert s.GetSize() == (COLS, ROWS)
    if s.GetNumberOfComponentsPerPixel() == 1:
        np.testing.assert_array_equal(sitk.GetArrayFromImage(s).T, arr)
    else:  # SimpleITK's vector pixel: grey is the first component
        np.testing.assert_array_equal(sitk.GetArrayFromImage(s)[..., 0].T, arr)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_png_written_by_volseg_keeps_pixel_indices(suffix, tmp_path):
    """A PNG saved as an image and as a mask: SimpleITK (and nibabel) index (x, y) of the written file
    holds PIL's pixel (x, y) of the PNG."""
    import SimpleITK as sitk

    from volseg.io import load_volume, save_mask, save_volume

    path = _write_png(tmp_path / "p.png", "L")
    img = load_volume(path)
    save_volume(img, tmp_path / f"img{suffix}")
    save_mask(img > 100, img, tmp_path / f"mask{suffix}")
    with Image.open(path) as im:
        pil = np.array([[_pil_value(im, x, y) for y in range(ROWS)] for x in range(COLS)])
    for name, want in (("img", pil), ("mask", (pil > 100).astype(np.float64))):
        s = sitk.ReadImage(str(tmp_path / f"{name}{suffix}"))
        got = sitk.GetArrayFromImage(s).T
        got = got[:, :, 0] if got.ndim == 3 else got  # NIfTI stores 2D as (X, Y, 1)
        assert s.GetSize()[:2] == (COLS, ROWS), name
        np.testing.assert_array_equal(got, want, err_msg=name)
    if suffix == ".nii.gz":
        np.testing.assert_array_equal(np.asarray(nib.load(str(tmp_path / "img.nii.gz")).dataobj)[:, :, 0], pil)


def test_convert_png_slices_pixel_is_voxel(tmp_path):
    """``volseg convert SCAN --label MASK --to png-slices``: pixel (column x, row y) of slice k, read by
    PIL and SimpleITK, is voxel (x, y, k) of the scan as stored (no reorientation)."""
    import SimpleITK as sitk

    shape = (9, 6, 3)
    x, y, k = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    grey = 5 + 4 * (x + 9 * y) + k  # the expected PNG value, distinct per voxel
    hu = (-1000.0 + 1400.0 * grey / 255.0).astype(np.float32)  # exactly grey after the default window
    lab = np.zeros(shape, np.uint8)
    lab[6:, :4] = 1
    lab[1, 4, :] = 2
    aff = np.array([[-0.8, 0, 0, 30.0], [0, 0, 2.5, -12.0], [0, 1.1, 0, 7.0], [0, 0, 0, 1.0]])  # not RAS
    nib.save(nib.Nifti1Image(hu, aff), str(tmp_path / "scan.nii.gz"))
    nib.save(nib.Nifti1Image(lab, aff), str(tmp_path / "scan_label.nii.gz"))
    out = tmp_path / "png"
    res = subprocess.run([sys.executable, "-m", "volseg", "convert", str(tmp_path / "scan.nii.gz"), "--label",
                          str(tmp_path / "scan_label.nii.gz"), "--to", "png-slices", str(out)],
                         capture_output=True, encoding="utf-8", errors="replace")
    assert res.returncode == 0, res.stderr
    info = json.loads((out / "slices.json").read_text())
    palette = {int(c): tuple(v) for c, v in info["palette"].items()}
    assert palette[1][2] > max(palette[1][:2]) and palette[2][1] > max(palette[2][0], palette[2][2])  # blue, green
    files = sorted((out / "images").glob("*.png"))
    assert [f.name for f in files] == [f"scan_z{i:04d}.png" for i in range(shape[2])]
    for kk, f in enumerate(files):
        with Image.open(f) as im:
            assert im.size == shape[:2]
            pil = np.array([[_pil_value(im, i, j) for j in range(shape[1])] for i in range(shape[0])])
        np.testing.assert_array_equal(pil, grey[:, :, kk])
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(f))).T, grey[:, :, kk])
        with Image.open(out / "labels" / f.name) as im:
            rgb = np.asarray(im.convert("RGB")).transpose(1, 0, 2)  # (x, y, 3)
        want = np.zeros((*shape[:2], 3), np.uint8)
        for value in (1, 2):
            want[lab[:, :, kk] == value] = palette[value]
        np.testing.assert_array_equal(rgb, want)
