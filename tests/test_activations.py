"""An activation owns its maths: adding one is one object plus these tests.

The activation sigma(z) = exp(z / 2) is defined here only, with its closed
forms derived as for exp (E_w exp(<w, v>) = exp(||v||^2 / 2), w ~ N(0, I)):

    K_ij     = E_w exp(<w, x_i>/2) exp(<w, x_j>/2) = exp(||x_i + x_j||^2 / 8)
    H^cts_ij = <x_i, x_j> E_w sigma'(<w,x_i>) sigma'(<w,x_j>) = <x_i, x_j> exp(||x_i + x_j||^2 / 8) / 4

It is registered for the duration of each test, and then every part of the
library (network, empirical and closed-form kernels, scikit-learn kernels and
estimator) works with it, checked against independent truth: NumPy
re-implementations, finite differences and Monte-Carlo averages at finite
width. No other module is edited to add it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pytest

from expreg import kernels
from expreg.core.activations import ACTIVATIONS, EXP, RELU, Activation, get_activation
from expreg.core.backends import Array, Backend
from expreg.core.data import sphere
from expreg.core.model import ExpNet
from expreg.sklearn.estimator import ExpRegressor
from expreg.sklearn.kernels import NNGPKernel, NTKKernel


def _half_exp_(be: Backend, Z: Array) -> Array:
    Z *= 0.5
    return be.exp_(Z)


def _sq_sum(A: np.ndarray, B: np.ndarray, G: np.ndarray) -> np.ndarray:
    return (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] + 2 * G  # ||a_i + b_j||^2


EXP_HALF = Activation(
    "exp_half",
    value_=_half_exp_,
    derivative_from_value=lambda be, E: E * 0.5,
    ntk=lambda A, B, G: G * np.exp(_sq_sum(A, B, G) / 8) / 4,
    nngp=lambda A, B, G: np.exp(_sq_sum(A, B, G) / 8),
)

#: sigma and sigma' in plain NumPy, the independent truth for each activation.
NUMPY_SIGMA = {
    "exp": (np.exp, np.exp),
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(float)),
    "exp_half": (lambda z: np.exp(z / 2), lambda z: np.exp(z / 2) / 2),
}


@pytest.fixture(autouse=True)
def exp_half() -> Iterator[Activation]:
    ACTIVATIONS.register(EXP_HALF.name, EXP_HALF)
    try:
        yield EXP_HALF
    finally:
        ACTIVATIONS.unregister(EXP_HALF.name)


ALL = ["exp", "relu", "exp_half"]


def test_registered_activations_are_found_by_name() -> None:
    assert get_activation("exp") is EXP and get_activation("relu") is RELU and get_activation("exp_half") is EXP_HALF
    assert get_activation(EXP_HALF) is EXP_HALF
    assert ACTIVATIONS.names() == ("exp", "relu", "exp_half")
    assert EXP.theorem and not RELU.theorem and not EXP_HALF.theorem


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("scaling", ["none", "ntk"])
def test_network_value_and_gradient_use_the_activation(name: str, scaling: str) -> None:
    sigma, dsigma = NUMPY_SIGMA[name]
    X = 0.7 * sphere(5, 3, seed=1)
    y = np.linspace(-0.5, 0.5, 5)
    net = ExpNet.init(3, 12, seed=2, activation=name, scaling=scaling, init="gaussian", block=4)
    W, a = net.weights_numpy()
    u = net.s * sigma(X @ W) @ a
    np.testing.assert_allclose(net.predict(X), u, rtol=1e-13, atol=1e-15)
    grad = X.T @ ((u - y)[:, None] * dsigma(X @ W)) * (net.s * a)[None, :]  # dL/dW (d, m)
    np.testing.assert_allclose(net.gradient(X, y), grad, rtol=1e-12, atol=1e-14)
    if name != "relu":  # smooth: finite differences of the loss agree too
        E = np.zeros_like(W)
        E[1, 3] = 1e-6
        fd = (net.with_weights(W + E).loss(X, y) - net.with_weights(W - E).loss(X, y)) / 2e-6
        assert abs(fd - grad[1, 3]) <= 1e-7 * max(1.0, abs(grad[1, 3]))


@pytest.mark.parametrize("name", ALL)
def test_closed_form_ntk_is_the_mean_of_the_finite_width_kernel(name: str) -> None:
    # Mean of H^dis over 16 independent networks vs the activation's closed form, within 5 standard errors.
    X = 0.8 * sphere(5, 4, seed=3)
    samples = np.stack(
        [
            kernels.empirical_ntk(ExpNet.init(4, 4096, seed=s, activation=name, init="gaussian"), X, average=True)
            for s in range(16)
        ]
    )
    mean, se = samples.mean(0), samples.std(0, ddof=1) / np.sqrt(len(samples))
    assert np.all(np.abs(mean - kernels.ntk(X, activation=name)) <= 5 * se + 1e-12)


@pytest.mark.parametrize("name", ALL)
def test_closed_form_nngp_is_the_monte_carlo_mean_of_sigma_sigma(name: str) -> None:
    # K_ij = E_w sigma(<w,x_i>) sigma(<w,x_j>), averaged over the neurons of wide networks, within 5 standard errors.
    sigma, _ = NUMPY_SIGMA[name]
    X = 0.8 * sphere(4, 3, seed=4)
    W = np.concatenate(
        [ExpNet.init(3, 50_000, seed=s, activation=name, init="gaussian").weights_numpy()[0] for s in range(2)], axis=1
    )
    S = sigma(X @ W)  # (n, m)
    prods = S[:, None, :] * S[None, :, :]
    mean, se = prods.mean(-1), prods.std(-1, ddof=1) / np.sqrt(W.shape[1])
    assert np.all(np.abs(mean - kernels.nngp(X, activation=name)) <= 5 * se + 1e-12)


def test_kernels_between_row_sets_agree_with_the_square_ones() -> None:
    X = 0.6 * sphere(7, 3, seed=5)
    H, K = kernels.ntk(X, activation=EXP_HALF), kernels.nngp(X, activation=EXP_HALF)
    np.testing.assert_allclose(kernels.ntk(X[:3], X[3:], activation="exp_half"), H[:3, 3:], rtol=1e-14)
    np.testing.assert_allclose(kernels.nngp(X[:3], X[3:], activation="exp_half"), K[:3, 3:], rtol=1e-14)
    assert kernels.ntk_lambda(X, "exp_half") == pytest.approx(np.linalg.eigvalsh(H).min(), rel=1e-10)


def test_scikit_learn_kernels_and_estimator_take_the_new_activation() -> None:
    X = 0.6 * sphere(8, 3, seed=6)
    y = X[:, 0] - X[:, 1]
    np.testing.assert_allclose(NTKKernel("exp_half")(X), kernels.ntk(X, activation="exp_half"), rtol=1e-14)
    np.testing.assert_allclose(NNGPKernel("exp_half").diag(X), np.exp(np.sum((2 * X) ** 2, axis=1) / 8), rtol=1e-14)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ExpRegressor(width=512, activation="exp_half", max_steps=3000, epsilon=1e-2, random_state=0).fit(X, y)
    assert model.net_.act is EXP_HALF
    assert np.linalg.norm(model.predict(X) - y) < 0.1 * np.linalg.norm(y)
