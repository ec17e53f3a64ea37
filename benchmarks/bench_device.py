"""The kernel and the nested-width scan on a PyTorch device (issue 10, item 5); print JSON.

    python benchmarks/bench_device.py kernel --device cuda      # H(W): expreg vs a plain torch reference
    python benchmarks/bench_device.py scan --device cuda        # the largest n a scan finishes in the budget

Run by ``run_all.py --device cuda --section kernel|scan`` (one subprocess
each); runs on ``--device cpu`` too (small sizes: a smoke test).

kernel
    H(W) = (X X^T) o (E diag(a^2) E^T), E = exp(X W) (MATH.md 3), on one
    device: expreg's blocked pass (``ops.gram`` on the torch backend, the
    code ``kernels.empirical_ntk`` runs) against the plain torch reference
    ``(X @ X.T) * ((E * a**2) @ E.T)`` with E whole in memory. ms per call
    (best of ``--reps``, synchronised), their ratio (expreg / reference:
    below 1 means expreg is faster), and the rate on the 2 n^2 m flops of
    the GEMM, and their largest relative difference.
scan
    For n = n_start, 2 n_start, ... one pass over neurons accumulates
    H(W) for nested widths m = m_min, 2 m_min, ..., m_max (neuron r is the
    same at every width) with ``ops.gram`` on each new block of neurons, and
    hands H^dis = H / m to the width experiment's criterion at every grid
    width: ||H^dis - H^cts||_op against lambda_min(H^cts) / 2 (``eigvalsh``
    on the device). The scan of each n must finish within what is left of
    ``--budget-s``; the result names the largest n that did, the seconds of
    each, and the growth factor to the next n.

Until the scan engine of issue 10 item 2 lands, the scan here is this
stand-in built from ``ops.gram``; ``scan_once`` is the one function to
replace by it.
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
    import torch

    import impls
    from expreg import ops
    from expreg.activations import EXP
    from expreg.backends import get_backend

    be = get_backend("torch", device)
    dt = np.dtype(dtype)
    X, _, W, a = impls.data(n, d, m, dt)
    Xt, Wt, at = (be.asarray(v, dt) for v in (X, W, a))
    plan = ops.plan_blocks(n, m, dt.itemsize, backend=be)

    def expreg_gram() -> Any:
        return ops.gram(be, EXP, Xt, Wt, 1.0, plan)  # a = +-1: a^2 = 1, the same kernel

    def reference() -> Any:
        E = torch.exp(Xt @ Wt)
        return (Xt @ Xt.T) * ((E * at**2) @ E.T)

    ms_expreg, H = _timed(expreg_gram, be.synchronize, reps)
    ms_ref, H_ref = _timed(reference, be.synchronize, reps)
    rel = float((H - H_ref).abs().max() / H_ref.abs().max())
    return {"n": n, "d": d, "m": m, "dtype": dtype, "device": device, "block": plan.block,
            "expreg_ms": ms_expreg, "reference_ms": ms_ref, "ratio": ms_expreg / ms_ref,
            "expreg_tflops": 2.0 * n * n * m / (ms_expreg * 1e-3) / 1e12, "reference_tflops": 2.0 * n * n * m / (ms_ref * 1e-3) / 1e12,
            "max_rel_diff": rel}


def scan_once(n: int, d: int, m_min: int, m_max: int, dtype: str, device: str, deadline: float, seed: int = 0) -> dict[str, Any]:
    """One nested-width scan at n points; stops early (``finished`` False) at ``deadline`` (perf_counter)."""
    import torch

    from expreg import kernels, ops
    from expreg.activations import EXP
    from expreg.backends import get_backend
    from expreg.data import make_dataset

    started = time.perf_counter()
    be = get_backend("torch", device)
    dt = np.dtype(dtype)
    X, _ = make_dataset(n, d, seed=seed)
    Xt = be.asarray(X, dt)
    H_cts = be.asarray(kernels.ntk(X), dt)
    lam = float(torch.linalg.eigvalsh(H_cts)[0])
    gen = torch.Generator(device=be.device).manual_seed(seed)
    W = torch.randn((d, m_max), generator=gen, device=be.device, dtype=H_cts.dtype)  # neuron r: column r at every width
    H = be.zeros((n, n), dt)
    widths, deviations = [], []
    gram_s = eig_s = 0.0
    lo = 0
    m = m_min
    finished = True
    while m <= m_max:
        t0 = time.perf_counter()
        H += ops.gram(be, EXP, Xt, W[:, lo:m], 1.0, ops.plan_blocks(n, m - lo, dt.itemsize, backend=be))
        be.synchronize()
        t1 = time.perf_counter()
        ev = torch.linalg.eigvalsh(H / m - H_cts)
        deviations.append(float(torch.maximum(ev[-1], -ev[0])))
        widths.append(m)
        eig_s += time.perf_counter() - t1
        gram_s += t1 - t0
        lo, m = m, 2 * m
        if time.perf_counter() > deadline and m <= m_max:
            finished = False
            break
    seconds = time.perf_counter() - started
    lazy = [w for w, dev in zip(widths, deviations) if dev <= lam / 2]
    return {"n": n, "d": d, "dtype": dtype, "device": device, "m_min": m_min, "m_max": m_max, "finished": finished,
            "widths": len(widths), "last_width": widths[-1] if widths else 0, "seconds": seconds, "gram_s": gram_s, "eigen_s": eig_s,
            "widths_per_s": len(widths) / seconds, "lambda_min_cts": lam, "m_lazy": lazy[0] if lazy else None}


def scan_reach(n_start: int, d: int, m_min: int, m_max: int, dtype: str, device: str, budget_s: float) -> dict[str, Any]:
    """Scans at n = n_start, 2 n_start, ... while they fit in ``budget_s``; the largest n that finished."""
    started = time.perf_counter()
    deadline = started + budget_s
    runs: list[dict[str, Any]] = []
    n = n_start
    while True:
        run = scan_once(n, d, m_min, m_max, dtype, device, deadline)
        runs.append(run)
        print(json.dumps({"scan": run}), flush=True)
        left = deadline - time.perf_counter()
        growth = run["seconds"] / runs[-2]["seconds"] if len(runs) > 1 and runs[-2]["seconds"] > 0 else 8.0
        if not run["finished"] or run["seconds"] * growth > left:
            break
        n *= 2
    done = [r for r in runs if r["finished"]]
    return {"case": "scan", "budget_s": budget_s, "largest_n": done[-1]["n"] if done else None,
            "largest_n_seconds": done[-1]["seconds"] if done else None, "next_n_growth": growth, "runs": runs,
            "minutes": (time.perf_counter() - started) / 60}


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
    args = p.parse_args(argv)
    if args.device.startswith("cuda"):
        import torch

        torch.cuda.set_device(torch.device(args.device))
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
        out = scan_reach(args.n_start, args.d or 16, args.m_min, args.m_max, args.dtypes[0], args.device, args.budget_s)
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
