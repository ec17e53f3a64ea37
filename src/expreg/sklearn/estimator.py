"""scikit-learn front end: ``ExpRegressor`` and ``UnitBallScaler``.

``ExpRegressor`` fits the network of docs/theory.md section 1, F(W, x) = s sum_r a_r exp(<w_r, x>),
by the paper's full-batch gradient descent (docs/theory.md section 2, ``expreg.train``), so it
works in pipelines, cross-validation and grid searches. ``UnitBallScaler`` is
the input map it applies (centre, then divide by the largest training norm, so
every training input has ||x|| <= 1 as the theorem assumes); it is public so
kernel methods (``expreg.sklearn.kernels``) can use the same map.

This module needs scikit-learn (``pip install 'expreg[sklearn]'``); the core
package never imports it.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, RegressorMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ..core.activations import ACTIVATIONS
from ..core.backends import canonical_dtype
from ..core.choices import Init, Scaling
from ..core.errors import TrainingDivergedError
from ..core.initialisation import check_width
from ..core.model import ExpNet
from ..core.validation import InputOutsideUnitBallWarning
from ..engine.options import TrainOptions
from ..engine.train import TrainResult, train

__all__ = ["ExpRegressor", "UnitBallScaler"]

#: With learning_rate="auto", how many times a diverging run is restarted with a smaller step.
AUTO_LR_RETRIES = 6


def _centre_and_radius(X: np.ndarray) -> tuple[np.ndarray, float]:
    """(mean (d,), max_i ||x_i - mean||_2) in float64, without overflow or underflow in the sums.

    Computed directly; where that overflows (|x| beyond about 1e154) or
    underflows (below about 1e-154), on X / c (c = max |X|) and scaled back,
    so any X whose spread fits float64 gives finite results; otherwise
    ``ValueError``.
    """
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        mean = X.mean(axis=0, dtype=np.float64)
        if not np.isfinite(mean).all():
            c = float(np.abs(X).max())
            mean = (X / c).mean(axis=0, dtype=np.float64) * c
        Z = X - mean
        cz = float(np.abs(Z).max())
        radius = float(np.linalg.norm(Z, axis=1).max())
        if math.isfinite(cz) and cz > 0 and not (math.isfinite(radius) and radius > 0):
            radius = cz * float(np.linalg.norm(Z / cz, axis=1).max())
    if not (np.isfinite(mean).all() and math.isfinite(radius)):
        raise ValueError(
            f"X is too large to centre and scale in float64 (largest |value| {float(np.abs(X).max()):.3g}, "
            f"spread {cz:.3g}); divide it by a constant first"
        )
    return mean, radius


class UnitBallScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Centre the inputs and divide by the largest training norm: ||x_i|| <= 1.

    x -> (x - mean) / max_i ||x_i - mean||_2, fitted on the training rows. The
    theorem (docs/theory.md sections 4-5) assumes ||x_i|| <= 1; new points may land slightly
    outside the ball. A single direction-preserving scale (not per feature),
    so the geometry of the centred data is kept.

    Attributes
    ----------
    mean_ : ndarray (n_features,)
        The training mean subtracted.
    scale_ : float
        ``max_i ||x_i - mean_||_2``, or 1.0 when every training row equals the mean.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> Z = UnitBallScaler().fit_transform(np.array([[0.0, 0.0], [4.0, 0.0]]))
    >>> np.linalg.norm(Z, axis=1).tolist()
    [1.0, 1.0]
    """

    def fit(self, X: Any, y: Any = None) -> UnitBallScaler:
        """Learn the mean and the largest centred norm of X (n, d)."""
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        self.mean_, radius = _centre_and_radius(X)
        self.scale_ = radius if radius > 0 else 1.0
        return self

    def transform(self, X: Any) -> np.ndarray:
        """``(X - mean_) / scale_``, shape (n, d), float64."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        with np.errstate(over="ignore", invalid="ignore"):
            Z = (X - self.mean_) / self.scale_
        if not np.isfinite(Z).all():
            raise ValueError(
                f"X lies too far from the training data to scale in float64 (largest |value| {float(np.abs(X).max()):.3g}); "
                "divide it by a constant first"
            )
        return Z

    def inverse_transform(self, X: Any) -> np.ndarray:
        """``X * scale_ + mean_``, shape (n, d)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        with np.errstate(over="ignore", invalid="ignore"):
            out = X * self.scale_ + self.mean_
        if not np.isfinite(out).all():
            raise ValueError(
                f"X * scale_ + mean_ overflows float64 (largest |value| {float(np.abs(X).max()):.3g}, scale_ {self.scale_:.3g}); "
                "pass values of the scaled space (about unit norm)"
            )
        return out


