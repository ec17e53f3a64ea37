"""NTKKernel and NNGPKernel: against the average over a wide network's neurons and quadrature; GP and kernel ridge use."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, WhiteKernel
from sklearn.kernel_ridge import KernelRidge

from expreg import ExpNet, kernels
from expreg.core.data import make_dataset
from expreg.sklearn import kernels as sklearn_kernels
from expreg.sklearn.kernels import NNGPKernel, NTKKernel

ACTIVATIONS = ("exp", "relu")
ALL = [NTKKernel(a) for a in ACTIVATIONS] + [NNGPKernel(a) for a in ACTIVATIONS]


@pytest.fixture
def points() -> tuple[np.ndarray, np.ndarray]:
    """Eleven and seven points inside the unit ball (d = 3)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(11, 3))
    Y = rng.normal(size=(7, 3))
    return X / (1.2 * np.linalg.norm(X, axis=1).max()), Y / (1.1 * np.linalg.norm(Y, axis=1).max())


# ------------------------------------------------------ against the network's features
def _feature_averages(
    activation: str, X: np.ndarray, Y: np.ndarray, m: int = 100_000
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Monte-Carlo NNGP and NTK over the m neurons of a freshly drawn network: {kernel: (mean, standard error)}.

    NNGP(x, y) = E_w[sigma(<w,x>) sigma(<w,y>)] and NTK(x, y) = <x, y> E_w[a^2 sigma'(<w,x>) sigma'(<w,y>)],
    w ~ N(0, I_d), a = +-1 (docs/theory.md section 3), averaged over the network's neurons w_r, a_r. The standard error of
    each entry comes from the sample's own second moment (heavy tails for exp: about e^2 / sqrt(m) for unit inputs).
    """
    W, a = ExpNet.init(X.shape[1], m, seed=1, init="gaussian", activation=activation).weights_numpy()
    ZX, ZY = X @ W, Y @ W  # (n, m) pre-activations <w_r, x>
    if activation == "exp":
        value = slope = np.exp
    else:

        def value(Z: np.ndarray) -> np.ndarray:
            return np.maximum(Z, 0.0)

        def slope(Z: np.ndarray) -> np.ndarray:
            return (Z > 0).astype(float)

    def mean_and_error(FX: np.ndarray, FY: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, second = FX @ FY.T / m, (FX**2) @ (FY**2).T / m
        return mean, np.sqrt(np.maximum(second - mean**2, 0.0) / m)

    nngp = mean_and_error(value(ZX), value(ZY))
    ntk_mean, ntk_err = mean_and_error(slope(ZX) * a, slope(ZY) * a)
    G = X @ Y.T
    return {"nngp": nngp, "ntk": (G * ntk_mean, np.abs(G) * ntk_err)}


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_kernels_are_averages_over_a_wide_network(points, activation, monkeypatch):
    """NTKKernel and NNGPKernel, square and cross, blocked and not, with input_scale: within 6 standard errors of the features' mean."""
    X, Y = points
    monkeypatch.setattr(sklearn_kernels, "BLOCK", 3)  # several blocks and a short last one
    for scale in (1.0, 0.7):
        mc = _feature_averages(activation, scale * np.vstack([X, Y]), scale * np.vstack([X, Y]))
        for name, kernel in (
            ("ntk", NTKKernel(activation, input_scale=scale)),
            ("nngp", NNGPKernel(activation, input_scale=scale)),
        ):
            mean, err = mc[name]
            for K, rows, cols in (
                (kernel(X), slice(0, 11), slice(0, 11)),
                (kernel(X, Y), slice(0, 11), slice(11, 18)),
                (kernel(Y), slice(11, 18), slice(11, 18)),
            ):
                gap = np.abs(K - mean[rows, cols])
                assert (gap <= 6 * err[rows, cols] + 1e-12).all(), (
                    name,
                    scale,
                    float((gap / (err[rows, cols] + 1e-300)).max()),
                )
                assert np.median(err[rows, cols] / np.abs(mean[rows, cols]).clip(1e-3)) < 0.05  # the check has teeth


@pytest.mark.parametrize("kernel", ALL, ids=repr)
def test_diag_is_the_diagonal(points, kernel, monkeypatch):
    X, _ = points
    monkeypatch.setattr(sklearn_kernels, "BLOCK", 4)  # several blocks, a short last one
    np.testing.assert_allclose(kernel.diag(X), np.diag(kernel(X)), rtol=1e-14)


def _gauss_hermite_2d(n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (n^2, 2) and weights (n^2,) for E over w ~ N(0, I_2)."""
    t, w = np.polynomial.hermite_e.hermegauss(n)
    T1, T2 = np.meshgrid(t, t, indexing="ij")
    return np.column_stack([T1.ravel(), T2.ravel()]), np.outer(w, w).ravel() / (2 * np.pi)


def test_exp_kernels_are_expectations_over_the_initialisation():
    """Independent truth (docs/theory.md section 3): NNGP = E_w[e^<w,x> e^<w,x'>], NTK = <x,x'> times the same, in d = 2."""
    X = np.array([[0.6, 0.1], [-0.3, 0.5], [0.2, -0.7]])
    Y = np.array([[0.5, 0.5], [-0.1, -0.2]])
    nodes, weights = _gauss_hermite_2d()
    EX, EY = np.exp(nodes @ X.T), np.exp(nodes @ Y.T)  # (q, n)
    expected_nngp = (weights[:, None, None] * EX[:, :, None] * EY[:, None, :]).sum(axis=0)
    np.testing.assert_allclose(NNGPKernel("exp")(X, Y), expected_nngp, rtol=1e-12)
    np.testing.assert_allclose(NTKKernel("exp")(X, Y), (X @ Y.T) * expected_nngp, rtol=1e-12)


def test_relu_kernels_by_monte_carlo():
    """NNGP = E[relu(<w,x>) relu(<w,x'>)], NTK = <x,x'> P(<w,x> > 0, <w,x'> > 0), w ~ N(0, I_3)."""
    X = np.array([[0.6, 0.1, 0.0], [-0.3, 0.5, 0.2]])
    Y = np.array([[0.5, 0.5, -0.1], [-0.1, -0.2, 0.3], [0.6, 0.1, 0.0]])
    w = np.random.default_rng(1).normal(size=(400_000, 3))
    ZX, ZY = w @ X.T, w @ Y.T
    nngp_mc = np.maximum(ZX, 0).T @ np.maximum(ZY, 0) / len(w)
    ntk_mc = (X @ Y.T) * ((ZX > 0).astype(float).T @ (ZY > 0).astype(float)) / len(w)
    np.testing.assert_allclose(NNGPKernel("relu")(X, Y), nngp_mc, atol=3e-3)
    np.testing.assert_allclose(NTKKernel("relu")(X, Y), ntk_mc, atol=3e-3)


def test_nngp_cross_checks_shapes():
    with pytest.raises(ValueError, match="X2 has 2 features but the network expects d = 3"):
        kernels.nngp(np.ones((2, 3)), np.ones((2, 2)))


# ------------------------------------------------------------ the Kernel interface
@pytest.mark.parametrize("kernel", ALL, ids=repr)
def test_kernel_interface(points, kernel):
    X, Y = points
    K, grad = kernel(X, eval_gradient=True)
    assert grad.shape == (len(X), len(X), 0) and kernel.theta.shape == (0,)
    np.testing.assert_array_equal(K, kernel(X))
    with pytest.raises(ValueError, match="Gradient can only be evaluated when Y is None"):
        kernel(X, Y, eval_gradient=True)
    assert not kernel.is_stationary() and kernel.requires_vector_input
    assert clone(kernel) == kernel and clone(kernel) is not kernel
    assert kernel.get_params() == {"activation": kernel.activation, "input_scale": 1.0}
    assert kernel.hyperparameter_input_scale.fixed
    assert repr(kernel) == f"{type(kernel).__name__}(activation={kernel.activation!r}, input_scale=1.0)"


@pytest.mark.parametrize(
    "kernel, match",
    [
        (NTKKernel("tanh"), "activation='tanh' is not known"),
        (NNGPKernel(input_scale=0.0), "input_scale must be a positive finite number, got 0.0"),
        (NTKKernel(input_scale="big"), "input_scale must be a positive finite number"),
    ],
)
def test_bad_parameters(kernel, match):
    with pytest.raises(ValueError, match=match):
        kernel(np.eye(2))


def test_overflow_is_reported():
    with pytest.raises(OverflowError, match="unit ball"):
        NTKKernel()(np.full((2, 3), 20.0))


# ------------------------------------------------------------- GP and kernel ridge
@pytest.mark.parametrize("base", ALL, ids=repr)
@pytest.mark.filterwarnings(
    "ignore:The optimal value found:sklearn.exceptions.ConvergenceWarning"
)  # noise-free targets
def test_gaussian_process_fit(base):
    X, Xt = make_dataset(30, 3, seed=1)[0], make_dataset(8, 3, seed=2)[0]
    f = lambda Z: np.maximum(Z[:, 0], 0) + Z[:, 1]  # noqa: E731 - a target every kernel here can learn
    y = f(X)
    gp = GaussianProcessRegressor(ConstantKernel(1.0) * base + WhiteKernel(1e-2, (1e-10, 1.0)), random_state=0).fit(
        X, y
    )
    amp, noise = gp.kernel_.k1.k1.constant_value, gp.kernel_.k2.noise_level
    assert np.isfinite(gp.log_marginal_likelihood_value_) and amp > 1e-3 and noise < 1e-2
    # Posterior mean and standard deviation, written out with the fitted amplitude and noise.
    K = amp * base(X) + (noise + gp.alpha) * np.eye(len(X))  # alpha: the GP's jitter
    Ks = amp * base(Xt, X)
    cho = scipy.linalg.cho_factor(K)
    mean = Ks @ scipy.linalg.cho_solve(cho, y)
    var = amp * base.diag(Xt) + noise - np.einsum("ij,ji->i", Ks, scipy.linalg.cho_solve(cho, Ks.T))
    got_mean, got_std = gp.predict(Xt, return_std=True)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(got_std, np.sqrt(var), rtol=1e-6)
    # And it has learnt f: small error on new points, relative to the spread of f.
    assert np.sqrt(np.mean((got_mean - f(Xt)) ** 2)) < 0.2 * f(Xt).std()


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_kernel_ridge(activation):
    X, y = make_dataset(15, 4, seed=3)
    Xt, _ = make_dataset(5, 4, seed=4)
    model = KernelRidge(alpha=0.1, kernel=NTKKernel(activation)).fit(X, y)
    H = kernels.ntk(X, activation=activation)
    expected = kernels.ntk(Xt, X, activation=activation) @ np.linalg.solve(H + 0.1 * np.eye(len(X)), y)
    np.testing.assert_allclose(model.predict(Xt), expected, rtol=1e-10)
