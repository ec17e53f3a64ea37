"""expreg.predict and the rectangular kernels (issue 21, items 1-2), against independent truth.

Truth: the 2 x 2 eigen-decomposition by hand, the matrix exponential
(scipy.linalg.expm) and matrix powers, explicit Jacobians of the network,
and gradient descent of wide networks (``expreg.train``).
"""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.linalg

import expreg
from expreg import ExpNet, kernels, predict
from expreg.core.data import sphere


# ------------------------------------------------------------------ item 1: one function, X2=None
def jacobian(net: ExpNet, X: np.ndarray) -> np.ndarray:
    """dF(W, x_i)/dW as an explicit (n, d m) matrix: s a_r sigma'(<w_r, x_i>) x_i (docs/theory.md section 2)."""
    W, a = net.weights_numpy()
    Z = X @ W.astype(np.float64)
    D = np.exp(Z) if net.activation == "exp" else (Z > 0).astype(float)
    return (net.s * D * a[None, :])[:, None, :] * X[:, :, None]  # (n, d, m)


@pytest.mark.parametrize("activation", ["exp", "relu"])
@pytest.mark.parametrize("block", [None, 3])
def test_empirical_ntk_cross_is_the_product_of_explicit_jacobians(activation: str, block: int | None) -> None:
    rng = np.random.default_rng(0)
    W, a = rng.normal(size=(3, 10)), rng.choice([-2.0, 0.5, 1.0], size=10)  # a_r^2 != 1 on purpose
    net = ExpNet.from_weights(W, a, activation=activation, scaling="ntk", init="gaussian", block=block)
    X1, X2 = 0.7 * sphere(5, 3, seed=1), 0.7 * sphere(4, 3, seed=2)
    J1, J2 = jacobian(net, X1).reshape(5, -1), jacobian(net, X2).reshape(4, -1)
    np.testing.assert_allclose(kernels.empirical_ntk(net, X1, X2), J1 @ J2.T, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(kernels.empirical_ntk(net, X1), J1 @ J1.T, rtol=1e-12, atol=1e-14)
    avg = kernels.empirical_ntk(net, X1, X2, average=True)
    np.testing.assert_allclose(avg, J1 @ J2.T / (net.m * net.s**2), rtol=1e-12, atol=1e-14)


def test_empirical_ntk_cross_on_float32_and_torch() -> None:
    net = ExpNet.init(3, 64, seed=0)
    X1, X2 = sphere(6, 3, seed=1), sphere(3, 3, seed=2)
    H = kernels.empirical_ntk(net, X1, X2)
    J = (jacobian(net, X1).reshape(6, -1), jacobian(net, X2).reshape(3, -1))
    np.testing.assert_allclose(H, J[0] @ J[1].T, rtol=1e-12)
    np.testing.assert_allclose(kernels.empirical_ntk(net.to(dtype=np.float32), X1, X2), H, rtol=1e-5)
    pytest.importorskip("torch")
    np.testing.assert_allclose(kernels.empirical_ntk(net.to("torch"), X1, X2), H, rtol=1e-12)


def test_empirical_ntk_cross_never_holds_the_jacobian() -> None:
    """n1 = 3000 points, m = 20000 neurons: the Jacobian would be 1.4 GB, the activations n m 480 MB; peak stays < 64 MB."""
    net = ExpNet.init(3, 20000, seed=0)
    X1, X2 = 0.5 * sphere(3000, 3, seed=1), sphere(2, 3, seed=2)
    tracemalloc.start()
    try:
        H = kernels.empirical_ntk(net, X1, X2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert H.shape == (3000, 2)
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    np.testing.assert_allclose(H[:4], kernels.empirical_ntk(net, np.vstack([X1[:4], X2]))[:4, 4:], rtol=1e-10)


def test_empirical_ntk_cross_checks_its_inputs() -> None:
    net = ExpNet.init(3, 8, seed=0)
    with pytest.raises(ValueError, match="X2 has 2 features but the network expects d = 3"):
        kernels.empirical_ntk(net, sphere(2, 3, seed=0), np.ones((2, 2)) / 2)
    with pytest.raises(ValueError, match="X2 contains NaN"):
        kernels.empirical_ntk(net, sphere(2, 3, seed=0), np.full((1, 3), np.nan))
    with pytest.raises(OverflowError, match="inf or NaN"):
        kernels.empirical_ntk(net.with_weights(np.full((3, 8), 400.0)), np.ones((1, 3)) / 2, np.ones((1, 3)) / 2)


def test_old_names_are_deprecated_aliases() -> None:
    X, Y = sphere(4, 3, seed=0), sphere(2, 3, seed=1)
    for old, new in (("ntk_cross", kernels.ntk), ("nngp_cross", kernels.nngp)):
        with pytest.warns(DeprecationWarning, match=rf"kernels\.{old}.*deprecated.*0\.2"):
            got = getattr(kernels, old)(X, Y, "relu")
        np.testing.assert_array_equal(got, new(X, Y, activation="relu"))
    with pytest.warns(DeprecationWarning, match="pass activation='relu' by keyword"):
        got = kernels.ntk(X, "relu")
    np.testing.assert_array_equal(got, kernels.ntk(X, activation="relu"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kernels.ntk(X, Y)
        kernels.nngp(X)


def test_closed_form_cross_kernel_is_the_block_of_the_square_one() -> None:
    X = sphere(7, 3, seed=3)
    for fn in (kernels.ntk, kernels.nngp):
        np.testing.assert_allclose(fn(X[:3], X[3:]), fn(X)[:3, 3:], rtol=1e-14)


# ------------------------------------------------------------------ item 2: predictions
def two_point_problem() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X = np.array([[1.0, 0.0], [0.6, 0.8]])
    x_test = np.array([[0.0, 1.0]])
    return X, np.array([0.7, -0.4]), kernels.ntk(X), kernels.ntk(x_test, X)


def two_point_truth(H: np.ndarray, K: np.ndarray, y: np.ndarray, eta: float, decay) -> tuple[np.ndarray, float]:
    """Outputs from f(0) = 0 with H = [[a, b], [b, a]]: eigenvectors (1, +-1)/sqrt(2), eigenvalues a +- b, by hand."""
    a, b = H[0, 0], H[0, 1]
    mu = {+1: a + b, -1: a - b}
    train, test = np.zeros(2), 0.0
    for sgn in (+1, -1):
        v = np.array([1.0, sgn]) / np.sqrt(2)
        q = decay(eta * mu[sgn])  # the residual's factor along v
        train += (1 - q) * (v @ y) * v
        test += (1 - q) / mu[sgn] * (K[0] @ v) * (v @ y)
    return train, test


@pytest.mark.parametrize("t", [0.0, 0.3, 2.0, 17.0])
def test_two_point_problem_continuous_time_matches_the_hand_computed_flow(t: float) -> None:
    _, y, H, K = two_point_problem()
    assert H[0, 0] == pytest.approx(H[1, 1])  # unit vectors: a 2 x 2 matrix of the hand-computed form
    eta = 0.05
    p = predict.gradient_descent_mse(H, y, eta)
    train, test = p(t, 0.0, 0.0, K)
    want_train, want_test = two_point_truth(H, K, y, eta, lambda x: np.exp(-x * t))
    np.testing.assert_allclose(train, want_train, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(test, [want_test], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("k", [0, 1, 5, 40])
def test_two_point_problem_discrete_steps_match_the_hand_computed_descent(k: int) -> None:
    _, y, H, K = two_point_problem()
    eta = 1.0 / np.linalg.eigvalsh(H)[-1]
    train, test = predict.gradient_descent_mse(H, y, eta).at_step(k, 0.0, 0.0, K)
    want_train, want_test = two_point_truth(H, K, y, eta, lambda x: (1 - x) ** k)
    np.testing.assert_allclose(train, want_train, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(test, [want_test], rtol=1e-12, atol=1e-14)


def test_predictions_match_matrix_exponential_powers_and_kernel_regression() -> None:
    X = 0.8 * sphere(6, 4, seed=0)
    Xt = 0.8 * sphere(3, 4, seed=1)
    y, f0, g0 = np.linspace(-1, 1, 6), np.full(6, 0.1), np.array([0.2, -0.1, 0.0])
    H, K = kernels.ntk(X), kernels.ntk(Xt, X)
    eta = 0.5 / np.linalg.eigvalsh(H)[-1]
    p = predict.gradient_descent_mse(H, y, eta)
    for t in (0.5, 3.0, 25.0):
        E = scipy.linalg.expm(-eta * t * H)
        train, test = p(t, f0, g0, K)
        np.testing.assert_allclose(train, y + E @ (f0 - y), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(test, g0 + K @ np.linalg.solve(H, (np.eye(6) - E) @ (y - f0)), rtol=1e-8, atol=1e-10)
    for k in (1, 7):
        P = np.linalg.matrix_power(np.eye(6) - eta * H, k)
        S = sum(np.linalg.matrix_power(np.eye(6) - eta * H, j) for j in range(k))  # sum_{j<k} (I - eta H)^j
        train, test = p.at_step(k, f0, g0, K)
        np.testing.assert_allclose(train, y + P @ (f0 - y), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(test, g0 + eta * K @ S @ (y - f0), rtol=1e-9, atol=1e-12)
    for t in (None, np.inf):
        train, test = p(t, f0, g0, K)
        np.testing.assert_allclose(train, y, rtol=1e-12)
        np.testing.assert_allclose(test, g0 + K @ np.linalg.solve(H, y - f0), rtol=1e-7)
    # arrays of times give a leading axis; "mean" is "sum" with the step divided by n (neural-tangents' loss)
    ts = np.array([0.0, 1.0, 4.0])
    assert p(ts, f0).shape == (3, 6)
    mean = predict.gradient_descent_mse(H, y, eta * 6, loss="mean")
    np.testing.assert_allclose(mean(ts, f0, g0, K)[1], p(ts, f0, g0, K)[1], rtol=1e-12)


def test_predicted_trajectory_is_the_residual_of_the_predictor() -> None:
    X, y = sphere(5, 3, seed=0), np.linspace(-1, 1, 5)
    H, f0 = kernels.ntk(X), np.full(5, 0.3)
    eta = 1.0 / np.linalg.eigvalsh(H)[-1]
    steps = [0, 1, 3, 10]
    traj = kernels.predicted_trajectory(H, f0 - y, eta)
    np.testing.assert_allclose(traj(steps), predict.gradient_descent_mse(H, y, eta).at_step(steps, f0) - y, atol=1e-14)


def test_bad_arguments_are_refused() -> None:
    H, y = np.eye(2), np.ones(2)
    with pytest.raises(ValueError, match="learning_rate must be a positive"):
        predict.gradient_descent_mse(H, y, 0.0)
    with pytest.raises(ValueError, match="loss must be one of"):
        predict.gradient_descent_mse(H, y, loss="max")
    with pytest.raises(ValueError, match="y_train must be a finite vector of length n = 2"):
        predict.gradient_descent_mse(H, np.ones(3))
    with pytest.raises(ValueError, match="square"):
        predict.gradient_descent_mse(np.ones((2, 3)), y)
    with pytest.raises(ValueError, match="must be symmetric"):
        predict.gradient_descent_mse(np.array([[1.0, 0.5], [0.0, 1.0]]), y)
    with pytest.raises(ValueError, match="NaN or inf"):
        predict.gradient_descent_mse(np.array([[1.0, np.nan], [np.nan, 1.0]]), y)
    p = predict.gradient_descent_mse(H, y)
    with pytest.raises(ValueError, match="k must be non-negative integer step counts"):
        p.at_step(0.5)
    with pytest.raises(ValueError, match="t must be non-negative times"):
        p(-1.0)
    with pytest.raises(ValueError, match="without k_test_train"):
        p(1.0, 0.0, np.zeros(1))
    with pytest.raises(ValueError, match=r"k_test_train must be a finite \(k, n = 2\)"):
        p(1.0, 0.0, np.zeros(1), np.ones((1, 3)))
    net = ExpNet.init(2, 8)
    with pytest.raises(ValueError, match="kernel must be one of"):
        predict.linearised(net, np.eye(2) / 2, y, kernel="nngp")


# ------------------------------------------------------------------ against gradient descent of wide networks
def _gd_outputs(net: ExpNet, X: np.ndarray, y: np.ndarray, Xt: np.ndarray, lr: float, k: int) -> np.ndarray:
    res = expreg.train(net, X, y, lr=lr, epsilon=1e-300, max_steps=k, record_every=0)
    assert res.steps == k
    return np.concatenate([res.net.predict(X), res.net.predict(Xt)])


@pytest.mark.parametrize("scaling", ["none", "ntk"])
def test_linearised_network_tracks_gradient_descent_better_as_width_grows(scaling: str) -> None:
    """The empirical linearisation's error after k steps falls with m (lazy training); the ntk one's too."""
    X, y = expreg.make_dataset(5, 3, seed=0)
    Xt = 0.9 * sphere(3, 3, seed=1)
    k = 25
    errors: dict[str, list[float]] = {"empirical": [], "ntk": []}
    for m in (512, 32768):
        net = ExpNet.init(3, m, seed=2, scaling=scaling, init="gaussian")
        for kind in errors:
            lin = predict.linearised(net, X, y, Xt, kernel=kind)
            gd = _gd_outputs(net, X, y, Xt, lin.lr, k)
            pred = lin.at_step(k)
            want = np.concatenate([pred.train[0], pred.test[0]])
            errors[kind].append(float(np.abs(want - gd).max() / np.abs(gd).max()))
    # empirical kernel: only the change of the kernel along the run, about 1/m here (measured: 1e-2 -> 5e-4)
    assert errors["empirical"][1] < 2e-3 and errors["empirical"][1] < errors["empirical"][0] / 10, errors
    # closed form: the kernel's own fluctuation e^2/sqrt(m) dominates (factor 8 in m^-1/2)
    assert errors["ntk"][1] < 0.1 and errors["ntk"][1] < errors["ntk"][0] / 3, errors


def test_linearised_at_time_zero_is_the_network_and_default_step_is_trains() -> None:
    X, y = expreg.make_dataset(4, 3, seed=0)
    net = ExpNet.init(3, 128, seed=0, init="gaussian")
    lin = predict.linearised(net, X, y, kernel="ntk")
    np.testing.assert_allclose(lin.at_time(0.0).train[0], net.predict(X), rtol=1e-12)
    assert lin.at_step(1).test is None
    res = expreg.train(net, X, y, max_steps=1, record_every=0)  # lr="auto": 1/lambda_max(m s^2 H^cts)
    assert lin.lr == pytest.approx(res.lr, rel=1e-10)


def test_call_conventions_follow_neural_tangents() -> None:
    """A scalar t drops the time axis; fx_train_0=None asks for the test outputs alone; t=None is t=inf."""
    _, y, H, K = two_point_problem()
    p = predict.gradient_descent_mse(H, y, 0.1)
    train, test = p(3.0, 0.0, 0.0, K)
    assert train.shape == (2,) and test.shape == (1,)
    only_test = p([3.0], None, 0.0, K)
    assert only_test.shape == (1, 1) and only_test[0, 0] == test[0]
    np.testing.assert_array_equal(p(None, 0.0, 0.0, K)[1], p(np.inf, 0.0, 0.0, K)[1])
    with pytest.raises(ValueError, match="nothing to predict"):
        p(1.0, None)


@pytest.mark.parametrize("absolute", [True, False])
def test_diag_reg_gives_the_dynamics_of_the_regularised_kernel_and_ridge_regression(absolute: bool) -> None:
    X, Xt = sphere(6, 3, seed=0), sphere(2, 3, seed=1)
    H, K, y, f0, g0 = kernels.ntk(X), kernels.ntk(Xt, X), np.linspace(-1, 1, 6), np.full(6, 0.2), np.zeros(2)
    lam = 0.3 if absolute else 0.3 * np.trace(H) / 6  # neural-tangents: relative to the mean diagonal by default
    Hr = H + lam * np.eye(6)
    eta = 0.5 / np.linalg.eigvalsh(Hr)[-1]
    p = predict.gradient_descent_mse(H, y, eta, 0.3, absolute)
    E = scipy.linalg.expm(-eta * 4.0 * Hr)
    train, test = p(4.0, f0, g0, K)
    np.testing.assert_allclose(train, y + E @ (f0 - y), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(test, g0 + K @ np.linalg.solve(Hr, (np.eye(6) - E) @ (y - f0)), rtol=1e-9)
    train, test = p(None, f0, g0, K)
    np.testing.assert_allclose(test, g0 + K @ np.linalg.solve(Hr, y - f0), rtol=1e-10)  # kernel ridge regression
    np.testing.assert_allclose(train, y, rtol=1e-12)
    with pytest.raises(ValueError, match="diag_reg must be a non-negative"):
        predict.gradient_descent_mse(H, y, eta, -1.0)
