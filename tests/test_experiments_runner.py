"""Sweeps: resume, executor independence, a killed worker, failing tasks."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

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


def test_killed_worker_loses_nothing_and_runs_each_task_once(tmp_path):
    cfg = get_config("convergence", "tiny", seeds=list(range(10)))
    tasks = make_tasks("convergence", cfg)
    store = ResultStore(tmp_path)
    killed = []

    def kill_one_worker(executor):
        if killed:
            return

        def killer():
            deadline = time.time() + 60
            while time.time() < deadline and len(store.done_keys()) < 2:  # some rows finished, others in flight
                time.sleep(0.05)
            pid = next(iter(executor._processes))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

        threading.Thread(target=killer, daemon=True).start()

    result = run_tasks(tasks, store, lambda: make_executor(2), on_executor=kill_one_worker)
    assert killed, "the worker was not killed"
    assert result.rounds >= 2, "the broken pool was not replaced"
    df = store.read()
    assert len(df) == len(tasks) and sorted(df.key) == sorted(t.key for t in tasks)
    parts_rows = sum(1 for _ in store.parts_dir.glob("part-*.parquet"))
    assert parts_rows == len(tasks)  # one part per finished run: nothing written twice
    # a retried run gives the same outcome as a run executed directly
    row = df[df.key == tasks[-1].key].iloc[0]
    direct = execute(tasks[-1])
    assert row.steps == direct["steps"] and np.isclose(row.final_residual, direct["final_residual"])


def test_failing_task_is_reported_and_others_saved(tmp_path):
    good = make_tasks("kernel", get_config("kernel", "tiny"))[:3]
    bad = Task("kernel", {**good[0].config, "n": -1}, good[0].config_hash, good[0].params, 99)
    store = ResultStore(tmp_path)
    with pytest.raises(SweepError, match=r"(?s)1 of 4 runs failed.*seed 99"):
        run_tasks(good + [bad], store, threads)
    assert store.done_keys() == {t.key for t in good}


def test_make_executor_arguments():
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        make_executor(0)
    with pytest.raises(ValueError, match="scheduler"):
        make_executor(1, scheduler="tcp://127.0.0.1:8786")


def test_pool_workers_share_the_cores_without_oversubscribing():
    from expreg.backends import default_threads
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
        task = args[0]
        self._calls[task.key] = self._calls.get(task.key, 0) + 1
        if task.key == self._flaky_key and self._calls[task.key] == 1:
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
