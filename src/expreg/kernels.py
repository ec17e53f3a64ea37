"""Kernels of MATH.md 3-4: closed forms, the empirical NTK, eigenvalues, trajectories.

Pure functions of their inputs; NumPy float64 throughout (these are the
theory quantities).

Closed forms, for rows x_i of X and rho_ij = cos angle(x_i, x_j):

    exp   H^cts_ij = <x_i,x_j> exp(||x_i + x_j||^2 / 2)
          K_ij     = exp(||x_i + x_j||^2 / 2)                       (NNGP)
    relu  H^cts_ij = <x_i,x_j> (pi - arccos rho_ij) / (2 pi)
          K_ij     = ||x_i|| ||x_j|| (sqrt(1 - rho^2) + (pi - arccos rho) rho) / (2 pi)

(the angle arccos rho_ij is computed in a cancellation-free way, see ``_angles``).

H^cts = E_{w ~ N(0, I)}[H^dis(W(0))] does not depend on the scaling s; the
finite-width kernel H(W) = m s^2 H^dis(W) does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

from . import ops
from .activations import get_activation
from .eigen import extreme_eigenvalues, lambda_max, lambda_min, lazy_criteria, operator_norm  # noqa: F401  (re-exported)
from .errors import ExpOverflowError, overflow_checked
from .validation import check_X



def _angles(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """theta_ij = angle(a_i, b_j) in [0, pi] (n1 x n2); pi/2 where one row is zero, 0 where both are.

    (Every closed form multiplies the angle of a zero row by a zero norm or inner product.)

    Computed as 2 atan2(||u - v||, ||u + v||) on the unit vectors u, v, which
    is accurate near 0 and pi, unlike arccos(rho): rounding of rho by 1e-16
    near rho = 1 moves arccos by 1e-8 and would spoil the ReLU diagonal.
    """
    import scipy.spatial.distance

    def unit(M: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(M, axis=1, keepdims=True)
        return np.divide(M, norms, out=np.zeros_like(M), where=norms > 0)

    U, V = unit(A), unit(B)
    return 2.0 * np.arctan2(scipy.spatial.distance.cdist(U, V), scipy.spatial.distance.cdist(U, -V))


def _exp_half_sum_sq(A: np.ndarray, B: np.ndarray, G: np.ndarray) -> np.ndarray:
    """exp(||a_i + b_j||^2 / 2) (n1 x n2), refusing to overflow."""
    expo = 0.5 * ((A * A).sum(1)[:, None] + (B * B).sum(1)[None, :]) + G  # ||a_i + b_j||^2 / 2
    if expo.max() > 700:
        raise ExpOverflowError(
            f"exp(||x_i + x_j||^2 / 2) overflows float64 (exponent up to {expo.max():.3g}); "
            "scale the inputs into the unit ball"
        )
    return np.exp(expo)


def _closed_form(A: np.ndarray, B: np.ndarray, activation: str, kind: str) -> np.ndarray:
    """H^cts (``kind="ntk"``) or K (``kind="nngp"``) between the rows of A and B (MATH.md 3)."""
    activation = get_activation(activation).name
    G = A @ B.T
    if activation == "exp":
        K = _exp_half_sum_sq(A, B, G)
        return G * K if kind == "ntk" else K
    if activation == "relu":
        theta = _angles(A, B)
        if kind == "ntk":
            return G * (np.pi - theta) / (2 * np.pi)
        norms = np.outer(np.linalg.norm(A, axis=1), np.linalg.norm(B, axis=1))
        return norms * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi)
    raise AssertionError(f"no closed form for activation {activation!r}")


def ntk(X: Any, activation: str = "exp") -> np.ndarray:
    """Infinite-width NTK H^cts (n x n), closed form (MATH.md 3).

    H^cts_ij = E_{w ~ N(0, I)} <x_i, x_j> sigma'(<w, x_i>) sigma'(<w, x_j>).

    Examples
    --------
    >>> import numpy as np
    >>> ntk(np.array([[1.0, 0.0]]))  # unit vector: e^2 on the diagonal
    array([[7.3890561]])
    """
    Xa = check_X(X, dtype=np.float64, warn_ball=False)
    return _closed_form(Xa, Xa, activation, "ntk")


def nngp(X: Any, activation: str = "exp") -> np.ndarray:
    """Output covariance at independent initialisation, s = 1/sqrt(m) (MATH.md 3), (n x n).

    K_ij = E_{w ~ N(0, I)} sigma(<w, x_i>) sigma(<w, x_j>).
    """
    Xa = check_X(X, dtype=np.float64, warn_ball=False)
    return _closed_form(Xa, Xa, activation, "nngp")


def ntk_cross(X1: Any, X2: Any, activation: str = "exp") -> np.ndarray:
    """H^cts between two sets of points (n1 x n2), for kernel regression."""
    A = check_X(X1, name="X1", dtype=np.float64, warn_ball=False)
    B = check_X(X2, name="X2", dtype=np.float64, warn_ball=False, d=A.shape[1])
    return _closed_form(A, B, activation, "ntk")


def nngp_cross(X1: Any, X2: Any, activation: str = "exp") -> np.ndarray:
    """NNGP kernel K between two sets of points (n1 x n2), for GP prediction."""
    A = check_X(X1, name="X1", dtype=np.float64, warn_ball=False)
    B = check_X(X2, name="X2", dtype=np.float64, warn_ball=False, d=A.shape[1])
    return _closed_form(A, B, activation, "nngp")


def empirical_ntk(net: Any, X: Any, *, average: bool = False) -> np.ndarray:
    """Finite-width NTK H(W) (n x n), blocked over neurons (MATH.md 3).

    H(W)_ij = s^2 sum_r <x_i,x_j> sigma'(<w_r,x_i>) sigma'(<w_r,x_j>).
    With ``average=True`` returns the paper's H^dis = H / (m s^2), whose
    expectation at initialisation is ``ntk(X)``. Computed in the net's dtype,
    returned as float64.
    """
    be = net.backend
    Xn = check_X(X, dtype=net.dtype, d=net.d)
    Xb = be.asarray(Xn, net.dtype)
    with overflow_checked():
        H = ops.gram(be, net.act, Xb, net.W, net.s, a=net.a, block=net.block)
    if average:
        H /= net.m * net.s**2
    return H


@dataclass(frozen=True)
class PredictedTrajectory:
    """Residuals of GD on the linearised model, from one eigendecomposition.

    r(t) = (I - lr H)^t r0 = V diag((1 - lr mu)^t) V^T r0 (MATH.md 4).
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
    H = np.asarray(H, dtype=np.float64)
    mu, V = scipy.linalg.eigh(H)
    r0 = np.asarray(r0, dtype=np.float64)
    return PredictedTrajectory(eigenvalues=mu, eigenvectors=V, coefficients=V.T @ r0, lr=float(lr))


def ntk_lambda(X: Any, activation: str = "exp") -> float:
    """lambda = lambda_min(H^cts(X)) (MATH.md 3), refusing inputs where it is 0.

    Raises ``ValueError`` for duplicate or zero rows (then lambda = 0).
    """
    from .validation import check_distinct

    Xa = check_X(X, dtype=np.float64)
    check_distinct(Xa)
    return lambda_min(ntk(Xa, activation))
