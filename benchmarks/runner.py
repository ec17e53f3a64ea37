"""Run one benchmark script in a fresh subprocess, guarded by a memory cap.

The parent polls the child's resident memory and kills it above
``cap_bytes`` (the machine is shared: a runaway alternative must never take
it down), and records the load average around the run, since other work
on the machine slows every measurement.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def run_script(
    script: str, args: list[str], *, cap_bytes: int, timeout_s: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``benchmarks/<script>`` with ``args``; return its last JSON line plus run facts.

    On failure returns ``{"error": "..."}`` (memory cap, timeout or crash).
    """
    import psutil

    cmd = [sys.executable, str(HERE / script), *args]
    load_before = os.getloadavg()[0]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )
    ps = psutil.Process(proc.pid)
    started = time.perf_counter()
    peak_seen = 0
    error = None
    while proc.poll() is None:
        try:
            rss = sum(p.memory_info().rss for p in [ps, *ps.children(recursive=True)])
        except psutil.Error:
            rss = 0
        peak_seen = max(peak_seen, rss)
        if rss > cap_bytes:
            error = f"killed: resident memory {rss / 2**30:.1f} GiB passed the cap of {cap_bytes / 2**30:.1f} GiB"
        elif time.perf_counter() - started > timeout_s:
            error = f"killed: no result within {timeout_s:.0f} s"
        if error:
            proc.kill()
            break
        time.sleep(0.05)
    out, err = proc.communicate()
    facts = {
        "wall_s": time.perf_counter() - started,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "rss_polled_peak_mib": peak_seen / 2**20,
    }
    if error is None and proc.returncode != 0:
        tail = " | ".join(err.strip().splitlines()[-3:])
        error = f"exit {proc.returncode}: {tail}"
    if error is not None:
        return {"error": error, **facts}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": f"no JSON output; stderr: {err.strip()[-300:]}", **facts}
    return {**json.loads(lines[-1]), **facts}
