"""Fits, bootstrap intervals, order statistics and the grid search, against known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from expreg.experiments.fitting import bootstrap_slope, fit_loglog, geometric_mean
from expreg.experiments.width_rules import geometric_grid


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


def _bootstrap_by_loop(x: np.ndarray, table: np.ndarray, statistic, n_boot: int, level: float = 0.9) -> tuple:
    """The bootstrap written out resample by resample (the definition ``bootstrap_slope`` vectorises)."""
    rng = np.random.default_rng(0)
    slopes = []
    for _ in range(n_boot):
        cols = rng.integers(0, table.shape[1], size=table.shape[1])
        f = fit_loglog(x, np.array([statistic(row[cols]) for row in table]))
        if math.isfinite(f.slope):
            slopes.append(f.slope)
    tail = (1 - level) / 2 * 100
    return tuple(np.percentile(slopes, [tail, 100 - tail]))


@pytest.mark.parametrize(
    "statistic", [geometric_mean, np.median, lambda v: float(np.max(v))], ids=["gmean", "median", "max"]
)
def test_bootstrap_equals_the_resample_by_resample_loop(statistic):
    """Vectorised resamples (one call of a statistic that takes axis=, else one per row) and the closed-form
    least squares give the loop's interval: nan cells, a level whose resample has no positive value (dropped
    from that fit), and resamples left with one level (no fit) included."""
    rng = np.random.default_rng(3)
    x = np.array([256, 1024, 4096, 16384, 65536.0])
    table = np.exp(rng.standard_normal((5, 4)) * 0.4) * x[:, None] ** -0.5
    table[1, 2] = np.nan
    table[3, :3] = -1.0  # only seed 3 gives level 3 a value
    table[4, 1:] = 0.0  # only seed 0 gives level 4 one
    f = bootstrap_slope(x, table, statistic, n_boot=300)
    low, high = _bootstrap_by_loop(x, table, statistic, 300)
    assert (f.low, f.high) == pytest.approx((low, high), abs=1e-10)
    assert f.slope == fit_loglog(x, np.array([statistic(r) for r in table])).slope


def test_geometric_mean_along_an_axis_is_the_rowwise_mean():
    rng = np.random.default_rng(4)
    v = np.exp(rng.standard_normal((6, 5)))
    v[0, 1], v[2, :] = np.nan, -1.0
    along = geometric_mean(v, axis=1)
    rowwise = np.array([geometric_mean(r) for r in v])
    np.testing.assert_allclose(along, rowwise, rtol=1e-14)
    assert math.isnan(along[2]) and along.shape == (6,)


def test_bootstrap_without_resamples_gives_the_point_fit_alone():
    x = np.array([8.0, 16.0, 32.0])
    table = np.array([[1.0, 2.0], [4.0, 8.0], [16.0, 32.0]])
    f = bootstrap_slope(x, table, geometric_mean, n_boot=0)
    assert f.slope == pytest.approx(2.0) and math.isnan(f.low) and math.isnan(f.high)
