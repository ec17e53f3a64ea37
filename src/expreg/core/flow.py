"""Gradient descent of a linear model in function space, from one eigendecomposition (docs/theory.md section 4).

A model that is linear in its parameters with tangent kernel K (n x n on
the training points, K(x, X) elsewhere), trained on

    L = 1/(2 N) ||f(X) - y||^2          N = 1 (``loss="sum"``, expreg's L) or n (``loss="mean"``, neural-tangents')

by gradient descent with step eta, has the residual r = f(X) - y and the
outputs at other points x

    step k:        r(k) = (I - eta K / N)^k r(0)
                   f(x, k) = f(x, 0) - K(x, X) V diag(g_k) V^T r(0),  g_k = (1 - (1 - eta mu / N)^k) / mu
    time t:        r(t) = exp(-eta t K / N) r(0)        (gradient flow for time eta t)
                   f(x, t) = f(x, 0) - K(x, X) V diag(g_t) V^T r(0),  g_t = (1 - exp(-eta t mu / N)) / mu
    t = inf:       f(x) = f(x, 0) + K(x, X) K^+ (y - f(X, 0))             (kernel regression)

with K = V diag(mu) V^T. Time t is counted in units of the step, as
neural-tangents' ``predict.gradient_descent_mse`` counts it
(absolute time = eta t). Eigenvalues below zero (rounding of a positive
semi-definite K) are taken as zero, as neural-tangents does; along them
nothing moves.

``decay`` and ``gain`` are the one implementation of these factors:
``expreg.predict`` (outputs on train and test points) and
``kernels.predicted_trajectory`` (the residual of section 4) both use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

from .validation import check_square

#: How the loss is normalised: L = 1/(2 N) ||f - y||^2 with N = 1 ("sum", expreg's) or n ("mean", neural-tangents').
LOSSES = ("sum", "mean")


def times(t: Any, *, discrete: bool) -> np.ndarray:
    """Times (continuous, may be inf) or step counts (non-negative integers) as float64 (T,)."""
    arr = np.atleast_1d(np.asarray(t, dtype=np.float64))
    bad = arr.ndim != 1 or np.isnan(arr).any() or bool(np.any(arr < 0))
    if discrete:
        bad = bad or not np.isfinite(arr).all() or bool(np.any(arr != np.round(arr)))
    if bad:
        what = "non-negative integer step counts" if discrete else "non-negative times (inf allowed)"
        raise ValueError(f"{'k' if discrete else 't'} must be {what}, got {t!r}")
    return arr


def decay(mu: np.ndarray, rate: float, t: np.ndarray, *, discrete: bool) -> np.ndarray:
    """(1 - rate mu)^k (discrete) or exp(-rate mu t) (continuous), shape (T, n); 1 where mu <= 0.

    ``rate`` is eta / N. At t = inf the continuous factor is 0 for mu > 0.
    """
    mu = np.maximum(mu, 0.0)[None, :]
    tt = t[:, None]
    if discrete:
        return (1.0 - rate * mu) ** tt
    with np.errstate(invalid="ignore"):
        out = np.exp(-rate * mu * tt)
    return np.where(mu > 0, out, 1.0)


def gain(mu: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(1 - decay) / mu, shape (T, n): how far the outputs at other points move per unit of V^T r(0); 0 where mu <= 0."""
    mu = mu[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mu > 0, (1.0 - factors) / np.where(mu > 0, mu, 1.0), 0.0)


def eigh(K: Any, name: str = "k_train_train") -> tuple[np.ndarray, np.ndarray]:
    """(mu, V) of the symmetric kernel K (n, n), checked square, finite and symmetric (to 1e-8 of its largest entry)."""
    A = check_square(K, name)
    asym = float(np.abs(A - A.T).max())
    if asym > 1e-8 * float(np.abs(A).max()):
        raise ValueError(
            f"{name} must be symmetric (a kernel between the training points and themselves); its largest "
            f"|K - K^T| entry is {asym:.3g}. Pass the (n, n) training kernel, not a test-train block"
        )
    mu, V = scipy.linalg.eigh(A)
    return mu, V


