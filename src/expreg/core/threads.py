"""Threads of the CPU passes: how many, and keeping BLAS (and PyTorch) to one thread inside a worker.

The NumPy backend runs blocks of neurons on its own worker threads; each
block's GEMM must then run on one BLAS thread, or the BLAS pool and the
workers would compete for the same cores. ``blas_single_thread`` limits
BLAS through threadpoolctl (its controller kept in ``reuse.KEPT.made``);
``torch_single_thread`` does the same for PyTorch's intra-op threads when
a ``tuning.Tuning`` sends GEMMs or exps to PyTorch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from .reuse import KEPT


def default_threads(tuned: int | None = None) -> int:
    """Threads for the NumPy backend: ``EXPREG_NUM_THREADS``, else ``tuned`` (a calibrated layout), else the usable CPUs."""
    env = os.environ.get("EXPREG_NUM_THREADS")
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(
                f"EXPREG_NUM_THREADS={env!r} is not an integer; set it to a thread count such as 2"
            ) from None
        if value < 1:
            raise ValueError(f"EXPREG_NUM_THREADS={env!r} must be >= 1")
        return value
    return usable_cpus() if tuned is None else int(tuned)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask; ``os.cpu_count()`` off Linux), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def blas_single_thread() -> AbstractContextManager[Any] | None:
    """Context limiting BLAS to one thread, or None without threadpoolctl.

    Without threadpoolctl, ``parallel`` falls back to one thread (BLAS then
    uses its own threads), which is correct, only slower.
    """
    kept = KEPT.made
    with kept.controller_lock:
        if kept.blas_controller is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:
                kept.blas_controller = False
            else:
                # The controller sees the BLAS libraries loaded when it is made: load SciPy's (the Gram
                # sums' syrk, ``blas``) first, so that it too is kept to one thread inside the workers.
                from . import blas  # noqa: F401

                kept.blas_controller = ThreadpoolController()
    controller = kept.blas_controller
    if controller is False:
        return None
    if not controller.select(user_api="blas").lib_controllers:
        return nullcontext()
    return controller.limit(limits=1, user_api="blas")


@contextmanager
def torch_single_thread() -> Iterator[None]:
    """PyTorch's intra-op threads set to one for the duration (then restored): a worker thread's torch call stays on its core.

    ``torch.set_num_threads`` is process-wide: torch work of other threads
    meanwhile also runs on one thread.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
