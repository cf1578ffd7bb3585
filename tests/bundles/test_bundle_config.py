"""Reading bundles as MONAI's runner does: where configs and weights are, YAML, merges, overrides,
``scripts/`` imports, and one-line errors for what is missing."""
from __future__ import annotations

import json
import sys

import pytest

from tests.bundles.conftest import ZOO, copy_zoo, make_bundle_dir
from volseg.bundles.config import locate_bundle, parse_overrides, parse_value, read_parser
from volseg.errors import ConfigError, InputError


def test_parse_values_and_overrides_as_the_runner_reads_them():
    assert parse_overrides(["inferer#overlap=0.5", "device=cpu", "roi_size=[64, 64, 32]", "flag=True",
                            "expr=$@a + 1"]) == {"inferer#overlap": 0.5, "device": "cpu", "roi_size": [64, 64, 32],
                                                 "flag": True, "expr": "$@a + 1"}
    assert parse_value("(1, 2)") == (1, 2) and parse_value("null") is None
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["no_equals_sign"])


def test_locate_bundle_folder_weights_file_and_training_output(tmp_path):
    bundle = copy_zoo("spleen_ct_segmentation", tmp_path / "spleen")
    src = locate_bundle(bundle)
    assert src.config_files == [(bundle / "configs" / "inference.json").resolve()] and src.weights is None
    assert src.metadata["network_data_format"]["outputs"]["pred"]["channel_def"]["1"] == "spleen"
    (bundle / "models" / "model.pt").write_bytes(b"")
    assert locate_bundle(bundle / "models" / "model.pt").weights == (bundle / "models" / "model.pt").resolve()
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    with pytest.raises(InputError, match="--config"):
        locate_bundle(run)
    (run / "models" / "model.pt").write_bytes(b"")
    src = locate_bundle(run, config=bundle)
    assert src.root == bundle.resolve() and src.weights == (run / "models" / "model.pt").resolve()
    with pytest.raises(InputError, match="model bundle not found"):
        locate_bundle(tmp_path / "nope")
    with pytest.raises(InputError, match="weights file"):
        locate_bundle(bundle / "configs" / "metadata.json")


def test_yaml_merge_overrides_and_bundle_root(tmp_path):
    root = make_bundle_dir(tmp_path / "b", {"inference.yaml": "a: 1\nb: {c: 2}\nroot: $@bundle_root\n",
                                            "extra.json": {"b": {"c": 5}, "d": "$@a + 1"}})
    src = locate_bundle(root, config=[root / "configs" / "inference.yaml", root / "configs" / "extra.json"])
    parser = read_parser(src, {"b#c": 7})
    assert parser.get_parsed_content("b#c") == 7 and parser.get_parsed_content("d") == 2
    assert parser.get_parsed_content("root") == str(root.resolve())


def test_each_bundle_imports_its_own_scripts(tmp_path):
    from volseg.bundles.config import build

    roots = []
    for name, value in (("one", 1), ("two", 2)):
        roots.append(make_bundle_dir(tmp_path / name, {"inference.json": {"x": {"_target_": "scripts.m.value"}}},
                                     scripts={"__init__.py": "", "m.py": f"def value():\n    return {value}\n"}))
    got = [build(read_parser(locate_bundle(r)), "x", r) for r in roots]
    assert got == [1, 2]
    assert sys.path[0] == str(roots[1].resolve())


def test_predictor_errors_are_one_line_and_name_the_config(tmp_path):
    from volseg.inference import Predictor

    cfg = json.loads((ZOO / "spleen_ct_segmentation" / "configs" / "inference.json").read_text())
    cfg["inferer"]["mode"] = "median"
    bad = make_bundle_dir(tmp_path / "bad", {"inference.json": cfg})
    with pytest.raises(ConfigError, match="inference.json.*median"):
        Predictor(bad, backend="eager")
    cfg.pop("inferer")
    none = make_bundle_dir(tmp_path / "none", {"inference.json": cfg})
    with pytest.raises(ConfigError, match="no 'inferer'"):
        Predictor(none, backend="eager")
    (tmp_path / "broken" / "configs").mkdir(parents=True)
    (tmp_path / "broken" / "configs" / "inference.json").write_text("{not json")
    with pytest.raises((InputError, ConfigError), match="cannot read (the )?bundle config"):
        Predictor(tmp_path / "broken")


def test_unwrap_error_finds_volseg_errors_in_any_wrapping() -> None:
    """MONAI wraps errors by ``raise ... from`` (cause) or inside ``except`` (context); cycles end the walk."""
    from volseg.bundles.config import unwrap_error
    from volseg.errors import InputError

    inner = InputError("bad scan", "ct.nii.gz")
    try:
        try:
            raise inner
        except InputError as exc:
            raise RuntimeError("applying transform <LoadImaged>") from exc
    except RuntimeError as caused:
        try:
            try:
                raise caused
            except RuntimeError:
                raise ValueError("Component to instantiate must represent a valid class")  # context only
        except ValueError as outer:
            assert unwrap_error(outer) is inner
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__cause__, b.__cause__ = b, a
    assert unwrap_error(a) is None
