"""Power-law fits: slope of log y against log x, with a bootstrap interval over seeds.

    log y = slope * log x + intercept        (least squares)

``bootstrap_slope`` resamples seeds (the columns of a levels x seeds table)
with replacement, recomputes a per-level statistic (median, mean, a
quantile, an order statistic), refits, and returns the percentile interval.
Seeds are resampled jointly across levels: seed s drew the data and the
initialisation at every level, so the levels are not independent.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Statistic = Callable[[np.ndarray], float]


@dataclass(frozen=True)
class SlopeFit:
    """A fitted exponent: y ~ exp(intercept) * x^slope, with interval [low, high] (nan without one)."""

    slope: float
    intercept: float
    low: float = math.nan
    high: float = math.nan
    points: int = 0

    def __str__(self) -> str:
        if math.isfinite(self.low):
            return f"{self.slope:.2f} [{self.low:.2f}, {self.high:.2f}]"
        return f"{self.slope:.2f}"

    def predict(self, x: np.ndarray) -> np.ndarray:
        """exp(intercept) * x^slope."""
        return np.exp(self.intercept) * np.asarray(x, dtype=float) ** self.slope


def fit_loglog(x: np.ndarray, y: np.ndarray) -> SlopeFit:
    """Least-squares fit of log y = slope log x + intercept over points with x, y > 0 finite.

    Returns slope nan when fewer than two distinct x remain.

    Examples
    --------
    >>> fit_loglog(np.array([1., 2., 4.]), np.array([3., 12., 48.])).slope
    2.0
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    lx, ly = np.log(x[ok]), np.log(y[ok])
    if np.unique(lx).size < 2:
        return SlopeFit(math.nan, math.nan, points=int(ok.sum()))
    slope, intercept = np.polyfit(lx, ly, 1)
    return SlopeFit(float(round(slope, 12)), float(intercept), points=int(ok.sum()))


def geometric_mean(values: np.ndarray, axis: int | None = None) -> Any:
    """exp(mean(log v)) over finite positive values (nan when none).

    With ``axis``, along that axis of an array (an array of means); else over
    every value (a float).
    """
    v = np.asarray(values, dtype=float)
    if axis is None:
        v = v[np.isfinite(v) & (v > 0)]
        return float(np.exp(np.log(v).mean())) if v.size else math.nan
    ok = np.isfinite(v) & (v > 0)
    count = ok.sum(axis=axis)
    logs = np.log(np.where(ok, v, 1.0)).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.exp(logs / np.maximum(count, 1)), np.nan)


def _reduces_along_axis(statistic: Statistic) -> bool:
    """Whether ``statistic`` takes ``axis=`` (then the bootstrap calls it once on every resample)."""
    try:
        return "axis" in inspect.signature(statistic).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def _loglog_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``fit_loglog(x, y[b]).slope`` for every row b of y (B, L) at once (nan where fewer than 2 distinct x)."""
    lx = np.log(np.where(x > 0, x, np.nan))
    with np.errstate(invalid="ignore", divide="ignore"):
        ly = np.log(y)
    ok = np.isfinite(ly) & np.isfinite(lx)[None, :] & (y > 0)
    w = ok.astype(float)
    count = w.sum(axis=1)
    lxb = np.where(ok, lx[None, :], 0.0)
    lyb = np.where(ok, ly, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = lxb.sum(axis=1) / count
        my = lyb.sum(axis=1) / count
        dx = np.where(ok, lxb - mx[:, None], 0.0)
        slopes = (dx * (lyb - my[:, None])).sum(axis=1) / (dx * dx).sum(axis=1)
    spread = np.where(ok, lxb, -np.inf).max(axis=1) - np.where(ok, lxb, np.inf).min(axis=1)
    slopes = np.where(spread > 0, np.round(slopes, 12), np.nan)  # rounded as fit_loglog rounds
    return slopes


def bootstrap_slope(
    x: np.ndarray, table: np.ndarray, statistic: Statistic, *, n_boot: int = 1000, level: float = 0.9, seed: int = 0
) -> SlopeFit:
    """Slope of log statistic(table[i]) against log x[i], with a bootstrap interval over seeds.

    Parameters
    ----------
    x : (L,) positive levels (n, or m)
    table : (L, S) values per level and seed (nan: no value)
    statistic : callable (S,) -> float
        One that also takes ``axis=`` (as ``geometric_mean``) is called once
        on all resamples, (n_boot, L, S) along the last axis.
    level : float
        Coverage of the percentile interval (0.9: 5th to 95th percentile).

    Returns
    -------
    SlopeFit with the point estimate from the full table and the interval
    from ``n_boot`` resamples of the seed columns (resamples whose fit fails
    are dropped).
    """
    x = np.asarray(x, dtype=float)
    table = np.asarray(table, dtype=float)
    if table.ndim != 2 or table.shape[0] != x.size:
        raise ValueError(f"table must have shape (len(x), seeds) = ({x.size}, S), got {table.shape}")
    point = fit_loglog(x, np.array([statistic(row) for row in table]))
    if not math.isfinite(point.slope) or table.shape[1] < 2 or n_boot < 1:
        return point
    rng = np.random.default_rng(seed)
    cols = np.stack([rng.integers(0, table.shape[1], size=table.shape[1]) for _ in range(n_boot)])  # (B, S)
    resampled = table[:, cols].transpose(1, 0, 2)  # (B, L, S): resample b of every level
    if _reduces_along_axis(statistic):
        batched: Any = statistic
        stats = np.asarray(batched(resampled, axis=-1), dtype=float)  # (B, L) in one call
    else:
        stats = np.array([[statistic(row) for row in t] for t in resampled], dtype=float)
    slopes = _loglog_slopes(x, stats)
    slopes = slopes[np.isfinite(slopes)]
    if not slopes.size:
        return point
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(slopes, [tail, 100 - tail])
    return SlopeFit(point.slope, point.intercept, float(lo), float(hi), point.points)


def width_fit(rows: Any, value: str, n_boot: int) -> dict[str, Any]:
    """The fit of ``value`` against the width m over the result rows ``rows`` (a DataFrame with m, seed, ``value``).

    Returns ``m`` (the widths, increasing), ``table`` (len(m), seeds) of
    ``value`` per width and seed (NaN where a run is missing), ``values``
    (the geometric mean over seeds of each width) and ``fit``: the
    ``bootstrap_slope`` of log value against log m (``n_boot`` resamples of
    the seeds).
    """
    ms = sorted(int(v) for v in set(rows.m))
    seeds = sorted(int(v) for v in set(rows.seed))
    table = (
        rows.pivot_table(index="m", columns="seed", values=value, aggfunc="first")
        .reindex(index=ms, columns=seeds)
        .to_numpy(float)
    )
    return {
        "m": ms,
        "table": table,
        "values": [geometric_mean(r) for r in table],
        "fit": bootstrap_slope(np.array(ms, dtype=float), table, geometric_mean, n_boot=n_boot),
    }
