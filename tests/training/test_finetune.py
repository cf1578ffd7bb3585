"""Fine-tuning: ``--init-from`` loads matching tensors and reports the rest; ``--freeze-encoder`` keeps
the encoder fixed for N epochs; the same through ``python -m monai.bundle run --init_from``."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from tests.training.conftest import BUNDLES, REPO, TINY, overrides_args, run_monai_bundle
from volseg.errors import ConfigError, InputError

CH = [8, 16, 32]
# MONAI UNet at channels 8-16-32: the last up block holds the 4 tensors sized by the class count
HEAD = ["model.2.0.conv.weight", "model.2.0.conv.bias", "model.2.1.conv.unit0.conv.weight",
        "model.2.1.conv.unit0.conv.bias"]


def _unet(classes: int, seed: int = 0, **kw):
    from volseg.networks import create_network

    torch.manual_seed(seed)
    return create_network("unet", spatial_dims=3, in_channels=1, out_channels=classes, channels=CH, strides=[2, 2],
                          **kw)


@pytest.fixture(scope="module")
def pretrained(ct_dataset, tmp_path_factory) -> Path:
    """ct_unet3d (3 classes, 8-16-32) trained 1 epoch on the CT phantoms: a bundle folder with models/model.pt."""
    from volseg.training import run_bundle

    out = tmp_path_factory.mktemp("pre")
    run_bundle(BUNDLES / "ct_unet3d", ct_dataset, output_dir=out, overrides=dict(TINY, max_epochs=1))
    return out


def test_three_to_five_classes_loads_all_but_the_head(tmp_path):
    from volseg.training.finetune import load_matching, read_state_dict

    src, dst = _unet(3, seed=1), _unet(5, seed=2)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    torch.save({"model": src.state_dict(), "epoch": 3}, tmp_path / "checkpoint.pt")  # volseg checkpoint layout
    report = load_matching(dst, read_state_dict(tmp_path / "checkpoint.pt"), source="ckpt")
    n = len(dst.state_dict())
    assert [s[0] for s in report.skipped] == HEAD
    assert report.skipped[0][1:] == ((16, 3, 3, 3, 3), (16, 5, 3, 3, 3))
    assert report.new == HEAD and report.unused == []
    assert len(report.loaded) == n - 4 == 31
    assert report.loaded_values == sum(v.numel() for k, v in src.state_dict().items() if k not in HEAD)
    for k, v in dst.state_dict().items():
        assert torch.equal(v, before[k] if k in HEAD else src.state_dict()[k]), k
    text = report.format()
    assert "loaded 31 tensors" in text and "skipped 4 (shape mismatch)" in text and "newly initialised 4" in text
    assert "model.2.0.conv.weight [16, 3, 3, 3, 3] -> [16, 5, 3, 3, 3]" in text


def test_zoo_state_dict_and_ddp_prefix(tmp_path):
    """A model-zoo bundle (plain MONAI UNet, batch norm, bare state_dict) and a DDP-saved one."""
    from monai.networks.nets import UNet

    from volseg.training.finetune import load_matching, read_state_dict

    zoo = tmp_path / "zoo"
    (zoo / "models").mkdir(parents=True)
    (zoo / "configs").mkdir()
    src = UNet(3, 1, 2, CH, (2, 2), num_res_units=2, norm="batch")
    torch.save(src.state_dict(), zoo / "models" / "model.pt")
    dst = _unet(3, norm="batch")
    report = load_matching(dst, read_state_dict(zoo))  # the bundle folder
    # 2 -> 3 classes: the last up block's conv, batch norm (weight, bias, running stats) and final conv
    assert len(report.skipped) == 8 and all(s[0].startswith("model.2.") for s in report.skipped)
    assert report.unused == []
    assert any(k.endswith("running_mean") for k in report.loaded)  # buffers travel too
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, tmp_path / "ddp.pt")
    assert sorted(read_state_dict(tmp_path / "ddp.pt")) == sorted(src.state_dict())


def test_bad_sources_are_one_line_errors(tmp_path):
    from volseg.training.finetune import load_matching, read_state_dict

    with pytest.raises(InputError, match="not found"):
        read_state_dict(tmp_path / "nope.pt")
    (tmp_path / "empty_bundle").mkdir()
    with pytest.raises(InputError, match="models/model.pt"):
        read_state_dict(tmp_path / "empty_bundle")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read weights"):
        read_state_dict(tmp_path / "junk.pt")
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "pickled_module.pt")  # refused by weights_only
    with pytest.raises(InputError, match="cannot read weights"):
        read_state_dict(tmp_path / "pickled_module.pt")
    with pytest.raises(ConfigError, match="no tensor matches"):
        load_matching(_unet(3), torch.nn.Linear(2, 2).state_dict())


@pytest.mark.parametrize("name,first,last", [
    ("unet", "model.0.conv.unit0.conv.weight", "model.2.1.conv.unit0.conv.weight"),
    ("unet_classic", "encoder.0.0.weight", "head.weight"),
    ("deeplab", "stem.0.0.weight", "head.weight"),
    ("segnet", "encoder.0.0.0.weight", "head.weight"),
    ("fcn", "stages.0.0.0.weight", "score_fr.weight"),
])
def test_encoder_is_the_down_path(name, first, last):
    from volseg.networks import create_network
    from volseg.networks.parts import encoder_parameter_names

    net = create_network(name, spatial_dims=2, in_channels=1, out_channels=3)
    enc = encoder_parameter_names(net)
    names = [n for n, _ in net.named_parameters()]
    assert first in enc and last in names and last not in enc
    assert 0 < len(enc) < len(names)


def test_monai_unet_encoder_is_down_blocks_and_bottom():
    from volseg.networks.parts import encoder_parameter_names

    enc = encoder_parameter_names(_unet(3))
    blocks = sorted({re.sub(r"\.(conv|residual)\..*$", "", n) for n in enc})
    assert blocks == ["model.0", "model.1.submodule.0", "model.1.submodule.1.submodule"]


def _params(path: Path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_freeze_encoder_then_unfreeze(pretrained, ct_dataset, tmp_path):
    """Frozen for epoch 1: encoder tensors equal the pre-trained ones, decoder tensors moved; epoch 2 moves both."""
    from volseg.networks.parts import encoder_parameter_names
    from volseg.training import run_bundle

    init = torch.load(pretrained / "models" / "model.pt", weights_only=True)
    enc = set(encoder_parameter_names(_unet(3)))
    dec = [k for k in init if k not in enc and k.endswith("weight") and "adn" not in k]
    over = dict(TINY, max_epochs=1, init_from=str(pretrained), freeze_encoder=1, learning_rate=0.01)
    run_bundle(BUNDLES / "ct_unet3d", ct_dataset, output_dir=tmp_path / "a", overrides=over)
    after1 = _params(tmp_path / "a" / "models" / "checkpoint_last.pt")
    assert all(torch.equal(after1[k], init[k]) for k in enc)
    assert all(not torch.equal(after1[k], init[k]) for k in dec)
    run_bundle(BUNDLES / "ct_unet3d", ct_dataset, output_dir=tmp_path / "a",
               overrides=dict(over, max_epochs=2, resume=True))
    after2 = _params(tmp_path / "a" / "models" / "checkpoint_last.pt")
    assert all(not torch.equal(after2[k], init[k]) for k in enc if k.endswith("conv.weight"))


def test_cli_init_from_reports_and_checks(pretrained, ct_dataset, tmp_path, capsys):
    from volseg.cli import main

    over = [f"{k}={json.dumps(v)}" for k, v in dict(TINY, max_epochs=1, num_classes=5,
                                                   labels={"1": "lung", "2": "lesion", "3": "a", "4": "b"}).items()]
    args = ["train", "ct_unet3d", "--dataset-dir", str(ct_dataset), "--output-dir", str(tmp_path / "ft")]
    assert main(args + ["--init-from", str(pretrained / "models" / "model.pt")] + over) == 0
    out = capsys.readouterr().out
    assert "loaded 31 tensors" in out and "skipped 4 (shape mismatch)" in out and "newly initialised 4" in out
    with pytest.raises(ConfigError, match="needs --init-from"):
        main(args + ["--freeze-encoder", "2", "--debug"])
    with pytest.raises(InputError, match="not found"):
        main(args + ["--init-from", str(tmp_path / "nope"), "--debug"])
    with pytest.raises(ConfigError, match="init_from"):
        main(["train", "lung_png2d", "--dataset-dir", str(ct_dataset), "--init-from", str(pretrained), "--debug"])


@pytest.mark.bundle
def test_monai_runner_init_from(pretrained, ct_dataset, tmp_path):
    proc = run_monai_bundle(["training", "--config_file", "bundles/ct_unet3d/configs/train.json",
                             "--dataset_dir", str(ct_dataset), "--output_dir", str(tmp_path),
                             "--init_from", str(pretrained), "--freeze_encoder", "1"]
                            + overrides_args(dict(TINY, max_epochs=1)), cwd=REPO)
    assert "loaded 35 tensors" in proc.stdout and "skipped 0" in proc.stdout
    assert "encoder (24 tensors) frozen for epochs 1-1" in proc.stdout
