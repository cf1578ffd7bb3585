"""``LoadVolumed``: read any volseg-supported image (DICOM series, NIfTI, NRRD, MHA, PNG) into a MetaTensor."""
from __future__ import annotations

from typing import Any, Hashable, Mapping, Optional, Sequence, Union

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform


class LoadVolumed(MapTransform):
    """Load each key with :func:`volseg.io.load_volume` -> ``(C, X, Y[, Z])`` float32 MetaTensor, RAS+ mm affine.

    A ``MetaTensor`` already in the dict passes through untouched (so a Predictor can feed in-memory
    images). ``series`` picks a DICOM series by UID (prefix). Keys named ``label*`` are rounded to
    integer values (still float32 for MONAI's spatial transforms, which use nearest for them).
    """

    def __init__(self, keys: KeysCollection, series: Optional[str] = None, allow_missing_keys: bool = False,
                 label_keys: Union[Sequence[Hashable], None] = None):
        super().__init__(keys, allow_missing_keys)
        self.series = series
        self.label_keys = tuple(label_keys) if label_keys is not None else tuple(
            k for k in self.keys if str(k).startswith("label") or str(k).startswith("seg"))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        from volseg.io import load_volume

        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            img = load_volume(value, series=self.series if key not in self.label_keys else None)
            if key in self.label_keys and not hasattr(value, "meta"):
                img = torch.round(img)
            d[key] = img
        return d


def adapt_loaders(transform: Any) -> Any:
    """``transform`` (a MONAI ``Compose``, e.g. a model-zoo bundle's ``preprocessing``) with every
    ``LoadImaged`` replaced in place by :class:`LoadVolumed` on the same keys, so the chain also takes
    in-memory MetaTensors and volseg's readers (DICOM series selection, exact geometry). Volseg
    images are channel-first with ``original_channel_dim`` 0, so a following ``EnsureChannelFirstd``
    leaves them unchanged. Other transforms are returned as they are."""
    from monai.transforms import Compose, LoadImaged

    if isinstance(transform, Compose):
        transform.transforms = tuple(
            LoadVolumed(keys=t.keys, allow_missing_keys=t.allow_missing_keys) if isinstance(t, LoadImaged)
            else adapt_loaders(t) for t in transform.transforms)
    return transform
