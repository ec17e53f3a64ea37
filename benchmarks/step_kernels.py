"""Microseconds per block of the compiled step kernels (``_fastkernels``), one thread, data in cache; issue 25.

    python benchmarks/step_kernels.py            # d = 16, a block of 512 columns of a (16, 131072) float32 array
    python benchmarks/step_kernels.py 128 2048 32768

Each kernel walks the block's rows as 1-D slices (vectorised by LLVM); ``numpy scale`` is NumPy's
``G[:, lo:hi] *= sa[lo:hi]`` on the same block, for scale.
"""

import sys
import time
from collections.abc import Callable

import numpy as np

from expreg.core import _fastkernels as k

d, b, m = (int(v) for v in sys.argv[1:4]) if len(sys.argv) > 3 else (16, 512, 131072)
rng = np.random.default_rng(0)
G = rng.standard_normal((d, m)).astype(np.float32)
W, W0, out = G.copy(), G.copy(), np.empty_like(G)
sa, sq, neg = np.ones(m, np.float32), np.empty(b, np.float32), np.float32(-1e-9)
lo = m // 2


def micros(f: Callable[[], object], reps: int = 200) -> float:
    f()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        best = min(best, time.perf_counter() - t0)
    return 1e6 * best / reps


rows = {
    "scale_check": lambda: k.scale_check(G, sa, lo, lo + b),
    "scale_check_step_movement": lambda: k.scale_check_step_movement(G, sa, lo, lo + b, out, W, neg, W0, sq),
    "step_movement": lambda: k.step_movement(out, W, G, neg, lo, lo + b, W0, sq),
    "numpy scale": lambda: G[:, lo : lo + b].__imul__(sa[lo : lo + b]),
}
for name, f in rows.items():
    print(f"{name:28s} {micros(f):8.2f} us per ({d} x {b}) block")
