"""ExpRegressor and UnitBallScaler: scikit-learn's contract, and agreement with expreg.train."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import expreg
from expreg import ExpNet, TrainingDivergedError, kernels, train
from expreg.core.data import make_dataset
from expreg.sklearn.estimator import ExpRegressor, UnitBallScaler

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the contract
@parametrize_with_checks([ExpRegressor(width=64, max_steps=200, random_state=0), UnitBallScaler()])
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sklearn_contract(estimator, check, monkeypatch):
    # check_array_api_input skips itself unless SCIPY_ARRAY_API is set; set it so no check is skipped.
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    check(estimator)


def _smooth_problem(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unscaled, off-centre inputs in a box (n, 2) and a smooth target far from zero."""
    Z = np.random.default_rng(seed).uniform(-1, 1, size=(n, 2))
    return Z * [3.0, 0.5] + 5.0, 20.0 * np.sin(2 * Z[:, 0]) + 10.0 * Z[:, 1] + 100.0


# --------------------------------------------------------- pipelines and search
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_pipeline_grid_search_over_width():
    X, y = _smooth_problem(100)
    Xtr, ytr, Xte, yte = X[:70], y[:70], X[70:], y[70:]
    pipe = Pipeline([("scale", StandardScaler()), ("net", ExpRegressor(max_steps=300, random_state=1))])
    search = GridSearchCV(pipe, {"net__width": [16, 64]}, cv=KFold(3, shuffle=True, random_state=0)).fit(Xtr, ytr)
    assert search.best_params_["net__width"] in (16, 64)
    assert search.cv_results_["mean_test_score"].shape == (2,)
    # The refitted best model is the same as a pipeline fitted by hand with those settings.
    by_hand = clone(pipe).set_params(**search.best_params_).fit(Xtr, ytr)
    np.testing.assert_allclose(search.predict(Xte), by_hand.predict(Xte), rtol=1e-12)
    # And it has learnt the function: far better than predicting the mean on held-out points.
    r2 = search.score(Xte, yte)
    assert r2 > 0.9, r2


# ---------------------------------------------- an independent path: expreg.train
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_matches_train_without_scaling():
    X, y = make_dataset(10, 3, seed=4)  # on the unit sphere, |y| <= 1: the theorem's setting
    est = ExpRegressor(
        width=128, max_steps=150, epsilon=1e-3, random_state=7, scale_inputs=False, scale_targets=False
    ).fit(X, y)
    ref = train(ExpNet.init(3, 128, seed=7), X, y, epsilon=1e-3, max_steps=150, record_every=0)
    Xnew = make_dataset(5, 3, seed=9)[0]
    np.testing.assert_allclose(est.predict(Xnew), ref.net.predict(Xnew), rtol=1e-12, atol=1e-14)
    assert est.n_iter_ == ref.steps and est.converged_ == ref.converged
    np.testing.assert_allclose(est.history_.residual, ref.history.residual, rtol=1e-12)
    assert est.lr_ == pytest.approx(1.0 / (128 * kernels.lambda_max(kernels.ntk(X))), rel=1e-12)  # lr "auto"


