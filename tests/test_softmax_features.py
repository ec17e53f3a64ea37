"""The softmax kernel and its positive random features (expreg.core.softmax_features, engine.feature_scan).

Independent truths: Gauss-Hermite quadrature of the Gaussian expectations (exact to
rounding in d = 2), the NNGP closed form of ``activations``, SciPy's softmax, Monte-Carlo
means with standard errors from the closed-form variance, and distribution tests of the
orthogonal rows (chi lengths, uniform directions, N(0, 1) coordinates).
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss
from scipy import special, stats

from expreg import kernels, streams
from expreg.core.errors import ExpOverflowError
from expreg.core.initialisation import init_weights
from expreg.core.softmax_features import (
    attention_errors,
    attention_rows,
    feature_weights,
    log_features,
    positive_features,
    softmax,
)
from expreg.engine.feature_scan import nested_softmax


def gauss_hermite_2d(nodes: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Nodes W (2, nodes^2) and weights (nodes^2,) with sum_j weight_j f(W_j) = E_{w ~ N(0, I_2)} f(w) for polynomials
    of degree < 2 nodes in each coordinate (and to rounding for exp of a linear form of moderate size)."""
    x, wt = hermegauss(nodes)
    wt = wt / np.sqrt(2 * np.pi)
    X1, X2 = np.meshgrid(x, x, indexing="ij")
    return np.stack([X1.ravel(), X2.ravel()]), np.outer(wt, wt).ravel()


def points(n: int, d: int, seed: int, scale: float = 0.8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True) * rng.uniform(0.1, scale, size=(n, 1))


def test_the_gaussian_identity_holds_to_rounding() -> None:
    # E[exp(<w,x>) exp(<w,y>)] = exp(||x+y||^2/2) = e^{<x,y>} e^{||x||^2/2} e^{||y||^2/2}, by quadrature
    W, wt = gauss_hermite_2d()
    X, Y = points(5, 2, seed=0, scale=1.5), points(4, 2, seed=1, scale=1.5)
    E = (np.exp(X @ W) * wt) @ np.exp(Y @ W).T
    closed = np.exp(0.5 * ((X[:, None, :] + Y[None, :, :]) ** 2).sum(-1))
    np.testing.assert_allclose(E, closed, rtol=1e-12)
    np.testing.assert_allclose(kernels.nngp(X, Y), closed, rtol=1e-13)  # the NNGP closed form of activations
    half = lambda Z: np.exp(0.5 * (Z * Z).sum(axis=1))  # noqa: E731
    np.testing.assert_allclose(softmax(X, Y) * half(X)[:, None] * half(Y)[None, :], closed, rtol=1e-13)


def test_positive_features_are_unbiased_by_quadrature() -> None:
    W, wt = gauss_hermite_2d()
    Q, K = points(6, 2, seed=2, scale=1.2), points(3, 2, seed=3, scale=1.2)
    E = (np.exp(log_features(Q, W)) * wt) @ np.exp(log_features(K, W)).T
    np.testing.assert_allclose(E, np.exp(Q @ K.T), rtol=1e-12)
    np.testing.assert_allclose(kernels.softmax(Q, K), np.exp(Q @ K.T), rtol=1e-15)  # re-exported from kernels
    # the feature map: Phi(X) = exp(X W - ||x||^2/2) / sqrt(m) for any W
    Wr = np.random.default_rng(0).standard_normal((2, 7))
    np.testing.assert_allclose(
        positive_features(Q, Wr), np.exp(Q @ Wr - 0.5 * (Q * Q).sum(1, keepdims=True)) / np.sqrt(7), rtol=1e-14
    )


def test_attention_rows_match_scipy_softmax() -> None:
    Q, K = points(5, 3, seed=4, scale=2.0), points(7, 3, seed=5, scale=2.0)
    np.testing.assert_allclose(attention_rows(softmax(Q, K)), special.softmax(Q @ K.T, axis=1), rtol=1e-13)


