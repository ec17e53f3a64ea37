"""``expreg.predict``: outputs of the linearised network at any time or step, on train and test points.

While the kernel stays put (the lazy regime, docs/theory.md section 4), gradient descent on
L = 1/2 ||F(W, X) - y||^2 moves the outputs as gradient descent of a linear
model with kernel H (``flow``, one eigendecomposition):

- ``gradient_descent_mse(k_train_train, y_train, learning_rate, loss=...)``:
  neural-tangents' ``predict.gradient_descent_mse`` for any kernel
  (``loss="mean"`` is its 1/(2n) normalisation, ``"sum"`` expreg's);
- ``linearised(net, X_train, y_train, X_test)``: the network's own
  linearisation, with the empirical kernel H(W(0)) (``kernel="empirical"``)
  or its infinite-width limit m s^2 H^cts (``kernel="ntk"``), started from
  the network's outputs F(W(0), .), with expreg's step size.

Time t is in units of the step (absolute time eta t), as in neural-tangents;
``at_step(k)`` is the discrete k-th step of gradient descent; t = inf
(or None) is kernel regression from F(W(0), .).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from . import kernels
from .flow import LOSSES, Predictor, gradient_descent_mse
from .validation import check_X, check_y

__all__ = ["LOSSES", "Linearised", "Prediction", "Predictor", "gradient_descent_mse", "linearised"]

#: The kernels ``linearised`` can use.
KERNELS = ("empirical", "ntk")


class Prediction(NamedTuple):
    """Outputs of the linearised network: ``train`` (T, n) and ``test`` (T, k) (None without test points)."""

    train: np.ndarray
    test: np.ndarray | None


@dataclass(frozen=True)
class Linearised:
    """A network's linearisation around W(0), ready to evaluate at any time or step.

    Attributes
    ----------
    predictor : Predictor
        Gradient descent with the training kernel (holds its eigendecomposition).
    k_test_train : (k, n) array or None
    fx_train_0 : (n,), fx_test_0 : (k,) or None
        F(W(0), .) on the training and test points.
    lr : float
        The step eta (``expreg.train``'s step for the same rule).
    kernel : {"empirical", "ntk"}
    """

    predictor: Predictor
    k_test_train: np.ndarray | None
    fx_train_0: np.ndarray
    fx_test_0: np.ndarray | None
    lr: float
    kernel: str

    def at_time(self, t: Any) -> Prediction:
        """Outputs after gradient flow for time eta t (t in steps, may be fractional or inf), shapes (T, n), (T, k)."""
        return self._prediction(self.predictor, np.atleast_1d(np.asarray(np.inf if t is None else t, float)), False)

    def at_step(self, k: Any) -> Prediction:
        """Outputs after k steps of gradient descent with step ``lr``, shapes (T, n), (T, k)."""
        return self._prediction(self.predictor, np.atleast_1d(np.asarray(k, float)), True)

    def _prediction(self, p: Predictor, t: np.ndarray, discrete: bool) -> Prediction:
        call = p.at_step if discrete else p
        if self.fx_test_0 is None:
            return Prediction(np.asarray(call(t, self.fx_train_0)), None)
        train, test = call(t, self.fx_train_0, self.fx_test_0, self.k_test_train)
        return Prediction(train, test)


def linearised(
    net: Any,
    X_train: Any,
    y_train: Any,
    X_test: Any = None,
    *,
    kernel: str = "empirical",
    lr: float | None = None,
) -> Linearised:
    """The linearisation of ``net`` around its current weights, trained on (X_train, y_train).

    Parameters
    ----------
    net : ExpNet
    X_train : (n, d), y_train : (n,), X_test : (k, d), optional
    kernel : {"empirical", "ntk"}
        "empirical": H(W(0)) and H(W(0); X_test, X_train) of this network
        (``kernels.empirical_ntk``), the exact first-order model of this
        network; "ntk": their infinite-width limit m s^2 H^cts
        (``kernels.ntk``), what every network of this width follows on average.
    lr : float, optional
        The step; default 1 / lambda_max of the training kernel (what
        ``expreg.train`` uses: lr="empirical" for kernel="empirical",
        lr="auto" for kernel="ntk").

    Returns
    -------
    Linearised
        ``.at_step(k)``, ``.at_time(t)`` give ``Prediction(train, test)``.

    Examples
    --------
    >>> import numpy as np, expreg
    >>> X, y = expreg.make_dataset(4, 3, seed=0)
    >>> net = expreg.ExpNet.init(3, 256, seed=0)
    >>> lin = expreg.predict.linearised(net, X, y, X[:2] * 0.5, kernel="ntk")
    >>> bool(np.allclose(lin.at_time(np.inf).train, y))  # t = inf interpolates the training data
    True
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS} (the empirical H(W(0)) or m s^2 H^cts), got {kernel!r}")
    Xtr = check_X(X_train, name="X_train", dtype=np.float64, d=net.d)
    ytr = check_y(y_train, Xtr.shape[0], dtype=np.dtype(np.float64))
    Xte = None if X_test is None else check_X(X_test, name="X_test", dtype=np.float64, d=net.d)
    if kernel == "empirical":
        H = kernels.empirical_ntk(net, Xtr)
        K = None if Xte is None else kernels.empirical_ntk(net, Xte, Xtr)
    else:
        c = net.m * net.s**2
        H = c * kernels.ntk(Xtr, activation=net.act)
        K = None if Xte is None else c * kernels.ntk(Xte, Xtr, activation=net.act)
    predictor = gradient_descent_mse(H, ytr, 1.0 if lr is None else lr)
    if lr is None:  # 1 / lambda_max of the training kernel, from the eigendecomposition just made
        top = float(predictor.eigenvalues[-1])
        if not top > 0:
            raise ValueError("the training kernel is zero (every input is zero): there is nothing to train")
        predictor = Predictor(predictor.eigenvalues, predictor.eigenvectors, ytr, 1.0 / top, 1.0)
    return Linearised(
        predictor=predictor,
        k_test_train=K,
        fx_train_0=net.predict(Xtr).astype(np.float64),
        fx_test_0=None if Xte is None else net.predict(Xte).astype(np.float64),
        lr=predictor.learning_rate,
        kernel=kernel,
    )
