"""ExpNet (docs/theory.md sections 1-2): predictions, loss and gradient against independent truth.

Truth used here: a direct NumPy evaluation of F(W, x) = s sum_r a_r sigma(<w_r, x>)
written from docs/theory.md (not through expreg.core.ops), and central finite differences
of the loss in float64.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from expreg import ExpNet, ExpOverflowError, InputOutsideUnitBallWarning

ACTIVATIONS = ("exp", "relu")
SCALINGS = ("none", "ntk")
INITS = ("coupled", "gaussian")


def ball_points(n: int, d: int, seed: int, radius: float = 0.8) -> np.ndarray:
    """n points with norms uniform in [0.3, radius] (inside the unit ball)."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, d))
    return Z / np.linalg.norm(Z, axis=1, keepdims=True) * rng.uniform(0.3, radius, size=(n, 1))


def direct_predict(W: np.ndarray, a: np.ndarray, X: np.ndarray, activation: str, scaling: str) -> np.ndarray:
    """F(W, x_i) straight from docs/theory.md section 1, no blocking."""
    Z = X @ W
    sig = np.exp(Z) if activation == "exp" else np.maximum(Z, 0.0)
    s = 1.0 if scaling == "none" else 1.0 / np.sqrt(W.shape[1])
    return s * sig @ a


def direct_loss(W: np.ndarray, a: np.ndarray, X: np.ndarray, y: np.ndarray, activation: str, scaling: str) -> float:
    r = direct_predict(W, a, X, activation, scaling) - y
    return 0.5 * float(r @ r)


def central_differences(f, W: np.ndarray, h: float) -> np.ndarray:
    G = np.empty_like(W)
    for idx in np.ndindex(W.shape):
        Wp, Wm = W.copy(), W.copy()
        Wp[idx] += h
        Wm[idx] -= h
        G[idx] = (f(Wp) - f(Wm)) / (2 * h)
    return G


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize("init", INITS)
def test_gradient_matches_central_finite_differences(activation: str, scaling: str, init: str) -> None:
    n, d, m = 7, 3, 10
    X = ball_points(n, d, seed=1)
    y = np.random.default_rng(2).uniform(-1, 1, n)
    net = ExpNet.init(d, m, seed=4, activation=activation, scaling=scaling, init=init)
    # Evaluate away from W(0) too (there the coupled residual is just -y).
    W = np.asarray(net.W) + 0.3 * np.random.default_rng(5).standard_normal((d, m))
    h = 1e-6
    if activation == "relu":  # keep every <w_r, x_i> away from the kink at 0 by more than the FD step
        assert np.abs(X @ W).min() > 1e3 * h
    moved = net.with_weights(W)
    G = moved.gradient(X, y)
    G_fd = central_differences(lambda V: direct_loss(V, np.asarray(net.a), X, y, activation, scaling), W, h)
    assert G.shape == (d, m)
    rel = np.linalg.norm(G - G_fd) / np.linalg.norm(G_fd)
    assert rel < 1e-6, rel


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("scaling", SCALINGS)
def test_predict_and_loss_match_direct_formula(activation: str, scaling: str) -> None:
    X = ball_points(9, 4, seed=3)
    y = np.linspace(-1, 1, 9)
    net = ExpNet.init(4, 30, seed=2, activation=activation, scaling=scaling, init="gaussian")
    W, a = net.weights_numpy()
    np.testing.assert_allclose(net.predict(X), direct_predict(W, a, X, activation, scaling), rtol=1e-12, atol=1e-12)
    assert net.loss(X, y) == pytest.approx(direct_loss(W, a, X, y, activation, scaling), rel=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("block", [None, 1, 7, 64])
@pytest.mark.parametrize("memory_budget", [None, 0])
def test_coupled_initialisation_output_is_exactly_zero(activation: str, dtype, block, memory_budget) -> None:
    # pairs (w, a), (w, -a) cancel term by term, whatever the blocking (block 7 is odd on purpose)
    X = ball_points(11, 5, seed=0, radius=1.0)
    net = ExpNet.init(5, 64, seed=9, activation=activation, dtype=dtype, block=block, memory_budget=memory_budget)
    u = net.predict(X)
    assert u.dtype == np.dtype(dtype)
    assert np.all(u == 0.0)


def test_coupled_zero_output_with_default_blocks_spanning_many_blocks() -> None:
    # n = 50 points give a default block of 4 MiB / (50 * 8 B) = 10485 neurons (odd): pairs must not straddle
    X = ball_points(50, 3, seed=1)
    net = ExpNet.init(3, 30_000, seed=0)
    assert net.plan(50).block < net.m
    assert np.all(net.predict(X) == 0.0)


def test_gaussian_initialisation_output_is_not_zero() -> None:
    X = ball_points(5, 3, seed=0)
    assert np.all(ExpNet.init(3, 64, seed=0, init="gaussian").predict(X) != 0.0)


def test_odd_width_with_coupled_init_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"m must be even; got m = 7.*init='gaussian'"):
        ExpNet.init(3, 7, seed=0)
    assert ExpNet.init(3, 7, seed=0, init="gaussian").m == 7


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_block_size_does_not_change_predict_or_gradient(activation: str) -> None:
    n, d, m = 9, 4, 50
    X = ball_points(n, d, seed=6)
    y = np.random.default_rng(7).uniform(-1, 1, n)
    ref = ExpNet.init(d, m, seed=1, activation=activation, init="gaussian", block=m)
    u_ref, G_ref = ref.predict(X), ref.gradient(X, y)
    for block in (1, 7, m, None):
        for budget in (None, 0):  # 0 forces recomputation of each block in the backward pass
            net = ExpNet.init(d, m, seed=1, activation=activation, init="gaussian", block=block, memory_budget=budget)
            assert net.plan(n).keep == (budget is None)
            np.testing.assert_allclose(net.predict(X), u_ref, rtol=1e-13, atol=1e-14)
            np.testing.assert_allclose(net.gradient(X, y), G_ref, rtol=1e-13, atol=1e-14)


