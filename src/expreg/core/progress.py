"""The progress bar every long expreg job shows on stderr (rich, from the ``cli`` or ``experiments`` extra).

One layout for ``expreg train`` (steps) and the experiment sweeps (runs):
title, bar, done/total, a counter text of the caller's, elapsed time, ETA.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any


def rich_bar(title: str, counter: str, *, eta_label: bool = False, eta: bool = True) -> Any:
    """A ``rich.progress.Progress`` on stderr with expreg's columns.

    Parameters
    ----------
    title : str
        Shown in bold first.
    counter : str
        A ``TextColumn`` template after done/total, e.g. ``"runs, {task.fields[left]} left"``.
    eta_label : bool
        Write "ETA" before the time remaining.
    eta : bool
        Show rich's time remaining (from the bar's total); False when the
        caller writes its own estimate into ``counter`` (``StepsToEpsilon``).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[ProgressColumn] = [
        TextColumn(f"[bold]{title}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(counter),
        TimeElapsedColumn(),
    ]
    if eta and eta_label:
        columns.append(TextColumn("ETA"))
    if eta:
        columns.append(TimeRemainingColumn())
    return Progress(*columns, console=Console(stderr=True, highlight=False))


@dataclass
class StepsToEpsilon:
    """Estimate of the step at which gradient descent reaches ``epsilon``, from the residuals seen so far.

    Under the linear rate of docs/theory.md section 4 the residual decays
    geometrically, ||u(t) - y|| ~ r_t q^(t - t0), so the step where it meets
    epsilon is t + log(epsilon / r_t) / log q. q is measured over the last
    ``window`` steps reported; the estimate is capped at ``max_steps`` (the
    budget, used only when the residual would not get there sooner) and is
    None until the residual has fallen over at least ``min_steps`` steps.

    Examples
    --------
    >>> est = StepsToEpsilon(epsilon=1e-3, max_steps=10_000)
    >>> for t in range(0, 51, 10):
    ...     est.observe(t, 0.9**t)
    >>> round(est.final_step())
    66
    """

    epsilon: float
    max_steps: int
    window: int = 200
    min_steps: int = 5
    _seen: list[tuple[int, float, float]] = field(default_factory=list, repr=False)

    def observe(self, step: int, residual: float, now: float | None = None) -> None:
        """Record ||u(step) - y|| = ``residual`` seen at time ``now`` (default: ``time.perf_counter()``)."""
        if residual > 0 and math.isfinite(residual):
            self._seen.append((step, residual, time.perf_counter() if now is None else now))
            while len(self._seen) > 2 and self._seen[-1][0] - self._seen[1][0] >= self.window:
                self._seen.pop(0)

    def final_step(self) -> float | None:
        """The step at which the run is expected to stop: reaching epsilon, or max_steps; None while unknown."""
        if len(self._seen) < 2:
            return None
        (t0, r0, _), (t1, r1, _) = self._seen[0], self._seen[-1]
        if r1 <= self.epsilon:
            return float(t1)
        if t1 - t0 < self.min_steps or not r1 < r0:
            return None if t1 < self.max_steps else float(self.max_steps)
        rate = math.log(r1 / r0) / (t1 - t0)  # log q < 0
        return float(min(self.max_steps, t1 + math.log(self.epsilon / r1) / rate))

    def seconds_left(self) -> float | None:
        """Time to ``final_step()`` at the pace of the steps seen (None while unknown)."""
        end = self.final_step()
        if end is None or len(self._seen) < 2:
            return None
        (t0, _, s0), (t1, _, s1) = self._seen[0], self._seen[-1]
        return max(0.0, end - t1) * (s1 - s0) / max(t1 - t0, 1)

    def describe(self) -> str:
        """ "ETA 12s (stops near step 1,059)" or "ETA -" while unknown, for a progress bar's text."""
        end, left = self.final_step(), self.seconds_left()
        if end is None or left is None:
            return "ETA -"
        minutes, seconds = divmod(round(left), 60)
        when = f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
        why = "max_steps" if end >= self.max_steps else "epsilon"
        return f"ETA {when} (stops near step {round(end):,}: {why})"
