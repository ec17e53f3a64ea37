"""Sweeps on a Dask cluster (experiments.dask_executor) against the local process pool.

The cluster is a LocalCluster of 2 worker processes (1 thread each) on
127.0.0.1; the sweep is the "lazy" experiment's tiny preset (12 runs).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _faults
import cloudpickle
import dask
import pandas as pd
import pyarrow.parquet as pq
import pytest
from _faults import die_on_first_attempt
from distributed import LocalCluster

from expreg.experiments import ResultStore, get_config, make_executor, make_tasks, run_experiment, run_tasks
from expreg.experiments.dask_executor import DaskExecutor

EXPERIMENT = "lazy"


@pytest.fixture(scope="module")
def cluster() -> Any:
    for module in (sys.modules[__name__], _faults):  # the workers cannot import the tests' modules
        cloudpickle.register_pickle_by_value(module)
    # a client gathering a result from the killed worker retries the connection until this timeout (default 30 s)
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "5s"}),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
        ) as c,
    ):
        yield c
    for module in (sys.modules[__name__], _faults):
        cloudpickle.unregister_pickle_by_value(module)


def _table(directory: Path) -> pd.DataFrame:
    """The result table without the wall times, one row per run, ordered by key."""
    df = ResultStore(directory).read().drop(columns=["wall_seconds"])
    assert df.key.is_unique
    return df.sort_values("key").reset_index(drop=True)


@pytest.fixture(scope="module")
def local_table(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The sweep on the local default: a process pool of 2 workers."""
    out = tmp_path_factory.mktemp("local")
    run_experiment(EXPERIMENT, get_config(EXPERIMENT, "tiny"), out, jobs=2, show_progress=False)
    return _table(out / EXPERIMENT)


def _executed_on_cluster(cluster: Any) -> int:
    """Submissions of ``execute_batch`` whose results the cluster's scheduler received (transitions into "memory")."""
    prefix = cluster.scheduler.task_prefixes.get("execute_batch")
    return 0 if prefix is None else int(prefix.state_counts.get("memory", 0))


class _CountingExecutor(DaskExecutor):
    """Counts the submissions and the runs they carry."""

    def __init__(self, address: str, counts: dict[str, int]) -> None:
        super().__init__(address)
        self._counts = counts

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self._counts["submissions"] += 1
        self._counts["runs"] += len(args[0])
        return super().submit(fn, *args, **kwargs)


def test_dask_sweep_gives_the_local_table(cluster: Any, local_table: pd.DataFrame, tmp_path: Path) -> None:
    cfg = get_config(EXPERIMENT, "tiny")
    before = _executed_on_cluster(cluster)
    counts = {"submissions": 0, "runs": 0}
    result = run_experiment(
        EXPERIMENT,
        cfg,
        tmp_path,
        show_progress=False,
        executor_factory=lambda: _CountingExecutor(cluster.scheduler_address, counts),
    )
    n = len(make_tasks(EXPERIMENT, cfg))
    assert (result.executed, result.skipped, result.rounds) == (n, 0, 1)
    assert (
        counts["runs"] == n and _executed_on_cluster(cluster) - before == counts["submissions"]
    )  # every run went to the cluster
    pd.testing.assert_frame_equal(_table(tmp_path / EXPERIMENT), local_table)
    again = run_experiment(EXPERIMENT, cfg, tmp_path, scheduler=cluster.scheduler_address, show_progress=False)
    assert (again.executed, again.skipped) == (0, n)  # resumed: nothing to do


class _KillingExecutor(DaskExecutor):
    def __init__(self, address: str, marker_dir: Path, doomed: frozenset[str]) -> None:
        super().__init__(address)
        self._marker_dir, self._doomed = str(marker_dir), doomed

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return super().submit(die_on_first_attempt, self._marker_dir, self._doomed, fn, *args, **kwargs)


def test_killed_dask_worker_loses_nothing_and_writes_each_run_once(
    cluster: Any, local_table: pd.DataFrame, tmp_path: Path
) -> None:
    tasks = make_tasks(EXPERIMENT, get_config(EXPERIMENT, "tiny"))
    doomed = frozenset({tasks[5].key})
    markers = tmp_path / "markers"
    markers.mkdir()
    store = ResultStore(tmp_path / "table")
    result = run_tasks(tasks, store, lambda: _KillingExecutor(cluster.scheduler_address, markers, doomed))
    for key in doomed:  # the doomed run killed its worker, then ran again in another process
        killed_pid = (markers / f"killed-{key}").read_text()
        assert (markers / f"ran-{key}").read_text() != killed_pid
    assert result.executed == len(tasks) and not result.failures
    written = [
        k
        for p in store.parts_dir.glob("part-*.parquet")
        for k in pq.read_table(p, columns=["key"]).column("key").to_pylist()
    ]
    assert sorted(written) == sorted(t.key for t in tasks)  # each run written once: none lost, none twice
    pd.testing.assert_frame_equal(_table(store.directory), local_table)


def test_a_cluster_without_workers_is_announced() -> None:
    with LocalCluster(
        n_workers=0, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR
    ) as empty:
        with pytest.warns(UserWarning, match="has no workers yet"):
            executor = make_executor(scheduler=empty.scheduler_address)
        executor.shutdown()


def test_unreachable_scheduler_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"scheduler='tcp://127.0.0.1:9'.*nothing answers"):
        make_executor(scheduler="tcp://127.0.0.1:9")
    with pytest.raises(ValueError, match="not a Dask scheduler address"):
        make_executor(scheduler="http://127.0.0.1:8786")