def test_float32_network_agrees_with_float64_to_float32_rounding() -> None:
    X = ball_points(8, 3, seed=2)
    y = np.zeros(8)
    n64 = ExpNet.init(3, 256, seed=5, init="gaussian", scaling="ntk")
    n32 = ExpNet.init(3, 256, seed=5, init="gaussian", scaling="ntk", dtype=np.float32)
    assert n32.dtype == np.float32 and n32.predict(X).dtype == np.float32
    np.testing.assert_allclose(n32.predict(X), n64.predict(X), rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(n32.gradient(X, y), n64.gradient(X, y), rtol=2e-4, atol=1e-5)


def test_predict_with_huge_weights_raises_instead_of_returning_inf_or_nan() -> None:
    X = ball_points(6, 3, seed=0)
    net = ExpNet.init(3, 16, seed=0, init="gaussian")
    huge = net.with_weights(np.asarray(net.W) * 1e4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no NumPy noise on the way to the error
        with pytest.raises(ExpOverflowError, match="overflow"):
            huge.predict(X)
        with pytest.raises(ExpOverflowError):
            huge.gradient(X, np.zeros(6))
        with pytest.raises(ExpOverflowError):
            huge.loss(X, np.zeros(6))
    assert np.isfinite(net.predict(X)).all()


def test_float32_overflow_is_detected_where_float64_is_fine() -> None:
    # <w_r, x> around 100: exp overflows float32 (max about 88.7) but not float64
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    W = np.full((2, 4), 100.0)
    a = np.array([1.0, -1.0, 1.0, 1.0])
    n64 = ExpNet.from_weights(W, a, init="gaussian")
    n32 = ExpNet.from_weights(W.astype(np.float32), a.astype(np.float32), init="gaussian")
    assert np.isfinite(n64.predict(X)).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ExpOverflowError):
            n32.predict(X)
        with pytest.raises(ExpOverflowError):
            n32.gradient(X, np.zeros(2))


def test_gradient_overflow_is_detected_even_when_predictions_are_finite() -> None:
    # the coupled pair cancels in F (= 0, finite) but r * exp(<w, x>) * x overflows in the gradient
    X = np.array([[1.0]])
    W = np.array([[80.0, 80.0]], dtype=np.float32)
    net = ExpNet.from_weights(W=W, a=np.array([1.0, -1.0], dtype=np.float32))
    assert net.predict(X)[0] == 0.0
    with pytest.raises(ExpOverflowError, match="gradient"):
        net.gradient(X, np.array([1e6]))


def test_dimension_mismatch_between_net_and_inputs() -> None:
    net = ExpNet.init(3, 8, seed=0)
    with pytest.raises(ValueError, match=r"X has 4 features but the network expects d = 3"):
        net.predict(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="d = 3"):
        net.gradient(np.zeros((2, 4)), np.zeros(2))


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        (dict(d=3, m=0), ValueError, r"m must be >= 1, got 0"),
        (dict(d=3, m=-4), ValueError, r"m must be >= 1, got -4"),
        (dict(d=0, m=4), ValueError, r"d must be >= 1"),
        (dict(d=3, m=4.0), TypeError, r"m must be an integer"),
        (dict(d=3, m=True), TypeError, r"m must be an integer"),
        (dict(d=3, m=4, seed=-1), ValueError, r"seed must be >= 0"),
        (dict(d=3, m=4, activation="tanh"), ValueError, r"activation='tanh'"),
        (dict(d=3, m=4, scaling="mup"), ValueError, r"scaling='mup'"),
        (dict(d=3, m=4, init="orthogonal"), ValueError, r"init='orthogonal'"),
        (dict(d=3, m=4, dtype=np.int32), TypeError, r"dtype='int32' is not known; choose one of 'float64', 'float32'"),
    ],
)
def test_bad_constructor_arguments(kwargs, exc, pattern) -> None:
    d, m = kwargs.pop("d"), kwargs.pop("m")
    with pytest.raises(exc, match=pattern):
        ExpNet.init(d, m, **kwargs)


