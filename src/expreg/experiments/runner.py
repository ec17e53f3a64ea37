"""Sweep execution: tasks through any ``concurrent.futures.Executor``.

One code path for every executor: ``run_tasks`` submits the unfinished
tasks, and as each future completes the driver appends its row to the
result table (``store.ResultStore``, atomic part files). Runs already in the
table are skipped. If the executor breaks (a worker process killed: the
pool raises ``BrokenExecutor`` for every task in flight), finished rows are
already on disk; the runner builds a new executor and resubmits the tasks
still missing, at most ``max_retries`` times, so every run appears once.

``make_executor`` is the one place an executor is built: a local process
pool, or, given a scheduler address, a Dask cluster (``dask_executor``).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..backends import usable_cpus
from .base import Task, execute, get_experiment, make_tasks
from .store import ResultStore

try:  # BrokenExecutor is the base of BrokenProcessPool and BrokenThreadPool
    from concurrent.futures import BrokenExecutor
except ImportError:  # pragma: no cover
    BrokenExecutor = BrokenProcessPool  # type: ignore[misc,assignment]

ProgressFn = Callable[[int, int], None]


class SweepError(RuntimeError):
    """Some tasks of a sweep failed; the finished rows are saved."""


def default_jobs() -> int:
    """Cores this process may use (``backends.usable_cpus``)."""
    return usable_cpus()


def _limit_threads(expreg_threads: int = 1) -> None:
    """Worker initialiser: one BLAS/OpenMP thread per worker (the pool provides the parallelism).

    ``expreg_threads`` is the size of expreg's own thread pool in this worker
    (``EXPREG_NUM_THREADS``): the cores divided among the workers, so that
    workers times threads never oversubscribes the machine.
    """
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ["EXPREG_NUM_THREADS"] = str(max(1, int(expreg_threads)))
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl is optional
        pass


def make_executor(jobs: int | None = None, scheduler: str | None = None) -> Executor:
    """The executor a sweep runs on.

    Parameters
    ----------
    jobs : int, optional
        Worker processes of the local pool; default all cores.
    scheduler : str, optional
        Address of a running Dask scheduler ("tcp://HOST:PORT"): the tasks go
        to its workers through ``distributed.Client(scheduler).get_executor()``
        (``dask_executor.DaskExecutor``); ``jobs`` is then unused.
    """
    if scheduler is not None:
        from .dask_executor import DaskExecutor

        return DaskExecutor(scheduler)
    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    # spawn: no fork of a process that runs threads (the progress bar), same on every OS
    threads = max(1, default_jobs() // jobs)
    return ProcessPoolExecutor(
        max_workers=jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_limit_threads, initargs=(threads,)
    )


@dataclass
class SweepResult:
    """What ``run_tasks`` did: runs executed now, runs skipped (already done), retries used."""

    executed: int = 0
    skipped: int = 0
    rounds: int = 0
    failures: dict[str, str] = field(default_factory=dict)


def run_tasks(
    tasks: list[Task],
    store: ResultStore,
    executor_factory: Callable[[], Executor],
    *,
    max_retries: int = 3,
    max_attempts: int = 2,
    progress: ProgressFn | None = None,
    on_executor: Callable[[Executor], None] | None = None,
) -> SweepResult:
    """Run every task not yet in ``store``; append each row as its future completes.

    Parameters
    ----------
    tasks : list of Task
    store : ResultStore
    executor_factory : callable () -> Executor
        Called once per round; a round ends when every submitted future is
        done (or the executor broke).
    max_retries : int
        Extra rounds after the first for tasks lost to a broken executor or
        to an exception.
    max_attempts : int
        Times a task that raised is run before it counts as failed. A
        second attempt absorbs transient errors of a cluster (a worker lost
        while its result was in transit); a deterministic error fails again
        and is reported with its last message.
    progress : callable (done, total), optional
        Called with runs done (skipped ones included) out of the total.
    on_executor : callable, optional
        Called with each new executor (tests use it to kill a worker).

    Raises
    ------
    SweepError
        A task raised an exception, or tasks were still missing after the
        retries; every finished row is in the store.
    """
    done = store.done_keys()
    unique: dict[str, Task] = {}
    for t in tasks:
        unique.setdefault(t.key, t)
    pending = {k: t for k, t in unique.items() if k not in done}
    result = SweepResult(skipped=len(unique) - len(pending))
    attempts: dict[str, int] = {}
    total = len(unique)
    if progress:
        progress(result.skipped, total)
    while pending and result.rounds <= max_retries:
        result.rounds += 1
        executor = executor_factory()
        if on_executor:
            on_executor(executor)
        broken = False
        futures: dict[Future[Any], Task] = {}
        try:
            futures = {executor.submit(execute, t): t for t in pending.values()}
            for fut in as_completed(futures):
                task = futures[fut]
                try:
                    row = fut.result()
                except BrokenExecutor:
                    broken = True
                    continue
                except Exception as exc:  # keep going; retried next round, then reported at the end
                    attempts[task.key] = attempts.get(task.key, 0) + 1
                    if attempts[task.key] >= max_attempts:
                        result.failures[task.key] = f"{type(exc).__name__}: {exc} (params {task.params}, seed {task.seed})"
                        pending.pop(task.key, None)
                    continue
                store.append([row])
                pending.pop(task.key, None)
                result.executed += 1
                if progress:
                    progress(total - len(pending) - len(result.failures), total)
        finally:  # only the Executor interface: cancel what has not started, then shut down
            for fut in futures:
                fut.cancel()
            executor.shutdown(wait=not broken)
    if result.failures:
        first = next(iter(result.failures.values()))
        raise SweepError(f"{len(result.failures)} of {total} runs failed; finished rows are saved. First failure: {first}")
    if pending:
        raise SweepError(f"{len(pending)} of {total} runs were still missing after {max_retries} retries (worker processes kept dying); "
                         "finished rows are saved: run the same command again to resume")
    return result


class RichProgress:
    """A rich progress bar: runs done, runs left, elapsed time and ETA."""

    def __init__(self, title: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn(f"[bold]{title}[/bold]"), BarColumn(), MofNCompleteColumn(), TextColumn("runs, {task.fields[left]} left"),
                             TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True))
        self._task = self._bar.add_task(title, total=None, left="?")

    def __enter__(self) -> "RichProgress":
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._bar.__exit__(*exc)

    def __call__(self, done: int, total: int) -> None:
        if self._bar.tasks[0].total is None:  # the ETA counts only runs done in this session
            self._bar.reset(self._task, total=total - done, completed=0, left=total - done)
            self._offset = done
            return
        self._bar.update(self._task, completed=done - self._offset, left=total - done)


def run_experiment(name: str, config: Any, out: str | Path, *, jobs: int | None = None, scheduler: str | None = None,
                   show_progress: bool = True, max_retries: int = 3,
                   executor_factory: Callable[[], Executor] | None = None) -> SweepResult:
    """Run experiment ``name`` under ``config``: tasks into ``out/name/results.parquet``.

    Writes ``out/name/config.json`` (the configuration, its hash) first; the
    analysis (``analysis.analyse``) is separate. ``executor_factory``
    replaces ``make_executor(jobs, scheduler)`` (e.g. a thread pool in tests).
    """
    from ..storage import write_json_atomic

    get_experiment(name)
    directory = Path(out) / name
    store = ResultStore(directory)
    write_json_atomic(directory / "config.json", {"experiment": name, "versioned_name": config.versioned_name,
                                                  "config_hash": config.config_hash, "config": config.model_dump(mode="json")})
    tasks = make_tasks(name, config)
    store.compact()
    factory = executor_factory or (lambda: make_executor(jobs, scheduler))
    if show_progress:
        with RichProgress(name) as bar:
            result = run_tasks(tasks, store, factory, progress=bar, max_retries=max_retries)
    else:
        result = run_tasks(tasks, store, factory, max_retries=max_retries)
    store.compact()
    return result
