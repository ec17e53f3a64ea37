"""Sweeps on an existing Dask cluster: a ``concurrent.futures.Executor`` over ``distributed.Client``.

``runner.make_executor(scheduler="tcp://HOST:PORT")`` returns a
``DaskExecutor``; the runner then drives it exactly as the local process
pool (one code path): rows are appended to the Parquet table as futures
complete, so a Dask sweep can be watched and resumed the same way.

A worker that dies while running a task (killed, out of memory) is the
scheduler's to handle: Dask reruns the task on another worker, up to
``distributed.scheduler.allowed-failures`` times (default 3), after which
the future raises ``KilledWorker`` and the runner reports that run as failed.
The driver writes each row once, when its future completes, so a retried run
still appears once in the table.

Start the workers with ``--preload expreg.experiments.warm`` to have each
import the experiments and load the compiled kernels before its first task
(``dask worker tcp://HOST:PORT --preload expreg.experiments.warm``).

This module needs ``dask[distributed]`` (``pip install 'expreg[dask]'``);
nothing else in expreg imports it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any
from urllib.parse import urlsplit

#: Seconds to wait for the scheduler to answer when connecting.
CONNECT_TIMEOUT_S = 10.0
#: Seconds a sweep waits for a lost scheduler to come back before it stops (finished rows are kept).
SCHEDULER_LOST_S = 60.0


class SchedulerLostError(RuntimeError):
    """The Dask scheduler was unreachable for longer than the executor's ``lost_timeout_s``."""


#: Dask's loggers that report a lost scheduler with a traceback (the client; the batched stream of its messages).
_LOST_LOGGERS = ("distributed.client", "distributed.batched")
#: Tornado's logger of failed event-loop callbacks: a gather whose connection closed under it lands here
#: (seen with distributed 2024.1.0); only its lost-connection records are shortened.
_LOOP_LOGGER = "tornado.application"


def _lost_connection(exc: BaseException) -> bool:
    """Whether ``exc`` is a closed Dask or Tornado connection (by class name: no import of either here)."""
    return any(cls.__name__ in ("CommClosedError", "StreamClosedError") for cls in type(exc).__mro__)


class _OneLineLogs(logging.Filter):
    """Dask logs a lost connection with a traceback: keep one line (the exception's type and first line).

    With ``lost_only`` only records of a closed connection (``_lost_connection``) are shortened; any other
    exception keeps its traceback.
    """

    def __init__(self, lost_only: bool = False) -> None:
        super().__init__()
        self.lost_only = lost_only

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if self.lost_only and not _lost_connection(exc):
                return True
            first = (str(exc).strip().splitlines() or [""])[0]
            record.msg = f"{record.getMessage() or 'lost the connection'}: {type(exc).__name__}: {first}".rstrip(": ")
            record.args, record.exc_info, record.exc_text = None, None, None
        return True


class DaskExecutor(Executor):
    """``Client(address).get_executor()``, closing its client on shutdown.

    Parameters
    ----------
    address : str
        Scheduler address, e.g. ``"tcp://10.0.0.5:8786"``.
    timeout_s : float
        How long to wait for the scheduler when connecting.
    lost_timeout_s : float
        How long ``check`` (called by the runner while it waits for
        results) tolerates a client that is not connected before raising
        ``SchedulerLostError``: a killed scheduler ends the sweep, finished
        rows kept, instead of leaving it waiting for futures that never
        complete.

    Raises
    ------
    ImportError
        dask.distributed is not installed.
    ValueError
        Nothing answers at ``address``.
    """

    def __init__(
        self, address: str, timeout_s: float = CONNECT_TIMEOUT_S, lost_timeout_s: float = SCHEDULER_LOST_S
    ) -> None:
        try:
            from distributed import Client
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("--scheduler needs Dask: install it with `pip install 'expreg[dask]'`") from exc
        _probe(address, timeout_s)
        try:
            self._client = Client(address, timeout=timeout_s, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ValueError(
                f"scheduler={address!r}: could not connect to the Dask scheduler ({exc}); check the address and that it is running"
            ) from exc
        self._address, self._lost_timeout_s = address, float(lost_timeout_s)
        self._lost_since: float | None = None
        self._log_filter, self._loop_filter = _OneLineLogs(), _OneLineLogs(lost_only=True)
        for name in _LOST_LOGGERS:
            logging.getLogger(name).addFilter(self._log_filter)
        logging.getLogger(_LOOP_LOGGER).addFilter(self._loop_filter)
        self._inner = self._client.get_executor(pure=False)  # each submit is its own task, even for equal arguments
        self._workers, self._workers_at = 1, -float("inf")
        if not self._client.scheduler_info().get("workers"):
            warnings.warn(
                f"the Dask cluster at {address} has no workers yet: the runs wait until workers connect "
                f"(e.g. `dask worker {address}`)",
                stacklevel=3,
            )

    @property
    def workers(self) -> int:
        """Threads of the cluster's workers (tasks it runs at once), at least 1; asked of the scheduler at most every 5 s."""
        now = time.monotonic()
        if now - self._workers_at > 5.0:
            try:
                info = self._client.scheduler_info().get("workers", {})
                self._workers = max(1, sum(int(w.get("nthreads", 1)) for w in info.values()))
            except (OSError, TimeoutError):  # keep the last answer; the futures report a lost scheduler
                pass
            self._workers_at = now
        return self._workers

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (for dashboards, worker lists...)."""
        return self._client

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self._inner.submit(fn, *args, **kwargs)

    def check(self) -> None:
        """Raise ``SchedulerLostError`` once the client has been disconnected for ``lost_timeout_s`` seconds."""
        if self._client.status == "running":
            self._lost_since = None
            return
        now = time.monotonic()
        if self._lost_since is None:
            self._lost_since = now
        if now - self._lost_since >= self._lost_timeout_s:
            raise SchedulerLostError(
                f"lost the Dask scheduler at {self._address} (no answer for {self._lost_timeout_s:g} s); the finished "
                "rows are saved: start the scheduler again and run the same command to resume"
            )

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Wait for (or cancel) this executor's tasks, then close the client; the cluster keeps running.

        With the scheduler lost, nothing is waited for.
        """
        lost = self._client.status != "running"
        try:
            if not lost:
                self._inner.shutdown(wait=wait and not cancel_futures)
        finally:
            with contextlib.suppress(Exception):  # a client whose scheduler is gone may fail to close cleanly
                self._client.close(timeout=CONNECT_TIMEOUT_S)
            for name in _LOST_LOGGERS:
                logging.getLogger(name).removeFilter(self._log_filter)
            logging.getLogger(_LOOP_LOGGER).removeFilter(self._loop_filter)


def _probe(address: str, timeout_s: float) -> None:
    """Fail fast with a clear error when nothing listens at a ``tcp://`` address."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls") or parts.hostname is None:
        raise ValueError(f"scheduler={address!r} is not a Dask scheduler address; give it as tcp://HOST:PORT")
    try:
        port = parts.port or 8786
    except ValueError:
        raise ValueError(f"scheduler={address!r} has no valid port; give it as tcp://HOST:PORT") from None
    try:
        with socket.create_connection((parts.hostname, port), timeout=min(timeout_s, 5.0)):
            pass
    except OSError as exc:
        raise ValueError(
            f"scheduler={address!r}: nothing answers there ({exc.strerror or exc}); start a scheduler "
            "(e.g. `dask scheduler --host 127.0.0.1`) or omit --scheduler to use the local process pool"
        ) from None
