"""MONAI bundles as volseg runs them: reading configs (JSON/YAML, overrides), trust checks, templates.

Sub-modules are imported on use so ``import volseg.bundles`` stays light.
"""
from __future__ import annotations
