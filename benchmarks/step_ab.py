"""ms per step of ``expreg.train`` at one shape under several variants of its speed choices, in interleaved rounds.

    python benchmarks/step_ab.py 1024,32,65536 --rounds 8 ahead plain:ahead=0
    python benchmarks/step_ab.py 1024,32,65536 ahead:block_bytes=4194304 ahead:block_bytes=2097152
    python benchmarks/step_ab.py 2048,16,131072 keep:recompute_d=0 recompute:recompute_d=16,recompute_beyond=0

Each variant is ``label[:field=value,...]``: fields of ``expreg.core.tuning.Tuning`` (forced with
``calibrate.use`` on top of the tuning in use; values are integers, ``None`` or names) and ``ahead`` (0 or 1:
``engine.descent.RUN_AHEAD``, whether each step's backward pass runs the next forward pass). Each round trains
a fresh network (float32 unless ``--dtype``) once per variant, the variants taking turns (their order reversed
every other round), so that a slow spell of a shared machine hits them alike; the figure of a round is the
fastest of 5 steps, timed between ``expreg.train``'s progress callbacks after a first step (the set-up is not in
it). Printed: each variant's rounds and median, and the median of its per-round ratio to the first variant (this / first) with
the distribution-free 90 % interval of that median (``paired_ratio.median_interval``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paired_ratio import median_interval

import expreg
from expreg.core import calibrate
from expreg.engine import descent

STEPS = 6  # a first step, then the fastest of the next five


def parse_value(text: str) -> Any:
    """'None' -> None, digits -> int, anything else stays a string."""
    if text == "None":
        return None
    try:
        return int(text)
    except ValueError:
        return text


def parse_variant(spec: str) -> tuple[str, dict[str, Any], bool]:
    """'label:f=v,g=w' -> (label, Tuning overrides, run ahead)."""
    label, _, rest = spec.partition(":")
    fields: dict[str, Any] = {}
    ahead = descent.RUN_AHEAD
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise SystemExit(f"variant {spec!r}: expected field=value, got {item!r}")
        if key == "ahead":
            ahead = value not in ("0", "false", "False")
        elif key in {f.name for f in dataclasses.fields(calibrate.Tuning)}:
            fields[key] = parse_value(value)
        else:
            raise SystemExit(f"variant {spec!r}: {key!r} is neither 'ahead' nor a field of Tuning")
    return label, fields, ahead


def one_round(d: int, m: int, dtype: np.dtype, X: np.ndarray, y: np.ndarray) -> float:
    """ms of the fastest of five steps of one fresh training run."""
    net = expreg.ExpNet.draw(d, m, seed=0, dtype=dtype)
    ticks: list[float] = []
    expreg.train(
        net,
        X,
        y,
        max_steps=STEPS,
        epsilon=0.0,
        record_every=0,
        lr=1e-9,
        progress=lambda t, r: ticks.append(time.perf_counter()),
    )
    return 1e3 * float(np.min(np.diff(ticks[1:])))


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shape", help="n,d,m")
    ap.add_argument("variants", nargs="+", help="label[:field=value,...]; the first is the reference")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args(argv)
    n, d, m = map(int, args.shape.split(","))
    dtype = np.dtype(args.dtype)
    variants = [parse_variant(v) for v in args.variants]
    X, y = expreg.make_dataset(n, d, seed=0)
    base = calibrate.current()
    ms: dict[str, list[float]] = {label: [] for label, _, _ in variants}
    try:
        for r in range(args.rounds):
            for label, fields, ahead in variants if r % 2 == 0 else variants[::-1]:
                calibrate.use(dataclasses.replace(base, **fields, source="forced"))
                descent.RUN_AHEAD = ahead
                ms[label].append(one_round(d, m, dtype, X, y))
    finally:
        calibrate.forget()
        descent.RUN_AHEAD = True
    print(f"({n}, {d}, {m}) {dtype.name}, ms per step of expreg.train (fastest of 5), {args.rounds} rounds")
    print(f"tuning in use: {base.describe()}")
    ref = ms[variants[0][0]]
    for label, values in ms.items():
        ratios = [a / b for a, b in zip(values, ref, strict=True)]
        lo, hi = median_interval(ratios)
        print(
            f"{label:>14}: " + " ".join(f"{x:6.1f}" for x in values) + f"   median {np.median(values):6.1f}"
            f"   this / {variants[0][0]}: median {np.median(ratios):.3f} [{lo:.3f}, {hi:.3f}]"
        )
    return ms


if __name__ == "__main__":
    main()
