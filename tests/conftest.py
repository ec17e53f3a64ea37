"""Shared fixtures: small synthetic data sets on the unit sphere."""

from __future__ import annotations

import os

import numpy as np
import pytest

from expreg.core.data import make_dataset

# The suite runs the fixed default choices (the same bits on every machine) and never writes to the
# user's cache; tests/test_calibrate.py measures and forces each choice explicitly.
os.environ.setdefault("EXPREG_CALIBRATE", "0")


@pytest.fixture
def small_data() -> tuple[np.ndarray, np.ndarray]:
    """n = 12 points in d = 4, labels uniform in [-1, 1]."""
    return make_dataset(12, 4, seed=3)
