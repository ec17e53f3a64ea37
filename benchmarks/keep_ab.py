"""ms per step of ``expreg.train`` at one shape, activations kept or recomputed, interleaved rounds (issue 25).

    python benchmarks/keep_ab.py 2048,16,131072 5
    python benchmarks/keep_ab.py 2048,16,131072 5 keep:4096,recompute:4096,recompute:1024

Each round trains a fresh float32 network once with every variant in turn (``calibrate.use`` forces it on top
of the tuning in use): ``keep:KIB`` keeps the activations between the passes in blocks of KIB KiB,
``recompute:KIB`` recomputes them in the backward pass (``Tuning.recompute_d``) in blocks of KIB KiB. The
figure of a round is the fastest of 5 steps (timed between ``expreg.train``'s progress callbacks, after a
first step), so the train's set-up is not in it. The variants take turns, so a slow spell of a shared machine
hits them alike; compare medians.
"""

import dataclasses
import sys
import time

import numpy as np

import expreg
from expreg.core import calibrate

n, d, m = map(int, sys.argv[1].split(","))
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
specs = sys.argv[3].split(",") if len(sys.argv) > 3 else ["keep:4096", "recompute:4096", "recompute:1024"]
X, y = expreg.make_dataset(n, d, seed=0)
base = calibrate.current()
variants = {}
for spec in specs:
    mode, kib = spec.split(":")
    size = int(kib) * 1024
    if mode == "keep":
        variants[spec] = dataclasses.replace(
            base, recompute_d=0, recompute_beyond=None, block_bytes=size, block_bytes_wide=size, source="forced"
        )
    elif mode == "recompute":
        variants[spec] = dataclasses.replace(
            base, recompute_d=d, recompute_beyond=0, block_bytes_recompute=size, source="forced"
        )
    else:
        raise SystemExit(f"unknown variant {spec!r}: keep:KIB or recompute:KIB")
ms: dict[str, list[float]] = {k: [] for k in variants}
for _ in range(rounds):
    for name, tuning in variants.items():
        calibrate.use(tuning)
        net = expreg.ExpNet.draw(d, m, seed=0, dtype=np.float32)
        assert net.plan(n).keep == name.startswith("keep")
        ticks: list[float] = []
        expreg.train(
            net,
            X,
            y,
            max_steps=6,
            epsilon=0.0,
            record_every=0,
            lr=1e-9,
            progress=lambda t, r, ticks=ticks: ticks.append(time.perf_counter()),
        )
        ms[name].append(1e3 * float(np.min(np.diff(ticks[1:]))))
calibrate.forget()
print(
    f"({n}, {d}, {m}) float32, ms per step of expreg.train (fastest of 5), {rounds} rounds; tuning: {base.describe()}"
)
for name, v in ms.items():
    print(f"{name:>16}: " + " ".join(f"{x:6.1f}" for x in v) + f"   median {np.median(v):6.1f}")
