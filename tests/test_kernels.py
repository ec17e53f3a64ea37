"""Kernels (docs/theory.md sections 3-4) against independent truth.

- closed forms of H^cts and the NNGP kernel against Gauss-Hermite quadrature
  in d = 1 and d = 2 (exp), and against angular quadrature and Monte Carlo (ReLU);
- H^cts against the Monte-Carlo mean of H^dis(W(0)), whose error must fall like
  1/sqrt(m) (exp has heavy tails, docs/theory.md section 3: the slope test uses inputs of norm
  0.6, the unbiasedness test unit vectors with an error bar from the sample);
- the empirical kernel against an explicit Jacobian J J^T;
- eigenvalues dense vs iterative vs numpy; the predicted trajectory against
  explicit matrix powers.
"""

from __future__ import annotations

import numpy as np
import numpy.polynomial.hermite_e as He
import pytest

from expreg import ExpNet, ExpOverflowError, InputOutsideUnitBallWarning, kernels
from expreg.core.data import sphere


def gh_expectation(f, d: int, order: int = 60) -> np.ndarray:
    """E_{w ~ N(0, I_d)} f(w) by tensor Gauss-Hermite (probabilists') quadrature, d in {1, 2}.

    ``f`` maps an array of nodes (k, d) to values (k, ...).
    """
    z, wt = He.hermegauss(order)
    wt = wt / np.sqrt(2 * np.pi)
    if d == 1:
        nodes, weights = z[:, None], wt
    else:
        Z1, Z2 = np.meshgrid(z, z, indexing="ij")
        nodes = np.stack([Z1.ravel(), Z2.ravel()], axis=1)
        weights = np.outer(wt, wt).ravel()
    vals = f(nodes)
    return np.tensordot(weights, vals, axes=(0, 0))


def points_in_ball(n: int, d: int, seed: int, rmax: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, d))
    return Z / np.linalg.norm(Z, axis=1, keepdims=True) * rng.uniform(0.2, rmax, size=(n, 1))


# ------------------------------------------------------------------ closed forms
@pytest.mark.parametrize("d", [1, 2])
def test_exp_ntk_and_nngp_match_gauss_hermite(d: int) -> None:
    X = points_in_ball(6, d, seed=d)

    def E(nodes):
        return np.exp(nodes @ X.T)  # (k, n): exp(<w, x_i>)

    second_moment = gh_expectation(lambda nodes: E(nodes)[:, :, None] * E(nodes)[:, None, :], d)  # E[e_i e_j]
    np.testing.assert_allclose(kernels.ntk(X), (X @ X.T) * second_moment, rtol=1e-10)
    np.testing.assert_allclose(kernels.nngp(X), second_moment, rtol=1e-10)


def test_relu_closed_forms_match_angular_quadrature_in_2d() -> None:
    # w = rho (cos phi, sin phi), phi uniform, E rho^2 = 2: integrate over phi on a fine grid.
    X = points_in_ball(5, 2, seed=4)
    phi = (np.arange(400_000) + 0.5) * (2 * np.pi / 400_000)
    proj = np.stack([np.cos(phi), np.sin(phi)], axis=1) @ X.T  # (k, n) = <u, x_i>
    pos = (proj > 0).astype(float)
    relu = np.maximum(proj, 0.0)
    both_positive = pos.T @ pos / phi.size  # P(<w,x_i> > 0, <w,x_j> > 0)
    relu_product = 2.0 * (relu.T @ relu) / phi.size  # E[relu(<w,x_i>) relu(<w,x_j>)]
    np.testing.assert_allclose(kernels.ntk(X, activation="relu"), (X @ X.T) * both_positive, atol=1e-5)
    np.testing.assert_allclose(kernels.nngp(X, activation="relu"), relu_product, rtol=1e-6, atol=1e-8)


def test_relu_closed_forms_match_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    X = points_in_ball(5, 6, seed=5)
    w = rng.standard_normal((400_000, 6))
    Z = w @ X.T
    pos, relu = (Z > 0).astype(float), np.maximum(Z, 0.0)
    for closed, samples_i_j in (
        (kernels.ntk(X, activation="relu"), (X @ X.T)[None] * pos[:, :, None] * pos[:, None, :]),
        (kernels.nngp(X, activation="relu"), relu[:, :, None] * relu[:, None, :]),
    ):
        mean = samples_i_j.mean(0)
        se = samples_i_j.std(0) / np.sqrt(w.shape[0])
        assert np.all(np.abs(mean - closed) <= 5 * se + 1e-12)


