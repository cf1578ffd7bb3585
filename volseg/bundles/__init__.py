"""MONAI bundles as volseg runs them: reading configs (JSON/YAML, overrides), trust checks, templates.

Sub-modules are imported on use so ``import volseg.bundles`` stays light.
"""
from __future__ import annotations

from volseg._lazy import lazy_getattr

_LAZY = {
    "find_bundle": "volseg.bundles.shipped",
    "list_bundles": "volseg.bundles.shipped",
    "shipped_root": "volseg.bundles.shipped",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
