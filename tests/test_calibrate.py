"""The speed choices (core/tuning.py, core/calibrate.py): every choice gives the float64 reference's results, the cache.

No test here asserts a speed: the calibration's timings decide only which
choice wins, and every choice is checked against an independent float64
computation of the same step, gradient and kernel.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from expreg.core import calibrate, fastpath, gram, ops
from expreg.core.activations import EXP
from expreg.core.backends import NumpyBackend
from expreg.core.tuning import BLOCK_BYTES_CHOICES, EXP_KERNELS, GEMM_LIBRARIES, RECOMPUTE_D_CHOICES, Tuning

TORCH = calibrate.torch_available()
N, D, M, SCALE = 48, 6, 300, 0.05


def _available(kernel: str) -> bool:
    return kernel != "torch" or TORCH


def _problem() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    X = rng.standard_normal((N, D))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    W = rng.standard_normal((D, M))
    a = rng.choice([-1.0, 1.0], M)
    y = rng.uniform(-1, 1, N)
    return X, W, a, y


def _reference() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """u, G and H(W) in float64 from their formulas (docs/theory.md sections 2-3), with whole matrices."""
    X, W, a, y = _problem()
    E = np.exp(X @ W)
    u = SCALE * E @ a
    G = SCALE * X.T @ ((u - y)[:, None] * E * a[None, :])
    H = SCALE**2 * (X @ X.T) * (E @ E.T)
    return u, G, H


CHOICES = [
    pytest.param(exp, gemm, block, threads, id=f"exp={exp}-gemm={gemm}-block={block}-threads={threads}")
    for exp in EXP_KERNELS
    for gemm in GEMM_LIBRARIES
    for block, threads in ((BLOCK_BYTES_CHOICES[0], 2), (BLOCK_BYTES_CHOICES[-1], 1))
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("exp", "gemm", "block_bytes", "threads"), CHOICES)
def test_every_choice_gives_the_reference_step_gradient_and_kernel(
    exp: str, gemm: str, block_bytes: int, threads: int, dtype: type
) -> None:
    if not (_available(exp) and _available(gemm)):
        pytest.skip("PyTorch is not installed")
    tuning = Tuning(exp_float32=exp, exp_float64=exp, gemm=gemm, block_bytes=block_bytes, source="forced")
    be = NumpyBackend(threads=threads, tuning=tuning)
    X, W, a, y = (np.ascontiguousarray(v, dtype=dtype) for v in _problem())
    plan = ops.plan_blocks(N, M, np.dtype(dtype).itemsize, backend=be)
    u, G = ops.forward_backward(be, EXP, X, W, a, y, SCALE, plan)
    H = gram.gram(be, EXP, X, W, SCALE)
    u_ref, G_ref, H_ref = _reference()
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for got, want in ((u, u_ref), (G, G_ref), (H, H_ref)):
        assert got.dtype == dtype or got is H
        assert np.abs(got - want).max() <= tol * np.abs(want).max()


def test_the_block_choice_reaches_the_plan() -> None:
    small, large = BLOCK_BYTES_CHOICES[0], BLOCK_BYTES_CHOICES[-1]
    for block_bytes in (small, large):
        be = NumpyBackend(threads=1, tuning=Tuning(block_bytes=block_bytes))
        plan = ops.plan_blocks(256, 10**6, 4, backend=be)
        assert plan.block == block_bytes // (256 * 4)


def test_wide_inputs_get_their_own_block_from_the_model_to_the_plan() -> None:
    """d <= WIDE_D: ``block_bytes``; d > WIDE_D: ``block_bytes_wide`` (measured at d = 128), through ``ExpNet.plan``."""
    from expreg import ExpNet
    from expreg.core.tuning import WIDE_D

    tuning = Tuning(block_bytes=2**22, block_bytes_wide=2**18, source="forced")
    be = NumpyBackend(threads=1, tuning=tuning)
    for d, bytes_ in ((None, 2**22), (1, 2**22), (WIDE_D, 2**22), (WIDE_D + 1, 2**18), (512, 2**18)):
        assert ops.plan_blocks(256, 10**6, 4, backend=be, d=d).block == bytes_ // (256 * 4)
    calibrate.use(tuning)
    try:
        for d, bytes_ in ((WIDE_D, 2**22), (WIDE_D + 1, 2**18)):
            net = ExpNet.init(d, 10**5, seed=0, dtype=np.float32)
            assert net.plan(256).block == bytes_ // (256 * 4)
    finally:
        calibrate.forget()
    assert "d > 64: 256 KiB" in tuning.describe()
    assert Tuning.from_dict(tuning.as_dict()) == tuning
    with pytest.raises(ValueError, match="block_bytes_wide"):
        Tuning(block_bytes_wide=100)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_recomputing_beyond_the_cache_gives_the_reference_step(dtype: type) -> None:
    """A tuning that recomputes activations (small d, more bytes than ``recompute_beyond``) plans no kept
    activations and a ``block_bytes_recompute`` block, and its step equals the float64 formulas."""
    tuning = Tuning(recompute_d=D, recompute_beyond=N * M * 4 - 1, block_bytes_recompute=2**12, source="forced")
    be = NumpyBackend(threads=2, tuning=tuning)
    itemsize = np.dtype(dtype).itemsize
    plan = ops.plan_blocks(N, M, itemsize, backend=be, d=D)
    assert not plan.keep and plan.block == 2**12 // (N * itemsize) // 8 * 8
    kept = ops.plan_blocks(N, M, itemsize, backend=be, d=D + 1)  # wider inputs keep theirs
    assert kept.keep and kept.block == min(M, tuning.block_bytes // (N * itemsize) // 8 * 8)
    X, W, a, y = (np.ascontiguousarray(v, dtype=dtype) for v in _problem())
    u, G = ops.forward_backward(be, EXP, X, W, a, y, SCALE, plan)
    u_ref, G_ref, _ = _reference()
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for got, want in ((u, u_ref), (G, G_ref)):
        assert np.abs(got - want).max() <= tol * np.abs(want).max()


def test_the_keep_or_recompute_choice_reaches_the_model_and_trains_alike() -> None:
    """Through ``ExpNet.plan``: d <= recompute_d and more than recompute_beyond bytes recompute, else keep;
    ``expreg.train`` then gives the same losses and weights either way, to float64 rounding (the blocks differ,
    so sums are taken in another order)."""
    import expreg
    from expreg import ExpNet

    n, d, m = 64, 8, 4096
    beyond = n * m * 8 // 2
    recompute = Tuning(recompute_d=16, recompute_beyond=beyond, block_bytes_recompute=2**16, source="forced")
    X, y = expreg.make_dataset(n, d, seed=3)
    results = []
    for tuning in (Tuning(source="forced"), recompute):
        calibrate.use(tuning)
        try:
            net = ExpNet.init(d, m, seed=0, dtype=np.float64)
            assert net.plan(n).keep == (tuning is not recompute)
            assert net.plan(n // 4).keep  # n m / 4 values fit under recompute_beyond: kept
            assert ExpNet.init(32, m, seed=0, dtype=np.float64).plan(n).keep  # d > recompute_d: kept
            if tuning is recompute:
                assert net.plan(n).block == 2**16 // (n * 8)
            trained = expreg.train(net, X, y, max_steps=8, epsilon=0.0, record_every=0)
            results.append((np.asarray(trained.history.loss), np.asarray(net.W)))
        finally:
            calibrate.forget()
    (loss_keep, W_keep), (loss_rec, W_rec) = results
    np.testing.assert_allclose(loss_rec, loss_keep, rtol=1e-11)
    np.testing.assert_allclose(W_rec, W_keep, rtol=1e-11, atol=1e-13)
    assert "recomputed beyond 1 MiB for d <= 16" in recompute.describe()
    assert Tuning.from_dict(recompute.as_dict()) == recompute
    for bad in ({"recompute_d": -1}, {"recompute_beyond": -5}, {"recompute_d": True}, {"block_bytes_recompute": 10}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Tuning(**bad)  # type: ignore[arg-type]


def test_the_last_level_cache_is_read_from_sysfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The highest level's size, instruction caches skipped, sizes in K/M or bytes; None without a readable one."""
    entries = [(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "2048K"), (3, "Unified", "266240K")]
    for i, (level, kind, size) in enumerate(entries):
        entry = tmp_path / f"index{i}"
        entry.mkdir()
        (entry / "level").write_text(f"{level}\n")
        (entry / "type").write_text(f"{kind}\n")
        (entry / "size").write_text(f"{size}\n")
    assert calibrate.last_level_cache_bytes(str(tmp_path)) == 266240 * 1024
    (tmp_path / "index3" / "size").write_text("lots\n")  # unreadable: the next level down
    assert calibrate.last_level_cache_bytes(str(tmp_path)) == 2048 * 1024
    assert calibrate.last_level_cache_bytes(str(tmp_path / "missing")) is None
    assert calibrate.beyond_cache_neurons(None) is None
    monkeypatch.setattr(calibrate, "available_memory", lambda: None)
    assert calibrate.beyond_cache_neurons(2**20) is None  # memory unknown: no race


