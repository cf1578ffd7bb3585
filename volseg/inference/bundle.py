"""Components for ``configs/inference.json`` run through ``python -m monai.bundle run``.

They let the bundle runner do the same work as ``volseg predict``: list the inputs, load the
weights safely, and write each inverted mask with its source's exact affine.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Hashable, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from volseg.errors import InputError


def list_inputs(path: Any) -> List[Dict[str, str]]:
    """``[{"image": path}, ...]`` for a bundle run: ``path`` may be a ``dataset.json`` or a folder
    holding one (its ``test`` images, else ``validation``, else ``training``), a folder with
    ``imagesTs``/``imagesTr``, a folder of volumes or DICOM series, or one file
    (:func:`volseg.data.datalist.dataset_source`, then :func:`volseg.inference.cases.find_cases`)."""
    from volseg.data.datalist import dataset_source
    from volseg.inference.cases import find_cases

    return [{"image": str(c.source)} for c in find_cases(dataset_source(path))]


def load_model(network: torch.nn.Module, path: Any, device: Any = "cpu") -> torch.nn.Module:
    """``network`` with the weights at ``path`` (plain state_dict or ``{"model": sd}``, loaded with
    ``weights_only=True``), moved to ``device`` and set to eval mode."""
    from volseg.inference.predictor import load_weights

    load_weights(network, Path(path))
    return network.to(torch.device(device) if not isinstance(device, torch.device) else device).eval()


class SaveMaskd:
    """The bundles' mask saver: write ``data[key]``, a label map ``(1, X, Y, Z)`` or ``(1, X, Y)``
    already inverted onto the source grid, next to nothing else.

    3D: ``output_dir/<case><postfix>.nii.gz`` (or ``suffix``) with the prediction's affine, i.e. the
    scan's (:func:`volseg.io.save_mask`: uint8, qform = sform). 2D: ``<case><postfix>.png``, a
    colour label PNG in ``palette`` (:func:`volseg.io.save_label_png`, the format 2D labels come in),
    unless ``suffix`` names a volume format. ``<case>`` is :func:`volseg.formats.case_name` of the
    ``image_key`` item's (else the prediction's) ``filename_or_obj``. Returns the data with
    ``"<key>_path"`` added. ``volseg predict`` replaces this step by its own writers.
    """

    def __init__(self, keys: Union[Hashable, Sequence[Hashable]] = ("pred",), output_dir: Any = "predictions",
                 postfix: str = "", suffix: Optional[str] = None, palette: Optional[Mapping] = None,
                 image_key: str = "image"):
        self.keys = [keys] if isinstance(keys, (str, int)) else list(keys)
        self.output_dir = Path(output_dir)
        self.postfix, self.suffix, self.palette, self.image_key = postfix, suffix, palette, image_key

    def _source(self, data: Mapping[Hashable, Any], key: Hashable) -> str:
        for obj in (data.get(self.image_key), data.get(key)):
            name = str((getattr(obj, "meta", {}) or {}).get("filename_or_obj", "") or "")
            if name:
                return name
        raise InputError(f"SaveMaskd: neither '{self.image_key}' nor '{key}' has a filename_or_obj in its metadata")

    def __call__(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        from volseg.formats import PNG_SUFFIXES, case_name
        from volseg.io import save_label_png, save_mask

        d = dict(data)
        for key in self.keys:
            pred = d[key]
            src = self._source(d, key)
            arr = np.rint(torch.as_tensor(pred).detach().cpu().float().numpy())
            if arr.ndim in (3, 4) and arr.shape[0] == 1:
                arr = arr[0]
            shape = (getattr(pred, "meta", {}) or {}).get("spatial_shape")
            if shape is not None and tuple(int(s) for s in shape) != arr.shape:
                raise InputError(f"prediction grid {arr.shape} is not the source grid {tuple(int(s) for s in shape)}: "
                                 "postprocessing must invert the preprocessing (Invertd)", src)
            png = arr.ndim == 2 and (self.suffix is None or self.suffix.lower() in PNG_SUFFIXES)
            suffix = self.suffix or (".png" if png else ".nii.gz")
            out = self.output_dir / f"{case_name(src)}{self.postfix}{suffix}"
            if png:
                path = save_label_png(arr.astype(np.uint8), out, self.palette, inputs=[src])
            else:
                affine = np.asarray(torch.as_tensor(getattr(pred, "affine", np.eye(arr.ndim + 1))).double().cpu().numpy())
                path = save_mask(arr, affine, out, inputs=[src])
            d[f"{key}_path"] = str(path)
        return d
