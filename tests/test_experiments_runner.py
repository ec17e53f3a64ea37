"""Sweeps: resume, executor independence, a killed worker, failing tasks."""

from __future__ import annotations

import contextlib
import os
import signal
from concurrent.futures import Executor, ThreadPoolExecutor

import numpy as np
import pytest
from _faults import die_on_first_attempt

from expreg.experiments import ResultStore, Task, execute, get_config, make_executor, make_tasks, run_tasks
from expreg.experiments.runner import SweepError


def threads():
    return ThreadPoolExecutor(max_workers=2)


def test_resume_skips_finished_runs(tmp_path):
    tasks = make_tasks("lazy", get_config("lazy", "tiny"))
    store = ResultStore(tmp_path)
    first = run_tasks(tasks[:5], store, threads)
    assert (first.executed, first.skipped) == (5, 0)
    seen = []
    second = run_tasks(tasks, store, threads, progress=lambda done, total: seen.append((done, total)))
    assert (second.executed, second.skipped) == (len(tasks) - 5, 5)
    assert seen[0] == (5, len(tasks)) and seen[-1] == (len(tasks), len(tasks))
    third = run_tasks(tasks, store, threads)
    assert (third.executed, third.skipped, third.rounds) == (0, len(tasks), 0)
    df = store.read()
    assert sorted(df.key) == sorted(t.key for t in tasks)


class _Dooming(Executor):
    """A process pool whose tasks in ``doomed`` kill their worker on their first attempt."""

    def __init__(self, marker_dir, doomed: frozenset) -> None:
        self._inner, self._marker_dir, self._doomed = make_executor(2), str(marker_dir), doomed

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        return self._inner.submit(die_on_first_attempt, self._marker_dir, self._doomed, fn, *args, **kwargs)

    def shutdown(self, wait=True, *, cancel_futures=False):  # type: ignore[override]
        self._inner.shutdown(wait=wait, cancel_futures=cancel_futures)


def _rows_in_parts(store: ResultStore) -> list[str]:
    import pyarrow.parquet as pq

    return [
        k
        for p in store.parts_dir.glob("part-*.parquet")
        for k in pq.read_table(p, columns=["key"]).column("key").to_pylist()
    ]