def test_a_winner_other_than_the_default_must_win_again_against_it_alone() -> None:
    """``decide``: one lucky race does not replace the default; two wins do; every time is kept."""
    f32 = np.dtype(np.float32)

    def scripted(*races: dict[str, float]):  # type: ignore[no-untyped-def]
        calls = iter(races)

        def steps(d, dtype, variants, m, rounds):  # type: ignore[no-untyped-def]
            times = next(calls)
            assert set(variants) == set(times) and all(isinstance(t, Tuning) for t in variants.values())
            return times

        return steps

    values = [(2**20,), (2**18,), (2**22,)]
    start = Tuning(source="test")
    seconds: dict[str, float] = {}
    once = scripted({"1048576": 1.0, "262144": 0.5, "4194304": 0.9}, {"1048576": 1.0, "262144": 1.2})
    chosen = calibrate.decide(start, ("block_bytes",), values, [(32, f32)], seconds, steps=once)
    assert chosen.block_bytes == 2**20  # 256 KiB won the first race only
    assert seconds["step block_bytes=262144 d=32 float32"] == 0.5
    assert seconds["confirm step block_bytes=262144 d=32 float32"] == 1.2
    twice = scripted({"1048576": 1.0, "262144": 0.5, "4194304": 0.9}, {"1048576": 1.0, "262144": 0.6})
    assert calibrate.decide(start, ("block_bytes",), values, [(32, f32)], {}, steps=twice).block_bytes == 2**18
    default_wins = scripted({"1048576": 1.0, "262144": 1.02, "4194304": 1.1})  # within MARGIN: no second race
    assert calibrate.decide(start, ("block_bytes",), values, [(32, f32)], {}, steps=default_wins) == start


