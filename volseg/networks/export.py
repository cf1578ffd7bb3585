"""TorchScript and ONNX export, each checked against the eager network."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import torch
from torch import nn

from volseg._atomic import atomic_path
from volseg.errors import VolsegError

PathLike = Union[str, "os.PathLike[str]"]


def export_torchscript(net: nn.Module, path: PathLike, example_input: torch.Tensor, atol: float = 1e-4) -> float:
    """Script ``net`` (eval mode), save it, reload and compare on ``example_input`` ``(B, C, *spatial)``.

    Returns the largest absolute difference to eager; raises if it exceeds ``atol``. Every volseg
    network scripts (``torch.jit.script``), so the file keeps the pad/crop logic and takes any
    input size, as ``python -m monai.bundle ckpt_export`` writes it.
    """
    net = net.eval()
    with torch.no_grad():
        expected = net(example_input)
        scripted = torch.jit.script(net)
        with atomic_path(path) as tmp:
            torch.jit.save(scripted, str(tmp))
        loaded = torch.jit.load(str(path))
        diff = float((loaded(example_input) - expected).abs().max())
    if diff > atol:
        Path(path).unlink(missing_ok=True)
        raise VolsegError(f"TorchScript output differs from eager by {diff:.3g} (> {atol})", path)
    return diff


def export_onnx(
    net: nn.Module, path: PathLike, example_input: torch.Tensor, opset: int = 17, atol: float = 1e-4
) -> float:
    """Export ``net`` to ONNX (legacy TorchScript-based exporter, batch axis dynamic) and verify it.

    The check runs the file in onnxruntime when installed (else ``onnx.checker`` only) and
    returns the largest absolute difference to eager (0.0 when not run).
    """
    net = net.eval()
    with torch.no_grad():
        expected = net(example_input).numpy()
    with atomic_path(path) as tmp:
        torch.onnx.export(
            net, (example_input,), str(tmp), input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset, dynamo=False,
        )
        import onnx

        onnx.checker.check_model(str(tmp))
    try:
        import onnxruntime as ort
    except ImportError:
        return 0.0
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": example_input.numpy()})[0]
    diff = float(abs(got - expected).max())
    if diff > atol:
        Path(path).unlink(missing_ok=True)
        raise VolsegError(f"ONNX output differs from eager by {diff:.3g} (> {atol})", path)
    return diff
