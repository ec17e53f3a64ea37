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

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import flow, gram
from .activations import Activation, get_activation
from .backends import Array, Backend
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


def _pair(X1: Any, X2: Any, activation: Any, fn: str) -> tuple[np.ndarray, np.ndarray | None, str | Activation]:
    """Validated (X1, X2 or None, activation); an activation passed where X2 now goes is taken, with a warning.

    Until 0.2 the second positional argument of ``ntk`` and ``nngp`` was the
    activation (``ntk(X, "relu")``); it is still read as such for one release.
    """
    if isinstance(X2, str | Activation):
        warnings.warn(
            f"kernels.{fn}(X, {X2!r}): the second positional argument is now X2; pass activation={X2!r} by keyword",
            DeprecationWarning,
            stacklevel=3,
        )
        X2, activation = None, X2
    A = check_X(X1, name="X" if X2 is None else "X1", dtype=np.float64, warn_ball=False)
    B = None if X2 is None else check_X(X2, name="X2", dtype=np.float64, warn_ball=False, d=A.shape[1])
    return A, B, activation


def ntk(X1: Any, X2: Any = None, activation: str | Activation = "exp") -> np.ndarray:
    """Infinite-width NTK H^cts between the rows of X1 and X2 (n1 x n2), closed form (docs/theory.md section 3).

    H^cts_ij = E_{w ~ N(0, I)} <x_i, x'_j> sigma'(<w, x_i>) sigma'(<w, x'_j>);
    for exp, <x_i, x'_j> exp(||x_i + x'_j||^2 / 2). ``X2=None`` means X2 = X1
    (the n x n training kernel); ``ntk(X_test, X_train)`` is the test-train
    block of kernel regression (``expreg.predict``).

    Examples
    --------
    >>> import numpy as np
    >>> ntk(np.array([[1.0, 0.0]]))  # unit vector: e^2 on the diagonal
    array([[7.3890561]])
    >>> ntk(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0], [1.0, 0.0]]))  # orthogonal, then equal
    array([[0.       , 7.3890561]])
    """
    A, B, act = _pair(X1, X2, activation, "ntk")
    return _closed_form(A, A if B is None else B, act, "ntk")


def nngp(X1: Any, X2: Any = None, activation: str | Activation = "exp") -> np.ndarray:
    """Output covariance at independent initialisation, s = 1/sqrt(m) (docs/theory.md section 3), (n1 x n2).

    K_ij = E_{w ~ N(0, I)} sigma(<w, x_i>) sigma(<w, x'_j>); for exp,
    exp(||x_i + x'_j||^2 / 2). ``X2=None`` means X2 = X1.
    """
    A, B, act = _pair(X1, X2, activation, "nngp")
    return _closed_form(A, A if B is None else B, act, "nngp")


def _deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"kernels.{old} is deprecated and will be removed in expreg 0.2: use kernels.{new}",
        DeprecationWarning,
        stacklevel=3,
    )


def ntk_cross(X1: Any, X2: Any, activation: str | Activation = "exp") -> np.ndarray:
    """Deprecated alias of ``ntk(X1, X2, activation=...)`` (removed in 0.2)."""
    _deprecated("ntk_cross(X1, X2)", "ntk(X1, X2)")
    return ntk(X1, X2, activation=activation)


def nngp_cross(X1: Any, X2: Any, activation: str | Activation = "exp") -> np.ndarray:
    """Deprecated alias of ``nngp(X1, X2, activation=...)`` (removed in 0.2)."""
    _deprecated("nngp_cross(X1, X2)", "nngp(X1, X2)")
    return nngp(X1, X2, activation=activation)


def empirical_ntk(net: Any, X1: Any, X2: Any = None, *, average: bool = False) -> np.ndarray:
    """Finite-width NTK H(W) between the rows of X1 and X2 (n1 x n2), blocked over neurons (docs/theory.md section 3).

    H(W)_ij = s^2 sum_r a_r^2 <x_i,x'_j> sigma'(<w_r,x_i>) sigma'(<w_r,x'_j>).
    ``X2=None`` means X2 = X1: the symmetric n x n kernel, one rank-k update
    per block of neurons (``gram.gram``). With X2 the cross kernel is summed
    block by block (``cross_gram``): memory n1 n2 + (n1 + n2) * block, never
    the Jacobian. With ``average=True`` returns the paper's H^dis = H / (m s^2),
    whose expectation at initialisation is ``ntk(X1, X2)``. Computed in the
    net's dtype, returned as float64.

    Examples
    --------
    >>> import numpy as np
    >>> from expreg import ExpNet
    >>> net = ExpNet.init(2, 4, seed=0)
    >>> X = np.array([[0.6, 0.0], [0.0, 0.6], [0.3, 0.3]])
    >>> H = empirical_ntk(net, X)
    >>> bool(np.allclose(empirical_ntk(net, X[:1], X), H[:1]))  # a block of the square kernel
    True
    """
    be = net.backend
    A = be.asarray(check_X(X1, name="X" if X2 is None else "X1", dtype=net.dtype, d=net.d), net.dtype)
    with overflow_checked():
        if X2 is None:
            H = gram.gram(be, net.act, A, net.W, net.s, a=net.a, block=net.block)
        else:
            B = be.asarray(check_X(X2, name="X2", dtype=net.dtype, d=net.d), net.dtype)
            H = cross_gram(be, net.act, A, B, net.W, net.s, a=net.a, block=net.block)
    if average:
        H /= net.m * net.s**2
    return H


