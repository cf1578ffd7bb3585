"""Fine-tuning: start a training run from another model's weights, optionally with a frozen encoder.

``read_state_dict`` reads a bundle folder or a ``model.pt`` (plain state_dict, ``{"model": sd}``
as in volseg's checkpoints, or a MONAI model-zoo bundle's), always with ``weights_only=True``;
``load_matching`` copies every tensor whose name and shape match and reports the rest;
``InitFrom`` is the trainer handler the 3D bundles' ``train.json`` wires to the keys
``init_from`` (path or null) and ``freeze_encoder`` (epochs).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch

from volseg.errors import ConfigError, InputError

PathLike = Union[str, "os.PathLike[str]"]
Shape = Tuple[int, ...]


def find_weights(model: PathLike) -> Path:
    """The weights file of ``model``: a ``.pt``/``.pth`` file, or a bundle folder's ``models/model.pt``."""
    p = Path(model).expanduser()
    if p.is_dir():
        for cand in (p / "models" / "model.pt", p / "model.pt"):
            if cand.is_file():
                return cand
        raise InputError("no models/model.pt in this bundle folder (train it first, or give the .pt file)", p)
    if not p.is_file():
        raise InputError("model to initialise from not found", p)
    return p


def read_state_dict(model: PathLike) -> Dict[str, torch.Tensor]:
    """``{name: tensor}`` from a bundle folder or a weights file, loaded on the CPU with
    ``weights_only=True``. Accepts a plain state_dict or one under ``"model"``, ``"state_dict"`` or
    ``"network"``; a ``module.`` prefix (saved from DistributedDataParallel) is dropped."""
    path = find_weights(model)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad input file
        raise InputError(f"cannot read weights: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                         path) from None
    for key in ("model", "state_dict", "network"):
        if isinstance(sd, Mapping) and isinstance(sd.get(key), Mapping):
            sd = sd[key]
            break
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError("not a state_dict (expected {name: tensor}, or one under 'model')", path)
    out = {str(k): v for k, v in sd.items()}
    if out and all(k.startswith("module.") for k in out):
        out = {k[len("module."):]: v for k, v in out.items()}
    return out


@dataclass
class TransferReport:
    """What :func:`load_matching` did. ``skipped``: ``(name, shape in the file, shape in the network)``;
    ``new``: network tensors left as initialised (absent from the file or skipped);
    ``unused``: file tensors the network does not have."""

    source: str
    loaded: List[str] = field(default_factory=list)
    skipped: List[Tuple[str, Shape, Shape]] = field(default_factory=list)
    new: List[str] = field(default_factory=list)
    unused: List[str] = field(default_factory=list)
    loaded_values: int = 0

    def format(self, limit: int = 6) -> str:
        """A few lines for the training log."""
        def few(items: List[str]) -> str:
            return ", ".join(items[:limit]) + (f", ... (+{len(items) - limit})" if len(items) > limit else "")

        lines = [f"init from {self.source}: loaded {len(self.loaded)} tensors ({self.loaded_values / 1e6:.2f} M values), "
                 f"skipped {len(self.skipped)} (shape mismatch), newly initialised {len(self.new)}, "
                 f"unused {len(self.unused)}"]
        if self.skipped:
            lines.append("  skipped: " + few([f"{n} {list(a)} -> {list(b)}" for n, a, b in self.skipped]))
        if self.new:
            lines.append("  newly initialised: " + few(self.new))
        if self.unused:
            lines.append("  unused (not in this network): " + few(self.unused))
        return "\n".join(lines)


def load_matching(network: torch.nn.Module, state_dict: Mapping[str, torch.Tensor],
                  source: str = "state_dict") -> TransferReport:
    """Copy into ``network`` every tensor of ``state_dict`` whose name and shape match (parameters
    and buffers); everything else keeps its initialisation. Raises ``ConfigError`` when nothing
    matches (another architecture)."""
    from volseg.training.setup import unwrap

    net = unwrap(network)
    own = net.state_dict()
    report = TransferReport(source=source)
    take: Dict[str, torch.Tensor] = {}
    for name, target in own.items():
        src = state_dict.get(name)
        if src is None:
            report.new.append(name)
        elif tuple(src.shape) != tuple(target.shape):
            report.skipped.append((name, tuple(src.shape), tuple(target.shape)))
            report.new.append(name)
        else:
            take[name] = src
            report.loaded.append(name)
            report.loaded_values += int(src.numel())
    report.unused = [k for k in state_dict if k not in own]
    if not take:
        raise ConfigError(f"{source}: no tensor matches this network by name and shape (another architecture?); "
                          f"file has e.g. {', '.join(list(state_dict)[:3]) or 'nothing'}, the network "
                          f"{', '.join(list(own)[:3])}")
    net.load_state_dict(take, strict=False)
    return report


def set_encoder_trainable(network: torch.nn.Module, trainable: bool) -> int:
    """``requires_grad`` of the encoder's parameters (:mod:`volseg.networks.parts`); returns how many tensors."""
    from volseg.networks.parts import encoder_parameter_names
    from volseg.training.setup import unwrap

    net = unwrap(network)
    names = set(encoder_parameter_names(net))
    for name, p in net.named_parameters():
        if name in names:
            p.requires_grad_(trainable)
    return len(names)


class InitFrom:
    """Trainer handler: at start, load the matching weights of ``path`` (bundle folder or ``.pt``;
    ``None`` does nothing) into ``network`` and print what was loaded, skipped and newly
    initialised; with ``freeze_encoder`` N > 0, the encoder's parameters do not train in epochs
    1..N and train from epoch N+1 (batch-norm running statistics still adapt).

    List it before ``TrainingRecorder`` in ``train#handlers`` so ``resume=true`` wins over it.
    Frozen parameters get no gradient, so the optimizer leaves them untouched (weight decay included).
    """

    def __init__(self, network: torch.nn.Module, path: Optional[PathLike] = None, freeze_encoder: int = 0):
        self.network, self.path = network, (str(path) if path not in (None, "", "null") else None)
        try:
            self.freeze_epochs = int(freeze_encoder or 0)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"freeze_encoder takes a number of epochs, got {freeze_encoder!r}") from exc
        if self.freeze_epochs < 0:
            raise ConfigError(f"freeze_encoder must be >= 0 epochs, got {self.freeze_epochs}")
        if self.freeze_epochs and self.path is None:
            raise ConfigError("freeze_encoder needs init_from (freezing a random encoder trains nothing)")
        if self.freeze_epochs and hasattr(network, "module"):
            raise ConfigError("freeze_encoder does not work with DistributedDataParallel (multi-GPU): "
                              "its gradient buckets are fixed at start")
        if self.freeze_epochs:
            from volseg.networks.parts import encoder_parameter_names

            encoder_parameter_names(network)  # fail at config time for a network without an encoder
        self.report: Optional[TransferReport] = None
        self.frozen = False

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self._started)
        if self.freeze_epochs:
            engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)

    def _started(self, engine: Any) -> None:
        from volseg.training.setup import is_rank0

        if self.path is None:
            return
        self.report = load_matching(self.network, read_state_dict(self.path), source=str(find_weights(self.path)))
        if is_rank0():
            print(self.report.format(), flush=True)

    def _epoch_started(self, engine: Any) -> None:
        from volseg.training.setup import is_rank0

        freeze = int(engine.state.epoch) <= self.freeze_epochs
        if freeze != self.frozen:
            n = set_encoder_trainable(self.network, not freeze)
            self.frozen = freeze
            if is_rank0():
                state = f"frozen for epochs 1-{self.freeze_epochs}" if freeze else "unfrozen"
                print(f"encoder ({n} tensors) {state}", flush=True)
