"""volseg transforms: ``LoadVolumed`` and the CT / MRI presets (PNG transforms live in ``png2d``)."""
from __future__ import annotations

from volseg.transforms.load import LoadVolumed
from volseg.transforms.common import STAGES, ct_transforms, mri_transforms

__all__ = ["LoadVolumed", "STAGES", "ct_transforms", "mri_transforms"]
