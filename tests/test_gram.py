"""The Gram engine (core/gram.py) against independent truth: the dense formula of docs/theory.md section 3.

H(W) = s^2 (X X^T) o (D diag(a^2) D^T), D = sigma'(X W), written out in float64
NumPy here; each strategy (PartsSum, SyrkSum, BackendSum) and every thread
count must give it to rounding, the thread count never changing a bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_ops import problem

from expreg.core import gram, ops
from expreg.core.activations import EXP, RELU
from expreg.core.backends import Backend, NumpyBackend, get_backend


def test_gram_matches_dense_kernel() -> None:
    X, W, _, _ = problem(seed=12)
    s = 0.2
    H = gram.gram(get_backend("numpy"), EXP, X, W, s, block=30)
    D = np.exp(X @ W)
    np.testing.assert_allclose(H, s * s * (X @ X.T) * (D @ D.T), rtol=1e-12)


# --------------------------------------------------- the Gram accumulator (syrk; features by row panels)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [5, 300, 1100])  # 1, 2 and 8 row panels
def test_gram_panels_match_the_dense_formula_with_general_output_weights(dtype: type, n: int) -> None:
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, 3))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    W = rng.standard_normal((3, 150))
    a = rng.uniform(-2.0, 2.0, 150)  # not +-1: the general form (E diag(a^2) E^T)
    D = np.exp(X @ W)
    truth = 0.3**2 * (X @ X.T) * ((D * a**2) @ D.T)
    be = get_backend("numpy")
    H = gram.gram(be, EXP, X.astype(dtype), W.astype(dtype), 0.3, a=a.astype(dtype), block=64)
    assert H.dtype == np.float64
    np.testing.assert_array_equal(H, H.T)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(H, truth, rtol=0, atol=tol * np.abs(truth).max())


def test_gram_does_not_depend_on_the_thread_count() -> None:
    from expreg.core.backends import NumpyBackend

    rng = np.random.default_rng(0)
    X, W = rng.standard_normal((900, 4)) * 0.4, rng.standard_normal((4, 500))
    H1 = gram.gram(NumpyBackend(threads=1), RELU, X, W, 1.0, block=96)
    H3 = gram.gram(NumpyBackend(threads=3), RELU, X, W, 1.0, block=96)
    np.testing.assert_array_equal(H1, H3)
    D = (X @ W > 0).astype(float)
    np.testing.assert_allclose(H1, (X @ X.T) * (D @ D.T), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gram_in_parts_matches_the_dense_formula_for_every_thread_count(
    dtype: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small n: the neurons of each add go to PARTS_GRAM_PARTS fixed parts (one thread each), summed in order;
    the result is the dense formula, bit-identical for 1, 2 and 3 threads, and the syrk path's to rounding."""

    rng = np.random.default_rng(7)
    X, W = (rng.standard_normal((60, 3)) * 0.4).astype(dtype), rng.standard_normal((3, 203)).astype(dtype)
    D = np.exp(X.astype(np.float64) @ W.astype(np.float64))
    truth = (X.astype(np.float64) @ X.T.astype(np.float64)) * (D @ D.T)
    acc = gram.GramAccumulator(NumpyBackend(threads=2), EXP, X, block=16)
    assert acc.parts == gram.PARTS_GRAM_PARTS > 1
    for lo, hi in ((0, 3), (3, 70), (70, 203)):  # uneven adds, as the nested scan makes them
        acc.add(W[:, lo:hi])
    in_parts = acc.kernel(1.0)
    tol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(in_parts, truth, rtol=0, atol=tol * np.abs(truth).max())
    for threads in (1, 3):
        again = gram.GramAccumulator(NumpyBackend(threads=threads), EXP, X, block=16)
        for lo, hi in ((0, 3), (3, 70), (70, 203)):
            again.add(W[:, lo:hi])
        np.testing.assert_array_equal(again.kernel(1.0), in_parts)
    monkeypatch.setattr(gram, "PARTS_GRAM_MAX_N", 0)  # the syrk path
    syrk = gram.GramAccumulator(NumpyBackend(threads=2), EXP, X, block=16)
    assert syrk.parts == 1
    syrk.add(W)
    np.testing.assert_allclose(syrk.kernel(1.0), in_parts, rtol=0, atol=tol * np.abs(truth).max())


def test_gram_on_torch_matches_numpy() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    X, W = rng.standard_normal((40, 3)) * 0.5, rng.standard_normal((3, 70))
    tb = get_backend("torch")
    Ht = gram.gram(tb, EXP, torch.as_tensor(X), torch.as_tensor(W), 0.5, block=16)
    assert isinstance(Ht, np.ndarray) and Ht.dtype == np.float64
    np.testing.assert_array_equal(Ht, Ht.T)  # assembled from one triangle on the device: exactly symmetric
    D = np.exp(X @ W)
    np.testing.assert_allclose(Ht, 0.25 * (X @ X.T) * (D @ D.T), rtol=1e-12)  # the dense formula
    X32, W32 = X.astype(np.float32), W.astype(np.float32)
    H32 = gram.gram(tb, EXP, torch.as_tensor(X32), torch.as_tensor(W32), 0.5, block=16)
    np.testing.assert_array_equal(H32, H32.T)
    ref = 0.25 * (X @ X.T) * (D @ D.T)
    np.testing.assert_allclose(H32, ref, rtol=2e-5, atol=1e-6 * np.abs(ref).max())  # float32 accumulation


