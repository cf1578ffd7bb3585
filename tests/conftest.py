"""Shared pytest settings. Area-specific fixtures live in tests/<area>/conftest.py."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch

        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


def require_tool(name: str) -> str:
    """Return the path of an outside tool or skip the test with a reason."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package; .ci/run installs it)")
    return path


def write_nifti(path: Path, array: Any, affine: Any, dtype: Optional[Any] = np.int16) -> Path:
    """A NIfTI written by nibabel alone (independent of volseg's writers): qform = sform = ``affine``
    (codes 1). ``dtype`` int16 (CT in HU) by default; ``None`` keeps the array's."""
    import nibabel as nib

    arr = np.asarray(array) if dtype is None else np.asarray(array).astype(dtype)
    aff = np.asarray(affine, dtype=np.float64)
    img = nib.Nifti1Image(arr, aff)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    nib.save(img, str(path))
    return Path(path)
