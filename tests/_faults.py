"""Faults injected into sweep workers by the runner and Dask tests: a worker killed on a task's first attempt.

Module-level functions, so that a process pool pickles them by reference (its
workers import this module from the tests folder) and Dask by value
(``cloudpickle.register_pickle_by_value``: its workers cannot import it).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any


def die_on_first_attempt(marker_dir: str, doomed: frozenset[str], fn: Callable[..., Any], batch: Any) -> Any:
    """In a worker: SIGKILL this worker the first time a batch holding a doomed task runs; run it otherwise."""
    for task in batch:
        kill_first_time(marker_dir, doomed, task)
    return fn(batch)


def kill_first_time(marker_dir: str, doomed: frozenset[str], task: Any) -> None:
    """For a doomed task: the first call writes ``killed-KEY`` and kills this process; a retry writes ``ran-KEY``."""
    if task.key in doomed:
        try:
            fd = os.open(os.path.join(marker_dir, f"killed-{task.key}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:  # the retry
            with open(os.path.join(marker_dir, f"ran-{task.key}"), "w") as fh:
                fh.write(str(os.getpid()))
        else:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)
