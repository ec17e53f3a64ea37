"""ms per step of ``expreg.train`` at one shape for every exp kernel and GEMM library, as pairs (issue 25).

    python benchmarks/exp_gemm_ab.py 512,128,32768 3
    python benchmarks/exp_gemm_ab.py 1024,32,65536 3

Each round trains a fresh float32 network with every (GEMM library, exp kernel) pair in turn
(``calibrate.use`` forces it; blocks of 4 MiB for d <= 64, 1 MiB above): 2 warm steps, then a 6-step and a
1-step run; the figure is their difference / 5, so the train's set-up (H^cts, its eigenvalues) cancels out.
Why pairs: on an Intel Xeon torch's GEMM was the fastest beside torch's exp and the slowest beside the
others, which timing each choice on its own cannot see (``expreg.core.calibrate`` now races the pairs).
"""

import sys
import time

import numpy as np

import expreg
from expreg.core import calibrate
from expreg.core.tuning import EXP_KERNELS, GEMM_LIBRARIES, Tuning

n, d, m = map(int, sys.argv[1].split(","))
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
X, y = expreg.make_dataset(n, d, seed=0)
pairs = {
    f"{gemm} GEMM, {exp} exp": Tuning(
        exp_float32=exp, gemm=gemm, block_bytes=2**22, block_bytes_wide=2**20, source="forced"
    )
    for gemm in GEMM_LIBRARIES
    for exp in EXP_KERNELS
}
ms: dict[str, list[float]] = {k: [] for k in pairs}


def run(steps: int) -> float:
    t = time.perf_counter()
    expreg.train(net, X, y, max_steps=steps, epsilon=0.0, record_every=0, lr=1e-9)
    return time.perf_counter() - t


for _ in range(rounds):
    for name, tuning in pairs.items():
        calibrate.use(tuning)
        net = expreg.ExpNet.draw(d, m, seed=0, dtype=np.float32)
        run(2)
        ms[name].append(1e3 * (run(6) - run(1)) / 5)
calibrate.forget()
print(f"({n}, {d}, {m}) float32, ms per step of expreg.train, {rounds} rounds")
for name, v in ms.items():
    print(f"{name:>26}: " + " ".join(f"{x:6.1f}" for x in v) + f"   median {np.median(v):6.1f}")
