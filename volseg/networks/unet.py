"""``unet``: MONAI's residual U-Net, padded to its total stride so any input size works."""
from __future__ import annotations

import math
from typing import Sequence, Union

import torch
from monai.networks.nets import UNet as MonaiUNet

from volseg.networks.blocks import crop_to, pad_to_multiple


class UNet(MonaiUNet):
    """MONAI ``UNet`` with volseg defaults (4.81 M parameters in 3D with the default channels).

    ``state_dict`` keys are MONAI's, so weights move freely between the two. Inputs
    ``(B, C, H, W[, D])`` of any size: padded up to ``prod(strides)`` and cropped back.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        strides: Sequence[int] = (2, 2, 2, 2),
        kernel_size: Union[Sequence[int], int] = 3,
        up_kernel_size: Union[Sequence[int], int] = 3,
        num_res_units: int = 2,
        act: Union[tuple, str] = "PRELU",
        norm: Union[tuple, str] = "INSTANCE",
        dropout: float = 0.0,
        bias: bool = True,
    ):
        super().__init__(
            spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
            channels=tuple(channels), strides=tuple(strides), kernel_size=kernel_size,
            up_kernel_size=up_kernel_size, num_res_units=num_res_units, act=act, norm=norm,
            dropout=dropout, bias=bias,
        )
        self.size_multiple = int(math.prod(strides))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xp, sizes = pad_to_multiple(x, self.size_multiple)
        return crop_to(self.model(xp), sizes)  # MONAI UNet.forward is self.model(x); no super() in TorchScript