def cross_gram(
    backend: Backend,
    act: Activation,
    A: Array,
    B: Array,
    W: Array,
    s: float,
    *,
    a: Array | None = None,
    block: int | None = None,
) -> np.ndarray:
    """s^2 (A B^T) o (D_A diag(a^2) D_B^T), D = sigma'(. W), summed over blocks of neurons; (n1, n2) float64.

    Memory: the n1 x n2 sum and one block of activations of each side
    (block chosen as ``gram.gram_block`` of n1 + n2 rows); the sum is kept in
    the dtype of A, the Hadamard factor applied once in float64.

    Raises ``ExpOverflowError`` when an entry is inf or NaN.
    """
    n1, n2, m = int(A.shape[0]), int(B.shape[0]), int(W.shape[1])
    dtype = backend.dtype_of(A)
    k = max(1, int(block or gram.gram_block(n1 + n2, dtype.itemsize, backend)))
    a2 = None if a is None else a * a  # a_r^2: 1 for every network expreg draws, then no product per block
    if a2 is not None and bool((a2 == 1).all()):
        a2 = None
    S = backend.zeros((n1, n2), dtype)
    for lo in range(0, m, k):
        Wb = W[:, lo : lo + k]
        DA = act.derivative(backend, act.value_(backend, backend.matmul(A, Wb)))
        DB = act.derivative(backend, act.value_(backend, backend.matmul(B, Wb)))
        S += backend.matmul(DA if a2 is None else DA * a2[lo : lo + k], DB.T)
    G = backend.to_numpy(A).astype(np.float64) @ backend.to_numpy(B).astype(np.float64).T
    with np.errstate(over="ignore", invalid="ignore"):
        H = (s * s) * G * backend.to_numpy(S).astype(np.float64)
    if not (np.isfinite(H.max()) and np.isfinite(H.min())):
        raise ExpOverflowError(
            "the empirical kernel H(W) has inf or NaN entries: some sigma(<w_r, x_i>) overflowed "
            f"{dtype} (exp: beyond about 88 in float32, 709 in float64). Scale the inputs into the unit ball or use float64."
        )
    return H


@dataclass(frozen=True)
class PredictedTrajectory:
    """Residuals of GD on the linearised model, from one eigendecomposition.

    r(t) = (I - lr H)^t r0 = V diag((1 - lr mu)^t) V^T r0 (docs/theory.md section 4).
    Call with an array of step counts to get an array (len(t), n). The
    factors are ``flow.decay`` and ``flow.gain``, as in ``expreg.predict``
    (which also gives the outputs at continuous time and on test points).
    """

    eigenvalues: np.ndarray  # (n,)
    eigenvectors: np.ndarray  # (n, n)
    coefficients: np.ndarray  # V^T r0, (n,)
    lr: float

    def _factors(self, t: Any) -> np.ndarray:
        return flow.decay(self.eigenvalues, self.lr, flow.times(t, discrete=True), discrete=True)  # (T, n)

    def __call__(self, t: Any) -> np.ndarray:
        return (self._factors(t) * self.coefficients[None, :]) @ self.eigenvectors.T

    def norms(self, t: Any) -> np.ndarray:
        """||r(t)||_2 for each t, shape (len(t),), without forming r(t)."""
        return np.sqrt(((self._factors(t) * self.coefficients[None, :]) ** 2).sum(axis=1))

    def extension(self, K: Any, t: Any) -> np.ndarray:
        """Change of the predictions at other points after t steps, shape (len(t), k).

        GD on the linearised model moves f(x) by -lr K(x, X) r(j) at step j,
        so after t steps f(x, t) - f(x, 0) = -K V diag(g(t)) V^T r0 with
        g(t) = sum_{j<t} lr (1 - lr mu)^j = (1 - (1 - lr mu)^t) / mu.
        K (k, n) is the kernel between the k new points and the training
        points, e.g. ``ntk(X_new, X)`` scaled as H was.
        """
        gains = flow.gain(self.eigenvalues, self._factors(t))
        K = np.asarray(K, dtype=np.float64)
        return -(gains * self.coefficients[None, :]) @ (K @ self.eigenvectors).T


def predicted_trajectory(H: np.ndarray, r0: Any, lr: float) -> PredictedTrajectory:
    """Kernel-predicted residual trajectory for kernel H (n x n) and step ``lr``.

    For the network, pass H = m s^2 H^cts (or the empirical H(W(0))) and
    r0 = u(0) - y. ``expreg.predict.gradient_descent_mse(H, y, lr)`` gives
    the same dynamics as outputs, at continuous time too, and on test points.

    Examples
    --------
    >>> import numpy as np
    >>> traj = predicted_trajectory(np.eye(2), np.ones(2), 0.5)
    >>> traj([0, 1, 2]).tolist()
    [[1.0, 1.0], [0.5, 0.5], [0.25, 0.25]]
    """
    mu, V = flow.eigh(H, "H")
    r0 = np.asarray(r0, dtype=np.float64)
    if r0.shape != mu.shape or not np.isfinite(r0).all():
        raise ValueError(
            f"r0 must be a finite vector of length n = {mu.shape[0]}, got shape {r0.shape}"
            + ("" if r0.shape != mu.shape else " with NaN or inf entries")
        )
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite step size, got {lr!r}")
    return PredictedTrajectory(eigenvalues=mu, eigenvectors=V, coefficients=V.T @ r0, lr=float(lr))


def ntk_lambda(X: Any, activation: str | Activation = "exp") -> float:
    """lambda = lambda_min(H^cts(X)) (docs/theory.md section 3), refusing inputs where it is 0.

    Raises ``CoincidentPointsError`` (a ValueError) for duplicate or zero rows, or relu's
    points on one ray (then lambda = 0; ``validation.check_points_distinct``).
    """
    from .validation import check_points_distinct

    Xa = check_X(X, dtype=np.float64)
    check_points_distinct(Xa, activation=activation.name if isinstance(activation, Activation) else activation)
    return lambda_min(ntk(Xa, activation=activation))