class ExpRegressor(RegressorMixin, BaseEstimator):
    """Over-parameterised exponential regression network, trained by gradient descent.

    F(W, x) = s * sum_r a_r exp(<w_r, x>) with w_r(0) ~ N(0, I), a_r = +-1 fixed
    (docs/theory.md section 1), trained on L(W) = 1/2 ||F(W, X) - y||^2 by full-batch gradient
    descent until ||u - y||_2 <= epsilon or ``max_steps`` (docs/theory.md section 2) -- the
    paper's algorithm, run by ``expreg.train``.

    Parameters
    ----------
    width : int, default=512
        Number of neurons m (even for ``init="coupled"``).
    activation : {"exp", "relu"}, default="exp"
    scaling : {"none", "ntk"}, default="none"
        s = 1 (the paper's formula) or s = 1/sqrt(m).
    init : {"coupled", "gaussian"}, default="coupled"
        "coupled" pairs neurons (w, a), (w, -a) so the network starts at F = 0.
    learning_rate : "auto" or float, default="auto"
        "auto" is 1/lambda_max(m s^2 H^cts) of the (scaled) training inputs
        (docs/theory.md section 4). Should gradient descent still diverge (small widths, where
        H(W(0)) is far from its limit), the run restarts from W(0) with the
        smaller of half the step and 1/lambda_max(H(W)) at the last finite
        weights, up to ``AUTO_LR_RETRIES`` times; ``lr_`` is the step used.
        A number is used as given, and a divergence raises
        ``expreg.TrainingDivergedError``.
    epsilon : float, default=1e-2
        The paper's stopping rule ||u - y||_2 <= epsilon, on the training set
        and in the units of the scaled targets (see ``scale_targets``).
    max_steps : int, default=1000
        Step budget; a ``ConvergenceWarning`` says when epsilon was not reached.
    random_state : int, RandomState instance or None, default=None
        An int is the network's seed (``ExpNet.init(seed=random_state)``, so the
        same int reproduces ``expreg`` runs); None or a RandomState draws a seed
        through ``sklearn.utils.check_random_state``.
    dtype : {"float64", "float32"}, default="float64"
        Precision of the weights and of the descent.
    scale_inputs : bool, default=True
        Map the inputs by ``UnitBallScaler`` fitted on the training set:
        x -> (x - mean) / max_i ||x_i - mean||, so every training input has
        ||x|| <= 1 as the theorem assumes; the same map is applied at predict
        (new points may fall a little outside the ball; no warning then).
        With False, inputs are used as given (``expreg`` warns when ||x|| > 1).
    scale_targets : bool, default=True
        Fit ``(y - mean) / max_i |y_i - mean|`` so ``|y_i| <= 1`` (the theorem's range),
        per target column, and undo it at predict. The network has no bias and
        the coupled network starts at 0, so centring the targets matters.

    Attributes
    ----------
    net_ : ExpNet or list of ExpNet
        The trained network; one per target column when y is 2-D.
    history_ : History or list of History
        Per-step loss, residual and weight movement of each run.
    n_iter_ : int
        Gradient steps taken (the largest over target columns).
    converged_ : bool
        Whether every run reached ||u - y||_2 <= epsilon.
    lr_ : float or list of float
        Step size actually used.
    seed_ : int
        Seed the networks were drawn with (the same for every column).
    input_scaler_ : UnitBallScaler or None
        The fitted input map (None when ``scale_inputs=False``).
    y_mean_, y_scale_ : ndarray (n_outputs,)
        Target centre and scale (0 and 1 when ``scale_targets=False``).
    n_outputs_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X had string column names.

    See Also
    --------
    expreg.train : the gradient descent it runs.
    expreg.sklearn.kernels.NTKKernel : the infinite-width limit as a kernel.

    Notes
    -----
    2-D y is fitted column by column: each column gets its own network, drawn
    with the same seed and trained exactly as a 1-D fit on that column would be.

    Examples
    --------
    >>> import numpy as np
    >>> from expreg import ExpRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(10, 3)); y = np.sin(X[:, 0])
    >>> model = ExpRegressor(width=256, max_steps=20_000, random_state=0).fit(X, y)
    >>> bool(model.converged_), model.predict(X[:2]).shape
    (True, (2,))
    """

    def __init__(
        self,
        width: int = 512,
        *,
        activation: str = "exp",
        scaling: str = "none",
        init: str = "coupled",
        learning_rate: float | str = "auto",
        epsilon: float = 1e-2,
        max_steps: int = 1000,
        random_state: Any = None,
        dtype: str = "float64",
        scale_inputs: bool = True,
        scale_targets: bool = True,
    ) -> None:
        self.width = width
        self.activation = activation
        self.scaling = scaling
        self.init = init
        self.learning_rate = learning_rate
        self.epsilon = epsilon
        self.max_steps = max_steps
        self.random_state = random_state
        self.dtype = dtype
        self.scale_inputs = scale_inputs
        self.scale_targets = scale_targets

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any) -> ExpRegressor:
        """Train on X (n, d) and y (n,) or (n, n_outputs); returns self.

        Emits ``ConvergenceWarning`` when ||u - y||_2 <= epsilon was not
        reached within ``max_steps`` for some target column.
        """
        dtype = self._check_params()
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        self.seed_ = self._seed()
        self.input_scaler_: UnitBallScaler | None = UnitBallScaler().fit(X) if self.scale_inputs else None
        Xs = X if self.input_scaler_ is None else self.input_scaler_.transform(X)
        Y = np.asarray(y, dtype=np.float64).reshape(X.shape[0], -1)
        self.n_outputs_ = Y.shape[1]
        self.y_mean_: np.ndarray
        self.y_scale_: np.ndarray
        self.y_mean_, self.y_scale_ = (
            _target_map(Y) if self.scale_targets else (np.zeros(Y.shape[1]), np.ones(Y.shape[1]))
        )
        Ys = (Y - self.y_mean_) / self.y_scale_
        results = [self._train_column(Xs, Ys[:, k], dtype) for k in range(Y.shape[1])]
        one = np.ndim(y) == 1
        self.net_ = results[0].net if one else [r.net for r in results]
        self.history_ = results[0].history if one else [r.history for r in results]
        self.lr_ = results[0].lr if one else [r.lr for r in results]
        self.n_iter_ = max(r.steps for r in results)
        self.converged_ = all(r.converged for r in results)
        self._y_1d = one
        if not self.converged_:
            worst = max(r.final_residual for r in results)
            warnings.warn(
                f"ExpRegressor stopped after max_steps={self.max_steps} steps with ||u - y||_2 = {worst:.3g} "
                f"> epsilon={self.epsilon} (scaled targets); increase max_steps or width, or raise epsilon",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _train_column(self, X: np.ndarray, y: np.ndarray, dtype: np.dtype) -> TrainResult:
        """Gradient descent for one target column, with the "auto" fallback on divergence."""
        net = ExpNet.init(
            X.shape[1],
            self.width,
            seed=self.seed_,
            activation=self.activation,
            scaling=self.scaling,
            init=self.init,
            dtype=dtype,
        )
        lr: float | str = self.learning_rate
        if lr == "auto" and not np.any(X):
            lr = 1.0  # every input is 0: the gradient vanishes and the step is irrelevant
        for attempt in range(AUTO_LR_RETRIES + 1):
            try:
                return train(net, X, y, options=self._options(lr))
            except TrainingDivergedError as exc:
                if self.learning_rate != "auto" or attempt == AUTO_LR_RETRIES:
                    raise
                safe = exc.suggested_lr if math.isfinite(exc.suggested_lr) else exc.lr / 4
                lr = min(exc.lr / 2, safe)
        raise AssertionError("unreachable")  # pragma: no cover

    def _options(self, lr: float | str | None = None) -> TrainOptions:
        """The options of each run of ``fit``, checked by ``TrainOptions``; ``lr`` defaults to ``learning_rate``."""
        lr = self.learning_rate if lr is None else lr
        bad_lr = f"learning_rate must be 'auto' or a positive finite number, got {lr!r}"
        if isinstance(lr, str) and lr != "auto":  # train's "empirical" rule is not offered by the estimator
            raise ValueError(bad_lr)
        try:
            return TrainOptions(lr=lr, epsilon=self.epsilon, max_steps=self.max_steps, record_every=0)
        except (TypeError, ValueError) as exc:  # scikit-learn reports bad parameters as ValueError
            raise ValueError(bad_lr if str(exc).startswith("lr") else str(exc)) from None

    def _seed(self) -> int:
        if isinstance(self.random_state, numbers.Integral) and not isinstance(self.random_state, bool):
            check_random_state(self.random_state)  # the usual error for out-of-range ints
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _check_params(self) -> np.dtype:
        """Validate the constructor parameters (scikit-learn convention: in fit)."""
        w = self.width
        if isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 1:
            raise ValueError(f"width must be a positive integer, got {w!r}")
        ACTIVATIONS.check(self.activation)
        Scaling.check(self.scaling)
        check_width(w, Init.check(self.init), "width")
        self._options()
        for name in ("scale_inputs", "scale_targets"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        try:
            return canonical_dtype(self.dtype)
        except TypeError as exc:
            raise ValueError(str(exc)) from None

    # -------------------------------------------------------------- predict
    def predict(self, X: Any) -> np.ndarray:
        """F(W, x) for each row of X (n, d): shape (n,), or (n, n_outputs) for 2-D y."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        nets = self.net_ if isinstance(self.net_, list) else [self.net_]
        with warnings.catch_warnings():
            if self.input_scaler_ is not None:
                X = self.input_scaler_.transform(X)
                # The map was fitted on the training set; new points may sit a little outside the ball.
                warnings.simplefilter("ignore", InputOutsideUnitBallWarning)
            U = np.column_stack([net.predict(X).astype(np.float64) for net in nets])
        Y = U * self.y_scale_ + self.y_mean_
        return Y[:, 0] if self._y_1d else Y


def _target_map(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (mean, max |y - mean|) with a zero spread replaced by 1; Y (n, k)."""
    mean = Y.mean(axis=0)
    spread = np.abs(Y - mean).max(axis=0)
    return mean, np.where(spread > 0, spread, 1.0)