def test_copy_and_with_weights_do_not_alias() -> None:
    net = ExpNet.init(2, 4, seed=0)
    c = net.copy()
    c.W[0, 0] += 1.0
    assert net.W[0, 0] != c.W[0, 0]
    moved = net.with_weights(np.zeros((2, 4)))
    assert moved.m == 4 and moved.seed == net.seed and np.all(moved.W == 0) and not np.all(net.W == 0)
    assert net.to(dtype=np.float32).dtype == np.float32 and net.dtype == np.float64


def test_shape_properties_and_scale() -> None:
    net = ExpNet.init(5, 16, seed=0, scaling="ntk")
    assert (net.d, net.m) == (5, 16) and net.W.shape == (5, 16) and net.a.shape == (16,)
    assert net.s == pytest.approx(0.25)
    assert ExpNet.init(5, 16, seed=0).s == 1.0
    assert set(np.unique(net.a)) <= {-1.0, 1.0}


def test_with_weights_checks_the_shape() -> None:
    net = ExpNet.init(2, 4, seed=0)
    with pytest.raises(ValueError, match=r"W must have the shape \(d, m\) = \(2, 4\) of this network, got \(4, 2\)"):
        net.with_weights(np.zeros((4, 2)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_predict_with_huge_inputs_warns_then_raises(dtype) -> None:
    net = ExpNet.init(3, 16, seed=0, init="gaussian", dtype=dtype)
    X = 1e3 * ball_points(4, 3, seed=1, radius=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with (
            pytest.warns(InputOutsideUnitBallWarning),
            pytest.raises(ExpOverflowError, match="Scale the inputs into the unit ball"),
        ):
            net.predict(X)


def test_docstring_examples_run() -> None:
    import doctest

    import expreg.core.model

    failures, tried = doctest.testmod(expreg.core.model, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried > 0 and failures == 0


def test_loss_overflow_is_an_error_not_inf() -> None:
    net = ExpNet.from_weights(W=np.array([[400.0, 0.0]]), a=np.array([1.0, -1.0]), init="gaussian")
    X = np.array([[1.0]])
    assert np.isfinite(net.predict(X)).all()  # exp(400) ~ 5e173 fits float64, its square does not
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ExpOverflowError, match=r"the loss .* overflows float64"):
            net.loss(X, np.zeros(1))


# ------------------------------------------------------------------ the network description
def test_netspec_draws_any_slice_of_the_network_of_its_seed() -> None:
    from expreg.core.model import NetSpec

    spec = NetSpec(3, 10, seed=4, init="coupled", dtype=np.float32)
    W, a = ExpNet.init(3, 10, seed=4, dtype=np.float32).weights_numpy()
    for lo, hi in [(0, 10), (0, 3), (3, 7), (9, 10)]:
        Ws, as_ = spec.draw(lo, hi)
        np.testing.assert_array_equal(Ws, W[:, lo:hi])
        np.testing.assert_array_equal(as_, a[lo:hi])
        assert Ws.dtype == np.float32


@pytest.mark.parametrize("scaling, s", [("none", 1.0), ("ntk", 1 / 8.0)])
def test_netspec_owns_s_and_the_block_plan(scaling: str, s: float) -> None:
    from expreg.core.model import NetSpec

    spec = NetSpec(2, 64, scaling=scaling, block=5)
    assert spec.s == s
    X = np.array([[0.3, 0.1], [0.0, 0.5]])
    net = ExpNet.from_spec(spec, *spec.draw())
    W, a = net.weights_numpy()
    np.testing.assert_allclose(net.predict(X), s * np.exp(X @ W) @ a, rtol=1e-13)  # s of the spec is the network's
    assert spec.plan(2).block == 6  # coupled: the block of 5 is rounded up to keep pairs together
    assert spec.plan(2, width=7).block == 6 and NetSpec(2, 64, init="gaussian", block=5).plan(2).block == 5


def test_a_network_is_its_description_plus_weights() -> None:
    from expreg.core.model import NetSpec
    from expreg.distributed import sharded as distributed

    net = ExpNet.init(3, 8, seed=5, activation="relu", scaling="ntk", init="gaussian", dtype=np.float32, block=4)
    assert net.spec == NetSpec(
        3, 8, seed=5, activation="relu", scaling="ntk", init="gaussian", dtype=np.float32, device="cpu", block=4
    )
    assert distributed.NetSpec is NetSpec  # sharded training uses the same description
    again = ExpNet.from_spec(net.spec, net.W, net.a)
    assert repr(again) == repr(net) and again.s == net.s == 1 / np.sqrt(8)
    with pytest.raises(ValueError, match=r"m must be even; got m = 7"):
        NetSpec(3, 7)
    with pytest.raises(ValueError, match=r"scaling='mup' is not known"):
        NetSpec(3, 8, scaling="mup")


def test_init_draws_on_the_class_and_names_the_scheme_on_a_network() -> None:
    net = ExpNet.init(3, 6, seed=4, init="gaussian")
    assert net.init == "gaussian" and ExpNet.init(3, 6).init == "coupled"
    assert net.spec.init == net.init and net.spec.m == 6 and net.spec.d == 3
    W0, a0 = net.spec.draw()  # the description redraws the same weights
    np.testing.assert_array_equal(W0, net.W)
    np.testing.assert_array_equal(a0, net.a)


def test_a_network_refuses_weights_that_do_not_fit_its_description() -> None:
    net = ExpNet.init(3, 6, seed=0)
    with pytest.raises(ValueError, match=r"do not fit the network \(d, m\) = \(3, 6\)"):
        ExpNet.from_spec(net.spec, np.zeros((3, 5)), np.ones(5))
    with pytest.raises(TypeError, match="W has dtype float32, the network float64"):
        ExpNet.from_spec(net.spec, np.zeros((3, 6), np.float32), np.ones(6, np.float32))
    moved = net.to("numpy", dtype=np.float32)
    assert moved.dtype == np.float32 and moved.spec.dtype == np.float32 and moved.init == net.init
    np.testing.assert_array_equal(moved.W, net.W.astype(np.float32))
