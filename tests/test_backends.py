"""Backends: the same ops code on NumPy and PyTorch gives the NumPy float64 answers.

The NumPy float64 reference is itself checked against dense formulas,
finite differences and torch autograd in test_ops.py. Tolerances, relative
to the largest entry: torch float64 1e-10 (different BLAS, same maths);
float32 2e-5 for one pass and 1e-5 after 20 gradient steps (about 100 ulp;
3e-7 is typical: gradient descent at a stable step size damps rounding).
PyTorch runs on the CPU here; the code is device-agnostic ("cuda" on a GPU).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch  # part of the test extra: a missing torch fails the suite rather than skipping its tests

from expreg import ExpNet
from expreg.core import ops
from expreg.core.activations import EXP
from expreg.core.backends import NumpyBackend, canonical_dtype, default_threads, get_backend
from expreg.core.data import make_dataset
from expreg.core.reuse import KEPT
from expreg.engine.train import train

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ONE_PASS = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-10}


def rel_err(x: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(np.asarray(x, np.float64) - ref).max() / (np.abs(ref).max() or 1.0))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return make_dataset(10, 4, seed=1)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_predictions_and_gradients_agree_with_numpy_float64(
    backend: str, dtype: type, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = data
    kw = dict(seed=3, init="gaussian", scaling="ntk", block=24)
    ref = ExpNet.init(4, 256, **kw)
    net = ExpNet.init(4, 256, dtype=dtype, backend=backend, device=DEVICE if backend == "torch" else None, **kw)
    if backend == "torch":
        assert isinstance(net.W, torch.Tensor) and net.W.device.type == DEVICE
    tol = ONE_PASS[np.dtype(dtype)]
    assert rel_err(net.predict(X), ref.predict(X)) < tol
    assert rel_err(net.gradient(X, y), ref.gradient(X, y)) < tol


@pytest.mark.parametrize(
    "backend, dtype, tol", [("torch", np.float64, 1e-12), ("torch", np.float32, 1e-5), ("numpy", np.float32, 1e-5)]
)
def test_twenty_step_trajectory_agrees_with_numpy_float64(
    backend: str, dtype: type, tol: float, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = data
    kw = dict(seed=5, scaling="ntk", block=40)
    ref = train(ExpNet.init(4, 400, **kw), X, y, lr=0.05, max_steps=20, epsilon=0.0, record_every=0)
    net = ExpNet.init(4, 400, dtype=dtype, backend=backend, device=DEVICE if backend == "torch" else None, **kw)
    res = train(net, X, y, lr=0.05, max_steps=20, epsilon=0.0, record_every=0)
    assert res.steps == ref.steps == 20
    assert ref.history.residual[-1] < 0.9 * ref.history.residual[0], "the reference run must actually descend"
    assert rel_err(res.history.residual, np.asarray(ref.history.residual)) < tol
    assert rel_err(res.net.weights_numpy()[0], ref.net.weights_numpy()[0]) < tol


def test_torch_exp_matvec_and_sum_rows_match_numpy() -> None:
    be_t, be_n = get_backend("torch", DEVICE), get_backend("numpy")
    rng = np.random.default_rng(0)
    Z, a, acc = rng.uniform(-2, 2, (6, 9)), rng.standard_normal(9), rng.standard_normal(6)
    Zt, at, acct = (be_t.asarray(v.copy(), np.float64) for v in (Z, a, acc))  # as_tensor shares memory
    be_t.exp_matvec_(Zt, at, acct)
    Zn, accn = Z.copy(), acc.copy()
    be_n.exp_matvec_(Zn, a, accn)
    np.testing.assert_allclose(be_t.to_numpy(Zt), np.exp(Z), rtol=1e-14)
    np.testing.assert_allclose(be_t.to_numpy(acct), acc + np.exp(Z) @ a, rtol=1e-12)
    np.testing.assert_allclose(accn, acc + np.exp(Z) @ a, rtol=1e-12)
    S = rng.standard_normal((5, 4))
    np.testing.assert_allclose(be_t.to_numpy(be_t.sum_rows(be_t.asarray(S, np.float64))), S.sum(0), rtol=1e-14)
    np.testing.assert_allclose(be_n.sum_rows(S), S.sum(0), rtol=1e-14)


def test_torch_ops_pass_matches_numpy_with_uneven_blocks() -> None:
    rng = np.random.default_rng(2)
    X, W, a, y = (
        rng.standard_normal((7, 3)) / 2,
        rng.standard_normal((3, 101)),
        rng.choice([-1.0, 1.0], 101),
        rng.standard_normal(7),
    )
    be_t = get_backend("torch", DEVICE)
    for keep in (True, False):
        plan = ops.BlockPlan(17, keep)
        u_n, G_n = ops.forward_backward(get_backend("numpy"), EXP, X, W, a, y, 1.0, plan)
        u_t, G_t = ops.forward_backward(be_t, EXP, *(be_t.asarray(v, np.float64) for v in (X, W, a, y)), 1.0, plan)
        assert rel_err(be_t.to_numpy(u_t), u_n) < 1e-12 and rel_err(be_t.to_numpy(G_t), G_n) < 1e-12


def test_parallel_runs_every_task_once_with_blas_on_one_thread() -> None:
    from threadpoolctl import threadpool_info

    be = NumpyBackend(threads=2)
    seen: list[tuple[int, int, str]] = []
    blas_threads: list[int] = []
    lock = threading.Lock()

    def task(worker: int, t: int) -> None:
        with lock:
            seen.append((worker, t, threading.current_thread().name))
            blas_threads.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

    be.parallel(50, task)
    assert sorted(t for _, t, _ in seen) == list(range(50))
    assert {w for w, _, _ in seen} <= {0, 1}
    assert set(blas_threads) == {1}, "BLAS must run single-threaded inside the worker threads"


@pytest.mark.parametrize("gemm", ["torch", "numpy"])
def test_on_one_worker_only_the_gemm_library_keeps_its_threads(gemm: str) -> None:
    """One worker (``EXPREG_NUM_THREADS=1`` or a one-thread layout): the GEMM's library threads each product, the
    other library stays on one thread, so two thread pools never take turns on the same cores."""
    from threadpoolctl import threadpool_info

    from expreg.core.tuning import Tuning

    be = NumpyBackend(threads=1, tuning=Tuning(exp_float32="torch", exp_float64="torch", gemm=gemm, source="forced"))
    torch.set_num_threads(2)
    seen: list[tuple[int, set[int]]] = []

    def task(worker: int, t: int) -> None:
        seen.append((torch.get_num_threads(), {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}))

    outside = {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
    be.parallel(3, task)
    expected = (2, {1}) if gemm == "torch" else (1, outside)  # NumPy's BLAS as it was outside
    assert len(seen) == 3 and all(s == expected for s in seen)
    assert torch.get_num_threads() == 2  # restored


def test_parallel_reraises_a_worker_error() -> None:
    def task(worker: int, t: int) -> None:
        if t == 7:
            raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        NumpyBackend(threads=2).parallel(20, task)


def test_thread_count_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPREG_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("EXPREG_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="EXPREG_NUM_THREADS"):
        default_threads()
    with pytest.raises(ValueError, match="threads must be >= 1"):
        NumpyBackend(threads=0)
    assert get_backend("numpy", None, 2).threads == 2


def test_errors_name_the_bad_value() -> None:
    with pytest.raises(ValueError, match="'jax'"):
        get_backend("jax")
    with pytest.raises(ValueError, match="CPU only"):
        get_backend("numpy", "cuda")
    with pytest.raises(TypeError, match="int64"):
        canonical_dtype(np.int64)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            get_backend("torch", "cuda")


def test_torch_tensors_are_recognised_and_brought_to_the_host() -> None:
    from expreg.core.backends import host_array, is_torch_tensor

    t = torch.arange(6, dtype=torch.float64, device=DEVICE).reshape(2, 3).requires_grad_()
    x = np.arange(6.0).reshape(2, 3)
    assert is_torch_tensor(t) and not is_torch_tensor(x) and not is_torch_tensor([1.0])
    assert isinstance(host_array(t), np.ndarray) and host_array(x) is x
    np.testing.assert_array_equal(host_array(t), x)
    np.testing.assert_array_equal(get_backend("numpy").asarray(t, np.dtype(np.float32)), x.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_backend_reports_its_arrays_dtype_as_numpy(dtype: type) -> None:
    for be in (get_backend("numpy"), get_backend("torch", DEVICE)):
        assert be.dtype_of(be.zeros((2, 2), np.dtype(dtype))) == np.dtype(dtype)


def test_block_sizes_follow_the_backend() -> None:
    cpu, dev = get_backend("numpy"), get_backend("torch", DEVICE)
    assert ops.plan_blocks(100, 10**6, 4, backend=cpu).block * 100 * 4 <= cpu.block_bytes
    assert ops.plan_blocks(100, 10**6, 4, backend=dev).block >= ops.plan_blocks(100, 10**6, 4, backend=cpu).block
    net = ExpNet.init(3, 10**4, backend="torch", device=DEVICE)
    assert net.plan(50).block == ops.plan_blocks(50, 10**4, 8, backend=net.backend).block


def test_core_import_loads_no_optional_library() -> None:
    import subprocess
    import sys

    code = (
        "import expreg, sys; print(sorted(m for m in ('numba', 'threadpoolctl', 'torch', 'jax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_parallel_works_in_a_forked_child() -> None:
    import multiprocessing as mp

    _FORKED["be"].parallel(4, lambda w, t: None)  # the parent's pool threads exist before the fork
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_forked_sum, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0, "the child hung or failed"
    assert queue.get(timeout=5) == sum(range(40))


_FORKED = {"be": NumpyBackend(threads=2)}


def _forked_sum(queue: object) -> None:
    done: list[int] = []
    lock = threading.Lock()

    def task(worker: int, t: int) -> None:
        with lock:
            done.append(t)

    _FORKED["be"].parallel(40, task)
    queue.put(sum(done))  # type: ignore[attr-defined]


# ------------------------------------------------------- the CUDA path (issue 10, item 6)
#: Tensor methods through which Python code can read a device tensor back to the host (each a
#: synchronisation on CUDA; ``.numpy()`` is not listed: it fails on a CUDA tensor, so it always follows ``.cpu()``).
HOST_READS = ("item", "tolist", "cpu", "__bool__", "__float__", "__int__", "__index__")


def _host_reads_per_step(monkeypatch: pytest.MonkeyPatch, dtype: type, block: int) -> float:
    """Host reads per gradient step of ``train`` on the torch backend (counted calls of HOST_READS)."""
    calls = [0]
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):  # type: ignore[no-untyped-def]
            calls[0] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    X, y = make_dataset(16, 4, seed=2)
    counts = []
    for steps in (2, 7):
        net = ExpNet.init(4, 200, seed=0, dtype=dtype, backend="torch", device=DEVICE, block=block)
        calls[0] = 0
        train(net, X, y, lr=1e-5, epsilon=0.0, max_steps=steps, record_every=0, track_movement=True)
        counts.append(calls[0])
    monkeypatch.undo()
    return (counts[1] - counts[0]) / 5  # the set-up cancels: what each extra step adds


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_step_reads_the_device_three_times_whatever_the_blocks(monkeypatch: pytest.MonkeyPatch, dtype: type) -> None:
    # One read of the overflow flags (predictions and every chunk of the gradient together), one of the
    # m neuron movements, one of the predictions u; before, every chunk and every block read on its own.
    one_block = _host_reads_per_step(monkeypatch, dtype, block=256)
    many_blocks = _host_reads_per_step(monkeypatch, dtype, block=8)  # 25 blocks in 25 chunks
    assert one_block == many_blocks == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA's synchronisation detector needs a GPU")
def test_cuda_sync_detector_counts_three_syncs_per_step() -> None:  # pragma: no cover - runs on a GPU only
    import warnings

    X, y = make_dataset(16, 4, seed=2)
    counts = []
    for steps in (2, 7):
        net = ExpNet.init(4, 200, seed=0, backend="torch", device=DEVICE, block=8)
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                train(net, X, y, lr=1e-5, epsilon=0.0, max_steps=steps, record_every=0, track_movement=True)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        counts.append(sum("synchroniz" in str(w.message) for w in seen))
    assert (counts[1] - counts[0]) / 5 <= 3


def test_backward_writes_gradient_blocks_in_place_without_copies() -> None:
    from torch.profiler import ProfilerActivity, profile

    rng = np.random.default_rng(3)
    X, W, a, y = (
        rng.standard_normal((9, 3)) / 2,
        rng.standard_normal((3, 96)),
        rng.choice([-1.0, 1.0], 96),
        rng.standard_normal(9),
    )
    be = get_backend("torch", DEVICE)
    Xt, Wt, at, yt = (be.asarray(v, np.float64) for v in (X, W, a, y))
    copies = {}
    for block in (96, 8):  # 1 block, 12 blocks
        plan = ops.BlockPlan(block, True)
        G = be.empty((3, 96), np.float64)
        ops.forward_backward(be, EXP, Xt, Wt, at, yt, 1.0, plan, G)  # workspace made outside the profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            ops.forward_backward(be, EXP, Xt, Wt, at, yt, 1.0, plan, G)
        copies[block] = sum(e.count for e in prof.key_averages() if e.key == "aten::copy_")
        u_ref = np.exp(X @ W) @ a
        G_ref = X.T @ ((u_ref - y)[:, None] * np.exp(X @ W) * a)
        assert rel_err(be.to_numpy(G), G_ref) < 1e-12
    assert copies[8] == copies[96], "each gradient block must be written by its GEMM, not copied in"


def test_matmul_out_views_that_blas_writes_in_place() -> None:
    be = get_backend("torch", "cpu")
    G = torch.zeros(5, 40, dtype=torch.float64)
    assert be.matmul_out_ok(G[:, 3:11]) and be.matmul_out_ok(G[:, :1])  # row stride 40 >= width
    assert be.matmul_out_ok(G.T[2:9, :])  # column-major view: a transposed GEMM
    assert not be.matmul_out_ok(G[:, ::2])  # no unit stride: BLAS cannot write it
    A, B = torch.randn(5, 7, dtype=torch.float64), torch.randn(7, 8, dtype=torch.float64)
    be.matmul(A, B, out=G[:, 3:11])
    torch.testing.assert_close(G[:, 3:11], A @ B)
    assert G[:, :3].abs().max() == 0 and G[:, 11:].abs().max() == 0


def test_memory_budget_is_a_fraction_of_the_device_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from expreg.core.backends import TorchBackend

    be = TorchBackend("cpu")
    assert be.device_memory() is None and ops.default_memory_budget(be) == ops.DEFAULT_MEMORY_BUDGET
    be.device = "cuda:0"  # as on a GPU: the allocator's free memory plus what torch already holds
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 2**30)
    assert be.device_memory() == 4 * 2**30
    budget = ops.default_memory_budget(be)
    assert budget == int(ops.DEVICE_MEMORY_FRACTION * 4 * 2**30)
    n, itemsize = 1024, 4
    fits, too_big = budget // (n * itemsize), budget // (n * itemsize) + 1
    assert (
        ops.plan_blocks(n, fits, itemsize, backend=be).keep
        and not ops.plan_blocks(n, too_big, itemsize, backend=be).keep
    )


@pytest.mark.parametrize("keep", [True, False])
def test_scratch_blocks_exist_only_when_activations_are_recomputed(keep: bool) -> None:
    be = get_backend("torch", DEVICE)
    rng = np.random.default_rng(4)
    X, W, a, y = (
        be.asarray(v, np.float64)
        for v in (rng.standard_normal((6, 3)) / 2, rng.standard_normal((3, 40)), np.ones(40), np.zeros(6))
    )
    plan = ops.BlockPlan(8, keep)
    ops.release_workspaces()
    ops.forward_backward(be, EXP, X, W, a, y, 1.0, plan)
    (ws,) = KEPT.workspaces.values()
    assert (ws.kept is not None) == keep
    assert all(z is None for z in ws.z) == keep  # kept activations: the n x block scratch is never allocated
    ops.release_workspaces()


def test_numpy_sum_rows_adds_rows_in_order_like_the_loop() -> None:
    # Row order is what keeps results independent of the thread count (ops sums partial predictions per chunk):
    # the vectorised reduction must round exactly as the row-by-row loop of the generic Backend.sum_rows.
    from expreg.core.backends import Backend

    rng = np.random.default_rng(5)
    be = get_backend("numpy")
    for dtype in (np.float32, np.float64):
        x = (rng.standard_normal((64, 999)) * 10.0 ** rng.uniform(-6, 6, (64, 1))).astype(dtype)
        np.testing.assert_array_equal(be.sum_rows(x), Backend.sum_rows(be, x))
