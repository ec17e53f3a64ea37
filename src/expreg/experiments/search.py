"""Smallest grid point that passes a test: doubling, then bisection (docs/theory.md section 6).

The grid is increasing; the test is assumed monotone (fail below a
threshold, pass from it on). Doubling probes indices 0, 1, 3, 7, ... until a
pass, then bisection between the last failure and that pass. About
2 log2(k) probes find index k, instead of k + 1 for a full scan.
"""

from __future__ import annotations

import math
from typing import Callable


def geometric_grid(m_min: int, m_max: int, ratio: float) -> list[int]:
    """Even integers m_min * ratio^k (rounded to even), k = 0, 1, ..., up to m_max; distinct, increasing."""
    if m_min < 2 or m_max < m_min or ratio <= 1:
        raise ValueError(f"need 2 <= m_min <= m_max and ratio > 1, got m_min={m_min}, m_max={m_max}, ratio={ratio}")
    out: list[int] = []
    k = 0
    while True:
        m = 2 * max(1, round(m_min * ratio**k / 2))
        if m > m_max:
            break
        if not out or m > out[-1]:
            out.append(m)
        k += 1
    return out


def smallest_passing(grid: list[int], test: Callable[[int], bool], start: int = 0) -> tuple[int | None, int]:
    """(smallest index i >= start with test(grid[i]) true, probes used); None when no grid point passes.

    Under monotonicity the answer equals a full scan's; ``test`` runs at most
    about 2 log2(len(grid)) times.
    """
    probes = 0
    last_fail = start - 1
    step = 1
    i = start
    found = None
    while i < len(grid):
        probes += 1
        if test(grid[i]):
            found = i
            break
        last_fail = i
        i = i + step
        step *= 2
    if found is None:
        if last_fail < len(grid) - 1:  # the doubling jumped past the end: test the last point
            probes += 1
            if test(grid[-1]):
                found = len(grid) - 1
        if found is None:
            return None, probes
    lo, hi = last_fail, found  # test(grid[lo]) false (or lo = start - 1), test(grid[hi]) true
    while hi - lo > 1:
        mid = (lo + hi) // 2
        probes += 1
        if test(grid[mid]):
            hi = mid
        else:
            lo = mid
    return hi, probes


def log_ratio_steps(a: float, b: float, ratio: float) -> float:
    """Grid steps between a and b: log(b / a) / log(ratio)."""
    return math.log(b / a) / math.log(ratio)
