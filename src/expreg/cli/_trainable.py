"""The check ``expreg train`` and ``expreg theory`` make before any work: can these inputs train at all?

Gradient descent reaches epsilon at the linear rate of docs/theory.md
section 4 only when lambda = lambda_min(H^cts) > 0, and the step rule
(lr = 1/lambda_max(m s^2 H^cts)) is only useful when H^cts is well scaled,
which the theorem's ||x_i|| <= 1 ensures. Raw features (sizes in the
hundreds) make H^cts's entries exp(<x_i, x_j>) astronomically large: its
computed lambda_min is then rounding noise (negative), the step 1e-29, and a
run spends its whole budget going nowhere. This module says so in command-line
terms, with the two remedies: ``--scale-inputs`` and removing duplicate rows.
"""

from __future__ import annotations

import numpy as np

from ..core.data import unit_ball_map
from ..core.errors import ExpOverflowError
from ..core.kernels import ntk
from ..core.validation import check_points_distinct

__all__ = ["check_trainable", "scale_inputs"]

#: What --scale-inputs does, said once for every message.
SCALE_ADVICE = "rerun with --scale-inputs (x -> (x - mean) / max_i ||x_i - mean||, the map of UnitBallScaler)"


def scale_inputs(X: np.ndarray) -> np.ndarray:
    """``--scale-inputs``: (X - mean) / max_i ||x_i - mean||, shape (n, d) float64, every row in the unit ball."""
    mean, radius = unit_ball_map(X)
    return (X - mean) / (radius if radius > 0 else 1.0)


def check_trainable(X: np.ndarray, activation: str, *, scaled: bool) -> tuple[float, float]:
    """(lambda_min, lambda_max) of H^cts(X) (docs/theory.md section 3), or ValueError saying what to do.

    Refused: duplicate or zero rows (lambda = 0 exactly), an H^cts that
    overflows, and a lambda_min that is not positive to float64 precision
    (below n * eps * lambda_max, where the eigenvalue is rounding noise).
    ``scaled`` says whether --scale-inputs was given (then it is not advised).
    """
    from ..core.eigen import extreme_eigenvalues

    norms = np.linalg.norm(X, axis=1)
    outside = (
        f"the inputs lie outside the unit ball the theorem assumes (largest ||x|| = {norms.max():.4g}): {SCALE_ADVICE}"
        if norms.max() > 1 + 1e-9 and not scaled
        else ""
    )
    check_points_distinct(X, activation=activation)  # lambda = 0 exactly (issue 19's shared check)
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            H = ntk(X, activation=activation)
    except ExpOverflowError:
        H = np.array([np.inf])
    if not np.isfinite(H).all():
        raise ValueError(
            f"the kernel H^cts overflows float64 on these inputs (largest ||x|| = {norms.max():.4g}), so no step size "
            f"can train them: {SCALE_ADVICE}"
        )
    lam_min, lam_max = extreme_eigenvalues(H)
    floor = X.shape[0] * float(np.finfo(np.float64).eps) * lam_max
    if not lam_min > floor:
        why = outside or (
            "some rows are (nearly) parallel or repeated; remove near-duplicate rows"
            if not scaled
            else "some rows are (nearly) equal after scaling; remove near-duplicate rows"
        )
        raise ValueError(
            f"lambda = lambda_min(H^cts) = {lam_min:.4g} is not positive to float64 precision (lambda_max = {lam_max:.4g}), "
            f"so gradient descent cannot reach epsilon on these inputs: {why}"
        )
    return lam_min, lam_max
