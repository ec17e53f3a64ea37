"""Time one implementation's gradient step on one shape, in this process; print JSON.

Run by ``run_all.py`` in a fresh subprocess per measurement, so thread
pools of different libraries never share a process and the peak resident
memory (``ru_maxrss``) belongs to this one measurement.

    python benchmarks/bench_step.py --impl expreg-numpy --n 1024 --d 32 --m 65536 --dtype float32

Output (one JSON object): first_ms (first call: compilation included),
ms_min and ms_median over the timed steps, cpu_ms_min (CPU time of all the
process's threads, spinning included: less sensitive to other work on the
machine than wall time), reps, and memory in MiB:
rss_start (after imports), rss_base (after the data and the step's set-up),
rss_peak (ru_maxrss), and ``step_mib`` = rss_peak - rss_base, the memory
the step itself needed beyond its inputs. On CUDA (torch implementations),
``step_mib`` is device memory instead: torch.cuda.max_memory_allocated
during the steps minus the memory allocated once the inputs were built
(``memory`` says which). ``runs_on`` names the device that ran the step
(JAX's own device for jax-jit).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--d", type=int, required=True)
    p.add_argument("--m", type=int, required=True)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--reps", type=int, default=5, help="timed steps at most")
    p.add_argument("--min-reps", type=int, default=2, help="timed steps at least")
    p.add_argument(
        "--budget-s", type=float, default=8.0, help="stop timing after this many seconds (once min-reps are done)"
    )
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before timing (the first includes compilation)")
    args = p.parse_args(argv)

    import impls
    import numpy as np

    rss_start = _rss_mib()
    X, y, W, a = impls.data(args.n, args.d, args.m, np.dtype(args.dtype))
    step, sync, state = impls.make(args.impl, X, y, W, a, device=args.device)
    rss_base = _rss_mib()
    cuda = _torch_cuda(args)
    if cuda is not None:
        cuda.synchronize()
        cuda.reset_peak_memory_stats()
        device_base = cuda.memory_allocated() / 2**20

    t0 = time.perf_counter()
    step()
    sync()
    first_ms = 1e3 * (time.perf_counter() - t0)
    for _ in range(max(0, args.warmup - 1)):
        step()
        sync()
    times: list[float] = []
    cpu: list[float] = []
    started = time.perf_counter()
    while len(times) < args.reps and (len(times) < args.min_reps or time.perf_counter() - started < args.budget_s):
        c0, t0 = time.process_time(), time.perf_counter()
        step()
        sync()
        times.append(1e3 * (time.perf_counter() - t0))
        cpu.append(1e3 * (time.process_time() - c0))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    memory: dict[str, object] = {"memory": "host RSS", "step_mib": max(0.0, peak - rss_base)}
    if cuda is not None:
        device_peak = cuda.max_memory_allocated() / 2**20
        memory = {
            "memory": "CUDA allocated",
            "step_mib": max(0.0, device_peak - device_base),
            "device_base_mib": device_base,
            "device_peak_mib": device_peak,
        }
    out: dict[str, object] = {
        "impl": args.impl,
        "n": args.n,
        "d": args.d,
        "m": args.m,
        "dtype": args.dtype,
        "device": args.device,
        "runs_on": state.get("runs_on", args.device),
        "first_ms": first_ms,
        "ms_min": min(times) if times else first_ms,
        "ms_median": statistics.median(times) if times else first_ms,
        "reps": len(times),
        "cpu_ms_min": min(cpu) if cpu else None,  # CPU time of all threads: robust to other load
        "rss_start_mib": rss_start,
        "rss_base_mib": rss_base,
        "rss_peak_mib": peak,
        **memory,
    }
    print(json.dumps(out), flush=True)
    return out


def _torch_cuda(args: argparse.Namespace) -> object | None:
    """torch.cuda when this measurement runs a torch implementation on a GPU, else None."""
    if not args.device.startswith("cuda") or not args.impl.startswith(("torch", "expreg-torch")):
        return None
    import torch

    dev = torch.device(args.device)  # plain "cuda" has no index, which set_device refuses: the current GPU
    torch.cuda.set_device(dev.index if dev.index is not None else torch.cuda.current_device())
    return torch.cuda


if __name__ == "__main__":
    main()