@dataclass(frozen=True)
class Predictor:
    """Outputs of gradient descent on 1/(2N) ||f - y||^2 in function space, for any time or step.

    Built by ``expreg.predict.gradient_descent_mse``; holds the one
    eigendecomposition of the training kernel, so every call costs
    O(n^2 T) (plus O(k n T) for k test points), nothing is cached in a module.

    Attributes
    ----------
    eigenvalues : (n,), eigenvectors : (n, n)
        K = V diag(mu) V^T.
    y_train : (n,)
    learning_rate : float
        eta; time t is counted in units of it (absolute time eta t).
    normalization : float
        N of the loss: 1 for ``loss="sum"``, n for ``loss="mean"``.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    y_train: np.ndarray
    learning_rate: float
    normalization: float

    def __call__(
        self, t: Any = None, fx_train_0: Any = 0.0, fx_test_0: Any = None, k_test_train: Any = None
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Outputs at continuous time(s) t (in units of the step; None or inf: kernel regression).

        The signature and the returns of neural-tangents' ``predict_fn``:
        ``fx_train_t`` (T, n), or ``(fx_train_t, fx_test_t)`` when
        ``fx_test_0`` (k,) is given with ``k_test_train`` (k, n); a scalar t
        gives arrays without the leading T axis. ``fx_train_0=None`` asks for
        the test outputs alone.
        """
        return self._outputs(np.inf if t is None else t, False, fx_train_0, fx_test_0, k_test_train)

    def at_step(
        self, k: Any, fx_train_0: Any = 0.0, fx_test_0: Any = None, k_test_train: Any = None
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Outputs after k steps of gradient descent with step eta; arguments and returns as ``__call__``."""
        return self._outputs(k, True, fx_train_0, fx_test_0, k_test_train)

    def residuals(self, t: Any, r0: Any, *, discrete: bool = True) -> np.ndarray:
        """r(t) = f(X, t) - y for an initial residual r0 (n,), shape (T, n)."""
        factors = decay(
            self.eigenvalues, self.learning_rate / self.normalization, times(t, discrete=discrete), discrete=discrete
        )
        return (factors * (self.eigenvectors.T @ np.asarray(r0, dtype=np.float64))[None, :]) @ self.eigenvectors.T

    def _outputs(
        self, t: Any, discrete: bool, fx_train_0: Any, fx_test_0: Any, k_test_train: Any
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        n = self.y_train.shape[0]
        scalar = np.ndim(t) == 0
        tt = times(t, discrete=discrete)
        f0 = np.broadcast_to(np.asarray(0.0 if fx_train_0 is None else fx_train_0, dtype=np.float64), (n,))
        coef = self.eigenvectors.T @ (f0 - self.y_train)  # V^T r(0)
        factors = decay(self.eigenvalues, self.learning_rate / self.normalization, tt, discrete=discrete)
        out: list[np.ndarray] = []
        if fx_train_0 is not None:
            out.append(self.y_train[None, :] + (factors * coef[None, :]) @ self.eigenvectors.T)
        if fx_test_0 is not None:
            K = _test_kernel(k_test_train, n)
            g0 = np.broadcast_to(np.asarray(fx_test_0, dtype=np.float64), (K.shape[0],))
            moved = (gain(self.eigenvalues, factors) * coef[None, :]) @ (K @ self.eigenvectors).T  # (T, k)
            out.append(g0[None, :] - moved)
        elif k_test_train is not None:
            raise ValueError("k_test_train was given without fx_test_0: pass fx_test_0 (0.0 for a zero start)")
        if not out:
            raise ValueError("nothing to predict: fx_train_0 and fx_test_0 are both None")
        if scalar:
            out = [o[0] for o in out]
        return out[0] if len(out) == 1 else (out[0], out[1])


def _test_kernel(k_test_train: Any, n: int) -> np.ndarray:
    if k_test_train is None:
        raise ValueError(
            "fx_test_0 was given without k_test_train: pass the (k, n) kernel between test and training points"
        )
    K = np.asarray(k_test_train, dtype=np.float64)
    if K.ndim != 2 or K.shape[1] != n or not np.isfinite(K).all():
        raise ValueError(f"k_test_train must be a finite (k, n = {n}) matrix, got shape {K.shape}")
    return K


def gradient_descent_mse(
    k_train_train: Any,
    y_train: Any,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    *,
    loss: str = "sum",
) -> Predictor:
    """The predictor of gradient descent on the squared loss with training kernel K (module docstring).

    As neural-tangents' ``predict.gradient_descent_mse(k_train_train,
    y_train, learning_rate)`` with ``loss="mean"`` (its 1/(2n) ||f - y||^2);
    ``loss="sum"`` (default) is expreg's L = 1/2 ||f - y||^2, so that
    ``learning_rate`` is the step of ``expreg.train``.

    Parameters
    ----------
    k_train_train : (n, n) symmetric positive semi-definite kernel
    y_train : (n,)
    learning_rate : float > 0
    diag_reg : float >= 0, default 0
        As neural-tangents: the dynamics of K + diag_reg * I, with diag_reg
        relative to the mean diagonal of K (trace / n) unless
        ``diag_reg_absolute_scale``; at t = inf the test outputs are kernel
        ridge regression, the training outputs y (as neural-tangents returns them).
    diag_reg_absolute_scale : bool, default False
    loss : {"sum", "mean"}

    Examples
    --------
    >>> import numpy as np
    >>> p = gradient_descent_mse(np.eye(2), np.array([1.0, -1.0]), 0.5)
    >>> p.at_step([0, 1, 2]).tolist()  # f(k) = y + (1 - 0.5)^k (f(0) - y), f(0) = 0
    [[0.0, 0.0], [0.5, -0.5], [0.75, -0.75]]
    >>> p(None).tolist()  # t = inf: kernel regression
    [1.0, -1.0]
    """
    mu, V = eigh(k_train_train)
    y = np.asarray(y_train, dtype=np.float64)
    if y.shape != (mu.shape[0],) or not np.isfinite(y).all():
        raise ValueError(f"y_train must be a finite vector of length n = {mu.shape[0]}, got shape {y.shape}")
    if not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a positive finite number, got {learning_rate!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES} (1/2 ||f - y||^2 or its mean over the n points), got {loss!r}")
    if not (np.isfinite(diag_reg) and diag_reg >= 0):
        raise ValueError(f"diag_reg must be a non-negative finite number, got {diag_reg!r}")
    if diag_reg:  # K + reg I has the eigenvectors of K and the eigenvalues mu + reg
        mu = mu + (diag_reg if diag_reg_absolute_scale else diag_reg * float(mu.sum()) / mu.shape[0])
    return Predictor(mu, V, y, float(learning_rate), 1.0 if loss == "sum" else float(mu.shape[0]))
