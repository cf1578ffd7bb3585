"""volseg.bundles.trust: a bundle config runs only the safe subset unless the user passes --trust-bundle."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.robustness.conftest import run_volseg
from volseg.bundles.trust import TRUST_FLAG, check_bundle_files, check_config
from volseg.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
BUNDLES = ROOT / "bundles"
ZOO = ROOT / "tests" / "data" / "zoo"
PREDICT_IDS = ["network_def", "preprocessing", "inferer", "postprocessing"]
ZOO_IDS = [*PREDICT_IDS, "checkpointloader"]
PAYLOAD = "$__import__('os').system('touch PWNED') or "


def _parser(files):
    from monai.bundle import ConfigParser

    p = ConfigParser()
    p.read_config([str(f) for f in files])
    return p


def _bundle_config_sets():
    """Every shipped config, as monai.bundle reads it: overlays (evaluate, multi_gpu_train) on train.json."""
    for cfg in sorted(BUNDLES.glob("*/configs/*.json")):
        if cfg.name == "metadata.json":
            continue
        raw = json.loads(cfg.read_text())
        overlay = any("#" in k for k in raw)
        files = [cfg.parent / "train.json", cfg] if overlay else [cfg]
        yield pytest.param(files, id=f"{cfg.parent.parent.name}/{cfg.name}")


@pytest.mark.parametrize("files", list(_bundle_config_sets()))
def test_shipped_bundles_pass_whole_config(files):
    check_config(_parser(files), [""], files[-1])


@pytest.mark.parametrize("name", ["spleen_ct_segmentation", "wholeBody_ct_segmentation"])
def test_model_zoo_configs_pass(name):
    cfg = ZOO / name / "configs" / "inference.json"
    check_config(_parser([cfg]), ZOO_IDS, cfg)
    check_config(json.loads(cfg.read_text()), [""], cfg)  # the whole unmodified config, as a dict


@pytest.fixture
def bundle(tmp_path, monkeypatch) -> Path:
    """A copy of bundles/ct_unet3d; the test runs in tmp_path so a payload would create tmp_path/PWNED."""
    dst = tmp_path / "bundle"
    shutil.copytree(BUNDLES / "ct_unet3d", dst, ignore=shutil.ignore_patterns("models", "logs", "eval"))
    monkeypatch.chdir(tmp_path)
    return dst


def _edit(path: Path, change) -> Path:
    cfg = json.loads(path.read_text())
    change(cfg)
    path.write_text(json.dumps(cfg, indent=1))
    return path


PAYLOADS = {
    "pixdim": (lambda c: c.__setitem__("pixdim", PAYLOAD + "[1.5, 1.5, 2.0]"), "pixdim", "'__import__'"),
    "network_options": (lambda c: c.__setitem__("network_options", PAYLOAD + "{}"), "network_options",
                        "'__import__'"),
    "subprocess_target": (lambda c: c["postprocessing"]["transforms"].append(
        {"_target_": "subprocess.call", "args": ["touch", "PWNED"]}),
        "postprocessing#transforms#", "'subprocess.call'"),
    "import_subprocess": (lambda c: c["imports"].append("$import subprocess"), "imports#", "'import subprocess'"),
}


@pytest.mark.parametrize("case", sorted(PAYLOADS))
def test_issue_payloads_refused(bundle, tmp_path, case):
    change, item, name = PAYLOADS[case]
    cfg = _edit(bundle / "configs" / "inference.json", change)
    with pytest.raises(ConfigError) as ei:
        check_config(_parser([cfg]), PREDICT_IDS, cfg)
    msg = str(ei.value)
    assert msg.startswith(f"{cfg}: bundle item '{item}") and name in msg and msg.endswith(TRUST_FLAG), msg
    assert "\n" not in msg
    check_config(_parser([cfg]), PREDICT_IDS, cfg, trusted=True)  # consent: no check (and nothing run)
    assert not (tmp_path / "PWNED").exists()


def test_train_refuses_payload_unless_trusted(bundle, tmp_path):
    _edit(bundle / "configs" / "train.json", lambda c: c.__setitem__("max_epochs", PAYLOAD + "1"))
    (tmp_path / "data").mkdir()
    run = run_volseg(["train", bundle, "--dataset-dir", tmp_path / "data"], cap_mb=4096)
    assert run.rc == 1 and len(run.err_lines) == 1 and "Traceback" not in run.err, run.err
    line = run.err_lines[0]
    assert str(bundle / "configs" / "train.json") in line and "'max_epochs'" in line and TRUST_FLAG in line
    assert not (tmp_path / "PWNED").exists()
    check_bundle_files([bundle / "configs" / "train.json"], trusted=True)


def test_overlay_error_names_the_overlay_file(bundle):
    over = _edit(bundle / "configs" / "multi_gpu_train.json",
                 lambda c: c.__setitem__("train#trainer#max_epochs", "$eval('1')"))
    with pytest.raises(ConfigError) as ei:
        check_bundle_files([bundle / "configs" / "train.json", over])
    assert str(ei.value).startswith(f"{over}: bundle item 'train#trainer#max_epochs' uses 'eval'")


SAFE = [
    "$[{'image': f} for f in sorted(glob.glob(os.path.join(@dir, '*.nii.gz')))]",
    "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
    "$list(range(len(@items)))[: -2 if @n > 3 else None]",
    "$lambda x: x['image'] * 2 + min(@n, 3)",
    "${k: v for k, v in zip(['a', 'b'], [1, 2])}",
    "$numpy.float32",
    "$torch.float16 if @n else torch.float32",
    "$setattr(torch.backends.cudnn, 'benchmark', True)",
    "$monai.utils.set_determinism(seed=0)",
    "$f'{@dir}/models/model.pt'",
    "$os.path.basename(@dir).upper()",
    "$math.sqrt(@n)",
    "$@net.to(@device)",
    "$torch.optim.Adam(@net.parameters(), lr=1e-3)",
    "$monai.handlers.from_engine(['pred', 'label'])",
    "$json.loads('[1, 2]')",
    "$@net.eval()",
    "$torch.compile(@net)",
]
UNSAFE = {
    "$eval('1')": "'eval'",
    "$exec('x=1')": "'exec'",
    "$open('/etc/passwd').read()": "'open'",
    "$getattr(torch, 'load')('m.pt')": "'getattr'",
    "$__import__('os')": "'__import__'",
    "$(1).__class__.__bases__": "'__class__'",
    "$os.system('id')": "'os.system'",
    "$os.popen('id')": "'os.popen'",
    "$os.environ['HOME']": "'os.environ'",
    "$torch.load('m.pt')": "'torch.load'",
    "$torch.hub.load('x/y', 'm')": "'torch.hub.load'",
    "$torch.jit.load('m.ts')": "'torch.jit.load'",
    "$torch.utils.cpp_extension.load_inline('m', '')": "'torch.utils.cpp_extension.load_inline'",
    "$numpy.load('x.npy', allow_pickle=True)": "'numpy.load'",
    "$torch.os.system('id')": "'torch.os.system'",
    "$torch.from_file('/home/me/.bashrc', shared=True, size=10)": "'torch.from_file'",
    "$torch.UntypedStorage.from_file('x', True, 10)": "'torch.UntypedStorage.from_file'",
    "$monai.utils.optional_import('subprocess')": "'monai.utils.optional_import'",
    "$monai.bundle.ConfigParser": "'monai.bundle.ConfigParser'",
    "$type('X', (), {})": "'type'",
    "$[torch][0]": "'torch' (a module used as a value)",
    "$lambda: eval('1')": "'eval'",
    "$@net.save('x')": "the method '.save'",
    "$setattr(@net, 'training', False)": "'setattr' (allowed on torch.backends only)",
    "$(x := 1)": "Python syntax NamedExpr",
    "$torch.compile(@net, options={'a': __builtins__})": "'__builtins__'",
}


def _cfg(value):
    return {"imports": ["$import os", "$import glob", "$import math", "$import json"], "dir": "/data", "items": [1],
            "n": 2, "device": "cpu", "net": {"_target_": "torch.nn.Identity"}, "x": value}


@pytest.mark.parametrize("expr", SAFE)
def test_safe_expressions_pass(expr):
    check_config(_cfg(expr), ["x"], "c.json")


@pytest.mark.parametrize("expr", sorted(UNSAFE))
def test_unsafe_expressions_refused(expr):
    with pytest.raises(ConfigError) as ei:
        check_config(_cfg(expr), ["x"], "c.json")
    assert UNSAFE[expr] in str(ei.value), str(ei.value)


@pytest.mark.parametrize("component,name", [
    ({"_target_": "scripts.net.Net"}, "_target_ 'scripts.net.Net'"),
    ({"_target_": "monai.utils.module.locate", "_mode_": "callable"}, "'monai.utils.module.locate'"),
    ({"_target_": "run_cmd"}, "_target_ 'run_cmd'"),
    ({"_target_": "NoSuchMonaiThing"}, "(not a MONAI component)"),
    ({"_target_": "$torch.nn.Identity"}, "(not a plain class or function name)"),
    ({"_target_": "LoadImaged", "keys": "image", "reader": "subprocess.call"}, "reader name 'subprocess.call'"),
    ({"_target_": "SaveImage", "writer": "os.system"}, "writer name 'os.system'"),
    ({"_target_": "PersistentDataset", "data": [], "cache_dir": ".", "weights_only": False}, "'weights_only': false"),
    ({"_target_": "volseg.training.run.run_bundle", "bundle": "other"}, "'volseg.training.run.run_bundle'"),
])
def test_unsafe_targets_refused(component, name):
    with pytest.raises(ConfigError) as ei:
        check_config({"x": component}, ["x"], "c.json")
    assert name in str(ei.value), str(ei.value)


def test_only_reachable_items_are_checked():
    cfg = {"evil": "$eval('1')", "inner": {"deep": "$eval('2')", "ok": 1}, "a": "$@inner#ok + 1",
           "b": "$@inner#deep", "c": ["@evil"], "safe": 3}
    check_config(cfg, ["a", "safe"], "c.json")  # evil is never resolved: fine
    with pytest.raises(ConfigError, match="item 'inner#deep' uses 'eval'"):
        check_config(cfg, ["b"], "c.json")  # a '#' path inside a $ expression
    with pytest.raises(ConfigError, match="item 'evil' uses 'eval'"):
        check_config(cfg, ["c"], "c.json")  # an @ reference in a list
    with pytest.raises(ConfigError, match="item 'evil' uses 'eval'"):
        check_config(cfg, [""], "c.json")


def test_macros_are_followed(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"net": {"_target_": "subprocess.Popen", "args": ["id"]}}))
    cfg = {"network_def": f"%{other}#net"}
    with pytest.raises(ConfigError, match="_target_ 'subprocess.Popen'"):
        check_config(cfg, ["network_def"], "c.json")


def test_imports_anywhere_are_checked():
    """MONAI runs every `$import` in a config on the first resolve, reachable or not."""
    with pytest.raises(ConfigError, match="item 'unused#0' uses 'import subprocess'"):
        check_config({"unused": ["$import subprocess"], "x": 1}, ["x"], "c.json")
    with pytest.raises(ConfigError, match="item 'imports#0' uses 'os.system'"):
        check_config({"imports": ["$from os import system"], "x": 1}, ["x"], "c.json")
    check_config({"imports": ["$from monai.networks.nets import UNet", "$import torch.distributed as dist"],
                  "x": "$dist.is_initialized()", "y": "$UNet"}, ["x", "y"], "c.json")


def test_check_does_not_run_anything(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = {"a": PAYLOAD + "1", "b": {"_target_": "subprocess.call", "args": ["touch", "PWNED"]}}
    for item in ("a", "b"):
        with pytest.raises(ConfigError):
            check_config(cfg, [item], "c.json")
    assert os.listdir(tmp_path) == []