def test_closed_form_diagonals_for_unit_vectors() -> None:
    X = sphere(7, 4, seed=0)
    np.testing.assert_allclose(np.diag(kernels.ntk(X)), np.e**2)
    np.testing.assert_allclose(np.diag(kernels.nngp(X)), np.e**2)
    np.testing.assert_allclose(np.diag(kernels.ntk(X, activation="relu")), 0.5)
    np.testing.assert_allclose(np.diag(kernels.nngp(X, activation="relu")), 0.5)
    # H^cts_ij = rho e^{1 + rho} for unit vectors (docs/theory.md section 3)
    rho = X @ X.T
    np.testing.assert_allclose(kernels.ntk(X), rho * np.exp(1 + rho), rtol=1e-13)


def test_ntk_cross_matches_quadrature_on_two_point_sets() -> None:
    """H^cts(X, Y) of two different point sets in d = 2: Gauss-Hermite for exp, a fine angular grid for ReLU.

    exp:  <x, y> E[e^<w,x> e^<w,y>];  ReLU: <x, y> P(<w,x> > 0, <w,y> > 0), w ~ N(0, I_2) (docs/theory.md section 3).
    """
    X, Y = points_in_ball(5, 2, seed=11), points_in_ball(3, 2, seed=12)
    moment = gh_expectation(lambda nodes: np.exp(nodes @ X.T)[:, :, None] * np.exp(nodes @ Y.T)[:, None, :], 2)
    np.testing.assert_allclose(kernels.ntk(X, Y), (X @ Y.T) * moment, rtol=1e-10)
    phi = (np.arange(200_000) + 0.5) * (2 * np.pi / 200_000)  # the direction of w is uniform; only signs matter
    U = np.stack([np.cos(phi), np.sin(phi)], axis=1)
    both = ((U @ X.T) > 0).astype(float).T @ ((U @ Y.T) > 0).astype(float) / len(phi)
    np.testing.assert_allclose(kernels.ntk(X, Y, activation="relu"), (X @ Y.T) * both, atol=1e-5)


# ----------------------------------------------------- Monte Carlo at finite width
def test_ntk_is_the_mean_of_the_finite_width_kernel() -> None:
    # Unit vectors (heavy tails): compare the mean of H^dis over 24 independent networks with
    # H^cts within 5 standard errors estimated from the sample itself.
    X = sphere(5, 4, seed=1)
    samples = np.stack(
        [kernels.empirical_ntk(ExpNet.init(4, 8192, seed=s, init="gaussian"), X, average=True) for s in range(24)]
    )
    mean, se = samples.mean(0), samples.std(0, ddof=1) / np.sqrt(len(samples))
    assert np.all(np.abs(mean - kernels.ntk(X)) <= 5 * se)


def test_finite_width_kernel_error_falls_like_one_over_sqrt_m() -> None:
    X = 0.6 * sphere(6, 3, seed=2)
    H = kernels.ntk(X)
    widths = np.array([64, 256, 1024, 4096, 16384])
    rms = []
    for m in widths:
        errs = [
            np.linalg.norm(kernels.empirical_ntk(ExpNet.init(3, int(m), seed=s, init="gaussian"), X, average=True) - H)
            for s in range(16)
        ]
        rms.append(np.sqrt(np.mean(np.square(errs))))
    slope = np.polyfit(np.log(widths), np.log(rms), 1)[0]
    assert -0.65 < slope < -0.35, (slope, rms)


def test_nngp_is_the_output_covariance_at_independent_initialisation() -> None:
    # s = 1/sqrt(m), gaussian init: E[F(x_i) F(x_j)] = K_ij for every m.
    X = 0.5 * sphere(4, 3, seed=3)
    F = np.stack([ExpNet.init(3, 64, seed=s, init="gaussian", scaling="ntk").predict(X) for s in range(500)])
    prods = F[:, :, None] * F[:, None, :]
    mean, se = prods.mean(0), prods.std(0, ddof=1) / np.sqrt(len(F))
    assert np.all(np.abs(mean - kernels.nngp(X)) <= 5 * se)
    assert np.all(np.abs(F.mean(0)) <= 5 * F.std(0, ddof=1) / np.sqrt(len(F)))  # mean zero


def test_relu_finite_width_kernel_converges_to_closed_form() -> None:
    X = sphere(5, 4, seed=4)
    Hdis = kernels.empirical_ntk(
        ExpNet.init(4, 200_000, seed=0, activation="relu", init="gaussian", scaling="ntk"), X, average=True
    )
    # each entry is a mean of 2e5 bounded terms: standard error <= 1 / sqrt(2e5) ~ 2.2e-3
    np.testing.assert_allclose(Hdis, kernels.ntk(X, activation="relu"), atol=1e-2)


