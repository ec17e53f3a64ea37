"""The shared gradient-descent loop (expreg.engine.descent) and its hooks (docs/theory.md sections 2, 3).

The per-step collectives of ``Shard`` are checked against direct NumPy
formulas; the loop with a two-rank communicator (threads exchanging arrays
in memory, no torch) against single-process ``expreg.train``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import expreg
from expreg import ExpNet, TrainingDivergedError
from expreg.distributed.sharded import NetSpec, shard_range, train_sharded
from expreg.engine import descent
from expreg.engine.communicator import Communicator
from expreg.engine.options import TrainOptions


# ------------------------------------------------------------------ helpers
def test_residual_norm_matches_numpy_and_does_not_overflow() -> None:
    r = np.random.default_rng(0).standard_normal(50)
    assert descent.residual_norm(r) == pytest.approx(np.linalg.norm(r), rel=1e-15)
    with np.errstate(over="ignore"):
        assert np.isinf(np.sqrt(np.sum((1e200 * r) ** 2)))  # the naive form overflows
    assert descent.residual_norm(1e200 * r) == pytest.approx(1e200 * np.linalg.norm(r), rel=1e-14)
    assert descent.residual_norm(np.zeros(3)) == 0.0
    assert descent.residual_norm(np.array([1.0, np.inf])) == np.inf


def test_train_options_check_each_field_and_name_it() -> None:
    opts = TrainOptions(epsilon=0, max_steps=np.int64(5), checkpoint_every=1, track_movement=np.bool_(True))
    assert (opts.epsilon, opts.max_steps, opts.track_movement) == (0.0, 5, True)
    assert type(opts.epsilon) is float and type(opts.max_steps) is int and type(opts.track_movement) is bool
    with pytest.raises(ValueError, match="epsilon must be a finite number >= 0, got inf"):
        TrainOptions(epsilon=float("inf"))
    with pytest.raises(ValueError, match="checkpoint_every must be >= 1"):
        TrainOptions(checkpoint_every=0)
    with pytest.raises(ValueError, match="lr='fast' is not known"):
        TrainOptions(lr="fast")
    with pytest.raises(ValueError, match="lr must be a positive finite number, got -1"):
        TrainOptions(lr=-1)
    with pytest.raises(TypeError, match="lr must be 'auto', 'empirical' or a number, got list"):
        TrainOptions(lr=[0.1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="record_every must be an integer"):
        TrainOptions(record_every=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="track_movement must be True or False"):
        TrainOptions(track_movement="yes")  # type: ignore[arg-type]


def test_train_options_merge_keywords_over_an_object() -> None:
    base = TrainOptions(lr=0.25, max_steps=7)
    merged = TrainOptions.merge(base, {"max_steps": 9}, "train")
    assert (merged.lr, merged.max_steps, base.max_steps) == (0.25, 9, 7)  # the object itself is unchanged
    assert TrainOptions.merge(None, {}, "train") == TrainOptions()
    with pytest.raises(
        TypeError, match=r"train\(\) got an unexpected keyword argument 'max_step'; its run options are lr, "
    ):
        TrainOptions.merge(None, {"max_step": 3}, "train")
    with pytest.raises(TypeError, match="options must be a TrainOptions, got dict"):
        TrainOptions.merge({"lr": 1.0}, {}, "train")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_steps must be >= 0"):
        TrainOptions.merge(base, {"max_steps": -1}, "train")  # validated on replace too


def test_single_process_shard_matches_the_formulas() -> None:
    """u = s exp(XW) a, G = s X^T (r * exp(XW) * a), H = s^2 (XX^T) * (DD^T), movement of W - W(0)."""
    X, y = expreg.make_dataset(7, 3, seed=1)
    net = ExpNet.init(3, 10, seed=2, init="gaussian", scaling="ntk")
    sh = descent.Shard(net.spec, X, y, net.W, net.a, Communicator())
    W0, a = net.weights_numpy()
    W = W0 + 0.1 * np.random.default_rng(3).standard_normal(W0.shape)
    D = np.exp(X @ W)
    u_ref = net.s * D @ a
    G = np.empty_like(W)
    u, grad_overflow = sh.forward_backward(W, G)
    np.testing.assert_allclose(u, u_ref, rtol=1e-13)
    np.testing.assert_allclose(G, net.s * X.T @ ((u_ref - y)[:, None] * D * a[None, :]), rtol=1e-12, atol=1e-15)
    assert not grad_overflow
    np.testing.assert_allclose(sh.gram(W), net.s**2 * (X @ X.T) * (D @ D.T), rtol=1e-13)
    worst, frob, flag = sh.step_scalars(W, moved=True, overflow=False)
    assert worst == pytest.approx(np.linalg.norm(W - W0, axis=0).max(), rel=1e-14)
    assert frob == pytest.approx(np.linalg.norm(W - W0), rel=1e-14)
    assert not flag and sh.step_scalars(W, moved=False, overflow=True) == (0.0, 0.0, True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block", [1, 3, 16])
@pytest.mark.parametrize("compiled", [True, False])
def test_the_step_and_its_movement_in_one_pass_match_the_formulas(
    dtype: type, block: int, compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ops.advance: W - lr G to the bit (any block, any thread, numba's one pass or NumPy's), and the movement of
    the new W from W(0)."""
    from expreg.core import fastpath, ops
    from expreg.core.backends import get_backend
    from expreg.core.reuse import KEPT

    monkeypatch.setattr(KEPT.compiled, "disabled", not compiled)
    assert fastpath.enabled() == compiled  # numba is installed with the test extras

    rng = np.random.default_rng(4)
    W0, G = (rng.standard_normal((5, 37)).astype(dtype) for _ in range(2))
    W = W0 + rng.standard_normal(W0.shape).astype(dtype)
    lr = 0.3
    out = np.empty_like(W)
    plan = ops.BlockPlan(block=block, keep=False)
    worst, frob = ops.advance(get_backend("numpy"), out, W, G, lr, plan, W0)
    np.testing.assert_array_equal(out, W + G * dtype(-lr))  # the same float operations, element by element
    exact = np.linalg.norm((W.astype(np.float64) - lr * G.astype(np.float64)) - W0, axis=0)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    assert worst == pytest.approx(exact.max(), rel=tol) and frob == pytest.approx(np.sqrt((exact**2).sum()), rel=tol)
    assert ops.advance(get_backend("numpy"), out, W, G, lr, plan) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block", [1, 3, 16])
