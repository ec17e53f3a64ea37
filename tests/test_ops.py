"""Blocked passes of a step (ops) and the fused exp kernel (fastpath) against independent truth (the Gram pass: test_gram.py).

References: dense NumPy float64 formulas of docs/theory.md sections 2-3 written out here,
central finite differences, and PyTorch autograd. Tolerances per dtype:
float64 relative 1e-12 (rounding of sums over m terms), float32 relative
2e-5 (about 100 ulp of the largest entry: sums of up to 10^3 terms).
"""

from __future__ import annotations

import numpy as np
import pytest

from expreg.core import fastpath, ops
from expreg.core.activations import EXP, RELU
from expreg.core.backends import get_backend
from expreg.core.errors import ExpOverflowError
from expreg.core.reuse import KEPT

RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}
DTYPES = [np.float32, np.float64]


def problem(n: int = 13, d: int = 5, m: int = 200, seed: int = 0, dtype: type = np.float64) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    W = rng.standard_normal((d, m))
    a = np.where(rng.random(m) < 0.5, -1.0, 1.0)
    y = rng.uniform(-1, 1, n)
    return tuple(v.astype(dtype) for v in (X, W, a, y))


def dense_reference(
    X: np.ndarray, W: np.ndarray, a: np.ndarray, y: np.ndarray, s: float, act: str = "exp"
) -> tuple[np.ndarray, np.ndarray]:
    """u and G by the dense formulas of docs/theory.md section 2, in float64."""
    X, W, a, y = (np.asarray(v, dtype=np.float64) for v in (X, W, a, y))
    Z = X @ W
    E = np.exp(Z) if act == "exp" else np.maximum(Z, 0)
    D = E if act == "exp" else (Z > 0).astype(float)
    u = s * E @ a
    G = s * X.T @ ((u - y)[:, None] * D * a[None, :])
    return u, G


def close(x: np.ndarray, ref: np.ndarray, dtype: type) -> bool:
    scale = np.abs(ref).max() or 1.0
    return bool(np.abs(np.asarray(x, dtype=np.float64) - ref).max() <= RTOL[np.dtype(dtype)] * scale)


# ---------------------------------------------------------------- fastpath
def test_fastpath_is_compiled_here() -> None:
    assert fastpath.enabled(), "numba is part of the test extra; the compiled kernels must be in use"


