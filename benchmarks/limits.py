"""The compute limit of this machine for one gradient step; print JSON.

    limit(n, d, m) = 4 n d m / (GEMM rate) + n m / (exp rate)

with the GEMM rate measured on a large square product (NumPy/OpenBLAS
and PyTorch, all cores, the faster of the two) and the exp rate the
fastest vectorised exponential measured here (NumPy's ``np.exp``,
PyTorch's ``torch.exp``, expreg's ``fastpath.exp_``), each on all cores
(one thread per core, each on its own cache-resident array, so that no
memory traffic is counted). Run in its own process by ``run_all.py``:

    python benchmarks/limits.py
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from expreg.core.calibrate import race

#: Timed calls of each rate (after one untimed call); the shortest is kept.
REPS = 5


def gemm_rate(dtype: np.dtype, size: int = 2048) -> dict[str, float]:
    """Flop/s of an all-core size x size product, NumPy and PyTorch."""
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((size, size)).astype(dtype), rng.standard_normal((size, size)).astype(dtype)
    C = np.empty_like(A)
    flops = 2.0 * size**3
    out = {"numpy": flops / race({"numpy": lambda: np.matmul(A, B, out=C)}, REPS)["numpy"]}
    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        At, Bt, Ct = torch.from_numpy(A), torch.from_numpy(B), torch.from_numpy(C)
        out["torch"] = flops / race({"torch": lambda: torch.matmul(At, Bt, out=Ct)}, REPS)["torch"]
    except ImportError:
        pass
    return out


def _threaded_rate(make: Callable[[], Callable[[], None]], per_call: int, threads: int, calls: int = 200) -> float:
    """Elements/s of ``threads`` threads each running its own kernel ``calls`` times."""
    kernels = [make() for _ in range(threads)]
    for k in kernels:
        k()
    barrier = threading.Barrier(threads + 1)

    def run(k: Callable[[], None]) -> None:
        barrier.wait()
        for _ in range(calls):
            k()
        barrier.wait()

    best = float("inf")
    for _ in range(3):
        workers = [threading.Thread(target=run, args=(k,)) for k in kernels]
        for w in workers:
            w.start()
        barrier.wait()
        t0 = time.perf_counter()
        barrier.wait()
        best = min(best, time.perf_counter() - t0)
        for w in workers:
            w.join()
    return threads * calls * per_call / best


def exp_rates(dtype: np.dtype, threads: int, size: int = 32768) -> dict[str, float]:
    """Exponentials/s on ``threads`` threads for each vectorised exp available."""
    rng = np.random.default_rng(1)

    def data() -> np.ndarray:
        return rng.uniform(-1.0, 1.0, size).astype(dtype)

    def numpy_exp() -> Callable[[], None]:
        x, y = data(), np.empty(size, dtype)
        return lambda: np.exp(x, out=y)

    rates = {"numpy np.exp": _threaded_rate(numpy_exp, size, threads)}

    from expreg.core import fastpath

    if fastpath.enabled():

        def fast_exp() -> Callable[[], None]:
            # In place, so repeated calls reach inf: the kernel has no
            # data-dependent branches (selects only), so the rate is the same.
            y = data()
            return lambda: fastpath.exp_(y)

        rates["expreg fastpath.exp_"] = _threaded_rate(fast_exp, size, threads)
    try:
        import torch

        torch.set_num_threads(1)  # one thread per Python thread

        def torch_exp() -> Callable[[], None]:
            x, y = torch.from_numpy(data()), torch.from_numpy(np.empty(size, dtype))
            return lambda: torch.exp(x, out=y)

        rates["torch.exp"] = _threaded_rate(torch_exp, size, threads)
        torch.set_num_threads(os.cpu_count() or 1)
    except ImportError:
        pass
    return rates


def measure() -> dict[str, Any]:
    threads = len(os.sched_getaffinity(0))
    out: dict[str, Any] = {"threads": threads}
    for name in ("float32", "float64"):
        dt = np.dtype(name)
        g = gemm_rate(dt)
        e = exp_rates(dt, threads)
        out[name] = {"gemm_flops": g, "exp_per_s": e, "gemm_best": max(g.values()), "exp_best": max(e.values())}
    return out


def limit_ms(n: int, d: int, m: int, gemm_best: float, exp_best: float) -> float:
    """Milliseconds of the step at the machine's limit: 4ndm flops + nm exps, no memory traffic."""
    return 1e3 * (4.0 * n * d * m / gemm_best + n * m / exp_best)


if __name__ == "__main__":
    print(json.dumps(measure()), flush=True)