# ------------------------------------------------------------- empirical kernel
@pytest.mark.parametrize("activation", ["exp", "relu"])
@pytest.mark.parametrize("scaling", ["none", "ntk"])
def test_empirical_ntk_is_jacobian_gram(activation: str, scaling: str) -> None:
    X = points_in_ball(6, 3, seed=7)
    net = ExpNet.init(3, 40, seed=1, activation=activation, scaling=scaling, init="gaussian")
    W, a = net.weights_numpy()
    Z = X @ W
    D = np.exp(Z) if activation == "exp" else (Z > 0).astype(float)
    s = net.s
    # dF(x_i)/dw_r = s a_r sigma'(<w_r, x_i>) x_i  ->  J (n, d*m)
    J = np.stack([(s * a * D[i])[None, :] * X[i][:, None] for i in range(len(X))]).reshape(len(X), -1)
    np.testing.assert_allclose(kernels.empirical_ntk(net, X), J @ J.T, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        kernels.empirical_ntk(net, X, average=True), J @ J.T / (net.m * s * s), rtol=1e-12, atol=1e-14
    )


def test_empirical_ntk_does_not_depend_on_blocking() -> None:
    X = points_in_ball(7, 3, seed=8)
    ref = kernels.empirical_ntk(ExpNet.init(3, 50, seed=2, block=50), X)
    for block in (1, 7, 50, None):
        for budget in (None, 0):
            H = kernels.empirical_ntk(ExpNet.init(3, 50, seed=2, block=block, memory_budget=budget), X)
            np.testing.assert_allclose(H, ref, rtol=1e-13)


def test_empirical_ntk_overflow_is_detected() -> None:
    net = ExpNet.init(2, 4, seed=0)
    huge = net.with_weights(np.full((2, 4), 400.0))  # exp(400)^2 overflows float64
    with pytest.raises(OverflowError):
        kernels.empirical_ntk(huge, np.array([[1.0, 0.0]]))


def test_closed_forms_overflow_is_an_error_not_inf() -> None:
    X = np.array([[30.0, 0.0], [0.0, 30.0]])
    with pytest.raises(ExpOverflowError, match="unit ball"):
        kernels.ntk(X)
    with pytest.raises(OverflowError):
        kernels.nngp(X)
    with pytest.raises(OverflowError):
        kernels.ntk(X, X)


# ------------------------------------------------------------------ eigenvalues
@pytest.mark.parametrize("n, method", [(40, "dense"), (40, "iterative"), (150, "iterative"), (150, "auto")])
def test_extreme_eigenvalues_of_a_matrix_with_known_spectrum(n: int, method: str) -> None:
    """tridiag(-1, 2, -1) of size n has eigenvalues 4 sin^2(k pi / (2 (n + 1))), k = 1..n (closed form)."""
    T = 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    k = np.arange(1, n + 1)
    spectrum = 4 * np.sin(k * np.pi / (2 * (n + 1))) ** 2
    lo, hi = kernels.extreme_eigenvalues(T, method=method)
    assert lo == pytest.approx(spectrum[0], rel=1e-8) and hi == pytest.approx(spectrum[-1], rel=1e-10)
    assert kernels.lambda_min(T, method=method) == pytest.approx(spectrum[0], rel=1e-8)
    assert kernels.lambda_max(T, method=method) == pytest.approx(spectrum[-1], rel=1e-10)
    # T - 3 I has eigenvalues spectrum - 3, all in (-3, 1): the largest in modulus is spectrum[0] - 3
    assert kernels.operator_norm(T - 3 * np.eye(n)) == pytest.approx(3 - spectrum[0], rel=1e-10)


def test_extreme_eigenvalues_of_the_ntk_agree_with_numpy() -> None:
    X = sphere(120, 6, seed=0)
    H = kernels.ntk(X)
    truth = np.linalg.eigvalsh(H)
    lo_d, hi_d = kernels.extreme_eigenvalues(H, method="dense")
    lo_i, hi_i = kernels.extreme_eigenvalues(H, method="iterative")
    assert lo_d == pytest.approx(truth[0], rel=1e-10) and hi_d == pytest.approx(truth[-1], rel=1e-12)
    assert lo_i == pytest.approx(truth[0], rel=1e-8) and hi_i == pytest.approx(truth[-1], rel=1e-10)


def test_extreme_eigenvalues_bad_arguments() -> None:
    with pytest.raises(ValueError, match="method='lanczos'"):
        kernels.extreme_eigenvalues(np.eye(2), method="lanczos")
    with pytest.raises(ValueError, match=r"square matrix, got shape \(2, 3\)"):
        kernels.extreme_eigenvalues(np.ones((2, 3)))


def test_ntk_lambda_is_smallest_eigenvalue_and_refuses_duplicates() -> None:
    X = sphere(10, 3, seed=5)
    assert kernels.ntk_lambda(X) == pytest.approx(np.linalg.eigvalsh(kernels.ntk(X))[0], rel=1e-12)
    dup = np.vstack([X, X[3]])
    with pytest.raises(ValueError, match=r"lambda = lambda_min\(H\^cts\) is 0: rows 3, 10 of X coincide"):
        kernels.ntk_lambda(dup)
    with pytest.raises(ValueError, match="row 10 of X is zero"):
        kernels.ntk_lambda(np.vstack([X, np.zeros(3)]))


