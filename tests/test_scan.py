"""The nested-width scan (expreg.scan) against two independent implementations.

- ``kernels.empirical_ntk`` of ``ExpNet.init(d, m, seed=...)`` at every grid
  width (a network drawn afresh at each width, the kernel in one blocked call);
- the plain float64 formula (X X^T) o (D D^T) / m with D = sigma'(X W) computed
  densely here from ``init_weights`` (no blocking, no BLAS rank updates);
- the infinite-width limit: H^dis at a large width against the closed form.
"""

from __future__ import annotations

import numpy as np
import pytest

from expreg import ExpNet, ExpOverflowError, kernels, scan
from expreg.core.initialisation import CHUNK, init_weights


def points_in_ball(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True) * rng.uniform(0.3, 1.0, size=(n, 1))


def dense_hdis(X: np.ndarray, m: int, seed: int, activation: str, init: str) -> np.ndarray:
    """H^dis_m in float64 from the whole (d, m) weight matrix at once."""
    W, _ = init_weights(X.shape[1], 0, m, seed=seed, init=init)
    Z = X @ W
    D = np.exp(Z) if activation == "exp" else (Z > 0).astype(float)
    return (X @ X.T) * (D @ D.T) / m


@pytest.mark.parametrize("activation", ["exp", "relu"])
@pytest.mark.parametrize("init", ["coupled", "gaussian"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_width_matches_a_freshly_drawn_network(activation: str, init: str, dtype: type) -> None:
    X = points_in_ball(7, 3, seed=1)
    widths = [2, 6, 10, 24, 50, 118]  # even (ExpNet.init with coupled needs it); most not multiples of the block
    seen = []
    for m, H in scan.nested_gram(X, widths, seed=5, activation=activation, init=init, dtype=dtype, block=4):
        seen.append(m)
        net = ExpNet.init(3, m, seed=5, activation=activation, init=init, dtype=dtype)
        ref = kernels.empirical_ntk(net, X, average=True)
        truth = dense_hdis(X, m, 5, activation, init)
        assert H.dtype == np.float64 and H.shape == (7, 7)
        np.testing.assert_array_equal(H, H.T)
        tol = 1e-12 if dtype == np.float64 else 2e-6
        scale = np.abs(truth).max()
        np.testing.assert_allclose(H, ref, rtol=0, atol=tol * scale)
        np.testing.assert_allclose(H, truth, rtol=0, atol=tol * scale)
    assert seen == widths


@pytest.mark.parametrize("block", [1, 3, 64, None])
def test_block_size_does_not_change_the_kernel(block: int | None) -> None:
    X = points_in_ball(5, 2, seed=2)
    got = dict(scan.nested_gram(X, [1, 7, 33, 100], seed=3, init="gaussian", block=block))
    for m in (1, 7, 33, 100):
        np.testing.assert_allclose(got[m], dense_hdis(X, m, 3, "exp", "gaussian"), rtol=1e-12)


def test_widths_across_weight_draws_and_odd_coupled_widths() -> None:
    """Widths beyond one draw of ``initialisation.CHUNK`` neurons, with odd coupled widths (half a pair)."""
    X = points_in_ball(4, 2, seed=3)
    widths = [3, CHUNK - 1, CHUNK + 5, 2 * CHUNK + 777]
    for m, H in scan.nested_gram(X, widths, seed=11, activation="relu", block=1000):
        np.testing.assert_allclose(H, dense_hdis(X, m, 11, "relu", "coupled"), rtol=1e-12, atol=1e-15)


def test_yielded_matrices_are_independent_copies() -> None:
    X = points_in_ball(4, 2, seed=4)
    it = scan.nested_gram(X, [4, 8], seed=0)
    _, H4 = next(it)
    H4[...] = np.nan
    _, H8 = next(it)
    np.testing.assert_allclose(H8, dense_hdis(X, 8, 0, "exp", "coupled"), rtol=1e-12)


def test_large_width_approaches_the_closed_form() -> None:
    X = points_in_ball(5, 3, seed=6) * 0.5
    ((_, H),) = scan.nested_gram(X, [2**16], seed=1, init="gaussian")
    # exp(<w, x>) with ||x|| <= 0.5: each entry is a mean of 65536 terms of bounded variance
    np.testing.assert_allclose(H, kernels.ntk(X), rtol=0, atol=0.03 * np.abs(kernels.ntk(X)).max())


def test_torch_backend_agrees_with_numpy() -> None:
    pytest.importorskip("torch")  # torch is a test dependency: the suite's other torch tests fail without it
    X = points_in_ball(6, 3, seed=7)
    for (m1, H1), (m2, H2) in zip(
        scan.nested_gram(X, [10, 30], seed=2, block=7),
        scan.nested_gram(X, [10, 30], seed=2, block=7, backend="torch"),
        strict=True,
    ):
        assert m1 == m2
        np.testing.assert_allclose(H2, H1, rtol=1e-12)


@pytest.mark.parametrize("widths", [[], [4, 2], [2, 2], [0, 3], [1.5, 3]])
def test_bad_widths_are_refused(widths: list) -> None:
    with pytest.raises((ValueError, TypeError), match="widths"):
        scan.nested_gram(np.eye(2), widths, seed=0)


def test_bad_arguments_are_refused_before_any_work() -> None:
    with pytest.raises(ValueError, match="NaN or inf"):
        scan.nested_gram(np.array([[np.nan, 0.0]]), [2], seed=0)
    with pytest.raises(ValueError, match="init"):
        scan.nested_gram(np.eye(2), [2], seed=0, init="uniform")
    with pytest.raises(ValueError, match="activation"):
        scan.nested_gram(np.eye(2), [2], seed=0, activation="tanh")
    with pytest.raises(ValueError, match="seed"):
        scan.nested_gram(np.eye(2), [2], seed=-1)
    with pytest.raises(TypeError, match="dtype"):
        scan.nested_gram(np.eye(2), [2], seed=0, dtype=np.int32)


def test_overflow_is_an_error() -> None:
    with pytest.raises(ExpOverflowError):
        list(scan.nested_gram(np.array([[3000.0, 3000.0], [-3000.0, -3000.0]]), [2, 4], seed=0))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_on_device_kernels_and_criteria_match_the_host_ones(dtype: type) -> None:
    """nested_gram(on_device=True) on torch yields backend arrays equal to the dense formula, and
    eigen.lazy_criteria(backend=...) computes the host's two numbers from them (torch's eigvalsh)."""
    torch = pytest.importorskip("torch")
    from expreg import eigen
    from expreg.core.backends import get_backend

    tb = get_backend("torch", "cuda" if torch.cuda.is_available() else "cpu")
    X = points_in_ball(12, 3, seed=4)
    H_cts = kernels.ntk(X)
    lam = eigen.lambda_min(H_cts)
    H_ref = tb.asarray(H_cts, np.dtype(np.float64))
    widths = [4, 16, 64, 256]
    device = scan.nested_gram(X, widths, seed=2, dtype=dtype, backend=tb, on_device=True)
    host = scan.nested_gram(X, widths, seed=2, dtype=dtype)
    tol = 1e-12 if dtype == np.float64 else 2e-6
    for (m, Hd), (m_host, Hh) in zip(device, host, strict=True):
        assert m == m_host and isinstance(Hd, torch.Tensor) and Hd.dtype == torch.float64
        truth = dense_hdis(X, m, 2, "exp", "coupled")
        np.testing.assert_allclose(tb.to_numpy(Hd), truth, rtol=0, atol=tol * np.abs(truth).max())
        on_device = eigen.lazy_criteria(Hd, H_ref, lam, backend=tb)
        spectrum = np.linalg.eigvalsh(truth - H_cts)  # the criteria from the dense float64 truth
        expected = (np.abs(spectrum).max(), np.linalg.eigvalsh(truth)[0])
        np.testing.assert_allclose(on_device, expected, rtol=0, atol=10 * tol * np.abs(truth).max())
        on_host = eigen.lazy_criteria(Hh, H_cts, lam, method="dense")  # float32: the two sums round differently
        np.testing.assert_allclose(on_device, on_host, rtol=0, atol=10 * tol * np.abs(truth).max())
    with pytest.raises(ValueError, match="same points"):
        eigen.lazy_criteria(Hd, H_ref[:5, :5], lam, backend=tb)
