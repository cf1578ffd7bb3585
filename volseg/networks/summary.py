"""Parameter count and multiply-accumulates (MACs) of one forward pass."""
from __future__ import annotations

import math
from typing import Any, Dict, Sequence

import torch
from torch import nn

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TCONV = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORM = (nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm)


def _layer_macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(module, _CONV):
        k = math.prod(module.kernel_size)
        return out.numel() * (module.in_channels // module.groups) * k
    if isinstance(module, _TCONV):
        k = math.prod(module.kernel_size)
        return inp.numel() * (module.out_channels // module.groups) * k
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    return 0


@torch.no_grad()
def model_summary(net: nn.Module, input_shape: Sequence[int]) -> Dict[str, Any]:
    """Count parameters and MACs for one forward pass of an input of ``input_shape`` ``(B, C, *spatial)``.

    MACs cover convolutions, transposed convolutions and linear layers (norms, activations and
    pooling are elementwise and reported separately as ``norm_elements``). ``gflop`` = 2 * MACs / 1e9.
    """
    macs = {"total": 0, "norm_elements": 0}
    per_type: Dict[str, int] = {}

    def hook(module: nn.Module, args: tuple, out: Any) -> None:
        if not isinstance(out, torch.Tensor):
            return
        m = _layer_macs(module, args[0], out)
        macs["total"] += m
        if m:
            per_type[type(module).__name__] = per_type.get(type(module).__name__, 0) + m
        if isinstance(module, _NORM):
            macs["norm_elements"] += out.numel()

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    was_training = net.training
    net.eval()
    try:
        param = next(net.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        net(torch.zeros(tuple(input_shape), device=device))
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    params = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return {
        "input_shape": list(input_shape),
        "params": params,
        "trainable_params": trainable,
        "macs": macs["total"],
        "gflop": 2.0 * macs["total"] / 1e9,
        "norm_elements": macs["norm_elements"],
        "macs_by_layer_type": per_type,
    }


def format_summary(summary: Dict[str, Any]) -> str:
    """One line: ``4.81 M params, 5.12 G MACs (10.24 GFLOP) per (1, 1, 96, 96, 96) input``."""
    return (
        f"{summary['params'] / 1e6:.2f} M params, {summary['macs'] / 1e9:.2f} G MACs "
        f"({summary['gflop']:.2f} GFLOP) per {tuple(summary['input_shape'])} input"
    )
