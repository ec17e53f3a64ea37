"""ms per empirical_ntk(net, X) (float32): python benchmarks/kernel_time.py n d m reps (best of reps, 0.25 s settle)"""

import sys
import time

import numpy as np

import expreg

n, d, m, reps = (int(a) for a in sys.argv[1:5])
X, y = expreg.make_dataset(n, d, seed=0)
net = expreg.ExpNet.draw(d, m, seed=0, dtype=np.float32)
expreg.kernels.empirical_ntk(net, X)
best = float("inf")
for _ in range(reps):
    time.sleep(0.25)
    t = time.perf_counter()
    expreg.kernels.empirical_ntk(net, X)
    best = min(best, time.perf_counter() - t)
print(f"{1e3 * best:.1f}")
