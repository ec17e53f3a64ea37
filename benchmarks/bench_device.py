"""The kernel and the nested-width scan on a PyTorch device (issue 10, item 5); print JSON.

    python benchmarks/bench_device.py kernel --device cuda      # H(W): expreg vs a plain torch reference
    python benchmarks/bench_device.py scan --device cuda        # the largest n a scan finishes in the budget

Run by ``run_all.py --device cuda --section kernel|scan`` (one subprocess
each); runs on ``--device cpu`` too (small sizes: a smoke test).

kernel
    H(W) = (X X^T) o (E diag(a^2) E^T), E = exp(X W) (docs/theory.md section 3), with X
    and W on the device: expreg's ``gram.gram`` on the torch backend (the
    code ``kernels.empirical_ntk`` runs: rank-k updates of
    ``gram.GramAccumulator`` on the device, the float64 NumPy result on the
    host) against the plain torch reference ``(X @ X.T) * ((E * a**2) @
    E.T)`` with E whole in memory, brought to the host as float64 (the same
    output): ``ratio`` (below 1: expreg is faster). Also the device part
    alone (the rank-k updates against the reference left on the device:
    ``device_ratio``, TFLOP/s on the 2 n^2 m flops of the GEMM), and the
    largest relative difference of the two results. ms per call: best of
    ``--reps``, synchronised.
scan
    For n = n_start, 2 n_start, ... the width experiment's scan:
    ``scan.nested_gram`` (one pass over neurons on the device, H^dis handed
    out at widths m = m_min, 2 m_min, ..., m_max) and at each width
    ``eigen.lazy_criteria`` against H^cts (on the host). The scan of each n
    must finish within what is left of ``--budget-s``; the result names the
    largest n that did, the seconds of each (Gram and eigenvalues apart),
    and the growth factor to the next n. The kernels stay on the device and
    the criteria's eigenvalues are computed there (``--criteria-on-host``:
    LAPACK on the host, as the first H100 run measured).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _timed(fn: Any, sync: Any, reps: int) -> tuple[float, Any]:
    """(best ms over ``reps`` calls after one warm-up, last result)."""
    out = fn()
    sync()
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        sync()
        best = min(best, 1e3 * (time.perf_counter() - t0))
    return best, out


def kernel_case(n: int, d: int, m: int, dtype: str, device: str, reps: int) -> dict[str, Any]:
    """One (n, d, m, dtype) cell of the kernel table on ``device``."""
    import impls
    import torch

    from expreg.core import gram
    from expreg.core.activations import EXP
    from expreg.core.backends import get_backend

    be = get_backend("torch", device)
    dt = np.dtype(dtype)
    X, _, W, a = impls.data(n, d, m, dt)
    Xt, Wt, at = (be.asarray(v, dt) for v in (X, W, a))
    block = gram.gram_block(n, dt.itemsize, be)

    def expreg_gram() -> Any:
        return gram.gram(be, EXP, Xt, Wt, 1.0)  # the user's path: a = +-1, a^2 = 1; float64 NumPy (n, n)

    def expreg_on_device() -> Any:
        acc = gram.GramAccumulator(be, EXP, Xt, block=block)
        acc.add(Wt)  # the rank-k updates only: S stays on the device
        return acc.S

    def reference() -> Any:
        E = torch.exp(Xt @ Wt)
        return (Xt @ Xt.T) * ((E * at**2) @ E.T)

    def reference_to_host() -> Any:
        return reference().cpu().numpy().astype(np.float64)  # the same output as gram.gram

    ms_expreg, H = _timed(expreg_gram, be.synchronize, reps)
    ms_dev, _ = _timed(expreg_on_device, be.synchronize, reps)
    ms_ref, _ = _timed(reference, be.synchronize, reps)
    ms_ref_host, H_ref = _timed(reference_to_host, be.synchronize, reps)
    rel = float(np.abs(H - H_ref).max() / np.abs(H_ref).max())
    return {
        "n": n,
        "d": d,
        "m": m,
        "dtype": dtype,
        "device": device,
        "block": block,
        "expreg_ms": ms_expreg,
        "reference_host_ms": ms_ref_host,
        "ratio": ms_expreg / ms_ref_host,
        "expreg_device_ms": ms_dev,
        "reference_ms": ms_ref,
        "device_ratio": ms_dev / ms_ref,
        "expreg_device_tflops": 2.0 * n * n * m / (ms_dev * 1e-3) / 1e12,
        "reference_tflops": 2.0 * n * n * m / (ms_ref * 1e-3) / 1e12,
        "max_rel_diff": rel,
    }


def scan_once(
    n: int,
    d: int,
    m_min: int,
    m_max: int,
    dtype: str,
    device: str,
    deadline: float,
    seed: int = 0,
    on_device: bool = True,
) -> dict[str, Any]:
    """One nested-width scan at n points (``scan.nested_gram`` and ``eigen.lazy_criteria``); stops early at ``deadline``."""
    from expreg import eigen, kernels, scan
    from expreg.core.backends import get_backend
    from expreg.core.data import make_dataset

    be = get_backend("torch", device)
    started = time.perf_counter()  # imports apart: the data, H^cts, lambda_min(H^cts) and the scan count
    X, _ = make_dataset(n, d, seed=seed)
    H_cts = kernels.ntk(X)
    lam = eigen.lambda_min(H_cts)
    widths_grid = [m_min * 2**k for k in range(int(math.log2(m_max // m_min)) + 1)]
    widths, deviations = [], []
    gram_s = eig_s = 0.0
    finished = True
    H_ref = be.asarray(H_cts, np.dtype(np.float64))
    t0 = time.perf_counter()
    grams = scan.nested_gram(
        X, widths_grid, seed=seed, init="gaussian", dtype=np.dtype(dtype), backend=be, on_device=on_device
    )
    for m, Hdis in grams:
        if on_device:
            be.synchronize()  # the Gram part ends here, not inside the eigenvalues
        t1 = time.perf_counter()
        deviation, _ = eigen.lazy_criteria(Hdis, H_ref if on_device else H_cts, lam, backend=be if on_device else None)
        t2 = time.perf_counter()
        gram_s += t1 - t0
        eig_s += t2 - t1
        widths.append(m)
        deviations.append(deviation)
        if t2 > deadline and m < widths_grid[-1]:
            finished = False
            break
        t0 = time.perf_counter()
    seconds = time.perf_counter() - started
    lazy = [w for w, dev in zip(widths, deviations, strict=True) if dev <= lam / 2]
    return {
        "n": n,
        "d": d,
        "dtype": dtype,
        "device": device,
        "m_min": m_min,
        "m_max": m_max,
        "finished": finished,
        "widths": len(widths),
        "last_width": widths[-1] if widths else 0,
        "seconds": seconds,
        "gram_s": gram_s,
        "eigen_s": eig_s,
        "widths_per_s": len(widths) / seconds,
        "lambda_min_cts": lam,
        "m_lazy": lazy[0] if lazy else None,
        "criteria_on": "device" if on_device else "host",
    }


def scan_reach(
    n_start: int, d: int, m_min: int, m_max: int, dtype: str, device: str, budget_s: float, on_device: bool = True
) -> dict[str, Any]:
    """Scans at n = n_start, 2 n_start, ... while they fit in ``budget_s``; the largest n that finished."""
    started = time.perf_counter()
    deadline = started + budget_s
    runs: list[dict[str, Any]] = []
    n = n_start
    while True:
        run = scan_once(n, d, m_min, m_max, dtype, device, deadline, on_device=on_device)
        runs.append(run)
        print(json.dumps({"scan": run}), flush=True)
        left = deadline - time.perf_counter()
        growth = run["seconds"] / runs[-2]["seconds"] if len(runs) > 1 and runs[-2]["seconds"] > 0 else 8.0
        if not run["finished"] or run["seconds"] * growth > left:
            break
        n *= 2
    done = [r for r in runs if r["finished"]]
    return {
        "case": "scan",
        "budget_s": budget_s,
        "largest_n": done[-1]["n"] if done else None,
        "largest_n_seconds": done[-1]["seconds"] if done else None,
        "next_n_growth": growth,
        "runs": runs,
        "minutes": (time.perf_counter() - started) / 60,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("case", choices=["kernel", "scan"])
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtypes", nargs="*", default=["float32", "float64"], choices=["float32", "float64"])
    p.add_argument("--ns", type=int, nargs="*", default=[256, 1024, 4096], help="kernel: the n of the cells")
    p.add_argument("--m", type=int, default=65536, help="kernel: neurons")
    p.add_argument("--d", type=int, default=None, help="input dimension (default: kernel 32, scan 16)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--n-start", type=int, default=1024, help="scan: the first n (then doubled)")
    p.add_argument("--m-min", type=int, default=1024, help="scan: the first grid width")
    p.add_argument("--m-max", type=int, default=2**20, help="scan: the last grid width (grid ratio 2)")
    p.add_argument("--budget-s", type=float, default=540.0, help="scan: seconds all scans together may take")
    p.add_argument(
        "--criteria-on-host",
        action="store_true",
        help="scan: eigenvalues by LAPACK on the host (as before 2026-11-27) instead of on the device",
    )
    args = p.parse_args(argv)
    if args.device.startswith("cuda"):
        import torch

        dev = torch.device(args.device)  # plain "cuda" has no index, which set_device refuses: the current GPU
        torch.cuda.set_device(dev.index if dev.index is not None else torch.cuda.current_device())
        torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 on both sides
    if args.case == "kernel":
        d = args.d or 32
        cells = []
        for dtype in args.dtypes:
            for n in args.ns:
                cell = kernel_case(n, d, args.m, dtype, args.device, args.reps)
                print(json.dumps({"kernel": cell}), flush=True)
                cells.append(cell)
        out: dict[str, Any] = {"case": "kernel", "cells": cells}
    else:
        out = scan_reach(
            args.n_start,
            args.d or 16,
            args.m_min,
            args.m_max,
            args.dtypes[0],
            args.device,
            args.budget_s,
            on_device=not args.criteria_on_host,
        )
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
