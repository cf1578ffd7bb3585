"""Fixtures for running bundles both ways: through ``python -m monai.bundle run`` and ``volseg predict``.

Zoo configs come unmodified from the public MONAI model zoo (``tests/data/zoo``, Apache-2.0).
Their networks get weights overfit to a smooth target on phantoms (not random weights, whose
masks are voxel noise and say nothing about boundaries); the weights are cached under
``~/.cache/volseg/test-weights`` keyed by everything that shapes them.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import pytest
import torch

from tests.conftest import write_nifti

ZOO = Path(__file__).resolve().parents[1] / "data" / "zoo"
CACHE = Path(os.environ.get("VOLSEG_TEST_CACHE", Path.home() / ".cache" / "volseg" / "test-weights"))
RECIPE = "overfit-v1"


def rotation(a: float, b: float, c: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("xyz", [a, b, c], degrees=True).as_matrix()


def phantom_file(folder: Path, name: str, shape, spacing, direction=None, seed: int = 0) -> Path:
    """A chest phantom (HU) written as NIfTI on the grid asked for."""
    from volseg.data import make_phantom

    ph = make_phantom(shape=shape, spacing=spacing, direction=direction, seed=seed, n_lesions=2)
    folder.mkdir(parents=True, exist_ok=True)
    return write_nifti(folder / f"{name}.nii.gz", np.rint(ph.image[0].numpy()), ph.image.affine.numpy())


def make_bundle_dir(root: Path, configs: Mapping[str, Any], scripts: Optional[Mapping[str, str]] = None) -> Path:
    """A bundle folder: ``configs/<name>`` files (dicts are written as JSON, strings verbatim) and
    ``scripts/<file>`` sources."""
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "models").mkdir(exist_ok=True)
    for name, content in configs.items():
        text = content if isinstance(content, str) else json.dumps(content, indent=1)
        (root / "configs" / name).write_text(text)
    for name, src in (scripts or {}).items():
        (root / "scripts").mkdir(exist_ok=True)
        (root / "scripts" / name).write_text(src)
    return root


def copy_zoo(name: str, dest: Path) -> Path:
    shutil.copytree(ZOO / name, dest)
    (dest / "models").mkdir(exist_ok=True)
    shutil.copy2(ZOO / "LICENSE", dest / "LICENSE")
    return dest


def _parser(bundle: Path, overrides: Mapping[str, Any]) -> Any:
    from volseg.bundles.config import locate_bundle, read_parser

    return read_parser(locate_bundle(bundle), overrides)


def overfit(bundle: Path, images: Sequence[Path], target: Callable[[torch.Tensor], torch.Tensor], *,
            overrides: Optional[Mapping[str, Any]] = None, steps: int = 150, crop: int = 48, lr: float = 3e-3,
            seed: int = 0) -> Path:
    """Train the bundle's ``network_def`` on its own ``preprocessing`` of ``images`` to predict
    ``target(model-grid image (1, X, Y, Z)) -> labels (X, Y, Z)`` and save ``models/model.pt``.
    Cached by the configs, overrides, images, target and recipe."""
    overrides = dict(overrides or {})
    h = hashlib.sha256()
    for f in sorted((bundle / "configs").glob("*")) + sorted((bundle / "scripts").glob("*.py")):
        h.update(f.read_bytes())
    for img in images:
        h.update(Path(img).read_bytes())
    h.update(json.dumps([overrides, steps, crop, lr, seed, RECIPE, target.__name__, torch.__version__],
                        sort_keys=True, default=str).encode())
    cached = CACHE / f"{h.hexdigest()[:24]}.pt"
    out = bundle / "models" / "model.pt"
    if cached.is_file():
        shutil.copy2(cached, out)
        return out
    from volseg.bundles.config import build
    from volseg.transforms.load import adapt_loaders

    parser = _parser(bundle, {**overrides, "device": "$torch.device('cpu')"})
    net = build(parser, "network_def", bundle)
    pre = adapt_loaders(build(parser, "preprocessing", bundle))
    key = parser.get("image_key") or "image"
    xs = [pre({key: str(p)})[key].as_tensor().float() for p in images]
    ys = [target(x).long() for x in xs]
    if _spatial_dims(net) == 2:  # a 2D network learns from axial slices
        xs = [x[..., z] for x in xs for z in range(x.shape[-1])]
        ys = [y[..., z] for y in ys for z in range(y.shape[-1])]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    net.train()
    for _ in range(steps):
        batch_x, batch_y = [], []
        for _ in range(2):
            i = int(rng.integers(len(xs)))
            x, y = xs[i], ys[i]
            pad = [max(crop - s, 0) for s in x.shape[1:]]
            if any(pad):
                x = torch.nn.functional.pad(x, [p for q in reversed(pad) for p in (0, q)])
                y = torch.nn.functional.pad(y, [p for q in reversed(pad) for p in (0, q)])
            c = [int(rng.integers(s - crop + 1)) for s in x.shape[1:]]
            sl = tuple(slice(a, a + crop) for a in c)
            batch_x.append(x[(slice(None), *sl)])
            batch_y.append(y[sl])
        opt.zero_grad()
        loss = loss_fn(net(torch.stack(batch_x)), torch.stack(batch_y))
        loss.backward()
        opt.step()
    net.eval()
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), cached)
    shutil.copy2(cached, out)
    return out


def _spatial_dims(net: torch.nn.Module) -> int:
    return 2 if any(isinstance(m, torch.nn.Conv2d) for m in net.modules()) else 3


def smooth_band(low: float, high: float, sigma: float = 1.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """Target: 1 where the Gaussian-smoothed (``sigma`` voxels) image lies in [low, high]."""
    from scipy.ndimage import gaussian_filter

    def target(x: torch.Tensor) -> torch.Tensor:
        s = gaussian_filter(x[0].numpy(), sigma)
        return torch.from_numpy(((s >= low) & (s <= high)).astype(np.int64))

    target.__name__ = f"band_{low}_{high}_{sigma}"
    return target


def smooth_levels(levels: Sequence[float], sigma: float = 1.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """Target: the number of ``levels`` the Gaussian-smoothed image exceeds (0..len(levels))."""
    from scipy.ndimage import gaussian_filter

    def target(x: torch.Tensor) -> torch.Tensor:
        s = gaussian_filter(x[0].numpy(), sigma)
        return torch.from_numpy(np.digitize(s, levels).astype(np.int64))

    target.__name__ = f"levels_{'_'.join(map(str, levels))}_{sigma}"
    return target


def _cli_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def run_monai(bundle: Path, inputs: Sequence[Path], output_dir: Path, overrides: Optional[Mapping[str, Any]] = None,
              config_file: str = "configs/inference.json", cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run`` on ``bundle`` for ``inputs``, as a user runs it (from the bundle folder)."""
    args = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / config_file),
            "--bundle_root", str(bundle), "--output_dir", str(output_dir),
            "--datalist", json.dumps([str(p) for p in inputs]), "--dataloader#num_workers", "0"]
    for key, value in (overrides or {}).items():
        args += [f"--{key}", _cli_value(value)]
    env = {**os.environ, "PYTHONUTF8": "1"}
    res = subprocess.run(args, cwd=str(cwd or bundle), capture_output=True, text=True, encoding="utf-8", env=env,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def runner_mask(output_dir: Path, source: Path, postfix: str = "trans") -> Any:
    """The mask MONAI's runner saved for ``source`` (``SaveImaged`` with ``separate_folder``), as nibabel image."""
    import nibabel as nib

    from volseg.formats import case_name

    name = case_name(source)
    hits = sorted(output_dir.rglob(f"{name}_{postfix}.nii.gz")) or sorted(output_dir.rglob(f"*_{postfix}.nii.gz"))
    assert hits, f"no runner output for {source} under {output_dir}: {list(output_dir.rglob('*'))}"
    return nib.load(str(hits[0]))


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.asarray(a) == np.asarray(b)).mean())