def test_killed_worker_loses_nothing_and_runs_each_task_once(tmp_path):
    tasks = make_tasks("convergence", get_config("convergence", "tiny", seeds=list(range(6))))
    doomed = frozenset({tasks[len(tasks) // 2].key})
    markers = tmp_path / "markers"
    markers.mkdir()
    store = ResultStore(tmp_path / "table")
    result = run_tasks(tasks, store, lambda: _Dooming(markers, doomed))
    for key in doomed:  # the doomed run killed its worker, then ran again in another process
        killed_pid = (markers / f"killed-{key}").read_text()
        assert (markers / f"ran-{key}").read_text() != killed_pid
    assert result.rounds >= 2, "the broken pool was not replaced"
    assert result.executed == len(tasks) and not result.failures
    keys = _rows_in_parts(store)
    assert sorted(keys) == sorted(t.key for t in tasks)  # every run written once: none lost, none twice
    # a retried run gives the same outcome as a run executed directly
    df = store.read()
    row = df[df.key == next(iter(doomed))].iloc[0]
    direct = execute(next(t for t in tasks if t.key in doomed))
    assert row.steps == direct["steps"] and np.isclose(row.final_residual, direct["final_residual"])


def test_failing_task_is_reported_and_others_saved(tmp_path):
    good = make_tasks("kernel", get_config("kernel", "tiny"))[:3]
    bad = Task("kernel", {**good[0].config, "n": -1}, good[0].config_hash, good[0].params, 99)
    store = ResultStore(tmp_path)
    with pytest.raises(SweepError, match=r"(?s)1 of 4 runs failed.*seed 99"):
        run_tasks([*good, bad], store, threads)
    assert store.done_keys() == {t.key for t in good}


def test_make_executor_arguments():
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        make_executor(0)
    with pytest.raises(ValueError, match="scheduler"):
        make_executor(1, scheduler="tcp://127.0.0.1:8786")


def test_pool_workers_share_the_cores_without_oversubscribing():
    from expreg.core.backends import default_threads
    from expreg.experiments.runner import default_jobs

    for jobs in (1, 2):
        with make_executor(jobs) as pool:
            threads = pool.submit(default_threads).result(timeout=60)
        assert threads == max(1, default_jobs() // jobs)


class _FlakyOnce(ThreadPoolExecutor):
    """Runs tasks in threads; the first attempt of one task raises, as a lost cluster worker might."""

    def __init__(self, flaky_key: str, calls: dict[str, int]) -> None:
        super().__init__(max_workers=2)
        self._flaky_key, self._calls = flaky_key, calls

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        batch = args[0]
        for task in batch:
            self._calls[task.key] = self._calls.get(task.key, 0) + 1
        if any(task.key == self._flaky_key and self._calls[task.key] == 1 for task in batch):

            def boom(*_a, **_k):
                raise RuntimeError("transient: worker lost while its result was in transit")

            return super().submit(boom)
        return super().submit(fn, *args, **kwargs)


def test_transient_task_error_is_retried_once(tmp_path):
    tasks = make_tasks("kernel", get_config("kernel", "tiny"))[:3]
    calls: dict[str, int] = {}
    store = ResultStore(tmp_path)
    result = run_tasks(tasks, store, lambda: _FlakyOnce(tasks[1].key, calls))
    assert not result.failures and result.executed == 3 and result.rounds == 2
    assert calls[tasks[1].key] == 2 and calls[tasks[0].key] == 1  # only the failed run ran again
    assert store.done_keys() == {t.key for t in tasks}
    with pytest.raises(SweepError, match="1 of 3 runs failed"):  # a run that fails every time is still reported
        run_tasks(tasks, ResultStore(tmp_path / "again"), lambda: _FlakyOnce(tasks[1].key, {}), max_attempts=1)


# --- a real sweep from the command line, ended by a signal -------------------------------------

#: lazy, tiny preset with 60 seeds: 360 short runs (several seconds), long enough to be interrupted.
# 360 runs of 1500 steps each (epsilon never reached): about 8 s on 2 idle cores, so that the sweep is well
# under way, not finishing, when the first rows reach the disk and the signal is sent
SWEEP_TOML = 'experiment = "lazy"\npreset = "tiny"\nepsilon = 1e-12\nmax_steps = 1500\nseeds = [{}]\n'.format(
    ", ".join(str(s) for s in range(60))
)
WAIT_S = 120.0  # bound on every wait for the sweep (the machine may be loaded); none is a timing assertion


@pytest.fixture
def sweep_cli(tmp_path):
    """Start `expreg run lazy` in its own session; at teardown kill whatever it left (by pid)."""
    import subprocess
    import sys

    import psutil

    started: list = []
    config = tmp_path / "sweep.toml"
    config.write_text(SWEEP_TOML)
    src = os.path.dirname(os.path.dirname(os.path.abspath(__import__("expreg").__file__)))
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def start(out):
        cmd = [
            sys.executable,
            "-c",
            "import sys; from expreg.cli import main; sys.exit(main(sys.argv[1:]))",
            "run",
            "lazy",
            "--config",
            str(config),
            "--out",
            str(out),
            "--jobs",
            "2",
            "--quiet",
        ]
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            # Ctrl-C as in a terminal: a test run started in the background by a shell without job control
            # inherits SIGINT ignored (POSIX), and the driver would then never see the Ctrl-C sent to it
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        started.append(psutil.Process(proc.pid))
        return proc

    def track(procs):
        started.extend(procs)

    start.track = track
    yield start
    for p in started:  # psutil.Process checks the pid still names the process it saw
        with contextlib.suppress(psutil.Error):
            p.kill()


def _wait_for(condition, what: str):
    import time

    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def _alive(procs) -> list:
    import psutil

    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


def _sweep_under_way(sweep_cli, out):
    """Start the sweep; return (driver, its descendants) once finished rows are on disk."""
    import psutil

    proc = sweep_cli(out)
    parts = out / "lazy" / "parts"
    _wait_for(lambda: proc.poll() is not None or any(parts.glob("part-*.parquet")), "the first finished rows")
    assert proc.poll() is None, f"the sweep ended before it was interrupted: {proc.communicate()}"
    descendants = psutil.Process(proc.pid).children(recursive=True)
    sweep_cli.track(descendants)
    assert len(descendants) >= 2  # the two workers (and the server they fork from)
    return proc, descendants


def _saved_keys(out) -> set[str]:
    return ResultStore(out / "lazy").done_keys()


def test_kill_9_of_the_driver_ends_its_workers_and_a_rerun_resumes(sweep_cli, tmp_path):
    out = tmp_path / "out"
    proc, workers = _sweep_under_way(sweep_cli, out)
    proc.kill()
    proc.wait()
    _wait_for(lambda: not _alive(workers), "the workers to exit after their driver was killed")
    saved = _saved_keys(out)
    assert saved  # finished rows written before the kill are kept
    rerun = sweep_cli(out)
    stdout, stderr = rerun.communicate(timeout=280)
    assert rerun.returncode == 0, stderr
    total = len(make_tasks("lazy", get_config("lazy", config_file=tmp_path / "sweep.toml")))
    assert f"{total - len(saved)} runs done now, {len(saved)} already in the table" in stdout  # resumed
    df = ResultStore(out / "lazy").read()
    assert len(df) == total and df.key.is_unique


@pytest.mark.parametrize("how", ["SIGTERM to the driver", "Ctrl-C (SIGINT to the process group)"])
def test_sigterm_and_ctrl_c_end_the_sweep_cleanly(sweep_cli, tmp_path, how):
    import re

    out = tmp_path / "out"
    proc, workers = _sweep_under_way(sweep_cli, out)
    if how.startswith("SIGTERM"):
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
    _, stderr = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 130, stderr
    message = re.search(
        r"(\d+) of (\d+) runs are saved in .*run the same command again to resume", " ".join(stderr.split())
    )
    assert message, stderr
    assert "Traceback" not in stderr
    assert int(message.group(1)) == len(_saved_keys(out)) > 0  # every finished run written, as the message says
    assert int(message.group(1)) < int(message.group(2))  # interrupted with runs left
    _wait_for(lambda: not _alive(workers), "the workers to exit")


def test_batch_size_follows_the_runs_seconds():
    from expreg.experiments.runner import MAX_BATCH, _BatchSizer

    sizer = _BatchSizer(0.25)
    assert sizer.size(left=100, slots=4) == 1  # nothing measured yet: one run at a time
    sizer.observe(0.05)
    assert sizer.size(left=100, slots=4) == 5  # 0.25 s / 0.05 s
    assert sizer.size(left=10, slots=4) == 3  # no more than an even share of what is left: ceil(10 / 4)
    sizer.observe(0.001)  # average (0.05 + 0.001) / 2
    assert sizer.size(left=1000, slots=4) == int(0.25 / 0.0255)
    for _ in range(20):
        sizer.observe(1e-4)
    assert sizer.size(left=1000, slots=4) == MAX_BATCH
    sizer.observe(10.0)
    assert sizer.size(left=1000, slots=4) == 1  # long runs travel alone
    assert _BatchSizer(0.0).size(left=1000, slots=4) == 1  # batching off


class _CountingPool(ThreadPoolExecutor):
    def __init__(self, sizes: list[int]) -> None:
        super().__init__(max_workers=2)
        self._sizes = sizes

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        self._sizes.append(len(args[0]))
        return super().submit(fn, *args, **kwargs)


def test_small_runs_travel_in_batches_and_each_is_written_once(tmp_path):
    tasks = make_tasks("lazy", get_config("lazy", "tiny", seeds=list(range(8))))
    sizes: list[int] = []
    store = ResultStore(tmp_path)
    result = run_tasks(tasks, store, lambda: _CountingPool(sizes), batch_s=10.0)  # tiny runs: batches grow to the cap
    assert result.executed == len(tasks) and sum(sizes) == len(tasks)
    assert sizes[0] == 1 and max(sizes) > 1 and len(sizes) < len(tasks)
    assert sorted(_rows_in_parts(store)) == sorted(t.key for t in tasks)
    row = store.read().set_index("key").loc[tasks[-1].key]
    direct = execute(tasks[-1])
    assert row.steps == direct["steps"] and row.max_movement == direct["max_movement"]


def test_a_failing_run_in_a_batch_spares_the_others():
    from expreg.experiments.base import execute_batch

    good = make_tasks("kernel", get_config("kernel", "tiny"))[:2]
    bad = Task("kernel", {**good[0].config, "n": -1}, good[0].config_hash, good[0].params, 99)
    (ok0, row0), (ok1, err), (ok2, row2) = execute_batch([good[0], bad, good[1]])
    assert ok0 and ok2 and not ok1
    assert err.startswith("ValidationError") and "n" in err
    assert row0["key"] == good[0].key and row2["key"] == good[1].key


class _OrderPool(ThreadPoolExecutor):
    """One worker; records the seeds of the runs in the order they were submitted."""

    def __init__(self, order: list[tuple[int, int]]) -> None:
        super().__init__(max_workers=1)
        self._order = order

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        self._order.extend((t.params["m"], t.seed) for t in args[0])
        return super().submit(fn, *args, **kwargs)


def test_costliest_runs_are_submitted_first_ties_in_sweep_order(tmp_path):
    """Longest-processing-time order (a lazy run's cost is its width): no worker is left alone with a wide run
    at the end; runs of equal cost keep the order of ``tasks``."""
    cfg = get_config("lazy", "tiny")
    tasks = make_tasks("lazy", cfg)
    assert [t.cost for t in tasks] == [float(t.params["m"]) for t in tasks]
    order: list[tuple[int, int]] = []
    run_tasks(tasks, ResultStore(tmp_path), lambda: _OrderPool(order), batch_s=0.0)
    expected = sorted(((t.params["m"], t.seed) for t in tasks), key=lambda ms: -ms[0])  # stable: sweep order in ties
    assert order == expected
    assert [m for m, _ in order][:2] == [max(cfg.widths)] * 2


def test_every_experiment_declares_the_cost_of_its_runs():
    from expreg.experiments.base import EXPERIMENTS

    for name in EXPERIMENTS:
        tasks = make_tasks(name, get_config(name, "tiny"))
        costs = [t.cost for t in tasks]
        assert all(c > 0 for c in costs) and len(set(costs)) > 1, name


def test_an_interrupt_reports_exactly_the_runs_it_saved(tmp_path, monkeypatch):
    """Ctrl-C can land between a row reaching the writer and its run leaving the pending set (here: in the
    batch sizer's bookkeeping, which runs between the two): the message counts what is in the store."""
    import re

    from expreg.experiments.runner import SweepInterrupted, _BatchSizer

    calls = {"n": 0}
    observe = _BatchSizer.observe

    def interrupted_on_third(self, seconds):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        observe(self, seconds)

    monkeypatch.setattr(_BatchSizer, "observe", interrupted_on_third)
    tasks = make_tasks("lazy", get_config("lazy", "tiny"))
    store = ResultStore(tmp_path)
    with pytest.raises(SweepInterrupted) as err:
        run_tasks(tasks, store, lambda: ThreadPoolExecutor(max_workers=1), batch_s=0.0, flush_s=60.0)
    saved = int(re.search(r"(\d+) of (\d+) runs are saved", str(err.value)).group(1))
    assert saved == len(store.read()) == 3
