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
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, RegressorMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ..core.activations import ACTIVATIONS
from ..core.backends import canonical_dtype
from ..core.choices import Init, Scaling
from ..core.data import unit_ball_map as _centre_and_radius
from ..core.errors import TrainingDivergedError
from ..core.initialisation import check_width
from ..core.model import ExpNet
from ..core.validation import InputOutsideUnitBallWarning
from ..engine.options import TrainOptions
from ..engine.train import TrainResult, train

__all__ = ["ExpRegressor", "UnitBallScaler"]

#: With learning_rate="auto", how many times a diverging run is restarted with a smaller step.
AUTO_LR_RETRIES = 6


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

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> UnitBallScaler:
        """Learn the mean and the largest centred norm of X (n, d).

        With ``sample_weight``, the mean is the weighted mean and the norm the
        largest over rows of positive weight (as if row i were repeated
        ``sample_weight[i]`` times).
        """
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        if sample_weight is None:
            self.mean_, radius = _centre_and_radius(X)
        else:
            w = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
            self.mean_, radius = _centre_and_radius(X[w > 0], weights=w[w > 0])
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
        Step budget; a ``ConvergenceWarning`` says when epsilon was not reached
        (unless early stopping ended the run). On noisy targets the budget is
        the regulariser: gradient descent fits the signal first and the noise
        last, and run to epsilon it interpolates the training set (the paper's
        goal, not a predictor's). Choose it by cross-validation, or let
        ``early_stopping`` choose the stopping step.
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
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training rows (drawn with the
        network's seed), score R^2 on them every ``validation_every`` steps,
        stop when ``n_iter_no_change`` scores in a row did not beat the best,
        and keep the weights of the best score (as ``MLPRegressor`` does).
    validation_fraction : float, default=0.1
        Share of the training rows held out when ``early_stopping``.
    n_iter_no_change : int, default=10
        Validation scores without improvement before stopping.
    validation_every : int, default=10
        Gradient steps between validation scores (one "iteration" of
        ``n_iter_no_change``: full-batch gradient descent has no epochs).
    warm_start : bool, default=False
        Continue from the previous fit's networks (and keep its input and
        target maps, and its step size) for up to ``max_steps`` more steps;
        the data must have the same features and outputs.

    Attributes
    ----------
    net_ : ExpNet or list of ExpNet
        The trained network; one per target column when y is 2-D.
    history_ : History or list of History
        Per-step loss, residual and weight movement of each run.
    n_iter_ : int
        Gradient steps taken (the largest over target columns; summed over
        fits with ``warm_start``).
    loss_curve_ : list of float
        The training loss 1/2 sum_i c_i (u_i - y_i)^2 (scaled targets, c the
        sample weights, 1 without) at every step of every fit since the last
        cold start; for 2-D y, the sum over columns.
    validation_scores_ : list of float or None
        R^2 on the held-out rows at each check (``early_stopping`` only).
    best_validation_score_ : float or None
        The best of them; the weights kept are those it was scored with.
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

    ``sample_weight`` in ``fit`` weights the squared loss,
    L = 1/2 sum_i c_i (F(W, x_i) - y_i)^2 (``expreg.train(sample_weight=...)``):
    its gradient is that of the data with row i repeated c_i times (integer
    c), and the input and target maps are the weighted ones, so an integer
    weight is the same fit as repeating the row. In the kernel regime the
    residual r = u - y evolves as C^(1/2) r(t+1) = (I - lr m s^2 C^(1/2) H C^(1/2))
    C^(1/2) r(t) (C = diag(c)): a heavier point's residual decays faster, a
    point of weight 0 is not fitted, and "auto" is 1/lambda_max of
    m s^2 C^(1/2) H^cts C^(1/2).

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
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        validation_every: int = 10,
        warm_start: bool = False,
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
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.validation_every = validation_every
        self.warm_start = warm_start

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> ExpRegressor:
        """Train on X (n, d) and y (n,) or (n, n_outputs), with optional ``sample_weight`` (n,); returns self.

        Emits ``ConvergenceWarning`` when ||u - y||_2 <= epsilon was not
        reached within ``max_steps`` for some target column (and early
        stopping did not end it).
        """
        dtype = self._check_params()
        warm = bool(self.warm_start) and hasattr(self, "net_")
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64, reset=not warm)
        w = (
            None
            if sample_weight is None
            else _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        )
        Y = np.asarray(y, dtype=np.float64).reshape(X.shape[0], -1)
        if warm and Y.shape[1] != self.n_outputs_:
            raise ValueError(f"warm_start: y has {Y.shape[1]} outputs but the fitted model has {self.n_outputs_}")
        fit_rows, val_rows = self._split(X.shape[0], warm)
        if not warm:
            self._fit_maps(X[fit_rows], Y[fit_rows], None if w is None else w[fit_rows])
        Xs = X if self.input_scaler_ is None else self.input_scaler_.transform(X)
        Ys = (Y - self.y_mean_) / self.y_scale_
        starts = (self.net_ if isinstance(self.net_, list) else [self.net_]) if warm else [None] * Y.shape[1]
        lrs = (self.lr_ if isinstance(self.lr_, list) else [self.lr_]) if warm else [self.learning_rate] * Y.shape[1]
        runs = [
            self._train_column(Xs, Ys[:, k], w, fit_rows, val_rows, dtype, starts[k], lrs[k]) for k in range(Y.shape[1])
        ]
        self._store(runs, np.ndim(y) == 1, warm)
        return self

    def _split(self, n: int, warm: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """(training rows, validation rows or None): the held-out share of ``early_stopping``, drawn with the seed."""
        if not warm:
            self.seed_ = self._seed()
        rows = np.arange(n)
        if not self.early_stopping:
            return rows, None
        n_val = math.ceil(self.validation_fraction * n)
        if n_val < 1 or n - n_val < 1:
            raise ValueError(
                f"early_stopping with validation_fraction={self.validation_fraction} leaves no training or no "
                f"validation row out of {n}; give more rows or turn early_stopping off"
            )
        fit_rows, val_rows = train_test_split(rows, test_size=n_val, random_state=self.seed_)
        return np.sort(fit_rows), np.sort(val_rows)

    def _fit_maps(self, X: np.ndarray, Y: np.ndarray, w: np.ndarray | None) -> None:
        """Fit the input map (``UnitBallScaler``) and the per-column target map on the training rows."""
        self.input_scaler_: UnitBallScaler | None = (
            UnitBallScaler().fit(X, sample_weight=w) if self.scale_inputs else None
        )
        self.n_outputs_ = Y.shape[1]
        self.y_mean_: np.ndarray
        self.y_scale_: np.ndarray
        self.y_mean_, self.y_scale_ = (
            _target_map(Y, w) if self.scale_targets else (np.zeros(Y.shape[1]), np.ones(Y.shape[1]))
        )

    def _store(self, runs: list[_ColumnRun], one: bool, warm: bool) -> None:
        """Set the fitted attributes from each column's run; warn if some column stopped short of epsilon."""

        def per_column(values: list[Any]) -> Any:  # 1-D y: the one value; 2-D y: one per column
            return values[0] if one else values

        self.net_ = per_column([r.net for r in runs])
        self.history_ = per_column([r.result.history for r in runs])
        self.lr_ = per_column([r.result.lr for r in runs])
        before: tuple[int, list[float]] = (
            (getattr(self, "n_iter_", 0), getattr(self, "loss_curve_", [])) if warm else (0, [])
        )
        self.n_iter_: int = before[0] + max(r.steps for r in runs)
        self.loss_curve_: list[float] = before[1] + _summed_curve([r.losses for r in runs])
        scores = [r.scores for r in runs]
        self.validation_scores_ = per_column(scores) if self.early_stopping else None
        self.best_validation_score_ = max(scores[0]) if (one and scores[0]) else None
        self.converged_ = all(r.result.converged for r in runs)
        self._y_1d = one
        if not self.converged_ and not any(r.stopped_early for r in runs):
            # the residuals are in history_ and loss_curve_; early stopping ends a run without this warning
            warnings.warn(
                "ExpRegressor stopped at max_steps before ||u - y||_2 <= epsilon (converged_ is False). On noisy "
                "targets that is usually what you want: the step budget is the regulariser (see early_stopping); to "
                "fit the training set, increase max_steps or width, or raise epsilon",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _train_column(
        self,
        X: np.ndarray,
        y: np.ndarray,
        w: np.ndarray | None,
        fit_rows: np.ndarray,
        val_rows: np.ndarray | None,
        dtype: np.dtype,
        start: ExpNet | None,
        lr: float | str,
    ) -> _ColumnRun:
        """Gradient descent for one target column, with the "auto" fallback on divergence."""
        net = start or ExpNet.init(
            X.shape[1],
            self.width,
            seed=self.seed_,
            activation=self.activation,
            scaling=self.scaling,
            init=self.init,
            dtype=dtype,
        )
        if lr == "auto" and not np.any(X):
            lr = 1.0  # every input is 0: the gradient vanishes and the step is irrelevant
        descent = _Segments(self, X, y, w, fit_rows, val_rows)
        for attempt in range(AUTO_LR_RETRIES + 1):
            try:
                return descent.run(net, lr)
            except TrainingDivergedError as exc:
                if self.learning_rate != "auto" or attempt == AUTO_LR_RETRIES:
                    raise
                safe = exc.suggested_lr if math.isfinite(exc.suggested_lr) else exc.lr / 4
                lr = min(exc.lr / 2, safe)
        raise AssertionError("unreachable")  # pragma: no cover

    def _options(self, lr: float | str | None = None, max_steps: int | None = None) -> TrainOptions:
        """The options of each run of ``fit``, checked by ``TrainOptions``; ``lr`` defaults to ``learning_rate``."""
        lr = self.learning_rate if lr is None else lr
        bad_lr = f"learning_rate must be 'auto' or a positive finite number, got {lr!r}"
        if isinstance(lr, str) and lr != "auto":  # train's "empirical" rule is not offered by the estimator
            raise ValueError(bad_lr)
        steps = self.max_steps if max_steps is None else max_steps
        try:
            return TrainOptions(lr=lr, epsilon=self.epsilon, max_steps=steps, record_every=0)
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
        for name in ("scale_inputs", "scale_targets", "early_stopping", "warm_start"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        f = self.validation_fraction
        if isinstance(f, bool) or not isinstance(f, numbers.Real) or not 0 < f < 1:
            raise ValueError(f"validation_fraction must be a number in (0, 1), got {f!r}")
        for name in ("n_iter_no_change", "validation_every"):
            k = getattr(self, name)
            if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
                raise ValueError(f"{name} must be a positive integer, got {k!r}")
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


def _summed_curve(curves: list[list[float]]) -> list[float]:
    """The sum over columns of their loss curves, a column that stopped earlier keeping its last loss."""
    longest = max(len(c) for c in curves)
    return [float(sum(v)) for v in zip(*(c + c[-1:] * (longest - len(c)) for c in curves), strict=True)]


def _target_map(Y: np.ndarray, w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (mean, max |y - mean|) with a zero spread replaced by 1; Y (n, k), weighted by ``w`` (n,) if given."""
    if w is not None:
        Y, w = Y[w > 0], w[w > 0]
    mean = np.average(Y, axis=0, weights=w)
    spread = np.abs(Y - mean).max(axis=0)
    return mean, np.where(spread > 0, spread, 1.0)


@dataclass
class _ColumnRun:
    """One target column's fit: the network kept, the last run segment, the whole loss curve, validation scores."""

    net: ExpNet
    result: TrainResult
    losses: list[float]
    scores: list[float]
    steps: int
    stopped_early: bool


@dataclass
class _Segments:
    """Gradient descent on one column, in segments of ``validation_every`` steps when early stopping.

    Full-batch gradient descent with a fixed step has no state besides W, so
    running it as segments that each start from the last one's weights (with
    the step size of the first) is the same descent as one run.
    """

    est: ExpRegressor
    X: np.ndarray
    y: np.ndarray
    w: np.ndarray | None
    fit_rows: np.ndarray
    val_rows: np.ndarray | None

    def run(self, net: ExpNet, lr: float | str) -> _ColumnRun:
        est, rows = self.est, self.fit_rows
        X, y, w = self.X[rows], self.y[rows], None if self.w is None else self.w[rows]
        if self.val_rows is None:
            result = train(net, X, y, options=est._options(lr), sample_weight=w)
            return _ColumnRun(result.net, result, list(result.history.loss), [], result.steps, False)
        losses: list[float] = []
        scores: list[float] = []
        best, best_net, since, t = -math.inf, net, 0, 0
        while True:
            chunk = min(est.validation_every, est.max_steps - t)
            result = train(net, X, y, options=est._options(lr, chunk), sample_weight=w)
            losses = losses[:-1] + list(result.history.loss)  # a segment starts where the last one ended
            net, lr, t = result.net, result.lr, t + result.steps
            scores.append(self.score(net))
            if scores[-1] > best:
                best, best_net, since = scores[-1], net, 0
            else:
                since += 1
            if result.converged or t >= est.max_steps or since >= est.n_iter_no_change:
                stopped = since >= est.n_iter_no_change
                return _ColumnRun(best_net, result, losses, scores, t, stopped)

    def score(self, net: ExpNet) -> float:
        """R^2 of ``net`` on the held-out rows, in the (scaled) target units, weighted by the sample weights."""
        rows = self.val_rows
        assert rows is not None  # scored only when early stopping holds rows out
        with warnings.catch_warnings():  # held-out rows may sit a little outside the training rows' ball
            warnings.simplefilter("ignore", InputOutsideUnitBallWarning)
            u = net.predict(self.X[rows]).astype(np.float64)
        y = self.y[rows]
        w = np.ones(len(rows)) if self.w is None else self.w[rows]
        total = float(w @ (y - np.average(y, weights=w if w.any() else None)) ** 2)
        return 1.0 - float(w @ (u - y) ** 2) / total if total > 0 else -float(w @ (u - y) ** 2)