def test_ntk_lambda_warns_outside_the_unit_ball() -> None:
    with pytest.warns(InputOutsideUnitBallWarning, match=r"1 rows with \|\|x\|\| > 1"):
        kernels.ntk_lambda(np.array([[1.5, 0.0], [0.0, 0.5]]))


# ------------------------------------------------------------ trajectories
def test_predicted_trajectory_matches_matrix_powers() -> None:
    rng = np.random.default_rng(0)
    A = rng.standard_normal((8, 8))
    H = A @ A.T + 0.1 * np.eye(8)
    r0 = rng.standard_normal(8)
    lr = 1.5 / np.linalg.eigvalsh(H)[-1]  # some factors 1 - lr mu are negative
    traj = kernels.predicted_trajectory(H, r0, lr)
    ts = [0, 1, 2, 5, 37]
    R = traj(ts)
    assert R.shape == (len(ts), 8)
    M = np.eye(8) - lr * H
    for k, t in enumerate(ts):
        expect = np.linalg.matrix_power(M, t) @ r0
        np.testing.assert_allclose(R[k], expect, rtol=1e-10, atol=1e-12)
        assert traj.norms([t])[0] == pytest.approx(np.linalg.norm(expect), rel=1e-10)


def test_predicted_trajectory_extension_is_kernel_gd_at_new_points() -> None:
    # Step by step: f <- f - lr H r on the training points, g <- g - lr K r at the new ones (r = f - y).
    rng = np.random.default_rng(1)
    X = rng.standard_normal((9, 3)) / 3
    H, K = kernels.ntk(X[:6]), kernels.ntk(X[6:], X[:6])
    y = rng.standard_normal(6)
    lr = 1.0 / np.linalg.eigvalsh(H)[-1]
    traj = kernels.predicted_trajectory(H, -y, lr)
    f, g, ts = np.zeros(6), np.zeros(3), [0, 1, 4, 25]
    moved = traj.extension(K, ts)
    assert moved.shape == (4, 3)
    for t in range(ts[-1] + 1):
        if t in ts:
            np.testing.assert_allclose(moved[ts.index(t)], g, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(traj([t])[0], f - y, rtol=1e-10, atol=1e-12)
        r = f - y
        f, g = f - lr * H @ r, g - lr * K @ r


def test_predicted_trajectory_refuses_fractional_or_negative_steps() -> None:
    traj = kernels.predicted_trajectory(np.eye(2), np.ones(2), 0.5)
    with pytest.raises(ValueError, match="non-negative integer step counts"):
        traj([0.5])
    with pytest.raises(ValueError, match="non-negative integer"):
        traj.norms([-1])


def test_docstring_examples_run() -> None:
    import doctest

    import expreg.core.kernels

    failures, tried = doctest.testmod(expreg.kernels, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried > 0 and failures == 0


# ------------------------------------------------------------ non-finite guards (issue 11, item 5)
@pytest.mark.parametrize("activation", ["exp", "relu"])
@pytest.mark.parametrize("fn, cross", [("ntk", False), ("nngp", False), ("ntk", True), ("nngp", True)])
def test_closed_forms_refuse_inputs_whose_kernel_is_not_finite(activation: str, fn: str, cross: bool) -> None:
    X = np.random.default_rng(0).normal(size=(6, 3)) * 1e160  # finite, but ||x||^2 overflows float64
    args = (X, X[:4]) if cross else (X,)
    with pytest.raises(OverflowError, match="scale the inputs into the unit ball"):
        getattr(kernels, fn)(*args, activation=activation)


@pytest.mark.filterwarnings("ignore::expreg.InputOutsideUnitBallWarning", "ignore::RuntimeWarning")
def test_empirical_ntk_refuses_overflowing_inner_products_for_relu() -> None:
    net = ExpNet.init(3, 8, seed=0, activation="relu")
    X = np.random.default_rng(1).normal(size=(4, 3)) * 1e200  # relu never overflows, <x_i, x_j> does
    with pytest.raises(OverflowError, match="inf or NaN"):
        kernels.empirical_ntk(net, X)


def test_predicted_trajectory_refuses_non_finite_arguments() -> None:
    with pytest.raises(ValueError, match="NaN or inf"):
        kernels.predicted_trajectory(np.array([[1.0, np.inf], [np.inf, 1.0]]), np.ones(2), 0.1)
    with pytest.raises(ValueError, match="r0"):
        kernels.predicted_trajectory(np.eye(2), np.array([1.0, np.nan]), 0.1)
    with pytest.raises(ValueError, match="lr"):
        kernels.predicted_trajectory(np.eye(2), np.ones(2), float("nan"))
