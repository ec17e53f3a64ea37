"""Fingerprints of expreg's numerical results, to show that a refactor changed no bit.

Prints, as JSON, a SHA-256 prefix of: the empirical NTK (NumPy at n = 32, the
parts path, and n = 600, the syrk path; torch on the CPU), a 30-step training
run with kernel records (NumPy and torch) and a nested-width scan, each in
float64 and float32. Run it on two source trees and compare the outputs::

    git archive <old-rev> src | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old/src python benchmarks/same_results.py > old.json
    PYTHONPATH=src python benchmarks/same_results.py > new.json
    diff old.json new.json && echo identical

Equal outputs mean bit-identical results on this machine and thread count
(which the library's results never depend on).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np


def _h(a: Any) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(a, dtype=np.float64)).tobytes()).hexdigest()[:16]


def fingerprints() -> dict[str, Any]:
    import expreg
    from expreg import kernels, scan

    out: dict[str, Any] = {}
    for dtype in (np.float64, np.float32):
        for n, m in ((32, 512), (600, 700)):
            X, _ = expreg.make_dataset(n, 8, seed=1)
            for backend in ("numpy", "torch"):
                net = expreg.ExpNet.init(8, m, seed=2, dtype=dtype, backend=backend)
                out[f"ntk {backend} {dtype.__name__} n={n}"] = _h(kernels.empirical_ntk(net, X))
        X, y = expreg.make_dataset(16, 8, seed=3)
        for backend in ("numpy", "torch"):
            net = expreg.ExpNet.init(8, 256, seed=4, dtype=dtype, backend=backend)
            r = expreg.train(net, X, y, max_steps=30, record_every=10, epsilon=0)
            out[f"train {backend} {dtype.__name__}"] = [
                _h(r.history.loss),
                _h(r.history.kernel_deviation),
                _h(r.net.weights_numpy()[0]),
                r.lr,
            ]
        out[f"scan {dtype.__name__}"] = [_h(H) for _, H in scan.nested_gram(X, [10, 100, 5000], seed=5, dtype=dtype)]
    return out


if __name__ == "__main__":
    print(json.dumps(fingerprints(), indent=0, sort_keys=True))
