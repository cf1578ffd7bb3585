"""Shared pytest settings. Area-specific fixtures live in tests/<area>/conftest.py."""
from __future__ import annotations

import shutil

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