def test_gram_reuses_its_buffers_and_a_closed_accumulator_refuses_neurons() -> None:
    """Two accumulators of one size, one after the other, share the block buffer and the sums (no fresh pages),
    zeroed, and agree with the dense formula; two open at once never share; a closed one refuses to be read."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((24, 3)) / 3
    W = rng.standard_normal((3, 50))
    be = get_backend("numpy")
    dense = (X @ X.T) * (np.exp(X @ W) @ np.exp(X @ W).T)
    acc = gram.GramAccumulator(be, EXP, X, block=16)
    acc.add(W)
    buf, state = acc._buf, acc.S
    np.testing.assert_allclose(acc.kernel(1.0), dense, rtol=1e-12)
    acc.close()
    with pytest.raises(RuntimeError, match="closed"):
        acc.add(W)
    with pytest.raises(RuntimeError, match="closed"):
        acc.kernel(1.0)  # its sums went back: reading them now could see the next accumulator's
    again = gram.GramAccumulator(be, EXP, X, block=16)
    assert again._buf is buf and again.S is state  # the same buffers, the sums zeroed
    again.add(W[:, :20])
    again.add(W[:, 20:])
    np.testing.assert_allclose(again.kernel(1.0), dense, rtol=1e-12)
    other = gram.GramAccumulator(be, EXP, X, block=16)  # while `again` is open: its own buffers
    assert other.S is not again.S and other._buf is not again._buf
    again.close()
    other.close()


def test_release_workspaces_drops_the_kept_gram_sums_too() -> None:
    """What ``close`` gives back (block buffer and, for small n, the parts' sums) is freed by release_workspaces."""
    X = np.random.default_rng(6).standard_normal((24, 3)) / 3
    acc = gram.GramAccumulator(get_backend("numpy"), EXP, X, block=16)
    state = acc.S
    acc.close()
    ops.release_workspaces()
    again = gram.GramAccumulator(get_backend("numpy"), EXP, X, block=16)
    assert again.S is not state
    again.close()


def test_gram_block_fills_the_backends_bytes_within_its_bounds() -> None:
    """block = clip(bytes // (n itemsize) rounded down to 8, GRAM_MIN_BLOCK, gram_block_max) from the backend's data."""
    be = NumpyBackend(threads=1)
    assert gram.gram_block(512, 8, be) == 16 * 2**20 // (512 * 8) // 8 * 8 == 4096  # 4096 exactly: the cap
    assert gram.gram_block(32, 4, be) == 4096  # the cap
    assert gram.gram_block(10**6, 8, be) == gram.GRAM_MIN_BLOCK  # the floor

    class Device(Backend):
        gram_block_bytes, gram_block_max = 256 * 2**20, None

    assert gram.gram_block(32, 4, Device()) == 256 * 2**20 // 128  # no cap on a device


def test_the_strategy_follows_the_backends_data() -> None:
    be = NumpyBackend(threads=1)
    small, large = (
        gram.sum_for(be, gram.PARTS_GRAM_MAX_N, np.dtype(np.float64)),
        gram.sum_for(be, 600, np.dtype(np.float64)),
    )
    assert isinstance(small, gram.PartsSum) and isinstance(large, gram.SyrkSum)
    small.release()

    class Elsewhere(NumpyBackend):
        host_blas = False

    assert isinstance(gram.sum_for(Elsewhere(threads=1), 8, np.dtype(np.float64)), gram.BackendSum)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_last_read_of_a_syrk_sum_is_the_kernel_and_closes_the_accumulator(dtype: type) -> None:
    """A scan reads the kernel between additions (S intact); the last read (``gram``) may turn a float64 S into H
    in place, no n^2 copy: both equal the dense formula, and the spent accumulator refuses more neurons."""
    n = gram.PARTS_GRAM_MAX_N + 8  # SyrkSum
    rng = np.random.default_rng(9)
    X = rng.standard_normal((n, 3)) / 3
    W = rng.standard_normal((3, 40))
    D = np.exp(X @ W)
    dense = lambda k: (X @ X.T) * (D[:, :k] @ D[:, :k].T)  # noqa: E731
    tol = 1e-12 if dtype == np.float64 else 1e-5
    acc = gram.GramAccumulator(get_backend("numpy"), EXP, X.astype(dtype), block=16)
    assert isinstance(acc.S, gram.SyrkSum)
    acc.add(W[:, :24].astype(dtype))
    np.testing.assert_allclose(acc.kernel(1.0), dense(24), rtol=0, atol=tol * np.abs(dense(24)).max())
    acc.add(W[:, 24:].astype(dtype))  # the read above left S as it was
    S = acc.S.S
    H = acc.kernel(1.0, last=True)
    np.testing.assert_array_equal(H, H.T)
    np.testing.assert_allclose(H, dense(40), rtol=0, atol=tol * np.abs(dense(40)).max())
    assert np.shares_memory(H, S) == (dtype == np.float64)  # float64: S became H; float32: a float64 copy
    with pytest.raises(RuntimeError, match="closed"):
        acc.add(W)
