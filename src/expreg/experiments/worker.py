"""The worker side of a local sweep: a warm start and an exit when the driver is gone.

``preload`` warms a process up for sweep tasks: it imports every experiment
module and loads the compiled kernels (``fastpath.warm_up``: about 1.5 s in
a fresh process, numba most of it). Importing ``expreg.experiments.warm``
calls it: ``runner.make_executor`` names that module as the preload of
multiprocessing's *forkserver*, so one server process per driver pays it
once and each pool worker, forked from that server, starts in milliseconds
instead of paying the imports again. A Dask worker started with
``dask worker --preload expreg.experiments.warm ...`` is warmed the same
way before its first task.

``init_worker`` is the pool's initializer: it limits BLAS and expreg's own
threads, ignores SIGINT (Ctrl-C in a terminal reaches the whole process
group; the driver alone decides what an interrupt ends) and starts
``watch_parent``, a daemon thread that ends the worker as soon as the driver
is gone, however it died (``kill -9`` included), so that no worker is left
running for ever, re-parented to PID 1.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from importlib import import_module

from ..core import calibrate, fastpath
from .base import EXPERIMENTS

#: Exit status of a worker that ended because its driver was gone.
ORPHAN_EXIT_CODE = 75


def preload() -> None:
    """Import every experiment module (those whose optional dependencies are installed), load the kernels, choose the tuning.

    The speed choices (``calibrate.current()``: the cache, or a measurement
    on the whole machine) are made here once, so that workers forked from
    this process inherit them instead of each measuring while the others run.
    """
    for module in EXPERIMENTS.values():
        with contextlib.suppress(ImportError):  # an optional dependency missing: the task reports it when it runs
            import_module(f"{__package__}.{module}")
    fastpath.warm_up()
    calibrate.current()


def init_worker(expreg_threads: int = 1) -> None:
    """Pool initializer: one BLAS thread, ``expreg_threads`` expreg threads, SIGINT ignored, parent watched.

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
    torch = sys.modules.get("torch")  # loaded before the fork (a tuning that uses it): its threads too
    if torch is not None:
        torch.set_num_threads(max(1, int(expreg_threads)))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch_parent()


def watch_parent() -> threading.Thread | None:
    """Start a daemon thread that exits this process (``os._exit``) when its multiprocessing parent is gone.

    It waits on ``multiprocessing.parent_process().sentinel``: the read end
    of a pipe whose write end only the parent holds, so it becomes readable
    (end of file) the moment the parent exits or is killed; no polling, and
    the same on every start method and OS. Returns the thread, or None in a
    process that multiprocessing did not start.
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return None

    def wait_then_exit() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(ORPHAN_EXIT_CODE)

    thread = threading.Thread(target=wait_then_exit, name="expreg-parent-watch", daemon=True)
    thread.start()
    return thread
