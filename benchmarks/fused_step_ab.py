"""ms per step of ``expreg.train`` with the gradient step fused into the backward pass (the default on the NumPy
backend) against the step taken by a separate sweep afterwards (``ops.advance``, as on a GPU); issue 25.

    python benchmarks/fused_step_ab.py 512 128 32768 fused
    python benchmarks/fused_step_ab.py 512 128 32768 unfused
    python benchmarks/fused_step_ab.py 512 128 32768 fused float64

The fused mode is ``expreg.train`` as a user calls it: ms per step on the train path.

One mode per process (run the two alternately: this machine's speed drifts by tens of percent within minutes).
Differenced timing: (7 steps - 2 steps) / 5, best of 3, so the per-call set-up (H^cts, lr) cancels.
"""

import sys
import time

import numpy as np

import expreg
from expreg.engine.descent import WeightBuffers

n, d, m = (int(v) for v in sys.argv[1:4])
mode = sys.argv[4] if len(sys.argv) > 4 else "fused"
dtype = np.dtype(sys.argv[5] if len(sys.argv) > 5 else "float32")
if mode == "unfused":
    WeightBuffers.fused_step = lambda self, lr: None  # type: ignore[method-assign]
X, y = expreg.make_dataset(n, d, seed=0)
net = expreg.ExpNet.draw(d, m, seed=0, dtype=dtype)


def run(k: int) -> float:
    t0 = time.perf_counter()
    expreg.train(net, X, y, max_steps=k, epsilon=0.0, record_every=0, lr=1e-9)
    return time.perf_counter() - t0


run(2)
best = min((run(7) - run(2)) / 5 for _ in range(3))
print(f"{n} {d} {m} {mode} {dtype}: {1e3 * best:.1f} ms per step", flush=True)
