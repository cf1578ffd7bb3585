"""``plan_dataset``: fingerprint a dataset and turn it into overrides for a training bundle."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from volseg.errors import ConfigError, InputError

PathLike = Union[str, "os.PathLike[str]"]


def resolve_bundle(bundle: Optional[PathLike], modalities: Any = ()) -> Path:
    """A bundle folder from a path or a shipped name; ``None``: ``ct_unet3d`` for CT, else ``mri_unet3d``."""
    from volseg.bundles.shipped import find_bundle

    if bundle is None:
        ct = [str(m).upper() for m in modalities] == ["CT"]
        return find_bundle("ct_unet3d" if ct else "mri_unet3d")
    p = Path(bundle)
    if (p / "configs" / "train.json").is_file():
        return p
    if "/" not in str(bundle) and p.name == str(bundle):
        return find_bundle(str(bundle))
    raise ConfigError(f"not a training bundle (no configs/train.json): {p}")


def _network_probe(parser: Any, where: Path):
    """``in_channels -> (activation bytes per voxel, fixed bytes, stride)`` for the bundle's ``network_def``."""
    from volseg.bundles.config import build
    from volseg.networks.parts import network_stride
    from volseg.planning.rules import memory_model

    def probe(in_channels: int) -> Tuple[float, float, int]:
        parser["in_channels"] = int(in_channels)
        net = build(parser, "network_def", where)
        stride = network_stride(net)
        per_voxel, fixed = memory_model(net, in_channels, stride)
        return per_voxel, fixed, stride

    return probe


def plan_dataset(dataset_dir: PathLike, bundle: Optional[PathLike] = None, memory_gb: Optional[float] = None,
                 overrides: Optional[Mapping[str, Any]] = None, fingerprint: Optional[Dict[str, Any]] = None,
                 progress: bool = True, trusted: bool = False) -> Dict[str, Any]:
    """Plan training settings for ``dataset_dir`` (MSD ``dataset.json`` or nnU-Net ``imagesTr``/``labelsTr``).

    ``bundle``: folder or shipped name (default by modality: ``ct_unet3d`` / ``mri_unet3d``);
    ``memory_gb``: training memory budget (default 8, nnU-Net's); ``overrides``: bundle keys the run
    will use (e.g. ``{"channels": [8, 16, 32]}``), so the window is sized for that network. The
    bundle's ``network_def`` is built (to measure it), so it is checked like a training run first
    (:mod:`volseg.bundles.trust`) unless ``trusted``.
    Returns ``{"plan": {key: value} (only keys the bundle's train.json has), "reasons": {key: why},
    "memory": {...}, "bundle": path, "dropped": [keys the bundle lacks], "fingerprint": {...}}``
    (rules in :mod:`volseg.planning.rules`).
    """
    from volseg.bundles.config import locate_bundle, read_parser
    from volseg.bundles.trust import check_config
    from volseg.planning.fingerprint import dataset_fingerprint
    from volseg.planning.rules import decide

    if memory_gb is not None and not float(memory_gb) > 0:
        raise ConfigError(f"memory budget must be > 0 GB, got {memory_gb}")
    fp = fingerprint if fingerprint is not None else dataset_fingerprint(dataset_dir, progress=progress)
    root = resolve_bundle(bundle, fp["modalities"])
    source = locate_bundle(root, name="train")
    parser = read_parser(source, overrides)
    check_config(parser, ["network_def"], source.config_files[0], trusted=trusted)
    keys = set(parser.get().keys())
    plan, reasons, memory = decide(fp, _network_probe(parser, source.config_files[0]), memory_gb,
                                   int(parser.get("num_samples", 1)))
    dropped = sorted(k for k in plan if k not in keys)
    plan = {k: v for k, v in plan.items() if k in keys}
    return {"plan": plan, "reasons": {k: reasons[k] for k in plan}, "memory": memory, "bundle": str(root),
            "dropped": dropped, "fingerprint": fp}


def read_plan(path: PathLike) -> Dict[str, Any]:
    """The bundle overrides in a plan file written by ``volseg plan`` (a JSON object)."""
    p = Path(path)
    try:
        plan = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read plan ({exc})", p) from None
    if not isinstance(plan, dict) or not plan:
        raise InputError("a plan is a JSON object of bundle keys (pixdim, roi_size, ...)", p)
    if plan.get("intensity") is not None:
        from volseg.transforms.common import check_intensity

        check_intensity(plan["intensity"])
    return plan


def plan_paths(path: PathLike) -> Dict[str, Path]:
    """Where :func:`write_plan` writes: ``plan`` (the JSON given), ``fingerprint`` and ``png`` beside it."""
    p = Path(path)
    stem = p.name[: -len(".json")] if p.name.endswith(".json") else p.name
    return {"plan": p, "fingerprint": p.with_name(f"{stem}_fingerprint.json"),
            "png": p.with_name(f"{stem}_fingerprint.png")}


def write_plan(result: Mapping[str, Any], path: PathLike) -> Dict[str, Path]:
    """Write the plan (bundle overrides only, usable as an extra ``--config_file``), the full
    fingerprint + reasons as ``<stem>_fingerprint.json`` and the histograms as ``<stem>_fingerprint.png``."""
    from volseg._atomic import atomic_path
    from volseg.planning.report import plot_fingerprint

    paths = plan_paths(path)
    details = {k: v for k, v in result.items() if k != "plan"}
    with atomic_path(paths["fingerprint"]) as tmp:
        tmp.write_text(json.dumps(details, indent=2) + "\n")
    plot_fingerprint(result, paths["png"])
    with atomic_path(paths["plan"]) as tmp:
        tmp.write_text(json.dumps(result["plan"], indent=4) + "\n")
    return paths
