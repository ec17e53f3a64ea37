"""ms per step of ``expreg.train`` at one shape for several block sizes, interleaved rounds (issue 25).

    python benchmarks/block_ab.py 512,128,32768 262144,1048576,2097152,4194304 4

Each round trains a fresh float32 network for 5 steps (after 2 warm ones) with every block size in turn
(``calibrate.use`` forces it); the figure is the 5-step run's wall time / 5, the train's set-up (H^cts, its
eigenvalues) included, so compare sizes with each other, not with ``make bench``.
"""

import dataclasses
import sys
import time

import numpy as np

import expreg
from expreg.core import calibrate

n, d, m = map(int, sys.argv[1].split(","))
choices = [int(b) for b in sys.argv[2].split(",")]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
X, y = expreg.make_dataset(n, d, seed=0)
base = calibrate.current()
ms: dict[int, list[float]] = {b: [] for b in choices}
for _ in range(rounds):
    for b in choices:
        calibrate.use(dataclasses.replace(base, block_bytes=b))
        net = expreg.ExpNet.draw(d, m, seed=0, dtype=np.float32)
        expreg.train(net, X, y, max_steps=2, epsilon=0.0, record_every=0, lr=1e-9)
        t = time.perf_counter()
        expreg.train(net, X, y, max_steps=5, epsilon=0.0, record_every=0, lr=1e-9)
        ms[b].append(1e3 * (time.perf_counter() - t) / 5)
for b, v in ms.items():
    print(f"{b:>9} bytes: " + " ".join(f"{x:.1f}" for x in v) + f"  median {np.median(v):.1f} ms")
