"""Fixtures for volseg.io tests: orientations and a DICOM series written by SimpleITK."""
from __future__ import annotations


import numpy as np
import pytest

from tests.conftest import sitk_write_series

ORIENTATIONS = {
    # name: RAS direction cosines (columns = index axes i, j, k)
    "RAS": np.eye(3),
    "LPS": np.diag([-1.0, -1.0, 1.0]),
    "LSA": np.array([[-1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]]),  # coronal: i->L, j->S, k->A
    "oblique": None,  # filled below
}


def _oblique() -> np.ndarray:
    a, b = np.radians(17.0), np.radians(-23.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx @ np.diag([-1.0, -1.0, 1.0])


ORIENTATIONS["oblique"] = _oblique()


@pytest.fixture
def sitk_series(tmp_path, small_volume):
    """A 6-slice LPS CT series written by SimpleITK with shuffled file names; returns (dir, volume, affine RAS)."""
    spacing, origin = (0.7, 0.8, 2.5), (-40.0, -30.0, 100.0)
    d = tmp_path / "series"
    sitk_write_series(small_volume, d, spacing, origin, np.eye(3), file_order=[3, 0, 5, 1, 4, 2])
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.array(
        [[0.7, 0, 0, -40.0], [0, 0.8, 0, -30.0], [0, 0, 2.5, 100.0], [0, 0, 0, 1]])
    return d, small_volume, affine
