"""ms per GD step on the expreg.train path: python steptime.py n d m dtype steps"""

import sys
import time

import numpy as np

import expreg

n, d, m, dt, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
dtype = np.float32 if dt == "float32" else np.float64
X, y = expreg.make_dataset(n, d, seed=0)
net = expreg.ExpNet.draw(d, m, seed=0, dtype=dtype)
expreg.train(net, X, y, max_steps=2, epsilon=0.0, record_every=0, lr=1e-9)  # warm: workspaces, threads
t = time.perf_counter()
r = expreg.train(net, X, y, max_steps=steps, epsilon=0.0, record_every=0, lr=1e-9)
print(f"{1e3 * (time.perf_counter() - t) / steps:.2f}")
