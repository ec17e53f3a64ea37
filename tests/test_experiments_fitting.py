"""Fits, bootstrap intervals, order statistics and the grid search, against known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from expreg.experiments.fitting import bootstrap_slope, fit_loglog, geometric_mean
from expreg.experiments.search import geometric_grid


def test_fit_recovers_exact_power_law():
    n = np.array([8, 16, 32, 64, 128], dtype=float)
    f = fit_loglog(n, 3.5 * n**2)
    assert f.slope == pytest.approx(2.0, abs=1e-10)
    assert math.exp(f.intercept) == pytest.approx(3.5, rel=1e-9)
    assert np.allclose(f.predict(n), 3.5 * n**2)


def test_fit_ignores_nonpositive_and_nan_and_needs_two_points():
    f = fit_loglog(np.array([1, 2, 4, 8.0]), np.array([1, np.nan, 16, 64.0]))
    assert f.slope == pytest.approx(2.0) and f.points == 3
    assert math.isnan(fit_loglog(np.array([2.0, 2.0]), np.array([1.0, 3.0])).slope)


def test_bootstrap_interval_covers_true_exponent_with_seed_noise():
    rng = np.random.default_rng(0)
    n = np.array([8, 16, 32, 64], dtype=float)
    table = 5 * n[:, None] ** 2 * np.exp(rng.normal(0, 0.2, size=(4, 10)))  # m*(n, seed) = c n^2 e^noise
    f = bootstrap_slope(n, table, geometric_mean, n_boot=400)
    assert f.low < 2.0 < f.high
    assert f.low < f.slope < f.high
    assert f.high - f.low < 0.6
    exact = bootstrap_slope(n, np.repeat((5 * n**2)[:, None], 6, axis=1), np.median, n_boot=50)
    assert exact.slope == pytest.approx(2.0) and exact.low == pytest.approx(2.0) and exact.high == pytest.approx(2.0)


def test_grid_is_geometric_even_and_increasing():
    grid = geometric_grid(2, 2**20, 2**0.25)
    assert grid[0] == 2 and grid[-1] <= 2**20 and all(m % 2 == 0 for m in grid) and grid == sorted(set(grid))
    big = np.array([m for m in grid if m >= 200], dtype=float)  # rounding to even moves small widths by up to 1
    assert np.allclose(big[1:] / big[:-1], 2**0.25, rtol=1 / 100)


def test_grid_rejects_bad_arguments():
    with pytest.raises(ValueError, match="m_min"):
        geometric_grid(1, 10, 2.0)
    with pytest.raises(ValueError, match="ratio"):
        geometric_grid(2, 10, 1.0)
