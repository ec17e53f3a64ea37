"""Where one gradient step's time goes: forward GEMM, exp, backward GEMM, reductions; per CPU, into RESULTS.md.

    python benchmarks/profile_step.py                      # the three step shapes, float32, this CPU
    python benchmarks/profile_step.py --md benchmarks/RESULTS.md   # and record this CPU's profile section
    python benchmarks/profile_step.py --shapes 512,128,32768 --dtype float64 --tuning exp_float32=numpy,gemm=torch

Each phase runs over every block of neurons as ``ops.forward_backward``
runs them (the same block plan, chunks and worker threads, on the NumPy
backend with the tuning in use, or one forced with ``--tuning``), timed
apart, best of ``--reps``:

- forward GEMM: Z_b = X W_b for every block (2 n d m flops);
- exp: Z_b <- exp(Z_b) fused with the partial predictions (n m exps), on
  blocks refilled from the GEMM's output before each timed pass;
- backward GEMM: G_b = (X r)^T E_b (2 n d m flops);
- reductions: the partial predictions summed, the residual, (X r)^T, the
  column scaling of G and its finiteness check (O(n d + d m)).

The whole step is timed too, as ``expreg.train`` takes it
(``ops.repeatable_train_step``: with the gradient step and the movement in
the backward pass, and, where activations are kept, the next forward pass
run ahead in the same sweep, so the forward GEMM and exp run once per step
either way); "other" is the step less the sum of the phases (it includes
the gradient step and movement, which no phase times) (the overlap of phases in a real step makes it
negative when they share the cores better together). "activation traffic"
is the bytes the kept activations cross memory with in the step as
``expreg.train`` takes it (read by the backward GEMM, then overwritten in
cache by the next forward pass run ahead and written back: 2 n m itemsize
bytes) when they exceed the last-level cache; a block plan that recomputes
(n m itemsize above the memory budget, or beyond the last-level cache at a
small d where the calibration chose so: ``Tuning.keeps``) keeps nothing
and runs the forward GEMM and exp twice instead, in cache: its phases are
still timed once each over kept blocks, its traffic column is "-".
Run it on a quiet machine (load average well under the core count): the
load before and after is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SHAPES = [(1024, 32, 65536), (2048, 16, 131072), (512, 128, 32768)]


def _best(fn: Callable[[], Any], reps: int, before: Callable[[], Any] | None = None) -> float:
    fn() if before is None else (before(), fn())
    best = float("inf")
    for _ in range(reps):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


class Phases:
    """The phases of one step on one shape, over the blocks and threads ``ops`` uses."""

    def __init__(self, backend: Any, n: int, d: int, m: int, dtype: np.dtype) -> None:
        from expreg.core import ops

        rng = np.random.default_rng(0)
        X = rng.standard_normal((n, d))
        self.X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(dtype)
        self.W = (rng.standard_normal((d, m)) / np.sqrt(d)).astype(dtype)
        self.a = rng.choice([-1.0, 1.0], m).astype(dtype)
        self.y = rng.uniform(-1, 1, n).astype(dtype)
        self.be, self.n, self.m = backend, n, m
        self.plan = ops.plan_blocks(n, m, dtype.itemsize, backend=backend, d=d)
        self.chunks = self.plan.chunks(m)
        self.Z = np.empty((n * m,), dtype)  # every block's activations (the profile keeps them all)
        self.acc = np.zeros((len(self.chunks), n), dtype)
        self.G = np.empty_like(self.W)
        self.XrT = np.ascontiguousarray(self.X.T)
        self.close: Callable[[], None] = lambda: None

    def block(self, lo: int, hi: int) -> np.ndarray:
        return self.Z[self.n * lo : self.n * hi].reshape(self.n, hi - lo)

    def _over_blocks(self, fn: Callable[[int, int, int], None]) -> Callable[[], None]:
        def chunk(worker: int, c: int) -> None:
            for lo, hi in self.chunks[c]:
                fn(c, lo, hi)

        return lambda: self.be.parallel(len(self.chunks), chunk)

    def forward_gemm(self) -> Callable[[], None]:
        return self._over_blocks(lambda c, lo, hi: self.be.matmul(self.X, self.W[:, lo:hi], out=self.block(lo, hi)))

    def exp(self) -> Callable[[], None]:
        return self._over_blocks(lambda c, lo, hi: self.be.exp_matvec_(self.block(lo, hi), self.a[lo:hi], self.acc[c]))

    def backward_gemm(self) -> Callable[[], None]:
        return self._over_blocks(lambda c, lo, hi: self.be.matmul(self.XrT, self.block(lo, hi), out=self.G[:, lo:hi]))

    def reductions(self) -> None:
        u = self.be.sum_rows(self.acc)
        r = u - self.y
        self.XrT[...] = (self.X * r[:, None]).T
        self.G *= self.a
        self.be.isfinite_all(self.G)

    def step(self) -> Callable[[], Any]:
        """The whole step as ``expreg.train`` takes it (``ops.repeatable_train_step``): with the gradient step and
        the movement in the backward pass, and the next forward pass run ahead there where activations are kept."""
        from expreg.core import ops

        step, self.close = ops.repeatable_train_step(self.be.tuning, self.X, self.W, self.a, self.y)
        return step


def profile(n: int, d: int, m: int, dtype: np.dtype, backend: Any, reps: int) -> dict[str, Any]:
    """Seconds of each phase and of the whole step on one shape, with rates and the activation traffic."""
    p = Phases(backend, n, d, m, dtype)
    fwd = p.forward_gemm()
    with np.errstate(over="ignore", invalid="ignore"):
        t = {
            "forward GEMM": _best(fwd, reps),
            "exp": _best(p.exp(), reps, before=fwd),
            "backward GEMM": _best(p.backward_gemm(), reps),
            "reductions": _best(p.reductions, reps),
            "step": _best(p.step(), reps),
        }
    p.close()
    parts = sum(v for k, v in t.items() if k != "step")
    return {
        "n": n,
        "d": d,
        "m": m,
        "dtype": dtype.name,
        "block": p.plan.block,
        "keep": p.plan.keep,
        "ms": {k: 1e3 * v for k, v in t.items()},
        "other_ms": 1e3 * (t["step"] - parts),
        "gemm_gflops": 4.0 * n * d * m / (t["forward GEMM"] + t["backward GEMM"]) / 1e9,
        "exp_per_s": n * m / t["exp"],
        "activation_mib": n * m * dtype.itemsize / 2**20,
        "traffic_gib_per_s": 2 * n * m * dtype.itemsize / (t["step"] * 2**30),
    }


def _quiet(out: dict[str, Any]) -> str:
    """Whether the machine was quiet: the load average before the run well under the cores (the run itself adds to it after)."""
    cores = out["machine"].get("cores") or 1
    if out["load_before"] < 0.5 * cores:
        return "quiet"
    return (
        f"NOT quiet: other work held about {out['load_before']:.1f} of {cores} cores, "
        "so these figures are indicative only; rerun `make profile` on a quiet machine"
    )


def render(out: dict[str, Any]) -> str:
    """This CPU's profile section (markdown) for RESULTS.md."""
    sys.path.insert(0, str(HERE))
    import report

    mi = out["machine"]
    lines = [
        f"## Profile of one step on {mi.get('cpu', '?')}",
        "",
        f"Command: `{out['command']}`, started {out['started']}; load average {out['load_before']:.1f} before, "
        f"{out['load_after']:.1f} after ({_quiet(out)}).",
        "",
        f"On {report.cpu_line(mi)}, expreg's NumPy backend ({out['backend']}):",
        "",
        "| shape (n, d, m) | dtype | block | forward GEMM ms | exp ms | backward GEMM ms | reductions ms | step ms | other ms "
        "| GEMM GFLOP/s | exp G/s | activations MiB | kept or recomputed | 2 n m bytes / step time (GiB/s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in out["rows"]:
        ms = r["ms"]
        kept = r.get("keep", True)
        traffic = f"{r['traffic_gib_per_s']:.1f}" if kept else "-"
        lines.append(
            f"| ({r['n']}, {r['d']}, {r['m']}) | {r['dtype']} | {r['block']} | {ms['forward GEMM']:.1f} | {ms['exp']:.1f} "
            f"| {ms['backward GEMM']:.1f} | {ms['reductions']:.2f} | {ms['step']:.1f} | {r['other_ms']:.1f} "
            f"| {r['gemm_gflops']:.0f} | {r['exp_per_s'] / 1e9:.2f} | {r['activation_mib']:.0f} "
            f"| {'kept' if kept else 'recomputed'} | {traffic} |"
        )
    lines += ["", "Each phase timed apart over the step's own blocks and threads (`benchmarks/profile_step.py`).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="*", default=[",".join(map(str, s)) for s in SHAPES], help="n,d,m ...")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tuning", default="", help="force choices, e.g. exp_float32=numpy,gemm=torch,block_bytes=262144")
    ap.add_argument("--md", default=None, help="write this CPU's profile section into this RESULTS.md")
    ap.add_argument("--out", default=None, help="write the JSON here too")
    args = ap.parse_args(argv)
    import run_all

    from expreg.core import calibrate
    from expreg.core.backends import NumpyBackend
    from expreg.core.tuning import Tuning

    tuning = calibrate.current()
    if args.tuning:
        forced = dict(kv.split("=", 1) for kv in args.tuning.split(","))
        values = {
            **tuning.as_dict(),
            **{k: (int(v) if v.isdigit() else None if v == "None" else v) for k, v in forced.items()},
        }
        tuning = Tuning.from_dict({**values, "seconds": {}}, source="forced")
    backend = NumpyBackend(tuning=tuning)
    out: dict[str, Any] = {
        "command": "python benchmarks/profile_step.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": run_all.machine_info(),
        "backend": f"threads {backend.threads}; {tuning.describe()}",
        "load_before": os.getloadavg()[0],
    }
    dtype = np.dtype(args.dtype)
    out["rows"] = [profile(*map(int, s.split(",")), dtype, backend, args.reps) for s in args.shapes]
    out["load_after"] = os.getloadavg()[0]
    print(json.dumps(out), flush=True)
    if args.out:
        from expreg.core.storage import write_json_atomic

        write_json_atomic(args.out, out)
    if args.md:
        run_all.write_cpu_markdown(args.md, run_all.cpu_slug(out["machine"]), render(out), kind="profile")
    return out


if __name__ == "__main__":
    main()
