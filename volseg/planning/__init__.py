"""Dataset planning, nnU-Net style: read a dataset's fingerprint once, derive bundle settings.

``plan_dataset`` -> ``{"plan": bundle overrides, "reasons", "memory", "fingerprint", ...}``;
``write_plan`` writes the plan JSON (an extra bundle config file), the fingerprint JSON and a
PNG; ``read_plan`` reads a plan back for ``volseg train --plan``. Names load lazily.
"""
from __future__ import annotations

from volseg._lazy import lazy_getattr

_LAZY = {
    "plan_dataset": "volseg.planning.plan",
    "read_plan": "volseg.planning.plan",
    "write_plan": "volseg.planning.plan",
    "plan_paths": "volseg.planning.plan",
    "resolve_bundle": "volseg.planning.plan",
    "dataset_fingerprint": "volseg.planning.fingerprint",
    "format_report": "volseg.planning.report",
    "plot_fingerprint": "volseg.planning.report",
}

__all__ = list(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
