"""Sweep execution: tasks through any ``concurrent.futures.Executor``.

One code path for every executor: ``run_tasks`` submits the unfinished
tasks, and as futures complete the driver appends their rows to the result
table (``store.ResultStore``, atomic part files, one per second of finished
runs: ``_RowWriter``). Runs already in the table are skipped. If the
executor breaks (a worker process killed: the pool raises
``BrokenExecutor`` for every task in flight), finished rows are written;
the runner builds a new executor and resubmits the tasks still missing, at
most ``max_retries`` times, so every run appears once.

``make_executor`` is the one place an executor is built: a local process
pool whose workers are forked warm from a server process and end when the
driver is gone (``worker``), or, given a scheduler address, a Dask cluster
(``dask_executor``). Ctrl-C and SIGTERM (``sigterm_interrupts``) end a sweep
cleanly: finished rows written, workers killed, ``SweepInterrupted``
raised; running the sweep again resumes it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Executor, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from ..core.backends import usable_cpus
from ..core.progress import rich_bar
from ..core.storage import write_json_atomic
from .base import Task, check_inputs, execute_batch, make_tasks
from .store import ResultStore

ProgressFn = Callable[[int, int], None]


class SweepError(RuntimeError):
    """Some tasks of a sweep failed; the finished rows are saved."""


def default_jobs() -> int:
    """Cores this process may use (``backends.usable_cpus``)."""
    return usable_cpus()


#: Modules the worker server imports once (``warm``: experiments and compiled kernels).
WORKER_PRELOAD = [f"{__package__}.warm"]


def _mp_context() -> Any:
    """multiprocessing's *forkserver* where the OS has it (POSIX), *spawn* otherwise (Windows).

    The forkserver is one clean process per driver, started the first time a
    pool needs a worker, that imports ``WORKER_PRELOAD`` (about 1.5 s, once)
    and forks each worker from there: a worker then starts in milliseconds,
    warm, in every pool this driver builds (rounds after a broken pool,
    later experiments). It is started with one BLAS thread; it never runs
    the driver's threads (the progress bar), so forking it is safe.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():  # pragma: no cover - Windows
        return multiprocessing.get_context("spawn")
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(WORKER_PRELOAD)
    saved = {v: os.environ.get(v) for v in _BLAS_VARS}
    os.environ.update({v: "1" for v in _BLAS_VARS})
    try:
        forkserver.ensure_running()  # inherits this environment: BLAS loads single-threaded in the server
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
    return ctx


_BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def make_executor(jobs: int | None = None, scheduler: str | None = None) -> Executor:
    """The executor a sweep runs on.

    Parameters
    ----------
    jobs : int, optional
        Worker processes of the local pool; default all cores. Workers are
        forked warm from a server process (``_mp_context``), each with
        ``cores // jobs`` expreg threads and one BLAS thread, SIGINT
        ignored, and each exits by itself when the driver is gone
        (``worker.init_worker``).
    scheduler : str, optional
        Address of a running Dask scheduler ("tcp://HOST:PORT"): the tasks go
        to its workers through ``distributed.Client(scheduler).get_executor()``
        (``dask_executor.DaskExecutor``); ``jobs`` is then unused.
    """
    if scheduler is not None:
        from .dask_executor import DaskExecutor

        return DaskExecutor(scheduler)
    cores = default_jobs()
    jobs = cores if jobs is None else int(jobs)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if jobs > cores:  # one process per run would start (10^6 processes): never faster than one per core
        warnings.warn(
            f"jobs={jobs} is more than the {cores} usable cores; using {cores} worker processes", stacklevel=2
        )
        jobs = cores
    from .worker import init_worker

    threads = max(1, cores // jobs)
    return ProcessPoolExecutor(max_workers=jobs, mp_context=_mp_context(), initializer=init_worker, initargs=(threads,))


def terminate_workers(executor: Executor) -> None:
    """Kill the worker processes of a local pool now (runs in progress are lost; other executors untouched).

    ``ProcessPoolExecutor.terminate_workers`` where Python has it (3.14),
    else the same on its process table. A Dask executor's workers belong
    to the cluster and are left running.
    """
    terminate = getattr(executor, "terminate_workers", None)
    if callable(terminate):  # pragma: no cover - Python >= 3.14
        terminate()
        return
    processes = getattr(executor, "_processes", None) if isinstance(executor, ProcessPoolExecutor) else None
    for process in list((processes or {}).values()):
        with contextlib.suppress(OSError, ValueError):  # already gone or closed
            process.kill()


class SweepInterrupted(KeyboardInterrupt):
    """The sweep was interrupted (Ctrl-C, SIGTERM); the finished rows are saved and its workers ended."""


#: Seconds the driver gathers finished rows before writing them as one part file.
FLUSH_SECONDS = 1.0


class _RowWriter:
    """Finished rows into the store, one part file per ``flush_s`` seconds instead of one per run.

    A part file costs a Parquet encoding and an fsync (about 8 ms of the
    driver's CPU and more of waiting), as much as a small run itself; one
    per second keeps that below a percent of the sweep. ``run_tasks``
    flushes at the end of each round and when interrupted, so only a
    ``kill -9`` of the driver loses rows: at most those finished in its
    last ``flush_s`` seconds, which the next run computes again.
    """

    def __init__(self, store: ResultStore, flush_s: float) -> None:
        self._store, self._flush_s = store, flush_s
        self._rows: list[dict[str, Any]] = []
        self._last = time.monotonic()
        #: Rows in the store so far (what an interrupted sweep reports as saved).
        self.written = 0

    def add(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        if time.monotonic() - self._last >= self._flush_s:
            self.flush()

    def flush(self) -> None:
        if self._rows:  # cleared only once written: an interrupt inside append leaves them for the next flush
            self._store.append(self._rows)
            self.written += len(self._rows)
            self._rows = []
        self._last = time.monotonic()


#: Seconds of runs one submission to a worker carries (``_BatchSizer``).
BATCH_SECONDS = 0.25
#: Runs one submission carries at most.
MAX_BATCH = 16


class _BatchSizer:
    """How many runs the next submission carries: about ``batch_s`` seconds of them.

    A submission costs a round trip between driver and worker (pickling,
    pipes, waking two processes: a millisecond on an idle machine, tens on
    a loaded one), as much as a small run. The sizer keeps a moving average
    of the last runs' seconds and sends ``batch_s / average`` runs at a time
    (at most ``MAX_BATCH``); one run at a time until a run has finished,
    and never more than an even share of what is left, so the last batches
    still spread over every worker. A batch's rows come back when the whole
    batch is done: a kill of the driver loses at most the batches in flight.
    """

    def __init__(self, batch_s: float) -> None:
        self._batch_s = batch_s
        self._per_run: float | None = None

    def observe(self, seconds: float) -> None:
        """A run took ``seconds``."""
        self._per_run = seconds if self._per_run is None else 0.5 * (self._per_run + seconds)

    def size(self, left: int, slots: int) -> int:
        """Runs for the next submission, with ``left`` runs not yet submitted and ``slots`` submissions in flight at most."""
        if self._per_run is None or self._batch_s <= 0:
            return 1
        share = -(-left // max(1, slots))  # ceil(left / slots)
        return max(1, min(int(self._batch_s / max(self._per_run, 1e-9)), MAX_BATCH, share))


def _capacity(executor: Executor) -> int:
    """Tasks ``executor`` runs at once: its ``workers`` (Dask), its ``_max_workers`` (concurrent.futures pools), else 1."""
    workers = getattr(executor, "workers", None)
    if workers is None:
        workers = getattr(executor, "_max_workers", None)
    return max(1, int(workers or 1))


@dataclass
class SweepResult:
    """What ``run_tasks`` did: runs executed now, runs skipped (already done), retries used."""

    executed: int = 0
    skipped: int = 0
    rounds: int = 0
    failures: dict[str, str] = field(default_factory=dict)


#: Seconds between two checks of a waiting sweep's executor (``check``: e.g. a Dask scheduler still there).
POLL_SECONDS = 1.0


class _Sweep:
    """One ``run_tasks`` call, in named steps: ``_round`` (an executor), ``_submit``, ``_collect``, ``_record``,
    ``_interrupt`` and ``_finish`` (the failures and the runs still missing after the retries)."""

    def __init__(
        self,
        tasks: list[Task],
        store: ResultStore,
        *,
        max_attempts: int,
        flush_s: float,
        batch_s: float,
        progress: ProgressFn | None = None,
    ) -> None:
        unique: dict[str, Task] = {}
        for t in tasks:
            unique.setdefault(t.key, t)
        done = store.done_keys()
        self.store, self.max_attempts, self.total = store, max_attempts, len(unique)
        self.pending = {k: t for k, t in unique.items() if k not in done}
        self.result = SweepResult(skipped=len(unique) - len(self.pending))
        self.attempts: dict[str, int] = {}
        self.writer = _RowWriter(store, flush_s)
        self.sizer = _BatchSizer(batch_s)
        self.progress = progress

    def _report(self) -> None:
        if self.progress:
            self.progress(self.total - len(self.pending) - len(self.result.failures), self.total)

    def _round(self, executor_factory: Callable[[], Executor], on_executor: Callable[[Executor], None] | None) -> None:
        """One executor: submit every pending task, collect until done or broken; always flush and shut down."""
        self.result.rounds += 1
        executor: Executor | None = None
        futures: dict[Future[Any], list[Task]] = {}
        broken = interrupted = False
        try:
            executor = executor_factory()
            if on_executor:
                on_executor(executor)
            queue = deque(sorted(self.pending.values(), key=lambda t: -t.cost))  # costliest first (stable)
            while queue or futures:
                if not broken:
                    self._submit(executor, queue, futures)
                if not futures:
                    break
                broken = self._collect(executor, futures) or broken
        except KeyboardInterrupt as exc:
            interrupted = True
            self._interrupt(exc)
        finally:  # only the Executor interface (and terminate_workers): cancel what has not started, then shut down
            self.writer.flush()
            for fut in futures:
                fut.cancel()
            if executor is not None:
                if interrupted:
                    terminate_workers(executor)
                executor.shutdown(wait=not (broken or interrupted), cancel_futures=True)

    def _submit(self, executor: Executor, queue: deque[Task], futures: dict[Future[Any], list[Task]]) -> None:
        """Keep two batches per worker in flight (one queued behind each running one: no worker waits)."""
        slots = 2 * _capacity(executor)
        while queue and len(futures) < slots:
            batch = [queue.popleft() for _ in range(self.sizer.size(len(queue), slots))]
            futures[executor.submit(execute_batch, batch)] = batch

    def _collect(self, executor: Executor, futures: dict[Future[Any], list[Task]]) -> bool:
        """Record the batches that finish next; True when the executor broke (their tasks stay pending).

        While nothing finishes, the executor's ``check()`` (where it has
        one: a Dask scheduler lost for too long) is called every
        ``POLL_SECONDS``; what it raises ends the sweep.
        """
        check = getattr(executor, "check", None)
        finished: set[Future[Any]] = set()
        while not finished:
            finished, _ = wait(futures, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            if not finished and callable(check):
                check()
        broken = False
        for fut in finished:
            batch = futures.pop(fut)
            try:
                outcomes = fut.result()
            except BrokenExecutor:  # the batch is still pending: run again next round
                broken = True
                continue
            except Exception as exc:  # the whole submission failed (e.g. a cluster worker lost)
                outcomes = [(False, f"{type(exc).__name__}: {exc}")] * len(batch)
            self._record(batch, outcomes)
        self._report()
        return broken

    def _record(self, batch: list[Task], outcomes: list[tuple[bool, Any]]) -> None:
        """Rows of the runs that succeeded to the writer; a run that raised counts an attempt (failed at the last)."""
        for task, (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                self.writer.add(value)
                self.sizer.observe(float(value.get("wall_seconds", 0.0)))
                self.pending.pop(task.key, None)
                self.result.executed += 1
                continue
            self.attempts[task.key] = self.attempts.get(task.key, 0) + 1  # retried next round, then reported
            if self.attempts[task.key] >= self.max_attempts:
                self.result.failures[task.key] = f"{value} (params {task.params}, seed {task.seed})"
                self.pending.pop(task.key, None)

    def _interrupt(self, exc: KeyboardInterrupt) -> NoReturn:
        self.writer.flush()  # before counting: a row can be in the writer before its run leaves ``pending``
        saved = self.result.skipped + self.writer.written
        reason = str(exc) or "interrupted"
        raise SweepInterrupted(
            f"{reason}: {saved} of {self.total} runs are saved in {self.store.directory}; "
            "run the same command again to resume"
        ) from None

    def _finish(self, tasks: list[Task], max_retries: int) -> SweepResult:
        """The result, or SweepError for failed or missing runs (the failures listed in a JSON file beside the table)."""
        listing = _failures_path(self.store, tasks)
        if self.result.failures and listing is not None:
            write_json_atomic(listing, {"failures": self.result.failures})
            first = next(iter(self.result.failures.values()))
            raise SweepError(
                f"{len(self.result.failures)} of {self.total} runs failed; finished rows are saved. First failure: {first}. "
                f"Every failure is listed in {listing}"
            )
        if listing is not None:
            listing.unlink(missing_ok=True)
        if self.pending:
            raise SweepError(
                f"{len(self.pending)} of {self.total} runs were still missing after {max_retries} retries (worker processes "
                "kept dying); finished rows are saved: run the same command again to resume"
            )
        return self.result


def _failures_path(store: ResultStore, tasks: list[Task]) -> Path | None:
    """``failures-CONFIGHASH.json`` beside the table (one per configuration: drivers may share a directory)."""
    return store.directory / f"failures-{tasks[0].config_hash}.json" if tasks else None


def run_tasks(
    tasks: list[Task],
    store: ResultStore,
    executor_factory: Callable[[], Executor],
    *,
    max_retries: int = 3,
    max_attempts: int = 2,
    progress: ProgressFn | None = None,
    on_executor: Callable[[Executor], None] | None = None,
    flush_s: float = FLUSH_SECONDS,
    batch_s: float = BATCH_SECONDS,
) -> SweepResult:
    """Run every task not yet in ``store``; save the rows as their futures complete.

    Parameters
    ----------
    tasks : list of Task
    store : ResultStore
    executor_factory : callable () -> Executor
        Called once per round; a round ends when every submitted future is
        done (or the executor broke).
    max_retries : int
        Extra rounds after the first for tasks lost to a broken executor or to an exception.
    max_attempts : int
        Times a task that raised is run before it counts as failed: a second
        attempt absorbs a cluster's transient errors (a worker lost while its
        result was in transit); a deterministic error fails again.
    progress : callable (done, total), optional
        Called with runs done (skipped ones included) out of the total.
    on_executor : callable, optional
        Called with each new executor.
    flush_s : float
        Finished rows are written together, one part file at most every ``flush_s``
        seconds (0: one per run), and always before returning or raising (``_RowWriter``).
    batch_s : float
        Small runs travel together: each submission (``execute_batch``)
        carries about ``batch_s`` seconds of runs, judged from the runs
        finished so far (``_BatchSizer``; 0: one run per submission).

    Raises
    ------
    SweepError
        A task raised an exception (every failure is listed in
        ``failures-CONFIGHASH.json`` beside the table; the message gives the
        first), or tasks were still missing after the retries; every
        finished row is in the store.
    SweepInterrupted
        Ctrl-C (or SIGTERM under ``run_experiment``): the finished rows are
        written, the pool's workers killed (runs in progress are lost and
        run again next time); run the same sweep again to resume.
    Exception
        What an executor's ``check()`` raises (``dask_executor.SchedulerLostError``), rows written first.
    """
    sweep = _Sweep(tasks, store, max_attempts=max_attempts, flush_s=flush_s, batch_s=batch_s, progress=progress)
    if progress:
        progress(sweep.result.skipped, sweep.total)
    while sweep.pending and sweep.result.rounds <= max_retries:
        sweep._round(executor_factory, on_executor)
    return sweep._finish(tasks, max_retries)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises ``SweepInterrupted`` as Ctrl-C raises KeyboardInterrupt.

    So ``kill PID`` ends a sweep as cleanly as Ctrl-C: finished rows
    written, workers ended. Only in the main thread (signal handlers live
    there); elsewhere a no-op. The previous handler comes back on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise SweepInterrupted("terminated (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class RichProgress:
    """A rich progress bar: runs done, runs left, elapsed time and ETA."""

    def __init__(self, title: str) -> None:
        self._bar = rich_bar(title, "runs, {task.fields[left]} left", eta_label=True)
        self._task = self._bar.add_task(title, total=None, left="?")

    def __enter__(self) -> RichProgress:
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


def run_experiment(
    name: str,
    config: Any,
    out: str | Path,
    *,
    jobs: int | None = None,
    scheduler: str | None = None,
    show_progress: bool = True,
    max_retries: int = 3,
    executor_factory: Callable[[], Executor] | None = None,
) -> SweepResult:
    """Run experiment ``name`` under ``config``: tasks into ``out/name/results.parquet``.

    Writes ``out/name/config.json`` (the configuration, its hash) first; the
    analysis (``analysis.analyse``) is separate. ``executor_factory``
    replaces ``make_executor(jobs, scheduler)`` (e.g. a thread pool in tests).
    """
    tasks = make_tasks(name, config)
    check_inputs(name, config, tasks)  # lambda = 0 named before anything is written
    directory = Path(out) / name
    store = ResultStore(directory)
    write_json_atomic(
        directory / "config.json",
        {
            "experiment": name,
            "versioned_name": config.versioned_name,
            "config_hash": config.config_hash,
            "config": config.model_dump(mode="json"),
        },
    )
    store.compact()
    factory = executor_factory or (lambda: make_executor(jobs, scheduler))
    with sigterm_interrupts():
        if show_progress:
            with RichProgress(name) as bar:
                result = run_tasks(tasks, store, factory, progress=bar, max_retries=max_retries)
        else:
            result = run_tasks(tasks, store, factory, max_retries=max_retries)
    store.compact()
    return result