@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("track", [True, False])
def test_the_step_fused_into_the_backward_pass_matches_the_formulas(
    dtype: type, block: int, compiled: bool, track: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ops.forward_backward(step=...): G as without the step, W' = W + G * (-lr) element by element to the bit (numba's
    one pass or NumPy's, any block), and the movement of W' from W(0) against float64 norms."""
    from expreg.core import fastpath, ops
    from expreg.core.activations import EXP
    from expreg.core.backends import get_backend
    from expreg.core.reuse import KEPT

    monkeypatch.setattr(KEPT.compiled, "disabled", not compiled)
    assert fastpath.enabled() == compiled
    rng = np.random.default_rng(8)
    X = rng.standard_normal((11, 4))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    W0 = rng.standard_normal((4, 37))
    W = (W0 + 0.1 * rng.standard_normal(W0.shape)).astype(dtype)
    W0 = W0.astype(dtype)
    a, y = np.where(rng.random(37) < 0.5, -1.0, 1.0).astype(dtype), rng.uniform(-1, 1, 11).astype(dtype)
    be, plan, lr = get_backend("numpy", None, 2), ops.BlockPlan(block=block, keep=False), 0.05
    _, G_alone = ops.forward_backward(be, EXP, X.astype(dtype), W, a, y, 0.5, plan)
    out = np.full_like(W, np.nan)
    step = ops.Step(out, lr, W0 if track else None, np.empty(37, dtype) if track else None)
    _, G = ops.forward_backward(be, EXP, X.astype(dtype), W, a, y, 0.5, plan, step=step)
    assert step.taken
    np.testing.assert_array_equal(G, G_alone)
    np.testing.assert_array_equal(out, W + G * dtype(-lr))  # the same float operations, element by element
    if not track:
        assert step.moved(be) is None
        return
    exact = np.linalg.norm(out.astype(np.float64) - W0, axis=0)
    worst, frob = step.moved(be)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    assert worst == pytest.approx(exact.max(), rel=tol) and frob == pytest.approx(np.sqrt((exact**2).sum()), rel=tol)


def test_the_fused_step_is_not_taken_when_the_predictions_overflow() -> None:
    """A forward overflow leaves the step's buffer as it was (W(t-1) lives there during a descent)."""
    from expreg.core import ops
    from expreg.core.activations import EXP
    from expreg.core.backends import get_backend
    from expreg.core.errors import ExpOverflowError

    X, y = expreg.make_dataset(6, 3, seed=0)
    W = np.random.default_rng(0).standard_normal((3, 16))
    W[:, 4] = 1000.0 * X[2]
    out = np.full_like(W, 7.0)
    step = ops.Step(out, 0.1)
    with pytest.raises(ExpOverflowError, match="predictions"):
        ops.forward_backward(get_backend("numpy"), EXP, X, W, np.ones(16), y, 1.0, ops.BlockPlan(4, False), step=step)
    assert not step.taken and (out == 7.0).all()


def test_gradient_overflow_after_some_steps_keeps_the_last_finite_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """exp overflowing in the gradient at W(3), with finite predictions (float32, targets 100 y, lr 1e-3): diverged,
    and the result is W(3) itself (finite, its step recorded), W(2) - lr G(W(2)) by the dense formula, whether or not
    the backward pass already took the step from it into the spare buffer (the same weights to the bit)."""
    from expreg.core.errors import TrainingDivergedError
    from expreg.engine.descent import WeightBuffers

    X, y = expreg.make_dataset(8, 3, seed=0)
    net = ExpNet.init(3, 64, seed=0, dtype=np.float32)
    results = []
    for fused in (True, False):
        if not fused:  # the step in ``advance``, as on a GPU
            monkeypatch.setattr(WeightBuffers, "fused_step", lambda self, lr: None)
        with pytest.raises(TrainingDivergedError, match="exp overflowed in the gradient at step 3") as info:
            expreg.train(net, X, 100.0 * y, lr=1e-3, max_steps=50, epsilon=0.0, record_every=0)
        results.append(info.value.result)
    for result in results:
        assert result.steps == 3 and len(result.history.residual) == 4
        assert np.isfinite(np.asarray(result.net.W)).all()
    np.testing.assert_array_equal(np.asarray(results[0].net.W), np.asarray(results[1].net.W))
    W2 = np.asarray(expreg.train(net, X, 100.0 * y, lr=1e-3, max_steps=2, epsilon=0.0, record_every=0).net.W, float)
    a, s = np.asarray(net.a, float), net.s
    E = np.exp(X @ W2)
    G = s * X.T @ ((s * E @ a - 100.0 * y)[:, None] * E * a[None, :])
    np.testing.assert_allclose(np.asarray(results[0].net.W, float), W2 - 1e-3 * G, rtol=1e-4, atol=1e-5)


def test_train_records_the_movement_the_formulas_give_at_every_step() -> None:
    """The movement taken with each step (ops.advance) is that of W(t) from W(0), recomputed from the weights."""
    X, y = expreg.make_dataset(9, 3, seed=5)
    net = ExpNet.init(3, 24, seed=6)
    W0 = net.weights_numpy()[0].copy()
    seen = []
    for steps in (1, 2, 3):
        run = expreg.train(net, X, y, lr=1e-3, max_steps=steps, epsilon=0.0, record_every=0)
        seen.append(np.linalg.norm(run.net.weights_numpy()[0] - W0, axis=0))
    h = run.history
    assert h.max_movement[0] == 0.0
    for t in (1, 2, 3):
        assert h.max_movement[t] == pytest.approx(seen[t - 1].max(), rel=1e-12)
        assert h.frobenius_movement[t] == pytest.approx(np.sqrt((seen[t - 1] ** 2).sum()), rel=1e-12)


def test_forward_overflow_is_reported_as_no_predictions() -> None:
    X, y = expreg.make_dataset(4, 2, seed=0)
    net = ExpNet.init(2, 8, seed=0, init="gaussian")
    sh = descent.Shard(net.spec, X, y, net.W, net.a, Communicator())
    assert sh.forward_backward(1e4 * np.asarray(net.W), np.empty((2, 8))) == (None, False)


# ------------------------------------------------------------------ the loop over two in-memory ranks
class _Exchange:
    """Arrays handed between threads; every rank reduces the same list in rank order."""

    def __init__(self, size: int) -> None:
        self.size, self.slots = size, [None] * size
        self.barrier = threading.Barrier(size, timeout=60)

    def reduce(self, rank: int, v: np.ndarray, op: Callable[[list[Any]], np.ndarray]) -> np.ndarray:
        self.slots[rank] = np.array(v, dtype=np.float64)
        self.barrier.wait()
        out = op(self.slots)
        self.barrier.wait()  # nobody overwrites a slot before every rank has read it
        return out


class _ThreadCommunicator(Communicator):
    def __init__(self, exchange: _Exchange, rank: int) -> None:
        self.exchange, self.rank, self.world_size = exchange, rank, exchange.size

    def sum_(self, x: Any) -> Any:
        x[...] = self.sum(x)
        return x

    def sum(self, v: np.ndarray) -> np.ndarray:
        return self.exchange.reduce(self.rank, v, lambda s: np.sum(s, axis=0))

    def max(self, v: np.ndarray) -> np.ndarray:
        return self.exchange.reduce(self.rank, v, lambda s: np.max(s, axis=0))

    def barrier(self) -> None:
        self.sum(np.zeros(1))


def _two_ranks(spec: NetSpec, X: np.ndarray, y: np.ndarray, **kw: Any) -> list[tuple[Any, bool]]:
    """train_sharded on 2 thread-ranks: (result, diverged) per rank."""
    exchange, out = _Exchange(2), [None, None]

    def rank(r: int) -> None:
        try:
            out[r] = (train_sharded(spec, X, y, comm=_ThreadCommunicator(exchange, r), **kw), False)
        except TrainingDivergedError as exc:
            out[r] = (exc.result, True)
        except BaseException as exc:
            exchange.barrier.abort()
            out[r] = (exc, None)

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for res, div in out:  # type: ignore[misc]
        if div is None:
            raise res
    return out  # type: ignore[return-value]


@pytest.mark.parametrize(
    "spec_kw, train_kw, diverges",
    [
        (
            dict(d=3, m=9, seed=4, init="gaussian", scaling="ntk"),
            dict(max_steps=12, record_every=5, epsilon=1e-6),
            False,
        ),
        (
            dict(d=3, m=6, seed=3, init="coupled", scaling="ntk"),
            dict(lr=0.15, max_steps=15, record_every=4, epsilon=1e-6),
            True,
        ),
    ],
)
def test_two_in_memory_ranks_run_the_loop_of_train(
    spec_kw: dict[str, Any], train_kw: dict[str, Any], diverges: bool
) -> None:
    X, y = expreg.make_dataset(6, 3, seed=2)
    spec = NetSpec(**spec_kw)
    ranks = _two_ranks(spec, X, y, **train_kw)
    try:
        ref, ref_diverged = (
            expreg.train(
                ExpNet.init(spec.d, spec.m, **{k: v for k, v in spec_kw.items() if k not in ("d", "m")}),
                X,
                y,
                **train_kw,
            ),
            False,
        )
    except TrainingDivergedError as exc:
        ref, ref_diverged = exc.result, True
    assert [div for _, div in ranks] == [diverges, diverges] and ref_diverged == diverges
    W = np.concatenate([res.weights_numpy()[0] for res, _ in ranks], axis=1)
    assert [(res.lo, res.hi) for res, _ in ranks] == [shard_range(spec.m, 2, r) for r in range(2)]
    np.testing.assert_allclose(W, ref.net.weights_numpy()[0], rtol=1e-10, atol=1e-12)
    for res, _ in ranks:
        assert res.steps == ref.steps
        for key, values in res.history.as_arrays().items():
            np.testing.assert_allclose(values, ref.history.as_arrays()[key], rtol=1e-10, atol=1e-12, err_msg=key)
        assert res.summary().keys() == {**ref.summary(), "m": 0, "world_size": 0}.keys()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_next_forward_pass_run_ahead_changes_no_bit(monkeypatch: pytest.MonkeyPatch, dtype: type) -> None:
    """``Step.ahead``: the backward pass of step t also runs the forward pass at W(t+1), so that each step sweeps
    the kept activations once. The weights and every recorded figure are the same to the bit as with a forward
    pass of its own per step, and the forward pass proper runs once per run (at W(0)) instead of once per step."""
    from expreg.core import ops
    from expreg.engine import descent

    X, y = expreg.make_dataset(24, 5, seed=3)
    net = ExpNet.init(5, 512, seed=3, dtype=dtype)
    assert net.plan(24).keep
    calls: list[int] = []
    forward = ops._forward

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return forward(*args, **kwargs)

    monkeypatch.setattr(ops, "_forward", counted)
    assert descent.RUN_AHEAD  # the default
    results, forwards = [], []
    for ahead in (True, False):
        monkeypatch.setattr(descent, "RUN_AHEAD", ahead)
        calls.clear()
        results.append(expreg.train(net, X, y, lr="auto", max_steps=12, epsilon=0.0, record_every=4))
        forwards.append(len(calls))
    ahead, plain = results
    np.testing.assert_array_equal(np.asarray(ahead.net.W), np.asarray(plain.net.W))
    for field in ("loss", "residual", "max_movement", "frobenius_movement", "kernel_deviation", "kernel_lambda_min"):
        np.testing.assert_array_equal(getattr(ahead.history, field), getattr(plain.history, field))
    assert forwards[1] >= 13 and forwards[0] == forwards[1] - 12  # one per step without; at W(0) only with


def test_a_forward_pass_run_ahead_is_taken_only_while_it_is_valid() -> None:
    """``ops.Primed``: honoured for the very array W' while its workspace is untouched; after any other pass over
    that workspace, for another array (even equal), or where activations are not kept, the forward pass runs."""
    from expreg.core import ops
    from expreg.core.activations import EXP
    from expreg.core.backends import get_backend

    rng = np.random.default_rng(5)
    X, y = expreg.make_dataset(9, 4, seed=5)
    W, W_other = rng.standard_normal((4, 64)), rng.standard_normal((4, 64))
    a = np.where(rng.random(64) < 0.5, -1.0, 1.0)
    be, keep = get_backend("numpy", None, 2), ops.BlockPlan(16, True)

    def fresh(Wt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ops.release_workspaces()
        u, G = ops.forward_backward(be, EXP, X, Wt.copy(), a, y, 0.5, keep)
        return u.copy(), G.copy()

    def primed_step() -> tuple[ops.Step, np.ndarray]:
        ops.release_workspaces()
        step = ops.Step(np.empty_like(W), 0.05, ahead=True)
        ops.forward_backward(be, EXP, X, W, a, y, 0.5, keep, step=step)
        assert step.taken and step.primed is not None
        return step, step.out.copy()

    step, W1 = primed_step()
    u_ref, G_ref = fresh(W1)
    step, _ = primed_step()
    assert step.primed is not None and step.primed.ready(ops._acquire(be, X, step.out, keep), step.out)
    u, G = ops.forward_backward(be, EXP, X, step.out, a, y, 0.5, keep, primed=step.primed)
    np.testing.assert_array_equal(u, u_ref)
    np.testing.assert_array_equal(G, G_ref)
    # another pass over the same workspace in between: the primed sums are stale and must not be taken
    step, _ = primed_step()
    ops.forward_backward(be, EXP, X, W_other, a, y, 0.5, keep)
    u, _ = ops.forward_backward(be, EXP, X, step.out, a, y, 0.5, keep, primed=step.primed)
    np.testing.assert_array_equal(u, u_ref)
    # an equal array that is not W' itself: not taken (the token vouches for one array only)
    step, _ = primed_step()
    ws = ops._acquire(be, X, step.out, keep)
    ops._release(ws)
    assert not step.primed.ready(ws, step.out.copy()) and step.primed.ready(ws, step.out)
    # activations not kept: nothing is run ahead
    ops.release_workspaces()
    step = ops.Step(np.empty_like(W), 0.05, ahead=True)
    ops.forward_backward(be, EXP, X, W, a, y, 0.5, ops.BlockPlan(16, False), step=step)
    assert step.taken and step.primed is None


def test_an_overflow_in_the_forward_pass_run_ahead_is_caught_at_the_next_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """The forward pass at W(t+1), run inside step t's backward pass, may overflow: the next step reports it as
    the predictions overflowing, as without running ahead, and the run's result is the same."""
    from expreg.core.errors import TrainingDivergedError
    from expreg.engine import descent

    X, y = expreg.make_dataset(8, 3, seed=1)
    net = ExpNet.init(3, 64, seed=1)
    results = []
    for ahead in (True, False):
        monkeypatch.setattr(descent, "RUN_AHEAD", ahead)
        with pytest.raises(TrainingDivergedError, match="exp overflowed at step 2") as info:
            expreg.train(net, X, 30.0 * y, lr=0.01, max_steps=50, epsilon=0.0, record_every=0)
        results.append(info.value.result)
    assert results[0].steps == results[1].steps == 1  # W(2)'s predictions overflowed: W(1) is the last finite
    np.testing.assert_array_equal(np.asarray(results[0].net.W), np.asarray(results[1].net.W))


def test_a_forward_pass_run_ahead_is_spent_by_a_backward_pass_that_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """A call that took a ``Primed`` and then failed in its backward pass (the buffers half rewritten) leaves that
    token unusable: a retry with it runs the forward pass and gives the fresh predictions."""
    from expreg.core import ops
    from expreg.core.activations import EXP
    from expreg.core.backends import get_backend

    rng = np.random.default_rng(2)
    X, y = expreg.make_dataset(9, 4, seed=2)
    W, a = rng.standard_normal((4, 64)), np.where(rng.random(64) < 0.5, -1.0, 1.0)
    be, keep = get_backend("numpy", None, 2), ops.BlockPlan(16, True)
    ops.release_workspaces()
    step = ops.Step(np.empty_like(W), 0.05, ahead=True)
    ops.forward_backward(be, EXP, X, W, a, y, 0.5, keep, step=step)
    primed, W1 = step.primed, step.out
    assert primed is not None
    tail = ops._block_tail

    def failing(*args: object, **kwargs: object) -> object:
        raise RuntimeError("a worker failed")

    monkeypatch.setattr(ops, "_block_tail", failing)
    with pytest.raises(RuntimeError, match="a worker failed"):
        ops.forward_backward(
            be, EXP, X, W1, a, y, 0.5, keep, step=ops.Step(np.empty_like(W), 0.05, ahead=True), primed=primed
        )
    monkeypatch.setattr(ops, "_block_tail", tail)
    u, _ = ops.forward_backward(be, EXP, X, W1, a, y, 0.5, keep, primed=primed)
    ops.release_workspaces()
    u_fresh, _ = ops.forward_backward(be, EXP, X, W1.copy(), a, y, 0.5, keep)
    np.testing.assert_array_equal(u, u_fresh)
