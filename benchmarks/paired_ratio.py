"""The speed-up of expreg over one peer on one shape as a distribution, not one draw (issue 25).

    python benchmarks/paired_ratio.py --n 512 --d 128 --m 32768                     # expreg-train vs torch-compile
    python benchmarks/paired_ratio.py --n 512 --d 128 --m 32768 --peer jax-jit --rounds 12

On a shared machine one `make bench` cell moves by tens of percent between runs minutes apart
(benchmarks/RESULTS.md), more than the margin a target such as "1.5x the fastest peer" leaves. This
script runs ``benchmarks/bench_step.py`` for expreg (``expreg-train``: the ``expreg.train`` path) and
the peer alternately, each in a fresh process, ``--rounds`` pairs, the order inside each pair swapped
every round, and reports each pair's ratio (the peer's best step / expreg's best step, ms), their
median and the distribution-free 90 % interval of that median (order statistics of the binomial
distribution: the interval that covers the true median of the pairs' ratios with at least 90 %
probability, whatever their distribution, if the pairs are independent draws from one distribution;
a machine whose speed drifts slowly makes neighbouring pairs alike, and the interval then too narrow).
A JSON line with every figure goes to ``--json`` when given.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from math import comb
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def median_interval(values: list[float], level: float = 0.90) -> tuple[float, float]:
    """(lo, hi): order statistics x_(j) <= median <= x_(k) with coverage >= ``level`` (Binomial(R, 1/2)).

    The widest symmetric pair (j, R + 1 - j) with P(j <= B < R + 1 - j) >= level, B ~ Binomial(R, 1/2);
    the sample's extremes when R is too small for ``level``.
    """
    xs = sorted(values)
    r = len(xs)
    best = (xs[0], xs[-1])
    for j in range(1, r // 2 + 1):  # x_(j) .. x_(r+1-j), 1-based
        cover = sum(comb(r, i) for i in range(j, r + 1 - j)) / 2**r
        if cover >= level:
            best = (xs[j - 1], xs[r - j])
        else:
            break
    return best


def one(impl: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(HERE / "bench_step.py"), "--impl", impl, "--n", str(args.n), "--d", str(args.d)]
    cmd += ["--m", str(args.m), "--dtype", args.dtype, "--reps", str(args.reps), "--min-reps", str(args.reps)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=args.timeout_s)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--d", type=int, required=True)
    ap.add_argument("--m", type=int, required=True)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--expreg", default="expreg-train", help="expreg's implementation in bench_step.py")
    ap.add_argument("--peer", default="torch-compile", help="the peer's implementation in bench_step.py")
    ap.add_argument("--rounds", type=int, default=10, help="pairs of runs")
    ap.add_argument("--reps", type=int, default=5, help="timed steps per run (each run keeps its best)")
    ap.add_argument("--timeout-s", type=float, default=600.0)
    ap.add_argument("--json", type=Path, default=None, help="append one JSON line of the results here")
    args = ap.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load = [os.getloadavg()[0]]
    pairs = []
    for r in range(args.rounds):
        order = [args.expreg, args.peer] if r % 2 == 0 else [args.peer, args.expreg]
        ms = {impl: one(impl, args)["ms_min"] for impl in order}
        pairs.append((ms[args.expreg], ms[args.peer]))
        load.append(os.getloadavg()[0])
        print(
            f"round {r + 1}: {args.expreg} {ms[args.expreg]:.1f} ms, {args.peer} {ms[args.peer]:.1f} ms, "
            f"ratio {ms[args.peer] / ms[args.expreg]:.2f}",
            flush=True,
        )
    ratios = [p / e for e, p in pairs]
    lo, hi = median_interval(ratios)
    median = statistics.median(ratios)
    result = {
        "started": started,
        "shape": [args.n, args.d, args.m],
        "dtype": args.dtype,
        "expreg": args.expreg,
        "peer": args.peer,
        "rounds": args.rounds,
        "reps": args.reps,
        "ms": pairs,
        "ratios": ratios,
        "median_ratio": median,
        "interval90": [lo, hi],
        "load": [min(load), max(load)],
    }
    print(
        f"({args.n}, {args.d}, {args.m}) {args.dtype}: {args.peer} / {args.expreg} median {median:.2f}x, "
        f"90 % interval of the median [{lo:.2f}, {hi:.2f}] over {args.rounds} pairs; "
        f"range {min(ratios):.2f} to {max(ratios):.2f}; load {min(load):.1f} to {max(load):.1f}"
    )
    if args.json is not None:
        with open(args.json, "a") as fh:
            fh.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()