@pytest.mark.parametrize("dtype, bits", [(np.float32, 22), (np.float64, 50)])
def test_fast_exp_relative_error_over_the_normal_range(dtype: type, bits: int) -> None:
    lo, hi = (-86.0, 88.7) if dtype == np.float32 else (-706.0, 709.7)  # below lo: flushed to 0 (documented)
    x = np.random.default_rng(1).uniform(lo, hi, 20_000).astype(dtype)
    x[:5] = [0.0, 1.0, -1.0, 0.5, 2.0]
    e = fastpath.exp_(x.copy())
    ref = np.exp(x.astype(np.longdouble))
    rel = np.abs(e.astype(np.longdouble) - ref) / ref
    assert float(rel.max()) < 2.0**-bits
    assert e[0] == 1.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_exp_special_values_match_numpy(dtype: type) -> None:
    big = 88.8 if dtype == np.float32 else 709.8
    x = np.array([big, 1e30, np.inf, -np.inf, -1e30, np.nan, 0.0], dtype=dtype)
    e = fastpath.exp_(x.copy())
    assert np.isposinf(e[:3]).all(), "overflow must give inf so ops can detect it"
    assert (e[3:5] == 0).all() and np.isnan(e[5]) and e[6] == 1.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_exp_matvec_and_numpy_fallback_agree_with_float64(dtype: type, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    Z = rng.uniform(-3, 3, (7, 37)).astype(dtype)
    a = rng.standard_normal(37).astype(dtype)
    ref_E = np.exp(Z.astype(np.float64))
    ref_acc = 1.0 + ref_E @ a
    for disabled in (False, True):
        monkeypatch.setattr(KEPT.compiled, "disabled", disabled)
        Zc, acc = Z.copy(), np.ones(7, dtype=dtype)
        fastpath.exp_matvec_(Zc, a, acc)
        assert close(Zc, ref_E, dtype) and close(acc, ref_acc, dtype)


# ---------------------------------------------------------------- the passes
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize("act", ["exp", "relu"])
def test_forward_backward_matches_dense_formulas(dtype: type, keep: bool, act: str) -> None:
    X, W, a, y = problem(dtype=dtype)
    s = 0.3
    be = get_backend("numpy")
    u, G = ops.forward_backward(be, EXP if act == "exp" else RELU, X, W, a, y, s, ops.BlockPlan(24, keep))
    u_ref, G_ref = dense_reference(X, W, a, y, s, act)
    assert u.dtype == dtype and G.dtype == dtype and G.shape == W.shape
    assert close(u, u_ref, dtype) and close(G, G_ref, dtype)
    u2 = ops.forward(be, EXP if act == "exp" else RELU, X, W, a, s, ops.BlockPlan(24, keep))
    assert close(u2, u_ref, dtype)


def test_gradient_matches_central_finite_differences() -> None:
    X, W, a, y = problem(n=6, d=3, m=8, seed=4)
    be = get_backend("numpy")
    plan = ops.BlockPlan(3, True)

    def loss(Wv: np.ndarray) -> float:
        u = ops.forward(be, EXP, X, Wv, a, 1.0, plan)
        return 0.5 * float((u - y) @ (u - y))

    _, G = ops.forward_backward(be, EXP, X, W, a, y, 1.0, plan)
    h = 1e-6
    fd = np.zeros_like(W)
    for idx in np.ndindex(*W.shape):
        Wp, Wm = W.copy(), W.copy()
        Wp[idx] += h
        Wm[idx] -= h
        fd[idx] = (loss(Wp) - loss(Wm)) / (2 * h)
    np.testing.assert_allclose(G, fd, rtol=1e-6, atol=1e-8 * np.abs(fd).max())


def test_gradient_matches_torch_autograd() -> None:
    import torch  # part of the test extra: never skipped

    X, W, a, y = problem(n=9, d=4, m=30, seed=5)
    s = 1 / np.sqrt(30)
    _, G = ops.forward_backward(get_backend("numpy"), EXP, X, W, a, y, s, ops.BlockPlan(8, False))
    Wt = torch.tensor(W, requires_grad=True)
    u = s * torch.exp(torch.tensor(X) @ Wt) @ torch.tensor(a)
    (0.5 * ((u - torch.tensor(y)) ** 2).sum()).backward()
    np.testing.assert_allclose(G, Wt.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
def test_threads_never_change_results_and_blocks_only_by_rounding(dtype: type) -> None:
    X, W, a, y = problem(n=11, d=4, m=333, seed=6, dtype=dtype)
    results = {}
    for threads in (1, 2, 3):
        for block in (8, 40, 333):
            for keep in (True, False):
                be = get_backend("numpy", None, threads)
                results[threads, block, keep] = ops.forward_backward(
                    be, EXP, X, W, a, y, 1.0, ops.BlockPlan(block, keep)
                )
    u_ref, G_ref = dense_reference(X, W, a, y, 1.0)
    for (threads, block, keep), (u, G) in results.items():
        u1, G1 = results[1, block, keep]
        assert np.array_equal(u, u1) and np.array_equal(G, G1), "thread count changed the bits"
        assert close(u, u_ref, dtype) and close(G, G_ref, dtype)
        uk, Gk = results[threads, block, True]
        assert close(u, uk, dtype) and close(G, Gk, dtype), "keep and recompute disagree"


def test_workspace_reuse_leaves_no_stale_state() -> None:
    be = get_backend("numpy", None, 2)
    plan = ops.BlockPlan(16, True)
    first = problem(seed=7)
    second = problem(seed=8)
    ops.forward_backward(be, EXP, first[0], first[1], first[2], first[3], 1.0, plan)
    u, G = ops.forward_backward(be, EXP, *second[:3], second[3], 1.0, plan)
    u_ref, G_ref = dense_reference(*second, 1.0)
    assert close(u, u_ref, np.float64) and close(G, G_ref, np.float64)
    ops.release_workspaces()


def test_coupled_pairs_cancel_exactly() -> None:
    X, W, _, y = problem(m=96, seed=9)
    W[:, 1::2] = W[:, ::2]
    a = np.tile([1.0, -1.0], 48)
    for threads in (1, 2):
        u, _ = ops.forward_backward(get_backend("numpy", None, threads), EXP, X, W, a, y, 1.0, ops.BlockPlan(16, True))
        assert (u == 0).all()


def test_reduce_hook_sees_the_unscaled_partial_sum() -> None:
    X, W, a, y = problem(seed=11)
    seen = []

    def reduce(u: np.ndarray) -> np.ndarray:
        seen.append(u.copy())
        return u * 2  # as if a second rank held the same neurons

    u, _ = ops.forward_backward(get_backend("numpy"), EXP, X, W, a, y, 0.5, ops.BlockPlan(50, False), reduce=reduce)
    u_ref, _ = dense_reference(X, W, a, y, 1.0)
    assert close(seen[0], u_ref, np.float64) and close(u, u_ref, np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keep", [True, False])
def test_overflow_in_the_fast_path_is_detected(dtype: type, keep: bool) -> None:
    X, W, a, y = problem(dtype=dtype)
    W[:, 17] = 1000.0 * X[3]  # <w_17, x_3> = 1000: exp overflows in both dtypes
    be = get_backend("numpy", None, 2)
    G = np.zeros_like(W)
    with pytest.raises(ExpOverflowError, match="predictions"):
        ops.forward_backward(be, EXP, X, W, a, y, 1.0, ops.BlockPlan(8, keep), G)
    # u and G are checked together, in one read per step: the error names the predictions, the first to overflow
    with pytest.raises(ExpOverflowError):
        ops.forward(be, EXP, X, W, a, 1.0, ops.BlockPlan(8, keep))
    W[:, 17] = np.nan
    with pytest.raises(ExpOverflowError):
        ops.forward_backward(be, EXP, X, W, a, y, 1.0, ops.BlockPlan(8, keep))


def test_movement_matches_dense_norms() -> None:
    _, W, _, _ = problem(seed=13)
    W0 = W + np.random.default_rng(0).standard_normal(W.shape)
    worst, frob = ops.movement(get_backend("numpy"), W, W0, ops.BlockPlan(7, False))
    assert worst == pytest.approx(np.linalg.norm(W - W0, axis=0).max(), rel=1e-12)
    assert frob == pytest.approx(np.linalg.norm(W - W0), rel=1e-12)


def test_plan_blocks_and_chunks() -> None:
    be = get_backend("numpy")
    plan = ops.plan_blocks(1000, 10**6, 4, backend=be)
    assert plan.block % 8 == 0 and plan.block * 1000 * 4 <= be.block_bytes
    assert plan.keep == (ops.DEFAULT_MEMORY_BUDGET >= 1000 * 10**6 * 4)
    assert ops.plan_blocks(10, 5, 8).block == 5
    assert not ops.plan_blocks(10, 100, 8, memory_budget=10 * 100 * 8 - 1).keep
    chunks = ops.BlockPlan(3, False).chunks(1000)
    assert len(chunks) == ops.MAX_CHUNKS
    assert [r for c in chunks for r in c] == list(ops.BlockPlan(3, False).ranges(1000))


def test_overflow_of_the_gradient_alone_is_detected() -> None:
    X, W, a, y = problem(dtype=np.float32)
    W[:, 5] = 69.0 * X[2]  # exp(69) ~ 1e30 is finite in float32, and so is u; r * exp(69) ~ 1e60 is not
    G = np.zeros_like(W)
    u = ops.forward(get_backend("numpy"), EXP, X, W, a, 1.0, ops.BlockPlan(8, True))
    assert np.isfinite(u).all()
    with pytest.raises(ExpOverflowError, match="gradient"):
        ops.forward_backward(get_backend("numpy", None, 2), EXP, X, W, a, y, 1.0, ops.BlockPlan(8, True), G)


def test_without_numba_the_numpy_fallback_gives_the_same_step(monkeypatch: pytest.MonkeyPatch) -> None:
    X, W, a, y = problem(dtype=np.float32, seed=14)
    fast = ops.forward_backward(get_backend("numpy"), EXP, X, W, a, y, 1.0, ops.BlockPlan(16, True))
    monkeypatch.setattr(KEPT.compiled, "kernels", None)
    monkeypatch.setattr(KEPT.compiled, "failed", None)
    monkeypatch.setitem(__import__("sys").modules, "expreg.core._fastkernels", None)  # import now fails
    monkeypatch.delattr(__import__("sys").modules["expreg.core"], "_fastkernels", raising=False)
    assert not fastpath.enabled()
    slow = ops.forward_backward(get_backend("numpy"), EXP, X, W, a, y, 1.0, ops.BlockPlan(16, True))
    u_ref, G_ref = dense_reference(X, W, a, y, 1.0)
    for got in (fast, slow):
        assert close(got[0], u_ref, np.float32) and close(got[1], G_ref, np.float32)


def test_environment_variable_turns_the_fast_path_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPREG_FASTPATH", "0")
    monkeypatch.setattr(KEPT.compiled, "disabled", None)  # as in a fresh process
    assert not fastpath.enabled()
    x = np.array([0.0, 1.0])
    np.testing.assert_array_equal(fastpath.exp_(x.copy()), np.exp(x))


def test_plan_blocks_keeps_coupled_pairs_in_one_block():
    from expreg.core.ops import plan_blocks

    assert plan_blocks(4, 100, 8, block=7, pairs=True).block == 8
    assert plan_blocks(4, 100, 8, block=7).block == 7
    assert plan_blocks(4, 7, 8, block=7, pairs=True).block == 7  # one block holds everything already
