"""The 2D model's inferer: whole 2D images, or 3D volumes slice by slice.

The 2D workflow itself is the ``lung_png2d`` bundle (MONAI ``SupervisedTrainer`` with the
``volseg.training`` handlers, PNG datalists from :mod:`volseg.data.png`, transforms from
:mod:`volseg.transforms.png2d`). This inferer stays here, where ``inference.json`` names it, until
inference has one engine for 2D and 3D.
"""
from __future__ import annotations

from typing import Any, Sequence

from volseg.errors import InputError


class Slice2DInferer:
    """Run a 2D network on 2D batches ``(B, C, X, Y)`` directly and on 3D volumes ``(B, C, X, Y, Z)``
    slice by slice along ``spatial_dim`` (MONAI ``SliceInferer``), so one bundle serves PNGs and CT scans.
    """

    def __init__(self, roi_size: Sequence[int] = (256, 256), spatial_dim: int = 2, sw_batch_size: int = 16, **kwargs: Any):
        from monai.inferers import SliceInferer

        self.slice_inferer = SliceInferer(
            roi_size=tuple(int(r) for r in roi_size), spatial_dim=spatial_dim, sw_batch_size=sw_batch_size,
            progress=False, **kwargs,
        )

    def __call__(self, inputs, network, *args: Any, **kwargs: Any):
        if inputs.ndim == 4:
            return network(inputs, *args, **kwargs)
        if inputs.ndim != 5:
            raise InputError(f"a 2D model needs (B, C, X, Y) or (B, C, X, Y, Z) input, got shape {tuple(inputs.shape)}")
        return self.slice_inferer(inputs, network, *args, **kwargs)
