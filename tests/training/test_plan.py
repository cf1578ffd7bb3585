"""``volseg plan``: fingerprint, nnU-Net planning rules, the plan used by ``volseg train`` and MONAI's runner."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.training.conftest import BUNDLES, REPO, overrides_args, run_monai_bundle
from volseg.errors import ConfigError, InputError

SMALL = {"channels": [8, 16, 32]}
FAST = {"max_epochs": 1, "val_interval": 1, "device": "cpu", "cache_rate": 1.0, **SMALL}


@pytest.fixture(scope="module")
def mr_dataset(tmp_path_factory) -> Path:
    """3 MRI-scale phantoms at 2 x 2 x 8 mm (anisotropic), 48 x 48 x 12 voxels."""
    from volseg.data import write_phantom_dataset

    return write_phantom_dataset(tmp_path_factory.mktemp("mr") / "ds", 3, seed=3, progress=False, modality="MR",
                                 shape=(48, 48, 12), spacing=(2.0, 2.0, 8.0))


@pytest.fixture(scope="module")
def ct_plan(ct_dataset):
    from volseg.planning import plan_dataset

    return plan_dataset(ct_dataset, bundle="ct_unet3d", memory_gb=0.05, overrides=SMALL, progress=False)


# -- rules -------------------------------------------------------------------------------------

def test_target_spacing_is_the_median():
    from volseg.planning.rules import target_spacing

    spacing, why = target_spacing([[1.0, 1.0, 2.0], [1.4, 1.2, 2.5], [0.8, 1.1, 3.0]], [[100, 100, 60]] * 3)
    assert spacing == [1.0, 1.1, 2.5]
    assert "anisotropic" not in why


def test_anisotropic_axis_takes_its_10th_percentile():
    from volseg.planning.rules import target_spacing

    z = [5.0, 5.0, 4.0, 6.0, 2.5, 5.0, 5.0, 3.0, 5.5, 5.0]
    spacings = [[0.7, 0.7, s] for s in z]
    spacing, why = target_spacing(spacings, [[512, 512, 40]] * len(z))
    assert spacing[:2] == [0.7, 0.7]
    assert spacing[2] == pytest.approx(np.percentile(z, 10), abs=1e-4) and spacing[2] < np.median(z)
    assert "anisotropic" in why
    # as many voxels along the coarse axis as along the others: not anisotropic data (nnU-Net's second test)
    assert target_spacing(spacings, [[64, 64, 64]] * len(z))[0][2] == pytest.approx(np.median(z))


def test_window_fits_the_memory_budget_in_stride_steps():
    from volseg.planning.rules import BACKWARD_FACTOR, patch_and_batch

    per_voxel, fixed, stride = 200.0, 1e6, 16
    big = patch_and_batch([160, 160, 40], [0.8, 0.8, 3.0], stride, per_voxel, fixed, 64 * 1024 ** 3, 1e9)
    assert big["roi_size"] == [160, 160, 48] and big["fits"]  # capped by the median shape, rounded up to 16
    budget = 0.2 * 1024 ** 3
    small = patch_and_batch([160, 160, 40], [0.8, 0.8, 3.0], stride, per_voxel, fixed, budget, 1e9)
    assert all(r % stride == 0 for r in small["roi_size"]) and small["fits"]
    assert 2 * math.prod(small["roi_size"]) * per_voxel * BACKWARD_FACTOR + fixed <= budget
    assert math.prod(small["roi_size"]) < math.prod(big["roi_size"])
    assert small["patches"] >= 2 and small["estimate_bytes"] <= budget
    # shrunk one stride at a time (each step at most halves an axis >= 2 strides): not far below the budget
    assert 2 * math.prod(small["roi_size"]) * per_voxel * BACKWARD_FACTOR + fixed > budget / 2
    assert small["roi_size"][0] == small["roi_size"][1]  # the in-plane axes shrink together (largest ratio first)


def test_patches_per_step_are_bounded_by_5_percent_of_the_dataset():
    from volseg.planning.rules import patch_and_batch, split_patches

    res = patch_and_batch([64, 64, 64], [1.0] * 3, 16, 10.0, 0.0, 64 * 1024 ** 3, dataset_voxels=20 * 64 ** 3)
    assert res["patches"] == 2  # 5 % of 20 cases is one patch: nnU-Net's minimum of 2 wins
    res = patch_and_batch([64, 64, 64], [1.0] * 3, 16, 10.0, 0.0, 64 * 1024 ** 3, dataset_voxels=400 * 64 ** 3)
    assert res["patches"] == 20
    assert split_patches(20, 4) == (5, 4) and split_patches(2, 4) == (1, 2)


# -- fingerprint -------------------------------------------------------------------------------

def test_fingerprint_spacing_in_ras_axis_order(tmp_path):
    """A volume stored slice-axis first: spacing/shape come back per R, A, S axis (checked with nibabel)."""
    from volseg.planning import dataset_fingerprint

    root = tmp_path / "ds"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    aff = np.array([[0, 0.7, 0, 0], [0, 0, 0.8, 0], [5.0, 0, 0, 0], [0, 0, 0, 1.0]])  # i -> S, j -> R, k -> A
    img = np.zeros((10, 30, 20), np.float32)
    img[3:7, 10:20, 5:15] = 100.0
    nib.save(nib.Nifti1Image(img, aff), str(root / "imagesTr" / "c_0000.nii.gz"))
    nib.save(nib.Nifti1Image((img > 0).astype(np.uint8), aff), str(root / "labelsTr" / "c.nii.gz"))
    fp = dataset_fingerprint(root, progress=False)
    codes = nib.aff2axcodes(nib.load(str(root / "imagesTr" / "c_0000.nii.gz")).affine)
    assert codes == ("S", "R", "A")
    assert fp["cases"][0]["spacing"] == [0.7, 0.8, 5.0] and fp["cases"][0]["shape"] == [30, 20, 10]
    assert fp["class_volume_ml"]["1"]["median"] == pytest.approx(400 * 0.7 * 0.8 * 5.0 / 1000)
    assert fp["intensity"][0]["p50"] == 100.0 and fp["modalities"] == [""]


def test_ct_plan_clips_to_foreground_percentiles(ct_plan, ct_dataset):
    fp, plan = ct_plan["fingerprint"], ct_plan["plan"]
    fg = []
    for case in fp["cases"]:
        img = nib.load(case["image"]).get_fdata()
        lab = nib.load(case["image"].replace("imagesTr", "labelsTr")).get_fdata()
        fg.append(img[lab > 0])
    fg = np.concatenate(fg)
    assert fp["modalities"] == ["CT"]
    norm = plan["intensity"]
    assert norm["mode"] == "clip_zscore"
    # every foreground voxel of these tiny phantoms is sampled: the same figures as numpy on the files
    assert norm["clip"] == pytest.approx(np.percentile(fg, [0.5, 99.5]), abs=1e-2)
    assert norm["mean"] == pytest.approx(fg.mean(), abs=1e-3) and norm["std"] == pytest.approx(fg.std(), abs=1e-3)
    assert plan["pixdim"] == [3.0, 3.0, 4.5] and plan["num_classes"] == 3
    assert plan["labels"] == {"1": "lung", "2": "lesion"}
    mem = ct_plan["memory"]
    assert mem["estimate_gb"] <= 0.05 and mem["stride"] == 4
    assert all(r % 4 == 0 for r in plan["roi_size"])


def test_mr_plan_is_a_per_case_zscore_at_the_anisotropic_spacing(mr_dataset):
    from volseg.planning import plan_dataset

    res = plan_dataset(mr_dataset, bundle="ct_unet3d", memory_gb=0.05, overrides=SMALL, progress=False)
    assert res["fingerprint"]["modalities"] == ["MR"]
    assert res["plan"]["intensity"] == {"mode": "zscore", "nonzero": False}
    assert res["plan"]["pixdim"] == [2.0, 2.0, 8.0]
    assert "anisotropic" in res["reasons"]["pixdim"]
    bigger = plan_dataset(mr_dataset, bundle="ct_unet3d", memory_gb=8, overrides=SMALL,
                          fingerprint=res["fingerprint"])
    assert math.prod(bigger["plan"]["roi_size"]) >= math.prod(res["plan"]["roi_size"])


# -- normalisation in the presets ----------------------------------------------------------------

def test_presets_apply_the_planned_normalisation(ct_dataset):
    from volseg.transforms import ct_transforms, mri_transforms

    case = {"image": str(ct_dataset / "imagesTr" / "case_000.nii.gz")}
    raw = nib.load(case["image"]).get_fdata()
    default = ct_transforms("infer", keys=["image"], pixdim=(3.0, 3.0, 4.5), crop_foreground=False)(case)["image"]
    window = {"mode": "window", "window": [-1000, 400]}
    same = ct_transforms("infer", keys=["image"], pixdim=(3.0, 3.0, 4.5), crop_foreground=False,
                         intensity=window)(case)["image"]
    assert torch.equal(default, same)  # no plan: the HU window, as before
    norm = {"mode": "clip_zscore", "clip": [-900.0, 50.0], "mean": -700.0, "std": 200.0}
    out = ct_transforms("infer", keys=["image"], pixdim=(3.0, 3.0, 4.5), crop_foreground=False,
                        intensity=norm)(case)["image"]
    expect = (np.clip(raw, -900, 50) + 700) / 200  # same grid: 3 x 3 x 4.5 mm is the file's own spacing
    np.testing.assert_allclose(np.sort(out.numpy().ravel()), np.sort(expect.ravel()), atol=1e-4)
    z = mri_transforms("infer", keys=["image"], pixdim=(3.0, 3.0, 4.5), crop_foreground=False,
                       intensity={"mode": "zscore", "nonzero": False})(case)["image"]
    assert abs(float(z.mean())) < 1e-4 and abs(float(z.std(unbiased=False)) - 1) < 1e-3
    with pytest.raises(ConfigError, match="mode"):
        ct_transforms("val", intensity={"mode": "percentile"})
    with pytest.raises(ConfigError, match="std"):
        ct_transforms("val", intensity={"mode": "clip_zscore", "clip": [0, 1], "mean": 0, "std": 0})


def test_non_square_planned_windows_batch(ct_dataset):
    """A planned window need not be square in-plane: no 90-degree turn then (it would change the shape)."""
    from monai.data import list_data_collate

    from volseg.transforms import ct_transforms

    case = {"image": str(ct_dataset / "imagesTr" / "case_000.nii.gz"),
            "label": str(ct_dataset / "labelsTr" / "case_000.nii.gz")}
    pre = ct_transforms("train", pixdim=(3.0, 3.0, 4.5), roi_size=(16, 20, 8), num_samples=8)
    pre.set_random_state(seed=0)
    for _ in range(3):
        batch = list_data_collate([pre(dict(case)), pre(dict(case))])
        assert tuple(batch["image"].shape) == (16, 1, 16, 20, 8) and tuple(batch["label"].shape) == (16, 1, 16, 20, 8)


# -- the plan in training --------------------------------------------------------------------------

def test_volseg_plan_cli_writes_plan_fingerprint_and_png(mr_dataset, tmp_path, capsys):
    from volseg.cli import main

    out = tmp_path / "plan.json"
    assert main(["plan", str(mr_dataset), "-o", str(out), "--bundle", "ct_unet3d", "--memory-gb", "0.05",
                 "channels=[8,16,32]"]) == 0
    text = capsys.readouterr().out
    assert "spacing (mm, R x A x S): median 2 x 2 x 8" in text and "per-case z-score" in text
    plan = json.loads(out.read_text())
    assert set(plan) == {"pixdim", "roi_size", "batch_size", "num_samples", "intensity", "in_channels",
                         "num_classes", "labels"}
    details = json.loads((tmp_path / "plan_fingerprint.json").read_text())
    assert details["fingerprint"]["n_cases"] == 3 and "plan" not in details
    png = tmp_path / "plan_fingerprint.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10000
    proc = subprocess.run([sys.executable, "-m", "volseg", "plan", str(tmp_path / "missing"), "-o",
                           str(tmp_path / "p2.json")], capture_output=True, encoding="utf-8", errors="replace")
    assert proc.returncode == 1 and "dataset folder not found" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("p2*"))


def test_volseg_train_uses_the_plan(mr_dataset, tmp_path):
    from monai.transforms import NormalizeIntensityd

    from volseg.cli import main

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"pixdim": [4.0, 4.0, 8.0], "roi_size": [16, 16, 8], "batch_size": 1,
                                "num_samples": 1, "intensity": {"mode": "zscore", "nonzero": False}}))
    over = [f"{k}={json.dumps(v)}" for k, v in dict(FAST, roi_size=[24, 24, 8]).items()]
    assert main(["train", "ct_unet3d", "--dataset-dir", str(mr_dataset), "--output-dir", str(tmp_path / "run"),
                 "--plan", str(plan)] + over) == 0
    cfg = json.loads((tmp_path / "run" / "configs" / "inference.json").read_text())
    assert cfg["pixdim"] == [4.0, 4.0, 8.0] and cfg["intensity"] == {"mode": "zscore", "nonzero": False}
    assert cfg["roi_size"] == [24, 24, 8]  # key=value on the command line wins over the plan
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(tmp_path / "run" / "configs" / "inference.json"))
    pre = parser.get_parsed_content("preprocessing")
    assert any(isinstance(t, NormalizeIntensityd) for t in pre.transforms)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"pixdim": [4.0, 4.0, 8.0], "no_such_key": 1}))
    with pytest.raises(ConfigError, match="no_such_key"):
        main(["train", "ct_unet3d", "--dataset-dir", str(mr_dataset), "--plan", str(bad), "--debug"])
    bad.write_text("[1, 2]")
    with pytest.raises(InputError, match="JSON object"):
        main(["train", "ct_unet3d", "--dataset-dir", str(mr_dataset), "--plan", str(bad), "--debug"])


@pytest.mark.bundle
def test_monai_runner_takes_the_plan_as_an_extra_config_file(mr_dataset, tmp_path):
    from volseg.planning import plan_dataset, write_plan

    res = plan_dataset(mr_dataset, bundle="ct_unet3d", memory_gb=0.02, overrides=SMALL, progress=False)
    write_plan(res, tmp_path / "plan.json")
    roi = res["plan"]["roi_size"]
    assert roi != [96, 96, 96]
    cfgs = json.dumps([str(BUNDLES / "ct_unet3d" / "configs" / "train.json"), str(tmp_path / "plan.json")])
    proc = run_monai_bundle(["training", "--config_file", cfgs, "--bundle_root", str(BUNDLES / "ct_unet3d"),
                             "--dataset_dir", str(mr_dataset), "--output_dir", str(tmp_path / "run")]
                            + overrides_args(FAST), cwd=REPO)
    # the network summary is printed for the plan's window
    assert f"per (1, 1, {', '.join(str(r) for r in roi)}) input" in proc.stdout
    assert (tmp_path / "run" / "models" / "model.pt").is_file()


@pytest.mark.parametrize("name", ["ct_unet3d", "ct_deeplab3d", "mri_unet3d"])
def test_plan_file_reaches_training_and_validation_preprocessing(name, mr_dataset, tmp_path):
    """train.json + plan.json as MONAI merges them (the runner's --config_file list): the plan's
    normalisation and spacing are in both pipelines."""
    from monai.bundle import ConfigWorkflow
    from monai.transforms import ScaleIntensityRanged, Spacingd

    norm = {"mode": "clip_zscore", "clip": [100.0, 2000.0], "mean": 500.0, "std": 250.0}
    (tmp_path / "plan.json").write_text(json.dumps({"pixdim": [4.0, 4.0, 8.0], "intensity": norm}))
    wf = ConfigWorkflow(config_file=[str(BUNDLES / name / "configs" / "train.json"), str(tmp_path / "plan.json")],
                        workflow_type="train", bundle_root=str(BUNDLES / name), dataset_dir=str(mr_dataset),
                        output_dir=str(tmp_path / "out"))
    wf.initialize()
    for section in ("train", "validate"):
        pre = wf.parser.get_parsed_content(f"{section}#preprocessing").transforms
        scale = [t for t in pre if isinstance(t, ScaleIntensityRanged)]
        assert len(scale) == 1 and scale[0].scaler.a_min == 100.0 and scale[0].scaler.b_min == pytest.approx(-1.6)
        spacing = [t for t in pre if isinstance(t, Spacingd)][0]
        assert tuple(spacing.spacing_transform.pixdim) == (4.0, 4.0, 8.0)


def test_plan_refuses_bundle_code_unless_trusted(ct_plan, tmp_path, monkeypatch):
    """The planner builds the bundle's network_def: a bundle running code outside the safe subset is refused."""
    import shutil

    from volseg.planning import plan_dataset

    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLES / "ct_unet3d", bundle, ignore=shutil.ignore_patterns("models", "logs", "eval"))
    cfg = json.loads((bundle / "configs" / "train.json").read_text())
    cfg["channels"] = "$__import__('os').system('touch PWNED') or [8, 16, 32]"
    (bundle / "configs" / "train.json").write_text(json.dumps(cfg))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="channels"):
        plan_dataset("unused", bundle=bundle, fingerprint=ct_plan["fingerprint"])
    assert not (tmp_path / "PWNED").exists()
