"""Per-seed width thresholds from a scan over a width grid: intervals, censoring, when to stop.

A criterion (a width passes or fails) is scanned over increasing grid widths
m_0 < m_1 < ... of nested networks. It need not be monotone in m (exp
features are heavy-tailed: a seed can pass at one width and fail at a larger
one), so one seed's threshold is known only as an interval:

- ``first``: the smallest scanned width that passes;
- ``stable``: the smallest scanned width from which every scanned width passes;
- the threshold lies in (``lower``, ``upper``]: ``lower`` is the scanned width
  just below ``first`` (0 when the first grid width passes: left-censored; the
  last scanned width when none passes), ``upper`` is ``stable`` (+inf when the
  last scanned width fails: right-censored, the seed is kept, never dropped).

These (lower, upper] pairs are what ``censored.fit_censored`` takes. A scan may
stop early once the passes are *confirmed*: every width from ``stable`` up to
at least ``confirm_factor * stable`` passed (``confirmed``); the report states
the factor, since a failure beyond it would not be seen.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Threshold:
    """One seed's threshold on a width grid: the interval (lower, upper] and how it was found."""

    first: float  # smallest passing width (nan: none passed)
    stable: float  # smallest width from which all scanned widths pass (nan: the last one failed)
    lower: float  # threshold > lower (0: passed at the first grid width)
    upper: float  # threshold <= upper (inf: right-censored at the last scanned width)
    scanned_to: float  # last scanned width

    @property
    def censored(self) -> bool:
        """True when no stable pass was seen (upper = inf)."""
        return math.isinf(self.upper)

    def columns(self, prefix: str) -> dict[str, float]:
        """The five fields as result-table columns ``{prefix}_first``, ..., ``{prefix}_scanned_to``."""
        return {f"{prefix}_{k}": float(v) for k, v in dataclasses.asdict(self).items()}


def threshold(widths: Sequence[float], passed: Sequence[bool]) -> Threshold:
    """The interval threshold of one seed from its scan (``widths`` increasing, ``passed`` aligned).

    Examples
    --------
    >>> t = threshold([2, 4, 8, 16, 32], [False, True, False, True, True])
    >>> (t.first, t.stable, t.lower, t.upper)
    (4.0, 16.0, 2.0, 16.0)
    >>> threshold([2, 4, 8], [False, False, False]).upper
    inf
    """
    w = [float(v) for v in widths]
    ok = [bool(p) for p in passed]
    if len(w) != len(ok) or not w:
        raise ValueError(f"widths and passed must be non-empty and aligned, got {len(w)} and {len(ok)}")
    if any(b <= a for a, b in itertools.pairwise(w)):
        raise ValueError("widths must be strictly increasing")
    hits = [i for i, p in enumerate(ok) if p]
    if not hits:
        return Threshold(math.nan, math.nan, w[-1], math.inf, w[-1])
    i = hits[0]
    j = len(ok)
    while j > 0 and ok[j - 1]:
        j -= 1
    stable = w[j] if j < len(ok) else math.nan
    lower = w[i - 1] if i > 0 else 0.0
    return Threshold(w[i], stable, lower, stable if j < len(ok) else math.inf, w[-1])


def confirmed(widths: Sequence[float], passed: Sequence[bool], factor: float) -> bool:
    """True when the scan so far ends in a run of passes from some width s up to at least ``factor * s``."""
    if not passed or not passed[-1]:
        return False
    j = len(passed) - 1
    while j > 0 and passed[j - 1]:
        j -= 1
    return float(widths[-1]) >= factor * float(widths[j])
