"""``LoadVolumed``: read any volseg-supported image (DICOM series, NIfTI, NRRD, MHA, PNG) into a MetaTensor."""
from __future__ import annotations

from typing import Any, Hashable, Mapping, Optional, Sequence, Union

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform


class LoadVolumed(MapTransform):
    """Load each key with :func:`volseg.io.load_volume` -> ``(C, X, Y[, Z])`` float32 MetaTensor, RAS+ mm affine.

    A ``MetaTensor`` already in the dict is taken as loaded (so a Predictor can feed in-memory
    images). ``series`` picks a DICOM series by UID (prefix). Keys named ``label*`` are rounded to
    integer values (still float32 for MONAI's spatial transforms, which use nearest for them).

    ``channel_first=False`` returns what MONAI's ``LoadImaged`` returns, for bundles written for it:
    single-channel images without a channel axis (``original_channel_dim`` ``"no_channel"``), others
    channel-last (``-1``), so the bundle's own ``EnsureChannelFirstd`` (any ``channel_dim``) acts
    exactly as under ``python -m monai.bundle run``. ``meta_dict=True`` also stores
    ``<key>_meta_dict`` (``LoadImaged(image_only=False)``).
    """

    def __init__(self, keys: KeysCollection, series: Optional[str] = None, allow_missing_keys: bool = False,
                 label_keys: Union[Sequence[Hashable], None] = None, channel_first: bool = True,
                 meta_dict: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.series = series
        self.channel_first = channel_first
        self.meta_dict = meta_dict
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
            if not self.channel_first:
                img = _monai_layout(img)
            d[key] = img
            if self.meta_dict:
                d[f"{key}_meta_dict"] = dict(img.meta)
        return d


def _monai_layout(img: Any) -> Any:
    """A channel-first volseg image in ``LoadImage``'s layout (no channel, or channel-last)."""
    from monai.data import MetaTensor

    meta = {k: v for k, v in img.meta.items() if k != "affine"}
    if img.shape[0] == 1:
        arr, meta["original_channel_dim"] = img.as_tensor()[0], "no_channel"
    else:
        arr, meta["original_channel_dim"] = torch.movedim(img.as_tensor(), 0, -1), -1
    return MetaTensor(arr, affine=img.affine.clone(), meta=meta)


def adapt_loaders(transform: Any) -> Any:
    """``transform`` (a MONAI ``Compose``, e.g. a model-zoo bundle's ``preprocessing``) with every
    ``LoadImaged`` replaced in place by :class:`LoadVolumed` on the same keys, returning what
    ``LoadImaged`` would (its ``ensure_channel_first`` and ``image_only`` kept), so the chain also
    takes in-memory MetaTensors and volseg's readers (DICOM series selection, exact geometry,
    one-line errors). Other transforms are returned as they are."""
    from monai.transforms import Compose, LoadImaged

    if isinstance(transform, Compose):
        transform.transforms = tuple(
            LoadVolumed(keys=t.keys, allow_missing_keys=t.allow_missing_keys,
                        channel_first=bool(t._loader.ensure_channel_first), meta_dict=not t._loader.image_only)
            if isinstance(t, LoadImaged) else adapt_loaders(t) for t in transform.transforms)
    return transform
