"""The width experiment's rules, declared once: criteria, pass rules, the width grid, when a scan stops.

Both ``width`` (which runs the scans) and ``width_analysis`` (which fits
their thresholds) import this module; neither imports the other.

Criteria (docs/theory.md section 6), each on the kernel at initialisation
H^dis(W(0)) of the width-m network and lambda = lambda_min(H^cts):

==========  =============================================  ==========================================
name        passes when                                    role
==========  =============================================  ==========================================
``op1_4``   ||H^dis - H^cts||_op <= lambda/4               the proof's (lemma 1 of section 5)
``op1_2``   ||H^dis - H^cts||_op <= lambda/2               a looser deviation
``op3_4``   ||H^dis - H^cts||_op <= 3 lambda/4             looser still (it implies lambda_min > lambda/4)
``eig1_2``  lambda_min(H^dis) >= lambda/2                  what the linear rate of section 4 needs
``eig3_4``  lambda_min(H^dis) >= 3 lambda/4                what lemma 1's deviation guarantees
==========  =============================================  ==========================================

A scan records, at each grid width, ||H^dis - H^cts||_op / lambda and
lambda_min(H^dis) / lambda; every criterion is read from those two numbers,
so all five thresholds come from the same pass over the neurons.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .thresholds import confirmed


@dataclass(frozen=True)
class Criterion:
    """One pass rule: ``kind`` "op" (deviation <= fraction lambda) or "eig" (lambda_min >= fraction lambda)."""

    name: str
    kind: str
    fraction: float
    label: str

    def passes(self, value_over_lambda: float) -> bool:
        """Whether the scan's value (deviation / lambda or lambda_min / lambda) passes this criterion."""
        if self.kind == "op":
            return value_over_lambda <= self.fraction
        return value_over_lambda >= self.fraction

    def passed(self, values: Sequence[float]) -> list[bool]:
        """``passes`` of each value of a scan."""
        return [self.passes(v) for v in values]


#: Every criterion of the scan, name -> Criterion; ``op1_4`` is the proof's (lemma 1).
CRITERIA: dict[str, Criterion] = {
    c.name: c
    for c in (
        Criterion("op1_4", "op", 0.25, "||H^dis - H^cts||_op <= lambda/4 (the proof's, lemma 1)"),
        Criterion("op1_2", "op", 0.5, "||H^dis - H^cts||_op <= lambda/2"),
        Criterion("op3_4", "op", 0.75, "||H^dis - H^cts||_op <= 3 lambda/4"),
        Criterion("eig1_2", "eig", 0.5, "lambda_min(H^dis) >= lambda/2 (the linear rate's)"),
        Criterion("eig3_4", "eig", 0.75, "lambda_min(H^dis) >= 3 lambda/4"),
    )
}
#: The proof's criterion (docs/theory.md section 5, lemma 1).
PROOF = "op1_4"
#: GD reaches epsilon: the convergence threshold's label.
CONV_LABEL = "GD reaches epsilon"

#: Why a scan ended: every criterion confirmed, the give-up rule, or the cap.
STOP_CONFIRMED, STOP_GIVE_UP, STOP_CAP = "confirmed", "give-up", "cap"


def geometric_grid(m_min: int, m_max: int, ratio: float) -> list[int]:
    """Even integers m_min * ratio^k (rounded to even), k = 0, 1, ..., up to m_max; distinct, increasing.

    >>> geometric_grid(2, 16, 2.0)
    [2, 4, 8, 16]
    """
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


def values_of(kind: str, dev: Sequence[float], eig: Sequence[float]) -> Sequence[float]:
    """The scan's values a criterion of ``kind`` reads: deviation / lambda ("op") or lambda_min / lambda ("eig")."""
    return dev if kind == "op" else eig


def hopeless(dev_over_lambda: float, m: int, m_cap: int, give_up: float, fraction: float) -> bool:
    """The give-up rule for one op criterion at width m: even a decay like m^-1/2 to the cap, ``give_up`` times
    faster, would leave the deviation above ``fraction`` lambda there."""
    return dev_over_lambda * math.sqrt(m / m_cap) / give_up > fraction


@dataclass(frozen=True)
class StopRule:
    """When a scan stops: every criterion confirmed over ``confirm_factor``; or, from width ``give_up_from``
    on (``give_up`` > 0), when every eig criterion is confirmed and every op criterion not yet confirmed is
    ``hopeless``; or at the cap (the last grid width)."""

    confirm_factor: float
    give_up: float
    give_up_from: int
    m_cap: int

    def reason(self, widths: Sequence[int], dev: Sequence[float], eig: Sequence[float]) -> str | None:
        """Why the scan stops after its last width (``STOP_*``), or None to go on."""
        done = {
            name: confirmed(widths, c.passed(values_of(c.kind, dev, eig)), self.confirm_factor)
            for name, c in CRITERIA.items()
        }
        if all(done.values()):
            return STOP_CONFIRMED
        m = widths[-1]
        if (
            self.give_up
            and m >= self.give_up_from
            and all(done[k] for k, c in CRITERIA.items() if c.kind == "eig")
            and all(
                hopeless(dev[-1], m, self.m_cap, self.give_up, c.fraction)
                for k, c in CRITERIA.items()
                if c.kind == "op" and not done[k]
            )
        ):
            return STOP_GIVE_UP
        return STOP_CAP if m >= self.m_cap else None


def censored_by(censored: bool, stop: str) -> str:
    """The censoring cause of one criterion's threshold: "" when not right-censored, else the scan's stop reason."""
    return stop if censored else ""
