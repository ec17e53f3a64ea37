"""Memory a run needs, checked before anything is allocated.

A run asked for more memory than the machine has should stop at once with
the figure and what would fit, not after minutes of swapping or with a
``MemoryError`` traceback. The estimates count the arrays a run holds at
once (they are lower bounds: the interpreter and the libraries add a few
hundred MB); the memory available is the kernel's ``MemAvailable`` (Linux),
else the physical memory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

__all__ = ["DEFAULT_MEMORY_BUDGET", "available_memory", "check_fits", "format_bytes", "train_bytes"]

#: Bytes of activations a step may keep between its forward and backward pass, in host memory
#: (``ops.plan_blocks``; on a device, a fraction of the device's memory instead).
DEFAULT_MEMORY_BUDGET = 2 * 2**30


def available_memory() -> int | None:
    """Bytes of memory a new allocation can get now, or None when unknown.

    ``MemAvailable`` of /proc/meminfo (Linux), else the physical memory
    (``os.sysconf``).
    """
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def format_bytes(b: float) -> str:
    """``1.5 GiB``-style size."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(b) < 1024 or unit == "PiB":
            return f"{b:.3g} {unit}" if unit != "B" else f"{int(b)} B"
        b /= 1024
    raise AssertionError  # pragma: no cover


def train_bytes(n: int, d: int, m: int, itemsize: int, *, on_host: bool = True) -> int:
    """Bytes a gradient-descent run over m neurons holds at once (``descent.descend``).

    On the host (``on_host``): W(0), W(t), the spare step buffer and the
    gradient, each d x m, and a (m): (4 d + 1) m items; the activations
    kept between the passes when n m items fit ``DEFAULT_MEMORY_BUDGET``
    (n m items); the n x n kernels H^cts, H(W) and their eigen-decomposition
    work space (8 n^2 float64); the data (2 n d + 2 n float64). A run on
    another device holds only the drawn W(0) and a (d m + m items) on the
    host, plus the kernels and data.
    """
    per_neuron = (4 * d + 1) * itemsize if on_host else (d + 1) * itemsize
    keep = n * m * itemsize if (on_host and n * m * itemsize <= DEFAULT_MEMORY_BUDGET) else 0
    return per_neuron * m + keep + 8 * 8 * n * n + 8 * (2 * n * d + 2 * n)


def largest_fitting(need: Callable[[int], int], limit: int, upper: int) -> int:
    """The largest k in [0, upper] with ``need(k) <= limit`` (``need`` non-decreasing); 0 when none."""
    lo, hi = 0, upper
    if need(0) > limit:
        return 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if need(mid) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


def check_fits(need: int, what: str, *, advice: str = "", available: int | None = None) -> None:
    """Raise ``MemoryError`` naming ``what``, the bytes needed and available, when ``need`` exceeds the memory available.

    ``advice`` (what to change) ends the message. Nothing is checked when
    the memory available is unknown.
    """
    free = available_memory() if available is None else available
    if free is None or need <= free:
        return
    raise MemoryError(
        f"{what} needs at least {format_bytes(need)} of memory but {format_bytes(free)} is available{'; ' + advice if advice else ''}"
    )


def check_train_fits(
    n: int,
    d: int,
    m: int,
    itemsize: int,
    *,
    on_host: bool = True,
    ranks_here: int = 1,
    ranks: int = 1,
    pairs: bool = False,
    available: int | None = None,
) -> None:
    """Refuse a run of width m (split over ``ranks``, ``ranks_here`` of them on this machine) that cannot fit in memory.

    The message gives the estimate (``train_bytes``) and the largest m that
    fits (even when ``pairs``).
    """
    free = available_memory() if available is None else available
    if free is None:
        return
    share = free // max(1, ranks_here)
    per_rank = math.ceil(m / max(1, ranks))
    need = train_bytes(n, d, per_rank, itemsize, on_host=on_host)
    if need <= share:
        return
    best = largest_fitting(lambda k: train_bytes(n, d, k, itemsize, on_host=on_host), share, per_rank) * max(1, ranks)
    if pairs:
        best -= best % 2
    where = f" per rank ({ranks_here} ranks on this machine share {format_bytes(free)})" if ranks_here > 1 else ""
    if best > 0:
        more = (
            "use float32 or more ranks with `expreg distributed`"
            if itemsize == 8
            else "use more ranks with `expreg distributed`"
        )
        fit = f"the largest width that fits is m = {best} (or {more})"
    else:
        fit = f"even m = 1 does not fit: the n x n kernels of n = {n} points alone need {format_bytes(8 * 8 * n * n)}; use fewer points"
    raise MemoryError(
        f"a run with n = {n}, d = {d}, m = {m} needs at least {format_bytes(need)} of memory{where} but "
        f"{format_bytes(share)} is available; {fit}"
    )