def test_matches_train_with_scaling_done_by_hand():
    X, y = _smooth_problem(30)
    est = ExpRegressor(
        width=256, activation="exp", scaling="ntk", init="gaussian", max_steps=400, epsilon=0.05, random_state=3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    # The documented maps, written out: inputs into the unit ball, targets into [-1, 1].
    mx = X.mean(axis=0)
    R = np.linalg.norm(X - mx, axis=1).max()
    my = y.mean()
    S = np.abs(y - my).max()
    ref = train(
        ExpNet.init(2, 256, seed=3, scaling="ntk", init="gaussian"),
        (X - mx) / R,
        (y - my) / S,
        epsilon=0.05,
        max_steps=400,
    )
    Xnew = X[:7] + 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", expreg.InputOutsideUnitBallWarning)
        expected = ref.net.predict((Xnew - mx) / R) * S + my
    np.testing.assert_allclose(est.predict(Xnew), expected, rtol=1e-10)
    assert est.n_iter_ == ref.steps and est.converged_ == ref.converged
    assert np.linalg.norm(est.input_scaler_.transform(X), axis=1).max() == pytest.approx(1.0)


def test_multi_output_is_one_network_per_column():
    X, y = _smooth_problem(25)
    Y = np.column_stack([y, -0.5 * y + X[:, 0]])
    kw = dict(width=64, max_steps=50, random_state=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        both = ExpRegressor(**kw).fit(X, Y)
        cols = [ExpRegressor(**kw).fit(X, Y[:, k]) for k in range(2)]
        column = ExpRegressor(**kw).fit(X, Y[:, :1])
    P = both.predict(X[:6])
    assert P.shape == (6, 2) and len(both.net_) == 2 and both.n_outputs_ == 2
    for k in range(2):
        np.testing.assert_allclose(P[:, k], cols[k].predict(X[:6]), rtol=1e-12)
    assert column.predict(X[:6]).shape == (6, 1)


# ------------------------------------------------------ convergence and divergence
def test_convergence_warning_only_when_epsilon_is_missed():
    X, y = make_dataset(8, 3, seed=0)
    with pytest.warns(ConvergenceWarning, match="max_steps=3"):
        est = ExpRegressor(width=64, max_steps=3, random_state=0).fit(X, y)
    assert not est.converged_ and est.n_iter_ == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = ExpRegressor(width=512, max_steps=20000, epsilon=1e-2, random_state=0).fit(X, y)
    assert est.converged_
    # Stopped by the paper's rule: the training residual in scaled-target units is below epsilon.
    assert est.history_.residual[-1] <= 1e-2 < est.history_.residual[-2]
    resid = (est.predict(X) - y) / est.y_scale_[0]
    assert np.linalg.norm(resid) <= 1e-2 * (1 + 1e-6)


def test_auto_learning_rate_recovers_from_divergence():
    rng = np.random.default_rng(2)  # found by search: lr "auto" diverges for this tiny width
    X, y = rng.normal(size=(20, 3)), rng.normal(size=20)
    Xs = X - X.mean(axis=0)
    Xs /= np.linalg.norm(Xs, axis=1).max()
    auto = 1.0 / (4 * kernels.lambda_max(kernels.ntk(Xs)))
    with pytest.raises(TrainingDivergedError):
        ExpRegressor(width=4, learning_rate=auto, max_steps=200, random_state=8).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = ExpRegressor(width=4, max_steps=200, random_state=8).fit(X, y)
    assert est.lr_ < auto / 2
    loss = np.asarray(est.history_.loss)
    assert np.isfinite(loss).all() and loss[-1] < loss[0]


# ------------------------------------------------------------- seeds and dtypes
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_random_state():
    X, y = _smooth_problem(20)
    kw = dict(width=32, max_steps=20, init="gaussian")
    assert ExpRegressor(random_state=11, **kw).fit(X, y).net_.seed == 11
    a = ExpRegressor(random_state=np.random.RandomState(3), **kw).fit(X, y)
    b = ExpRegressor(random_state=np.random.RandomState(3), **kw).fit(X, y)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    seeds = {ExpRegressor(random_state=None, **kw).fit(X, y).seed_ for _ in range(3)}
    assert len(seeds) == 3


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_float32_close_to_float64():
    X, y = _smooth_problem(20)
    p64 = ExpRegressor(width=64, max_steps=30, random_state=0).fit(X, y)
    p32 = ExpRegressor(width=64, max_steps=30, random_state=0, dtype="float32").fit(X, y)
    assert p32.net_.dtype == np.float32 and p64.net_.dtype == np.float64
    np.testing.assert_allclose(p32.predict(X), p64.predict(X), rtol=1e-4)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "X, y, error, match",
    [
        (np.array([[1.0, np.nan], [0.0, 1.0]]), np.ones(2), ValueError, "Input X contains NaN"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), np.ones(2), ValueError, "Input X contains infinity"),
        (np.ones(3), np.ones(3), ValueError, "Expected 2D array, got 1D array"),
        (np.ones((3, 2)), np.ones(4), ValueError, "inconsistent numbers of samples"),
        (np.ones((3, 2)), None, ValueError, "requires y to be passed"),
        (np.ones((3, 2)), np.array(["a", "b", "c"]), ValueError, "could not convert string to float"),
        (np.ones((0, 2)), np.ones(0), ValueError, "0 sample"),
        (scipy.sparse.csr_matrix(np.eye(3)), np.ones(3), TypeError, "Sparse data was passed"),
        (np.array([[1.0 + 1j, 0.0]]), np.ones(1), ValueError, "Complex data not supported"),
    ],
)
def test_bad_data_gets_sklearn_errors(X, y, error, match):
    with pytest.raises(error, match=match):
        ExpRegressor(width=8, max_steps=1).fit(X, y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_bad_predict_input():
    with pytest.raises(NotFittedError):
        ExpRegressor().predict(np.ones((2, 3)))
    est = ExpRegressor(width=8, max_steps=2).fit(np.eye(3), np.arange(3.0))
    with pytest.raises(ValueError, match="X has 2 features, but ExpRegressor is expecting 3 features"):
        est.predict(np.ones((2, 2)))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        est.predict(np.array([[np.nan, 0.0, 0.0]]))


@pytest.mark.parametrize(
    "params, match",
    [
        ({"width": 0}, "width must be a positive integer, got 0"),
        ({"width": 2.5}, "width must be a positive integer"),
        ({"width": 7}, "so width must be even; got width = 7"),
        ({"activation": "tanh"}, "activation='tanh' is not known"),
        ({"scaling": "mup"}, "scaling='mup' is not known"),
        ({"init": "zeros"}, "init='zeros' is not known"),
        ({"learning_rate": -1.0}, "learning_rate must be 'auto' or a positive finite number, got -1.0"),
        ({"learning_rate": "fast"}, "learning_rate must be 'auto'"),
        ({"epsilon": float("nan")}, "epsilon must be a finite number >= 0"),
        ({"max_steps": -1}, "max_steps must be >= 0, got -1"),
        ({"max_steps": 2.5}, "max_steps must be an integer, got float 2.5"),
        ({"dtype": "float16"}, "dtype='float16' is not known; choose one of 'float64', 'float32'"),
        ({"scale_inputs": "yes"}, "scale_inputs must be True or False"),
        ({"random_state": "seed"}, "cannot be used to seed"),
    ],
)
def test_bad_parameters_raise_in_fit(params, match):
    est = ExpRegressor(**params)  # the constructor only stores them
    with pytest.raises(ValueError, match=match):
        est.fit(np.eye(3), np.arange(3.0))


# -------------------------------------------------------------- UnitBallScaler
def test_unit_ball_scaler():
    X, _ = _smooth_problem(15)
    sc = UnitBallScaler().fit(X)
    Z = sc.transform(X)
    norms = np.linalg.norm(Z, axis=1)
    assert norms.max() == pytest.approx(1.0, rel=1e-14) and np.allclose(Z.mean(axis=0), 0.0, atol=1e-14)
    # Directions are kept: Z is a multiple of the centred X.
    np.testing.assert_allclose(Z * np.linalg.norm(X - X.mean(0), axis=1).max(), X - X.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sc.inverse_transform(Z), X, rtol=1e-12)
    const = UnitBallScaler().fit(np.ones((4, 2)))
    assert const.scale_ == 1.0 and not np.any(const.transform(np.ones((4, 2))))


# ------------------------------------------------------------- packaging, example
def test_top_level_import_and_missing_sklearn_message():
    assert expreg.ExpRegressor is ExpRegressor
    code = (
        "import sys; sys.modules['sklearn'] = None\n"
        "import expreg\n"
        "try:\n    from expreg import ExpRegressor\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert "pip install 'expreg[sklearn]'" in out
    with pytest.raises(AttributeError):
        expreg.NoSuchThing  # noqa: B018


@pytest.mark.slow
def test_diabetes_example_runs(tmp_path):
    out = tmp_path / "cv.png"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "diabetes.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {line.split("  ")[0]: line for line in proc.stdout.splitlines()}
    assert {"ExpRegressor m=32", "ExpRegressor m=128", "kernel ridge, exp NTK", "MLPRegressor (100,)", "mean"} <= set(
        rows
    )
    rmse = {k: float(v.split()[-5]) for k, v in rows.items() if "+-" in v}
    # Every model beats predicting the mean (RMSE about 77 on this data set).
    assert all(rmse[k] < 0.8 * rmse["mean"] for k in rmse if k != "mean"), rmse
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unit_ball_scaler_handles_huge_finite_inputs_exactly() -> None:
    """Radii whose squares overflow float64 are still computed (no silent scale 1.0)."""
    X = np.random.default_rng(0).normal(size=(6, 3)) * 1e160
    sc = UnitBallScaler().fit(X)
    centred = X / 1e160 - (X / 1e160).mean(axis=0)
    assert sc.scale_ == pytest.approx(1e160 * np.linalg.norm(centred, axis=1).max(), rel=1e-12)
    np.testing.assert_allclose(np.linalg.norm(sc.transform(X), axis=1).max(), 1.0, rtol=1e-12)


def test_unit_ball_scaler_refuses_what_float64_cannot_hold() -> None:
    X = np.array([[1.5e308, 0.0], [-1.5e308, 0.0], [1.5e308, 0.0]])  # mean 5e307: -1.5e308 - mean overflows
    with pytest.raises(ValueError, match="too large to centre and scale"):
        UnitBallScaler().fit(X)
    sc = UnitBallScaler().fit(np.array([[0.0, 0.0], [1e-300, 0.0]]))
    assert sc.scale_ == pytest.approx(5e-301, rel=1e-12)  # ||x||^2 underflows: no silent fallback to 1.0
    with pytest.raises(ValueError, match="too far from the training data"):
        sc.transform(np.array([[1e10, 0.0]]))
    with pytest.raises(ValueError, match="overflows float64"):
        UnitBallScaler().fit(np.array([[0.0, 0.0], [1e300, 0.0]])).inverse_transform(np.array([[1e10, 0.0]]))
