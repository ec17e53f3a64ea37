"""The infinite-width kernels of docs/theory.md section 3 as scikit-learn kernels.

``NTKKernel`` is H^cts, the limit of the network's tangent kernel (what
gradient descent on a very wide network follows, docs/theory.md section 4); ``NNGPKernel``
is the output covariance at independent initialisation with s = 1/sqrt(m).
Both come for every registered activation (``activations.ACTIVATIONS``:
``"exp"``, the paper's network, and ``"relu"``); e.g. for exp

    NTK  k(x, x') = <x, x'> exp(||x + x'||^2 / 2)
    NNGP k(x, x') = exp(||x + x'||^2 / 2)

The formulas are the activation's own (``Activation.ntk``, ``.nngp``),
evaluated through ``expreg.kernels`` (one implementation). The
kernels are ``sklearn.gaussian_process.kernels.Kernel`` subclasses, so they

* go into ``GaussianProcessRegressor``, alone or combined
  (``ConstantKernel() * NTKKernel() + WhiteKernel()``: the constant and the
  noise are then fitted, these kernels have no free hyperparameter);
* are callables ``K(X, Y)`` usable as ``KernelRidge(kernel=NTKKernel())``
  (scikit-learn evaluates a ``Kernel`` instance on whole matrices, not pair
  by pair).

The theory assumes ||x|| <= 1; exp grows fast, so map the inputs into the
unit ball first (``expreg.sklearn.UnitBallScaler``) or set ``input_scale``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.gaussian_process.kernels import Hyperparameter, Kernel

from ..core import kernels
from ..core.activations import ACTIVATIONS
from ..core.validation import check_positive

__all__ = ["NNGPKernel", "NTKKernel"]

#: Rows per block when a cross kernel or a diagonal is built from square kernels.
BLOCK = 256

#: A closed form of ``expreg.kernels``: (X1, X2 or None, activation=...) -> (n1, n2).
KernelFn = Callable[..., np.ndarray]


def _diag_from_square(kernel: KernelFn, X: np.ndarray, activation: str) -> np.ndarray:
    """k(x_i, x_i) for each row, (n,), from square Gram matrices of row blocks."""
    return np.concatenate(
        [np.diag(kernel(X[i : i + BLOCK], activation=activation)) for i in range(0, X.shape[0], BLOCK)]
    )


def _as_2d(X: Any, name: str) -> np.ndarray:
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d), got shape {arr.shape}")
    return arr


class _InfiniteWidthKernel(Kernel):
    """Shared machinery: the input scale, evaluation, diagonal, no free hyperparameters."""

    _name = "abstract"
    _kernel: KernelFn

    def __init__(self, activation: str = "exp", input_scale: float = 1.0) -> None:
        self.activation = activation
        self.input_scale = input_scale

    @property
    def hyperparameter_input_scale(self) -> Hyperparameter:
        """Fixed: the kernel has no hyperparameter a GP would optimise."""
        return Hyperparameter("input_scale", "numeric", "fixed")

    def _scaled(self, X: Any, name: str) -> np.ndarray:
        ACTIVATIONS.check(self.activation)
        return _as_2d(X, name) * check_positive(self.input_scale, "input_scale")

    def __call__(self, X: Any, Y: Any = None, eval_gradient: bool = False) -> Any:
        """Kernel matrix k(c x_i, c y_j), shape (n_X, n_Y); Y=None means Y = X.

        With ``eval_gradient=True`` (only for Y=None) also returns the gradient
        with respect to the (empty) vector of free hyperparameters, (n, n, 0).
        """
        A = self._scaled(X, "X")
        if Y is not None and eval_gradient:
            raise ValueError("Gradient can only be evaluated when Y is None.")
        K = type(self)._kernel(A, None if Y is None else self._scaled(Y, "Y"), activation=self.activation)
        if eval_gradient:
            return K, np.empty((A.shape[0], A.shape[0], 0))
        return K

    def diag(self, X: Any) -> np.ndarray:
        """k(x_i, x_i) for each row of X, shape (n,), without the n x n matrix."""
        return _diag_from_square(type(self)._kernel, self._scaled(X, "X"), self.activation)

    def is_stationary(self) -> bool:
        """False: both kernels depend on the points, not only on x - x'."""
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(activation={self.activation!r}, input_scale={self.input_scale!r})"


class NTKKernel(_InfiniteWidthKernel):
    """Infinite-width neural tangent kernel H^cts (docs/theory.md section 3).

    Parameters
    ----------
    activation : {"exp", "relu"}, default="exp"
    input_scale : float, default=1.0
        Fixed factor c: k(x, x') = H^cts(c x, c x'). Not optimised.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.kernel_ridge import KernelRidge
    >>> X = np.array([[0.6, 0.0], [0.0, 0.6], [0.3, 0.3]]); y = np.array([1.0, -1.0, 0.0])
    >>> model = KernelRidge(alpha=1e-8, kernel=NTKKernel()).fit(X, y)
    >>> bool(np.allclose(model.predict(X), y, atol=1e-6))  # interpolates: H^cts is positive definite
    True
    """

    _kernel = staticmethod(kernels.ntk)


class NNGPKernel(_InfiniteWidthKernel):
    """Output covariance at independent initialisation, s = 1/sqrt(m) (docs/theory.md section 3).

    Parameters
    ----------
    activation : {"exp", "relu"}, default="exp"
    input_scale : float, default=1.0
        Fixed factor c: k(x, x') = K(c x, c x'). Not optimised.
    """

    _kernel = staticmethod(kernels.nngp)
