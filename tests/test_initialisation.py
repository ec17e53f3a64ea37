"""Initial weights (docs/theory.md section 1): w_r(0) ~ N(0, I_d), a_r uniform on {-1, +1}, chunked RNG."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from expreg import ExpNet
from expreg.core.initialisation import CHUNK, init_weights


@pytest.mark.parametrize("init", ["coupled", "gaussian"])
def test_same_seed_gives_bit_identical_weights(init: str) -> None:
    a = ExpNet.init(4, 1000, seed=11, init=init)
    b = ExpNet.init(4, 1000, seed=11, init=init)
    assert np.array_equal(a.W, b.W) and np.array_equal(a.a, b.a)
    c = ExpNet.init(4, 1000, seed=12, init=init)
    assert not np.array_equal(a.W, c.W)


@pytest.mark.parametrize("init", ["coupled", "gaussian"])
@pytest.mark.parametrize("m_small", [2, 10, CHUNK, CHUNK + 2, 5000])
def test_first_neurons_of_a_wide_net_are_the_narrow_net(init: str, m_small: int) -> None:
    wide = ExpNet.init(3, 2 * CHUNK + 6, seed=7, init=init)
    narrow = ExpNet.init(3, m_small, seed=7, init=init)
    assert np.array_equal(wide.W[:, :m_small], narrow.W)
    assert np.array_equal(wide.a[:m_small], narrow.a)


def test_any_slice_of_neurons_is_drawn_alone() -> None:
    W, a = init_weights(3, 0, 3 * CHUNK, seed=2, init="gaussian")
    for lo, hi in [(0, 1), (5, 17), (CHUNK - 3, CHUNK + 3), (CHUNK, 2 * CHUNK + 1), (3 * CHUNK - 1, 3 * CHUNK)]:
        Ws, as_ = init_weights(3, lo, hi, seed=2, init="gaussian")
        assert np.array_equal(Ws, W[:, lo:hi]) and np.array_equal(as_, a[lo:hi])
    W0, a0 = init_weights(3, 4, 4, seed=2)
    assert W0.shape == (3, 0) and a0.shape == (0,)


@pytest.mark.parametrize("init", ["coupled", "gaussian"])
def test_float32_weights_are_the_float64_weights_rounded(init: str) -> None:
    n64 = ExpNet.init(5, 300, seed=3, init=init)
    n32 = ExpNet.init(5, 300, seed=3, init=init, dtype=np.float32)
    assert n32.W.dtype == np.float32 and n32.a.dtype == np.float32
    assert np.array_equal(n32.W, n64.W.astype(np.float32))
    assert np.array_equal(n32.a, n64.a.astype(np.float32))


def test_coupled_pairs_share_w_and_have_opposite_signs() -> None:
    net = ExpNet.init(4, 2 * CHUNK + 10, seed=1)
    W, a = net.weights_numpy()
    assert np.array_equal(W[:, 0::2], W[:, 1::2])
    assert np.array_equal(a[0::2], -a[1::2])
    assert set(np.unique(a)) == {-1.0, 1.0}


def test_gaussian_neurons_are_not_paired() -> None:
    W, a = ExpNet.init(4, 64, seed=1, init="gaussian").weights_numpy()
    assert not np.array_equal(W[:, 0::2], W[:, 1::2])
    assert np.any(a[0::2] == a[1::2])


@pytest.mark.parametrize("init", ["coupled", "gaussian"])
def test_weights_are_standard_normal_and_signs_fair(init: str) -> None:
    # Distributional truth: N(0, 1) entries (Kolmogorov-Smirnov), E a = 0, a in {-1, +1}.
    W, a = ExpNet.init(3, 4 * CHUNK, seed=0, init=init).weights_numpy()
    w = W[:, 0::2].ravel() if init == "coupled" else W.ravel()  # independent draws only
    assert scipy.stats.kstest(w, "norm").pvalue > 1e-3
    # rows (coordinates) uncorrelated: sample covariance close to I
    C = np.cov(W[:, 0::2] if init == "coupled" else W)
    assert np.abs(C - np.eye(3)).max() < 5 / np.sqrt(w.size / 3)
    signs = a[0::2] if init == "coupled" else a
    assert abs(signs.mean()) < 5 / np.sqrt(signs.size)


def test_unknown_init_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"init='uniform' is not known"):
        init_weights(3, 0, 4, seed=0, init="uniform")
