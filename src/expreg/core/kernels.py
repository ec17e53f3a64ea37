"""Kernels of docs/theory.md sections 3-4: closed forms, the empirical NTK, eigenvalues, trajectories.

Pure functions of their inputs; NumPy float64 throughout (these are the
theory quantities).

The closed forms (H^cts and the NNGP kernel K of each activation) belong to
the activation objects (``activations``: ``Activation.ntk``, ``.nngp``);
the functions here validate the inputs and call them. ``activation`` is a
registered name (``"exp"``, ``"relu"``) or an ``Activation``.

H^cts = E_{w ~ N(0, I)}[H^dis(W(0))] does not depend on the scaling s; the
finite-width kernel H(W) = m s^2 H^dis(W) does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

from . import gram
from .activations import Activation, get_activation
from .eigen import (  # re-exported: the kernels' eigenvalues live in eigen
    extreme_eigenvalues as extreme_eigenvalues,
)
from .eigen import (
    lambda_max as lambda_max,
)
from .eigen import (
    lambda_min as lambda_min,
)
from .eigen import (
    lazy_criteria as lazy_criteria,
)
from .eigen import (
    operator_norm as operator_norm,
)
from .errors import ExpOverflowError, overflow_checked
from .softmax_features import (  # re-exported: the softmax kernel and its features live in softmax_features
    positive_features as positive_features,
)
from .softmax_features import (
    softmax as softmax,
)
from .validation import check_X


def _closed_form(A: np.ndarray, B: np.ndarray, activation: str | Activation, kind: str) -> np.ndarray:
    """H^cts (``kind="ntk"``) or K (``kind="nngp"``) between the rows of A and B: the activation's own closed form.

    Raises ``ExpOverflowError`` rather than return a matrix with inf or NaN entries.
    """
    act = get_activation(activation)
    with np.errstate(over="ignore", invalid="ignore"):
        G = A @ B.T
        K = act.ntk(A, B, G) if kind == "ntk" else act.nngp(A, B, G)
    if not (np.isfinite(K.max()) and np.isfinite(K.min())):  # NaN propagates through max and min
        largest = max(float(np.abs(A).max()), float(np.abs(B).max()))
        raise ExpOverflowError(
            f"the {kind.upper()} kernel of these inputs is not finite in float64 (largest |x| entry {largest:.3g}); "
            "scale the inputs into the unit ball"
        )
    return K


def ntk(X: Any, activation: str | Activation = "exp") -> np.ndarray:
    """Infinite-width NTK H^cts (n x n), closed form (docs/theory.md section 3).

    H^cts_ij = E_{w ~ N(0, I)} <x_i, x_j> sigma'(<w, x_i>) sigma'(<w, x_j>).

    Examples
    --------
    >>> import numpy as np
    >>> ntk(np.array([[1.0, 0.0]]))  # unit vector: e^2 on the diagonal
    array([[7.3890561]])
    """
    Xa = check_X(X, dtype=np.float64, warn_ball=False)
    return _closed_form(Xa, Xa, activation, "ntk")


def nngp(X: Any, activation: str | Activation = "exp") -> np.ndarray:
    """Output covariance at independent initialisation, s = 1/sqrt(m) (docs/theory.md section 3), (n x n).

    K_ij = E_{w ~ N(0, I)} sigma(<w, x_i>) sigma(<w, x_j>).
    """
    Xa = check_X(X, dtype=np.float64, warn_ball=False)
    return _closed_form(Xa, Xa, activation, "nngp")


def ntk_cross(X1: Any, X2: Any, activation: str | Activation = "exp") -> np.ndarray:
    """H^cts between two sets of points (n1 x n2), for kernel regression."""
    A = check_X(X1, name="X1", dtype=np.float64, warn_ball=False)
    B = check_X(X2, name="X2", dtype=np.float64, warn_ball=False, d=A.shape[1])
    return _closed_form(A, B, activation, "ntk")


def nngp_cross(X1: Any, X2: Any, activation: str | Activation = "exp") -> np.ndarray:
    """NNGP kernel K between two sets of points (n1 x n2), for GP prediction."""
    A = check_X(X1, name="X1", dtype=np.float64, warn_ball=False)
    B = check_X(X2, name="X2", dtype=np.float64, warn_ball=False, d=A.shape[1])
    return _closed_form(A, B, activation, "nngp")


def empirical_ntk(net: Any, X: Any, *, average: bool = False) -> np.ndarray:
    """Finite-width NTK H(W) (n x n), blocked over neurons (docs/theory.md section 3).

    H(W)_ij = s^2 sum_r <x_i,x_j> sigma'(<w_r,x_i>) sigma'(<w_r,x_j>).
    With ``average=True`` returns the paper's H^dis = H / (m s^2), whose
    expectation at initialisation is ``ntk(X)``. Computed in the net's dtype,
    returned as float64.
    """
    be = net.backend
    Xn = check_X(X, dtype=net.dtype, d=net.d)
    Xb = be.asarray(Xn, net.dtype)
    with overflow_checked():
        H = gram.gram(be, net.act, Xb, net.W, net.s, a=net.a, block=net.block)
    if average:
        H /= net.m * net.s**2
    return H


@dataclass(frozen=True)
class PredictedTrajectory:
    """Residuals of GD on the linearised model, from one eigendecomposition.

    r(t) = (I - lr H)^t r0 = V diag((1 - lr mu)^t) V^T r0 (docs/theory.md section 4).
    Call with an array of step counts to get an array (len(t), n).
    """

    eigenvalues: np.ndarray  # (n,)
    eigenvectors: np.ndarray  # (n, n)
    coefficients: np.ndarray  # V^T r0, (n,)
    lr: float

    def __call__(self, t: Any) -> np.ndarray:
        t = _steps(t)
        factors = (1.0 - self.lr * self.eigenvalues)[None, :] ** t[:, None]  # (T, n)
        return (factors * self.coefficients[None, :]) @ self.eigenvectors.T

    def norms(self, t: Any) -> np.ndarray:
        """||r(t)||_2 for each t, shape (len(t),), without forming r(t)."""
        t = _steps(t)
        factors = (1.0 - self.lr * self.eigenvalues)[None, :] ** t[:, None]
        return np.sqrt(((factors * self.coefficients[None, :]) ** 2).sum(axis=1))

    def extension(self, K: Any, t: Any) -> np.ndarray:
        """Change of the predictions at other points after t steps, shape (len(t), k).

        GD on the linearised model moves f(x) by -lr K(x, X) r(j) at step j,
        so after t steps f(x, t) - f(x, 0) = -K V diag(g(t)) V^T r0 with
        g(t) = sum_{j<t} lr (1 - lr mu)^j = (1 - (1 - lr mu)^t) / mu (lr t where mu = 0).
        K (k, n) is the kernel between the k new points and the training
        points, e.g. ``ntk_cross(X_new, X)`` scaled as H was.
        """
        t = _steps(t)
        mu = self.eigenvalues
        decay = (1.0 - self.lr * mu)[None, :] ** t[:, None]  # (T, n)
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = np.where(mu > 0, (1.0 - decay) / mu, self.lr * t[:, None])
        K = np.asarray(K, dtype=np.float64)
        return (K @ (self.eigenvectors @ (-gain * self.coefficients[None, :]).T)).T


def _steps(t: Any) -> np.ndarray:
    """Step counts as float64 (k,), refusing negative or fractional steps ((1 - lr mu)^t may be < 0)."""
    arr = np.atleast_1d(np.asarray(t, dtype=np.float64))
    if arr.ndim != 1 or not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr != np.round(arr)):
        raise ValueError(f"t must be non-negative integer step counts, got {t!r}")
    return arr


def predicted_trajectory(H: np.ndarray, r0: Any, lr: float) -> PredictedTrajectory:
    """Kernel-predicted residual trajectory for kernel H (n x n) and step ``lr``.

    For the network, pass H = m s^2 H^cts (or the empirical H(W(0))) and
    r0 = u(0) - y.

    Examples
    --------
    >>> import numpy as np
    >>> traj = predicted_trajectory(np.eye(2), np.ones(2), 0.5)
    >>> traj([0, 1, 2]).tolist()
    [[1.0, 1.0], [0.5, 0.5], [0.25, 0.25]]
    """
    from .validation import check_square

    H = check_square(H)
    r0 = np.asarray(r0, dtype=np.float64)
    if r0.shape != (H.shape[0],) or not np.isfinite(r0).all():
        raise ValueError(
            f"r0 must be a finite vector of length n = {H.shape[0]}, got shape {r0.shape}"
            + ("" if r0.shape != (H.shape[0],) else " with NaN or inf entries")
        )
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite step size, got {lr!r}")
    mu, V = scipy.linalg.eigh(H)
    return PredictedTrajectory(eigenvalues=mu, eigenvectors=V, coefficients=V.T @ r0, lr=float(lr))


def ntk_lambda(X: Any, activation: str | Activation = "exp") -> float:
    """lambda = lambda_min(H^cts(X)) (docs/theory.md section 3), refusing inputs where it is 0.

    Raises ``CoincidentPointsError`` (a ValueError) for duplicate or zero rows, or relu's
    points on one ray (then lambda = 0; ``validation.check_points_distinct``).
    """
    from .validation import check_points_distinct

    Xa = check_X(X, dtype=np.float64)
    check_points_distinct(Xa, activation=activation.name if isinstance(activation, Activation) else activation)
    return lambda_min(ntk(Xa, activation))