def test_a_race_alternates_the_order_and_keeps_each_candidates_fastest_round() -> None:
    calls: list[str] = []
    slow_once = {"b": [0.03]}  # b is slow in its first timed call only

    def candidate(name: str):  # type: ignore[no-untyped-def]
        def run() -> None:
            calls.append(name)
            if len(calls) > 2 and slow_once.get(name):
                time.sleep(slow_once[name].pop())

        return run

    best = calibrate.race({"a": candidate("a"), "b": candidate("b")}, rounds=4)
    assert calls == ["a", "b"] + ["a", "b", "b", "a"] * 2  # one untimed call each, then turns, order swapped
    assert set(best) == {"a", "b"} and max(best.values()) < 0.02  # b's slow round is not its best


def test_the_thread_layout_choice_reaches_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXPREG_NUM_THREADS", raising=False)
    assert NumpyBackend(tuning=Tuning(threads=1)).threads == 1
    monkeypatch.setenv("EXPREG_NUM_THREADS", "3")  # the user's word beats the calibration
    assert NumpyBackend(tuning=Tuning(threads=1)).threads == 3
    assert NumpyBackend(threads=2, tuning=Tuning(threads=1)).threads == 2


@pytest.mark.skipif(not TORCH, reason="PyTorch is not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_matmul_writes_numpy_memory_and_strided_column_blocks(dtype: type) -> None:
    rng = np.random.default_rng(3)
    A, B = rng.standard_normal((17, 5)).astype(dtype), rng.standard_normal((5, 40)).astype(dtype)
    G = np.zeros((17, 90), dtype)
    out = fastpath.torch_matmul(A, B[:, 3:33], G[:, 10:40])
    want = A.astype(np.float64) @ B[:, 3:33].astype(np.float64)
    assert np.shares_memory(out, G)
    np.testing.assert_allclose(G[:, 10:40], want, rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert not G[:, :10].any() and not G[:, 40:].any()


@pytest.mark.parametrize("kernel", EXP_KERNELS)
def test_each_exp_kernel_matches_float64_exp(kernel: str) -> None:
    if not _available(kernel):
        pytest.skip("PyTorch is not installed")
    exp_, exp_matvec_ = fastpath.exp_kernels(kernel)
    rng = np.random.default_rng(0)
    Z64 = rng.uniform(-80, 80, (33, 40))
    Z = Z64.astype(np.float32)
    np.testing.assert_allclose(exp_(Z.copy()), np.exp(Z.astype(np.float64)), rtol=5e-7)
    a, acc = np.ones(40, np.float32), np.zeros(33, np.float32)
    exp_matvec_(Z, a, acc)
    np.testing.assert_allclose(acc, np.exp(Z64.astype(np.float32).astype(np.float64)).sum(1), rtol=1e-5)
    big = np.array([[100.0, np.nan]], np.float32)  # overflow and NaN stay visible downstream
    exp_(big)
    assert np.isinf(big[0, 0]) and np.isnan(big[0, 1])


def test_unknown_choices_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="exp_float32='mkl'"):
        Tuning(exp_float32="mkl")
    with pytest.raises(ValueError, match="gemm"):
        Tuning(gemm="eigen")
    with pytest.raises(ValueError, match="block_bytes"):
        Tuning(block_bytes=10)
    with pytest.raises(ValueError, match="unknown exp kernel"):
        fastpath.exp_kernels("mkl")


# ------------------------------------------------------------------ the cache
@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Calibration on, the cache in tmp_path, a fake measurement (counted); the choice in use restored after."""
    monkeypatch.setenv("EXPREG_CALIBRATE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls: list[int] = []
    fake = Tuning(exp_float32="numpy", block_bytes=2**18, threads=1, source="measured", seconds={"x": 1.0})

    def measure() -> Tuning:
        calls.append(1)
        return fake

    monkeypatch.setattr(calibrate, "measure", measure)
    calibrate.forget()
    yield calls, fake, tmp_path
    calibrate.forget()


def test_the_first_call_measures_and_caches_later_ones_read(fresh) -> None:  # type: ignore[no-untyped-def]
    calls, fake, tmp_path = fresh
    assert calibrate.current() == fake and len(calls) == 1
    path = calibrate.cache_path(calibrate.machine_identity())
    assert path.parent == tmp_path / "expreg" and path.exists()
    assert calibrate.current() == fake and len(calls) == 1  # kept in reuse.KEPT.tuning
    calibrate.forget()
    again = calibrate.current()
    assert again == fake and again.source.startswith("cache ") and len(calls) == 1  # read from the file
    assert NumpyBackend().tuning == fake


def test_a_corrupt_cache_is_ignored_with_a_warning_and_rewritten(fresh) -> None:  # type: ignore[no-untyped-def]
    calls, fake, _ = fresh
    path = calibrate.cache_path(calibrate.machine_identity())
    another = json.dumps({"format": calibrate.CACHE_FORMAT, "identity": {"cpu": "another"}, "tuning": {}})
    for bad in ("{not json", another, "[]", json.dumps({"format": True})):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(bad)
        calibrate.forget()
        with pytest.warns(UserWarning, match="corrupt calibration cache"):
            assert calibrate.current() == fake
        assert json.loads(path.read_text())["tuning"]["exp_float32"] == "numpy"
    assert len(calls) == 4


def test_an_older_expregs_cache_is_measured_again_without_a_warning(fresh, recwarn) -> None:  # type: ignore[no-untyped-def]
    """A cache of format 1 (before the block for wide inputs) is not corrupt, only outdated: measured again, rewritten."""
    calls, fake, _ = fresh
    identity = calibrate.machine_identity()
    path = calibrate.cache_path(identity)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = {"format": 1, "identity": identity, "tuning": {"exp_float32": "torch", "block_bytes": 4096}}
    path.write_text(json.dumps(old))
    assert calibrate.current() == fake and len(calls) == 1
    assert not [w for w in recwarn if "calibration" in str(w.message)]
    assert json.loads(path.read_text())["format"] == calibrate.CACHE_FORMAT


def test_a_cache_with_a_lying_choice_is_refused(fresh) -> None:  # type: ignore[no-untyped-def]
    _, fake, _ = fresh
    identity = calibrate.machine_identity()
    path = calibrate.cache_path(identity)
    calibrate.save(path, identity, fake)
    data = json.loads(path.read_text())
    data["tuning"]["gemm"] = "cublas"
    path.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="gemm='cublas'"):
        assert calibrate.current() == fake


def test_an_unwritable_cache_warns_and_still_chooses(fresh, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    _calls, fake, tmp_path = fresh
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # a file where the directory should be
    with pytest.warns(UserWarning, match="cannot write the calibration cache"):
        assert calibrate.current() == fake


def test_turned_off_gives_the_defaults_and_writes_nothing(fresh, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    calls, _, tmp_path = fresh
    monkeypatch.setenv("EXPREG_CALIBRATE", "0")
    calibrate.forget()
    chosen = calibrate.current()
    assert chosen == Tuning.default() and "EXPREG_CALIBRATE=0" in chosen.source
    assert calls == [] and not (tmp_path / "expreg").exists()
    be = NumpyBackend()
    assert be.block_bytes == 2**20 and be.tuning.exp_for(np.float32) == "fastpath"


def test_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert calibrate.cache_dir() == tmp_path / "expreg"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # not absolute: ignored, as the XDG spec says
    assert calibrate.cache_dir() != Path("relative/path/expreg")


def test_the_cache_key_changes_with_the_machine_and_versions() -> None:
    identity = calibrate.machine_identity()
    assert {"cpu", "isa", "blas", "numpy", "torch", "cpus"} <= set(identity)
    # values that differ from this machine's whatever it is (a fixed "AMD EPYC" was this machine's on one)
    for key, value in (
        ("cpu", f"{identity['cpu']} (another)"),
        ("numpy", "0.0"),
        ("cpus", int(identity["cpus"] or 0) + 1),
    ):
        assert calibrate.cache_path({**identity, key: value}) != calibrate.cache_path(identity)


def test_a_real_measurement_picks_among_the_candidates() -> None:
    chosen = calibrate.measure()
    options = calibrate.candidates()
    assert chosen.exp_float32 in options["exp"] and chosen.exp_float64 in options["exp"]
    assert chosen.gemm in options["gemm"] and chosen.block_bytes in BLOCK_BYTES_CHOICES
    assert chosen.block_bytes_wide in BLOCK_BYTES_CHOICES
    assert chosen.threads in (None, 1) and chosen.source.startswith("measured at load average")
    assert all(s > 0 for s in chosen.seconds.values())
    pairs = {f"{e}/{g}" for e in options["exp"] for g in options["gemm"]}
    assert {f"step exp_float32/gemm={p} d={d} float32" for p in pairs for d in (32, 128)} <= set(chosen.seconds)
    assert {f"step block_bytes_wide={b} d=128 float32" for b in BLOCK_BYTES_CHOICES} <= set(chosen.seconds)
    assert {f"step block_bytes_recompute={b} d=16 float32" for b in BLOCK_BYTES_CHOICES} <= set(chosen.seconds)
    assert chosen.block_bytes_recompute in BLOCK_BYTES_CHOICES
    assert chosen.recompute_d in (0, *RECOMPUTE_D_CHOICES)
    assert (chosen.recompute_beyond is None) == (chosen.recompute_d == 0)
    if calibrate.beyond_cache_neurons(calibrate.last_level_cache_bytes()) is not None:
        assert "step recompute_d=0 d=16 float32" in chosen.seconds
        if chosen.recompute_d:
            assert chosen.recompute_beyond == calibrate.last_level_cache_bytes()


def test_cli_calibrate_show_json(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**os.environ, "EXPREG_CALIBRATE": "0", "XDG_CACHE_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "expreg.cli", "calibrate", "--show", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["tuning"]["exp_float32"] == "fastpath" and data["enabled"] is False
    assert data["machine"]["cpu"] == calibrate.cpu_model()


def test_get_backend_calibrates_without_deadlock(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The first get_backend of a process measures (real measurement) while holding the backends' lock."""
    import threading

    from expreg.core.backends import get_backend

    monkeypatch.setenv("EXPREG_CALIBRATE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calibrate.forget()
    made: list[object] = []
    worker = threading.Thread(target=lambda: made.append(get_backend("numpy", threads=1)), daemon=True)
    worker.start()
    worker.join(timeout=120)
    try:
        assert made, "get_backend did not return: a lock taken twice"
        assert made[0].tuning.source.startswith("measured")  # type: ignore[attr-defined]
        assert list((tmp_path / "expreg").glob("calibration-*.json"))
    finally:
        calibrate.forget()


def test_the_calibration_times_the_step_train_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ops.repeatable_train_step``: the gradient step (step size 0) with the next forward pass run ahead, as
    ``expreg.train`` takes it, so the forward pass proper runs once; the shared data W is never written."""
    calls: list[int] = []
    forward = ops._forward
    monkeypatch.setattr(ops, "_forward", lambda *a, **k: (calls.append(1), forward(*a, **k))[1])
    rng = np.random.default_rng(0)
    X = (rng.uniform(-1, 1, (16, 4)) / 2).astype(np.float32)
    W = rng.standard_normal((4, 256)).astype(np.float32)
    W_before = W.copy()
    step, close = ops.repeatable_train_step(
        calibrate.current(), X, W, np.ones(256, np.float32), np.zeros(16, np.float32)
    )
    try:
        for _ in range(4):
            step()
    finally:
        close()
    assert len(calls) == 1
    np.testing.assert_array_equal(W, W_before)


def test_beyond_the_cache_a_tie_goes_to_recomputing_which_holds_less_memory() -> None:
    """``keep_or_recompute``: recomputing is each race's default, so keeping must win by ``MARGIN`` twice; the
    first d where keeping wins ends the races, and keeping everywhere drops ``recompute_beyond``."""

    def scripted(*races: dict[str, float]):  # type: ignore[no-untyped-def]
        calls = iter(races)

        def steps(d, dtype, variants, m, rounds):  # type: ignore[no-untyped-def]
            assert m == 1234
            return next(calls)

        return steps

    start, cache = Tuning(source="test"), 2**28
    small, wide = RECOMPUTE_D_CHOICES
    tie = scripted({str(small): 1.0, "0": 0.97}, {str(wide): 1.3, str(small): 1.0}, {str(wide): 1.3, str(small): 1.0})
    chosen = calibrate.keep_or_recompute(start, cache, 1234, {}, steps=tie)
    assert (chosen.recompute_d, chosen.recompute_beyond) == (small, cache)  # 3 % is a tie at d = 16; keep at 64
    keep = scripted({str(small): 1.0, "0": 0.8}, {str(small): 1.0, "0": 0.8})
    chosen = calibrate.keep_or_recompute(start, cache, 1234, {}, steps=keep)
    assert (chosen.recompute_d, chosen.recompute_beyond) == (0, None)
    both = scripted({str(small): 1.0, "0": 1.2}, {str(wide): 1.0, str(small): 1.01})
    assert calibrate.keep_or_recompute(start, cache, 1234, {}, steps=both).recompute_d == wide