def test_attention_errors_against_plain_formulas() -> None:
    rng = np.random.default_rng(6)
    A = np.exp(rng.standard_normal((6, 4)))
    A_hat = A * np.exp(0.1 * rng.standard_normal((6, 4)))
    rel, tv = attention_errors(A_hat, A)
    assert rel == pytest.approx(np.linalg.svd(A_hat - A, compute_uv=False)[0] / np.linalg.svd(A, compute_uv=False)[0])
    P, P_hat = A / A.sum(1)[:, None], A_hat / A_hat.sum(1)[:, None]
    assert tv == pytest.approx(np.mean([0.5 * np.abs(P_hat[i] - P[i]).sum() for i in range(6)]))


@pytest.mark.parametrize("variant", ["iid", "orthogonal"])
def test_monte_carlo_mean_is_the_softmax_kernel(variant: str) -> None:
    # Mean over m = 2^16 features of phi(q) phi(k), against e^{<q,k>}, within 5 standard errors. The
    # features of a block of d are dependent (orthogonal), blocks independent: the standard error is that
    # of the block sums, estimated from them; for i.i.d. it is also checked against the closed form
    # Var phi(q) phi(k) = exp(2||q+k||^2 - ||q||^2 - ||k||^2) - e^{2<q,k>}.
    d, m = 8, 2**16
    Q, K = points(4, d, seed=7), points(3, d, seed=8)
    F_q, F_k = np.exp(log_features(Q, feature_weights(d, 0, m, seed=11, variant=variant))), None
    F_k = np.exp(log_features(K, feature_weights(d, 0, m, seed=11, variant=variant)))
    prods = F_q[:, None, :] * F_k[None, :, :]  # (4, 3, m)
    blocks = prods.reshape(4, 3, m // d, d).mean(axis=-1)
    se = blocks.std(axis=-1, ddof=1) / np.sqrt(m // d)
    truth = np.exp(Q @ K.T)
    assert np.all(np.abs(prods.mean(axis=-1) - truth) <= 5 * se)
    var = np.exp(2 * ((Q[:, None] + K[None]) ** 2).sum(-1) - (Q * Q).sum(1)[:, None] - (K * K).sum(1)[None]) - truth**2
    if variant == "iid":
        np.testing.assert_allclose(prods.var(axis=-1), var, rtol=0.15)  # the sample variance, heavy-tailed terms
    else:  # orthogonal rows lower the variance of the mean (FAVOR+): never far above the i.i.d. one
        assert np.all(se <= 1.2 * np.sqrt(var / m))


def test_orthogonal_blocks_are_orthogonal_with_chi_lengths_and_uniform_directions() -> None:
    d, m = 6, 6 * 3000
    W = feature_weights(d, 0, m, seed=3, variant="orthogonal")
    B = W.reshape(d, m // d, d).transpose(1, 0, 2)  # (blocks, d, d): columns of each block
    G = np.einsum("bij,bik->bjk", B, B)
    off = G - np.einsum("bjj->bj", G)[:, :, None] * np.eye(d)
    assert np.abs(off).max() < 1e-12 * np.abs(G).max()
    lengths = np.linalg.norm(W, axis=0)
    assert stats.kstest(lengths, stats.chi(d).cdf).pvalue > 1e-3
    u = W[0] / lengths  # first coordinate of a uniform direction: (u + 1)/2 ~ Beta((d-1)/2, (d-1)/2)
    assert stats.kstest((u + 1) / 2, stats.beta((d - 1) / 2, (d - 1) / 2).cdf).pvalue > 1e-3
    assert stats.kstest(W[2], stats.norm.cdf).pvalue > 1e-3  # each coordinate N(0, 1)
    # the lengths of block-mates are independent of each other (not the block's own row norms)
    assert abs(np.corrcoef(lengths[0::d], lengths[1::d])[0, 1]) < 5 / np.sqrt(m // d)


@pytest.mark.parametrize("variant", ["iid", "orthogonal"])
def test_features_are_nested_and_any_slice_is_drawn_alone(variant: str) -> None:
    d = 5  # orthogonal chunks of 5 * 819 = 4095 features: slices straddle chunks and blocks
    full = feature_weights(d, 0, 10_000, seed=4, variant=variant)
    np.testing.assert_array_equal(feature_weights(d, 3003, 8191, seed=4, variant=variant), full[:, 3003:8191])
    np.testing.assert_array_equal(feature_weights(d, 0, 17, seed=4, variant=variant), full[:, :17])
    assert feature_weights(d, 5, 5, seed=4, variant=variant).shape == (5, 0)


def test_feature_streams_are_their_own() -> None:
    d, m = 16, 4096
    iid = feature_weights(d, 0, m, seed=0)
    orth = feature_weights(d, 0, m, seed=0, variant="orthogonal")
    net, _ = init_weights(d, 0, m, seed=0, init="gaussian")
    tokens = streams.generator(0, streams.TOKENS, 0).standard_normal((m, d)).T
    draws = [iid.ravel(), orth.ravel(), net.ravel(), tokens.ravel()]
    corr = np.corrcoef(np.stack(draws))
    assert np.abs(corr[~np.eye(4, dtype=bool)]).max() < 5 / np.sqrt(d * m)


@pytest.mark.parametrize("variant", ["iid", "orthogonal"])
def test_nested_scan_matches_a_direct_product_at_every_width(variant: str) -> None:
    Q, K = points(9, 4, seed=9, scale=1.0), points(6, 4, seed=10, scale=1.0)
    widths = [1, 3, 10, 37, 600, 5000]  # across draw chunks, blocks and the 4096-feature chunk
    seen = []
    for m, A_hat in nested_softmax(Q, K, widths, seed=2, variant=variant, block=64):
        W = feature_weights(4, 0, m, seed=2, variant=variant)
        np.testing.assert_allclose(A_hat, positive_features(Q, W) @ positive_features(K, W).T, rtol=1e-12)
        seen.append(m)
    assert seen == widths
    # self-attention (the same array as Q and K) computes the features once: same estimate
    a = dict(nested_softmax(Q, Q, [50, 80], seed=1, variant=variant))
    b = dict(nested_softmax(Q, Q.copy(), [50, 80], seed=1, variant=variant))
    np.testing.assert_allclose(a[80], b[80], rtol=1e-14)


def test_bad_inputs_are_refused_with_a_reason() -> None:
    Q = points(3, 2, seed=0)
    with pytest.raises(ValueError, match="NaN"):
        softmax(np.array([[np.nan, 0.0]]), Q)
    with pytest.raises(ValueError, match=r"columns|d ="):
        softmax(Q, points(3, 4, seed=1))
    with pytest.raises(ExpOverflowError, match="temperature"):
        softmax(np.array([[30.0, 0.0]]), np.array([[30.0, 0.0]]))
    with pytest.raises(ValueError, match="variant"):
        feature_weights(2, 0, 4, seed=0, variant="sobol")
    with pytest.raises(ValueError, match="seed"):
        feature_weights(2, 0, 4, seed=-1)
    with pytest.raises(ValueError, match="lo"):
        feature_weights(2, 4, 1, seed=0)
    with pytest.raises(ValueError, match="increasing"):
        list(nested_softmax(Q, Q, [4, 2], seed=0))
    # exp(<w,x> - ||x||^2/2) cannot overflow float64 unless ||w|| > 37 (never, in practice): large norms
    # underflow instead, and the estimate is then 0, which the errors report as a failed width (not a crash)
    ((_, A_hat),) = nested_softmax(np.array([[60.0, 0.0]]), np.array([[60.0, 0.0]]), [64], seed=0)
    assert np.isfinite(A_hat).all()
    A_zero = np.zeros((2, 2))
    A_zero[1] = 1.0
    assert attention_errors(A_zero, np.ones((2, 2)))[1] == pytest.approx(0.5)  # the empty row counts as TV 1
