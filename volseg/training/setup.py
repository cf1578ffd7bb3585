"""Small builders the training bundles call: device, datasets, loaders, DDP, network-with-summary."""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from volseg.errors import ConfigError
from volseg.inference.core import resolve_device  # noqa: F401 - the bundles name volseg.training.resolve_device


def seed_everything(seed: int = 0, deterministic: bool = True) -> None:
    """Make a run repeatable: MONAI ``set_determinism(seed)`` (torch, numpy and ``random`` seeded,
    cuDNN deterministic without benchmarking) and, with ``deterministic``, deterministic algorithms
    wherever torch has them (``torch.use_deterministic_algorithms(True, warn_only=True)``: ops
    without one warn instead of failing; ``CUBLAS_WORKSPACE_CONFIG`` set for CUDA when unset;
    no NaN filling of new tensors, a debugging aid that slows CPU training by ~30 %).
    The same command with the same ``seed`` on the same machine then trains the same model."""
    from monai.utils import set_determinism

    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    set_determinism(seed=int(seed))
    torch.use_deterministic_algorithms(bool(deterministic), warn_only=True)
    # torch would also fill every new tensor with NaN to expose reads of uninitialised memory: that
    # costs ~30 % of a CPU training step and changes no result, so it stays off
    torch.utils.deterministic.fill_uninitialized_memory = False


def run_evaluator(evaluator: Any) -> Any:
    """``evaluator.run()`` unless its data loader is empty (a split without images): then a note, no run."""
    if len(evaluator.data_loader) == 0:
        if is_rank0():
            print("no images in this split: evaluation skipped", flush=True)
        return None
    return evaluator.run()


def init_distributed() -> str:
    """Start the process group from torchrun's environment: nccl on CUDA, gloo on CPU. Returns the backend."""
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        if "RANK" not in os.environ:
            raise ConfigError("multi_gpu_train.json needs torchrun (RANK/WORLD_SIZE are not set): "
                              "torchrun --nproc_per_node=N -m monai.bundle run training ...")
        dist.init_process_group(backend=backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return backend


def is_rank0() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def make_dataset(data: Sequence[Dict[str, Any]], transform: Callable, cache_rate: float = 1.0, num_workers: int = 0,
                 cache_dir: Optional[str] = None, progress: bool = True):
    """``CacheDataset`` caching ``cache_rate`` of the cases (deterministic transforms only), a
    ``PersistentDataset`` when ``cache_dir`` is given, a plain ``Dataset`` when ``cache_rate`` is 0."""
    from monai.data import CacheDataset, Dataset, PersistentDataset

    rate = float(cache_rate)
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"cache_rate must be in [0, 1], got {cache_rate}")
    if cache_dir:
        return PersistentDataset(data=list(data), transform=transform, cache_dir=cache_dir)
    if rate == 0.0:
        return Dataset(data=list(data), transform=transform)
    return CacheDataset(data=list(data), transform=transform, cache_rate=rate, num_workers=max(int(num_workers), 0),
                        progress=progress and is_rank0())


def make_loader(dataset: Any, batch_size: int = 2, shuffle: bool = True, num_workers: int = 0,
                distributed: bool = False, seed: int = 0):
    """MONAI ``DataLoader``; with ``distributed`` a ``DistributedSampler`` (shuffled per epoch by the trainer).

    Shuffling, random-transform states and worker seeds come from a ``torch.Generator`` seeded with
    ``seed``, so the same seed gives the same batches whatever else used the global RNG."""
    from monai.data import DataLoader

    sampler = None
    if distributed:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=int(seed))
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    return DataLoader(dataset, batch_size=int(batch_size), shuffle=bool(shuffle) and sampler is None,
                      sampler=sampler, num_workers=int(num_workers), pin_memory=torch.cuda.is_available(),
                      generator=torch.Generator().manual_seed(int(seed)))


def prepare_network(network: torch.nn.Module, device: Any, distributed: bool = False,
                    roi_size: Optional[Sequence[int]] = None, in_channels: int = 1,
                    summary: bool = True) -> torch.nn.Module:
    """Move to ``device``; print params / MACs for a ``(1, in_channels, *roi_size)`` patch (rank 0);
    wrap in ``DistributedDataParallel`` when ``distributed``."""
    device = resolve_device(device)
    network = network.to(device)
    if summary and roi_size is not None and is_rank0():
        try:
            from volseg.networks.summary import format_summary, model_summary

            print(format_summary(model_summary(network, (1, int(in_channels), *[int(r) for r in roi_size]))),
                  flush=True)
        except (ImportError, AttributeError):
            n = sum(p.numel() for p in network.parameters())
            print(f"network: {type(network).__name__}, {n / 1e6:.2f} M parameters", flush=True)
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        network = DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)
    return network


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DDP / DataParallel."""
    return getattr(network, "module", network)


def load_split(dataset_dir: Any, val_fraction: float = 0.2, seed: int = 0) -> Dict[str, List[Dict[str, Any]]]:
    """``{"train": [...], "val": [...]}`` from :func:`volseg.data.load_datalist` (every bad entry in one error)."""
    from volseg.data.datalist import load_datalist

    train, val = load_datalist(dataset_dir, val_fraction=val_fraction, seed=seed)
    return {"train": train, "val": val}


def build_network(name: str, spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 2,
                  channels: Optional[Sequence[int]] = None, options: Optional[Dict[str, Any]] = None) -> torch.nn.Module:
    """:func:`volseg.networks.create_network` with optional ``channels`` (size override) and extra ``options``."""
    from volseg.networks import create_network

    kw: Dict[str, Any] = dict(options or {})
    if channels is not None:
        kw["channels"] = [int(c) for c in channels]
        if name == "unet" and "strides" not in kw:
            kw["strides"] = [2] * (len(kw["channels"]) - 1)
    return create_network(name, spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **kw)
