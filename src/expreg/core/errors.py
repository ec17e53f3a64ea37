"""Exceptions raised by expreg.

Every error names what was wrong, the value found, and what to do instead
(STYLE.md, habit 7). They subclass the built-in exception a user would
catch anyway, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

from typing import Any


class ExpregError(Exception):
    """Base class of every expreg-specific exception."""


class ExpOverflowError(ExpregError, OverflowError, FloatingPointError):
    """exp(<w_r, x_i>) (or a product built from it) overflowed the dtype.

    Raised instead of silently returning inf or NaN. Typical causes are
    inputs far outside the unit ball, a step size that sent the weights
    off, or float32 where float64 is needed.
    """


class TrainingDivergedError(ExpregError, FloatingPointError):
    """Gradient descent blew up (loss grew without bound or exp overflowed).

    Attributes
    ----------
    result : TrainResult
        The run up to the last step whose loss was finite; ``result.net``
        holds the last finite weights, never NaN.
    lr : float
        The step size that diverged.
    suggested_lr : float
        A step size to retry with: min(1 / lambda_max(H(W(0))), lr / 2),
        stable on the linearised problem at the start (docs/theory.md section 4) and
        always below the step that diverged.
    """

    def __init__(self, message: str, *, result: Any, lr: float, suggested_lr: float) -> None:
        super().__init__(message)
        self.result = result
        self.lr = lr
        self.suggested_lr = suggested_lr


class CoincidentPointsError(ExpregError, ValueError):
    """lambda = lambda_min(H^cts) = 0: two inputs coincide (or lie on one ray, for relu), or one is zero.

    The theorem's bounds divide by lambda; gradient descent cannot fit two
    different labels at one point. ``validation.check_points_distinct``
    raises it before any work, naming the points.

    Attributes
    ----------
    groups : list of list of int
        Indices of the points that coincide, one list per group (the zero
        points, if any, are the first group).
    """

    def __init__(self, message: str, *, groups: list[list[int]]) -> None:
        super().__init__(message)
        self.groups = groups


class CheckpointError(ExpregError, ValueError):
    """A checkpoint or result file is missing, truncated or inconsistent."""


def overflow_checked() -> Any:
    """Context manager silencing NumPy's overflow/invalid warnings inside the passes.

    Overflow is detected explicitly (``ops`` checks every result for inf and
    NaN and raises ``ExpOverflowError``), so NumPy's RuntimeWarnings on the
    way there would only be noise (and errors under ``-W error``).
    """
    import numpy as np

    return np.errstate(over="ignore", invalid="ignore")