def dice(a: np.ndarray, b: np.ndarray, label: int = 1) -> float:
    a, b = np.asarray(a) == label, np.asarray(b) == label
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


@pytest.fixture(scope="session")
def zoo_cases(tmp_path_factory) -> Dict[str, Path]:
    """Scans volseg has not seen, on grids a user brings: anisotropic LAS, oblique, thin, and a DICOM series."""
    from volseg.data import make_phantom
    from volseg.io import write_dicom_series

    root = tmp_path_factory.mktemp("zoo_cases")
    cases = {
        "las": phantom_file(root, "las", (150, 110, 40), (0.9, 1.1, 3.0), np.diag([-1.0, 1.0, 1.0]), seed=1),
        "oblique": phantom_file(root, "oblique", (120, 100, 36), (1.0, 1.0, 2.5),
                                np.diag([-1.0, -1.0, 1.0]) @ rotation(8, -6, 15), seed=2),
        "thin": phantom_file(root, "thin", (140, 120, 12), (0.8, 0.8, 5.0), seed=3),
    }
    ph = make_phantom(shape=(128, 120, 30), spacing=(0.8, 0.8, 2.5), seed=4, n_lesions=2)
    write_dicom_series(torch.round(ph.image), root / "dicom_series")
    cases["dicom"] = root / "dicom_series"
    return cases


@pytest.fixture(scope="session")
def train_images(tmp_path_factory) -> List[Path]:
    root = tmp_path_factory.mktemp("zoo_train")
    return [phantom_file(root, f"train{i}", (130, 120, 40), (1.0, 1.0, 2.5), seed=10 + i) for i in range(2)]


SPLEEN_TARGET = smooth_band(0.25, 0.75, 1.0)  # soft tissue and lesions in the spleen window (-57..164 HU)
WHOLEBODY_OVERRIDES = {"network_def#init_filters": 8}
WHOLEBODY_TARGET = smooth_levels([-0.5, 0.14, 0.6], 1.0)  # air+lung / fat / soft tissue / bone


@pytest.fixture(scope="session")
def spleen(tmp_path_factory, train_images) -> Path:
    """The unmodified model-zoo spleen_ct_segmentation inference config with overfit weights."""
    bundle = copy_zoo("spleen_ct_segmentation", tmp_path_factory.mktemp("zoo") / "spleen_ct_segmentation")
    overfit(bundle, train_images, SPLEEN_TARGET, steps=150)
    return bundle


@pytest.fixture(scope="session")
def wholebody(tmp_path_factory, train_images) -> Path:
    """The unmodified model-zoo wholeBody_ct_segmentation inference config (SegResNet, 105 classes,
    dropout 0.2), run with ``network_def#init_filters`` 8, with overfit weights."""
    bundle = copy_zoo("wholeBody_ct_segmentation", tmp_path_factory.mktemp("zoo") / "wholeBody_ct_segmentation")
    overfit(bundle, train_images, WHOLEBODY_TARGET, overrides=WHOLEBODY_OVERRIDES, steps=150)
    return bundle
