"""The compiled kernels are cached on disk and a fresh process loads them instead of compiling.

Each pool worker, Dask worker and torchrun rank is a fresh process: without a
cache that loads, each would compile the kernels again (seconds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json
import expreg.core.fastpath as f
from expreg.core import _fastkernels as k
assert f.warm_up()
kernels = (k.exp_matvec, k.exp_flat)
print(json.dumps({"hits": sum(sum(d.stats.cache_hits.values()) for d in kernels),
                  "misses": sum(sum(d.stats.cache_misses.values()) for d in kernels)}))
"""


def _probe(cache_dir) -> dict[str, int]:
    src = os.path.dirname(os.path.dirname(os.path.abspath(__import__("expreg").__file__)))
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "PYTHONPATH": src, "EXPREG_FASTPATH": "1"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=280, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_the_kernels_from_the_cache(tmp_path):
    first = _probe(tmp_path)
    assert first["misses"] == 4 and first["hits"] == 0  # two kernels x two dtypes compiled into an empty cache
    assert any(tmp_path.rglob("*.nbi")) and any(tmp_path.rglob("*.nbc"))
    second = _probe(tmp_path)
    assert second == {"hits": 4, "misses": 0}  # all four loaded, none compiled again
