"""Input checks at the public boundary (STYLE.md, habit 1).

Each check names the argument, what was found and what to do. Internal code
trusts what these return: C-contiguous float arrays of the right shapes.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .backends import host_array


class InputOutsideUnitBallWarning(UserWarning):
    """Inputs with ||x|| > 1: the theorem (docs/theory.md sections 4-5) assumes ||x_i|| <= 1."""


def _as_float_array(value: Any, name: str, dtype: DTypeLike | None) -> np.ndarray:
    """``value`` as a C-contiguous float array of ``dtype``, checked finite.

    Finiteness is checked before the cast, so a value that does not fit the
    target dtype (e.g. 1e39 into float32) is reported as such, not as NaN.
    """
    if type(value).__module__.startswith("scipy.sparse"):  # np.asarray would make a 0-d object array of it
        raise TypeError(
            f"{name} is a scipy.sparse matrix ({type(value).__name__}, shape {value.shape}); expreg works with dense "
            f"arrays: pass {name}.toarray()"
        )
    value = host_array(value)
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"{name} could not be read as a rectangular numeric array ({exc}); pass a NumPy array"
        ) from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(
            f"{name} must hold numbers, got dtype {arr.dtype}; convert it with numpy.asarray({name}, dtype=float)"
        )
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} is complex ({arr.dtype}); expreg works with real inputs")
    if np.issubdtype(arr.dtype, np.floating) and arr.size and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{name} contains NaN or inf ({bad} entries); remove or impute them first")
    target = dtype if dtype is not None else (arr.dtype if arr.dtype in (np.float32, np.float64) else np.float64)
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=target)
    if out.size and not np.isfinite(out).all():
        raise ValueError(
            f"{name} has entries too large for {np.dtype(target)} (largest |value| {float(np.abs(arr).max()):.3g}); "
            "scale the inputs into the unit ball or use float64"
        )
    return out


def _ball_tolerance(*dtypes: Any) -> float:
    """How far above 1 a norm may lie and still be rounding of a unit vector in these dtypes."""
    eps = float(np.finfo(np.float64).eps)
    for dt in dtypes:
        try:
            npdt = np.dtype(str(dt).replace("torch.", "")) if dt is not None else None
        except TypeError:
            npdt = None
        if npdt is not None and np.issubdtype(npdt, np.floating):
            eps = max(eps, float(np.finfo(npdt).eps))
    return max(1e-9, 16 * eps)


def check_X(
    X: Any, *, name: str = "X", dtype: DTypeLike | None = None, d: int | None = None, warn_ball: bool = True
) -> np.ndarray:
    """Validate inputs: 2-D (n, d), n >= 1, finite, numeric.

    Parameters
    ----------
    d : int, optional
        Expected number of columns (the network's input dimension).
    warn_ball : bool
        Warn (``InputOutsideUnitBallWarning``) when some ||x_i|| > 1.
    """
    arr = _as_float_array(X, name, dtype)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D with shape (n, d), got {arr.ndim}-D shape {arr.shape}; reshape it, e.g. {name}.reshape(-1, 1) for one feature"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); at least one point with at least one feature is needed")
    if d is not None and arr.shape[1] != d:
        raise ValueError(f"{name} has {arr.shape[1]} features but the network expects d = {d}")
    if warn_ball:
        tol = _ball_tolerance(getattr(X, "dtype", None), arr.dtype)
        norms = _row_norms(arr)
        if norms.max() > 1 + tol:
            warnings.warn(
                f"{name} has {int((norms > 1 + tol).sum())} rows with ||x|| > 1 (max {norms.max():.3g}); "
                "the theorem assumes ||x_i|| <= 1 and exp grows fast: scale the inputs into the unit ball",
                InputOutsideUnitBallWarning,
                stacklevel=3,
            )
    return arr


def check_y(y: Any, n: int, *, name: str = "y", dtype: DTypeLike | None = None) -> np.ndarray:
    """Validate targets: 1-D of length n (a column vector (n, 1) is accepted), finite."""
    arr = _as_float_array(y, name, dtype)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = np.ascontiguousarray(arr[:, 0])
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D with n = {n} entries, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but X has n = {n} rows; they must match")
    return arr


def check_X_y(
    X: Any, y: Any, *, dtype: DTypeLike | None = None, d: int | None = None, warn_ball: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a training set; see ``check_X`` and ``check_y``."""
    Xa = check_X(X, dtype=dtype, d=d, warn_ball=warn_ball)
    return Xa, check_y(y, Xa.shape[0], dtype=dtype or Xa.dtype)


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """An integer >= minimum (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def is_number(value: Any) -> bool:
    """True for a real number (Python or NumPy int or float); False for bools, strings, arrays."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _shown(value: Any) -> str:
    """A value in a message: numbers as Python prints them (``-1.0``, also for NumPy scalars), the rest by repr."""
    if is_number(value):
        return repr(int(value)) if isinstance(value, numbers.Integral) else repr(float(value))
    return repr(value)


def check_positive(value: Any, name: str, *, hint: str = "") -> float:
    """A finite real number > 0, as a float; else ``ValueError`` "name must be a positive finite number, got v" + hint."""
    if not (is_number(value) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {_shown(value)}{hint}")
    return float(value)


def check_nonnegative(value: Any, name: str) -> float:
    """A finite real number >= 0, as a float; else ``ValueError`` naming ``name``."""
    if not (is_number(value) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {_shown(value)}")
    return float(value)


def check_probability(value: Any, name: str) -> float:
    """A number in the open interval (0, 1), as a float; else ``ValueError`` naming ``name``."""
    p = check_positive(value, name)
    if p >= 1:
        raise ValueError(f"{name} must lie in (0, 1), got {p}")
    return p


def _row_norms(arr: np.ndarray) -> np.ndarray:
    """||x_i||_2 of each row in float64, without overflow in the squares (rows as large as 1e300 are fine)."""
    a = arr.astype(np.float64)
    big = np.abs(a).max(axis=1, initial=0.0)
    scale = np.where(big > 0, big, 1.0)
    with np.errstate(over="ignore"):  # a norm beyond the float64 range is inf, and reported as such
        return big * np.linalg.norm(a / scale[:, None], axis=1)


# ----------------------------------------------------------------- lambda = 0
#: Decimals to which (scaled) points are compared when looking for coincident points.
COINCIDENCE_DECIMALS = 12


def coincident_points(X: Any, *, scale_free: bool = False) -> list[list[int]]:
    """Groups of rows of ``X`` (n, d) that make H^cts singular (lambda = 0; docs/theory.md section 3).

    The zero rows are one group (first); rows equal to ``COINCIDENCE_DECIMALS``
    decimals (of the largest norm) form a group; with ``scale_free`` (a
    positively homogeneous activation: relu) rows with the same direction
    do too. Sorting, not pairwise distances: O(n d log n).
    """
    A = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(A, axis=1)
    top = float(norms.max()) if A.size else 0.0
    zero = norms <= top * 10.0**-COINCIDENCE_DECIMALS
    zeros = [[int(i) for i in np.flatnonzero(zero)]] if zero.any() else []
    keep = np.flatnonzero(~zero)
    if len(keep) < 2:
        return zeros
    B = A[keep] / (norms[keep, None] if scale_free else top)
    rounded = np.round(B, COINCIDENCE_DECIMALS) + 0.0  # + 0.0: -0.0 and 0.0 alike
    _, inverse, counts = np.unique(rounded, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    same = [[int(i) for i in keep[inverse == label]] for label in np.flatnonzero(counts > 1)]
    return zeros + sorted(same)


def check_points_distinct(X: Any, *, activation: str = "exp", name: str = "X", action: str = "raise") -> None:
    """Refuse (or warn about) inputs for which lambda = lambda_min(H^cts) = 0, naming the points.

    The one check every entry point calls before work (training, the
    theory's quantities, each experiment, the estimator): H^cts is positive
    definite iff the points are non-zero and pairwise distinct (for relu:
    of pairwise distinct directions), docs/theory.md section 3.

    Parameters
    ----------
    X : array (n, d)
    activation : str
        Name of the activation (``ACTIVATIONS``): relu also refuses points on one ray.
    name : str
        How the message names the inputs (``"X"``, ``"--data"``).
    action : {"raise", "warn"}
        Raise ``CoincidentPointsError``, or issue it as a ``CoincidentPointsWarning``.
    """
    from .activations import get_activation
    from .errors import CoincidentPointsError

    scale_free = get_activation(activation).scale_free
    groups = coincident_points(X, scale_free=scale_free)
    if not groups:
        return
    zero_first = not np.linalg.norm(np.asarray(X, dtype=np.float64)[groups[0][0]]) > 0
    message = _coincidence_message(groups, name, activation if scale_free else None, zero_first)
    if action == "warn":
        warnings.warn(message, CoincidentPointsWarning, stacklevel=3)
        return
    raise CoincidentPointsError(message, groups=groups)


class CoincidentPointsWarning(UserWarning):
    """Inputs with lambda = lambda_min(H^cts) = 0 (``check_points_distinct`` with action="warn")."""


def _coincidence_message(
    groups: list[list[int]], name: str, scale_free_activation: str | None, zero_first: bool
) -> str:
    first = groups[0]
    if zero_first:
        what = (
            f"row {first[0]} of {name} is zero"
            if len(first) == 1
            else f"rows {', '.join(map(str, first[:5]))} of {name} are zero"
        )
    elif scale_free_activation:
        what = f"rows {', '.join(map(str, first[:5]))} of {name} lie on one ray from the origin ({scale_free_activation} sees only directions)"
    else:
        what = f"rows {', '.join(map(str, first[:5]))} of {name} coincide"
    more = (
        f" ({len(groups) - 1} more group{'s' if len(groups) > 2 else ''} of coincident points)"
        if len(groups) > 1
        else ""
    )
    return (
        f"lambda = lambda_min(H^cts) is 0: {what}{more}; remove the duplicate or zero rows "
        "(e.g. numpy.unique(X, axis=0), averaging their labels) or add a feature that tells them apart"
    )


def check_sphere_sample(n: int, d: int, *, where: str = "") -> None:
    """Refuse n points drawn on the unit sphere S^{d-1} when they must coincide: d = 1 (S^0 = {-1, +1}) and n > 2.

    For d >= 2 distinct draws coincide with probability 0. The error is
    the same ``CoincidentPointsError`` as ``check_points_distinct``'s.
    """
    from .errors import CoincidentPointsError

    if d == 1 and n > 2:
        raise CoincidentPointsError(
            f"lambda = lambda_min(H^cts) is 0{where}: in d = 1 the unit sphere has two points, -1 and +1, so "
            f"n = {n} points drawn on it coincide; use d >= 2 (or n <= 2)",
            groups=[],
        )


def check_square(H: Any, name: str = "H") -> np.ndarray:
    """``H`` as a float64 non-empty square matrix with finite entries, or a ValueError naming ``name``."""
    A = np.asarray(H, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square matrix, got shape {A.shape}")
    if not np.isfinite(A).all():
        raise ValueError(
            f"{name} contains NaN or inf ({int((~np.isfinite(A)).sum())} entries); its eigenvalues are undefined"
        )
    return A
