"""Components for ``configs/inference.json`` run through ``python -m monai.bundle run``.

They let the bundle runner do the same work as ``volseg predict``: list the inputs, load the
weights safely, and write each inverted mask with its source's exact affine.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Hashable, List, Mapping, Optional, Sequence

import numpy as np
import torch

from volseg.errors import InputError


def list_inputs(path: Any) -> List[Dict[str, str]]:
    """``[{"image": path}, ...]`` for a bundle run: ``path`` may be a ``dataset.json`` or a folder
    holding one (its ``test`` images, else ``validation``, else ``training``), a folder with
    ``imagesTs``/``imagesTr``, a folder of volumes or DICOM series, or one file."""
    from volseg.inference.cases import find_cases

    p = Path(path)
    if p.is_dir():
        if (p / "dataset.json").is_file():
            p = p / "dataset.json"
        elif (p / "imagesTs").is_dir():
            p = p / "imagesTs"
        elif (p / "imagesTr").is_dir():
            p = p / "imagesTr"
    return [{"image": str(c.source)} for c in find_cases(p)]


def load_model(network: torch.nn.Module, path: Any, device: Any = "cpu") -> torch.nn.Module:
    """``network`` with the weights at ``path`` (plain state_dict or ``{"model": sd}``, loaded with
    ``weights_only=True``), moved to ``device`` and set to eval mode."""
    from volseg.inference.predictor import load_weights

    load_weights(network, Path(path))
    return network.to(torch.device(device) if not isinstance(device, torch.device) else device).eval()


class SaveMaskd:
    """Write ``data[key]`` (a label map ``(1, X, Y, Z)`` already inverted onto the source grid) to
    ``output_dir/<case><postfix>.nii.gz`` as uint8 with the source's affine (``volseg.io.save_mask``)."""

    def __init__(self, keys: Sequence[Hashable] = ("pred",), output_dir: Any = "predictions", postfix: str = "",
                 suffix: str = ".nii.gz"):
        self.keys = [keys] if isinstance(keys, (str, int)) else list(keys)
        self.output_dir = Path(output_dir)
        self.postfix = postfix
        self.suffix = suffix

    def __call__(self, data: Mapping[Hashable, Any]) -> Mapping[Hashable, Any]:
        from volseg.inference.cases import case_name
        from volseg.io import save_mask

        for key in self.keys:
            pred = data[key]
            meta = getattr(pred, "meta", {}) or {}
            src: Optional[str] = meta.get("filename_or_obj")
            if not src:
                raise InputError(f"SaveMaskd: '{key}' has no filename_or_obj in its metadata")
            shape = meta.get("spatial_shape")
            arr = np.rint(torch.as_tensor(pred).detach().cpu().float().numpy())
            if shape is not None and tuple(int(s) for s in shape) != tuple(arr.shape[-3:]):
                raise InputError(f"prediction grid {arr.shape[-3:]} is not the source grid {tuple(shape)}: "
                                 "postprocessing must invert the preprocessing (Invertd)", src)
            affine = np.asarray(torch.as_tensor(pred.affine).double().cpu().numpy())
            out = self.output_dir / f"{case_name(src)}{self.postfix}{self.suffix}"
            save_mask(arr, affine, out, inputs=[src])
        return data
