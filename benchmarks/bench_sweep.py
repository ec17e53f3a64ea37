"""Sweep benchmark (issue 10, item 4): worker start-up, per-run overhead, runs/s on 1 and 2 workers.

    python benchmarks/bench_sweep.py            # lazy quick sweep for runs/s, 2 rounds
    python benchmarks/bench_sweep.py --quick    # lazy tiny sweep, 1 round
    python benchmarks/bench_sweep.py --markdown-only   # rewrite the RESULTS.md section from sweep.json

Every figure is measured in this one process, the old way beside the new:

1. Worker start-up. *cold*: a fresh interpreter that imports the worker
   module and loads the compiled kernels (``python -c "import
   expreg.experiments.warm"``), which is what every spawned pool worker
   paid before its first run, against a bare ``python -c pass``. *pool*:
   seconds from ``make_executor(2)`` to a finished tiny run in each worker,
   for the first pool of the process (the forkserver starts and preloads)
   and for a later pool (workers forked warm), and the same for a pool of
   spawned workers (the old executor: each imports and loads by itself).
2. Per-run overhead: sweeps of small runs on one worker at two sizes; the
   extra seconds (sweep seconds - the runs' own seconds, as the rows record
   them; the least of 3 tries) fitted as fixed + per-run x runs, for the new runner (warm
   workers, batches, one part file per second) and the old way (spawned
   workers, one run per submission, one part file per run).
3. Runs/s of a sweep end to end (pool start-up included) with 1 and 2
   workers, back to back, in ``--rounds`` rounds; the ratio of each round.

Results go to ``benchmarks/sweep.json`` and replace (or append) the
"## Sweeps" section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SECTION = "## Sweeps"


def cold_start(reps: int) -> dict[str, float]:
    """Best-of-``reps`` seconds of a fresh interpreter: bare, and importing the worker module (kernels loaded)."""

    def best(code: str) -> float:
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times.append(time.perf_counter() - t)
        return min(times)

    bare = best("pass")
    worker = best("import expreg.experiments.warm, expreg.core.fastpath as f; assert f.enabled()")
    return {"python_bare_s": bare, "worker_import_s": worker, "worker_startup_cold_s": worker - bare}


def _run_in(task: Any) -> int:
    """In a worker: run ``task``; this worker's pid."""
    from expreg.experiments import execute

    execute(task)
    return os.getpid()


def pool_start(factory: Callable[[], Any], workers: int) -> float:
    """Seconds from building a pool to a finished tiny run (m = 64, a few ms) in each of its ``workers`` processes."""
    from expreg.experiments import get_config, make_tasks

    task = make_tasks("lazy", get_config("lazy", "tiny"))[0]
    started = time.perf_counter()
    executor = factory()
    try:
        pids: set[int] = set()
        while len(pids) < workers:  # a fast worker may answer twice before the other starts
            futures = [executor.submit(_run_in, task) for _ in range(workers)]
            wait(futures)
            pids.update(f.result() for f in futures)
        return time.perf_counter() - started
    finally:
        executor.shutdown()


def spawn_pool(jobs: int) -> ProcessPoolExecutor:
    """The executor before issue 10: spawned workers, each importing everything itself."""
    from expreg.experiments.runner import default_jobs
    from expreg.experiments.worker import init_worker

    return ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(max(1, default_jobs() // jobs),),
    )


def sweep(tasks: list[Any], factory: Callable[[], Any], flush_s: float) -> dict[str, float]:
    """One sweep end to end into a fresh table: seconds, runs/s, the runs' own seconds, parts written."""
    from expreg.experiments import ResultStore, run_tasks

    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(tmp)
        started = time.perf_counter()
        run_tasks(tasks, store, factory, flush_s=flush_s)
        seconds = time.perf_counter() - started
        parts = sum(1 for _ in store.parts_dir.glob("part-*.parquet"))
        df = store.read()
        assert len(df) == len(tasks)
        own = float(df.wall_seconds.sum())
    return {
        "seconds": seconds,
        "runs": len(tasks),
        "runs_per_s": len(tasks) / seconds,
        "run_seconds": own,
        "parts": parts,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="lazy tiny sweep, one round")
    p.add_argument(
        "--rounds", type=int, default=None, help="rounds of the 1-vs-2-worker comparison (default 2, quick 1)"
    )
    p.add_argument("--out", default=str(HERE / "sweep.json"))
    p.add_argument("--md", default=str(HERE / "RESULTS.md"))
    p.add_argument("--markdown-only", action="store_true")
    args = p.parse_args(argv)
    if args.markdown_only:
        results = json.loads(Path(args.out).read_text())
        write_section(args.md, markdown(results))
        return results

    from expreg.experiments import get_config, make_executor, make_tasks
    from expreg.experiments.runner import FLUSH_SECONDS

    rounds = args.rounds or (1 if args.quick else 2)
    preset = "tiny" if args.quick else "quick"
    results: dict[str, Any] = {
        "command": "python benchmarks/bench_sweep.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": _cpu_line(),
        "load_average": [round(os.getloadavg()[0], 1)],
    }
    print("worker start-up ...", flush=True)
    results["cold"] = cold_start(2 if args.quick else 3)
    results["pool_start"] = {
        "forkserver_first_pool_s": pool_start(lambda: make_executor(2), 2),  # server start and preload included
        "forkserver_later_pool_s": pool_start(lambda: make_executor(2), 2),
        "spawn_pool_s": pool_start(lambda: spawn_pool(2), 2),
    }
    print(json.dumps(results["pool_start"]), flush=True)

    print("per-run overhead ...", flush=True)
    results["overhead"] = {}
    for name, factory, flush in (("new", lambda: make_executor(1), FLUSH_SECONDS), ("old", lambda: spawn_pool(1), 0.0)):
        sweeps = []
        for seeds in (5, 15) if args.quick else (10, 30):
            small = make_tasks("lazy", get_config("lazy", "tiny", seeds=list(range(seeds))))
            tries = [sweep(small, factory, flush) for _ in range(2 if args.quick else 3)]
            sweeps.append(
                min(tries, key=lambda t: t["seconds"] - t["run_seconds"])
            )  # the least disturbed by other load
        (a, b) = sweeps  # extra seconds = fixed + per_run * runs, fitted through the two sweeps
        per_run = ((b["seconds"] - b["run_seconds"]) - (a["seconds"] - a["run_seconds"])) / (b["runs"] - a["runs"])
        results["overhead"][name] = {
            "sweeps": sweeps,
            "per_run_s": per_run,
            "fixed_s": (a["seconds"] - a["run_seconds"]) - per_run * a["runs"],
            "run_s": (a["run_seconds"] + b["run_seconds"]) / (a["runs"] + b["runs"]),
        }
        results["overhead"][name]["per_run_fraction"] = per_run / results["overhead"][name]["run_s"]
    print(json.dumps(results["overhead"]), flush=True)

    print(f"runs/s, lazy {preset}, 1 and 2 workers ...", flush=True)
    tasks = make_tasks("lazy", get_config("lazy", preset))
    results["throughput"] = []
    for rnd in range(rounds):
        row: dict[str, Any] = {"round": rnd + 1, "sweep": f"lazy {preset}"}
        for jobs in (1, 2):
            row[f"jobs{jobs}"] = sweep(tasks, lambda jobs=jobs: make_executor(jobs), FLUSH_SECONDS)
        row["speedup"] = row["jobs1"]["seconds"] / row["jobs2"]["seconds"]
        results["throughput"].append(row)
        print(json.dumps(row), flush=True)
    results["load_average"].append(round(os.getloadavg()[0], 1))

    from expreg.core.storage import write_json_atomic

    write_json_atomic(args.out, results)
    write_section(args.md, markdown(results))
    print(f"wrote {args.out} and the {SECTION!r} section of {args.md}")
    print(json.dumps(results))  # last line: what run_all.py records
    return results


def markdown(r: dict[str, Any]) -> str:
    """The "## Sweeps" section."""
    lo, hi = r["load_average"][0], r["load_average"][-1]
    c, ps, ov = r["cold"], r["pool_start"], r["overhead"]
    lines = [
        SECTION,
        "",
        f"Command: `{r['command'].strip()}` ({r['date']}; {r['machine']}; 1-minute load average {lo} at the start, "
        f"{hi} at the end: other jobs shared the cores, so every figure is noisy and a second worker's gain is understated).",
        "",
        "Worker start-up (seconds):",
        "",
        "| what | seconds |",
        "|---|---|",
        f"| fresh interpreter, bare (`python -c pass`) | {c['python_bare_s']:.2f} |",
        f"| fresh interpreter importing the worker module, kernels loaded from numba's cache | {c['worker_import_s']:.2f} |",
        f"| = what each spawned worker paid before its first run | {c['worker_startup_cold_s']:.2f} |",
        f"| `make_executor(2)` to a finished tiny run in each worker, first pool of the process (forkserver starts and preloads) | {ps['forkserver_first_pool_s']:.2f} |",
        f"| the same, a later pool (workers forked warm) | {ps['forkserver_later_pool_s']:.2f} |",
        f"| the same with spawned workers (the executor before) | {ps['spawn_pool_s']:.2f} |",
        "",
        "Per-run overhead: sweeps of lazy tiny runs (a few ms to tens of ms each) on one worker, at two sizes; the "
        "extra seconds (sweep seconds - the runs' own seconds, as the rows record them; the least of 3 tries) fitted as "
        "fixed + per run x runs.",
        "",
        "| runner | runs | sweep s | runs' own s | part files | fixed s | per-run overhead ms | per-run overhead / mean run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, label in (
        ("new", "forkserver workers, batches, one part per second"),
        ("old", "spawned workers, one run per submission, one part per run"),
    ):
        o = ov[name]
        for i, sw in enumerate(o["sweeps"]):
            tail = (
                f"{o['fixed_s']:.2f} | {1e3 * o['per_run_s']:.1f} | {100 * o['per_run_fraction']:.0f}% of {1e3 * o['run_s']:.0f} ms"
                if i == 0
                else " | | "
            )
            lines.append(
                f"| {label} | {sw['runs']} | {sw['seconds']:.2f} | {sw['run_seconds']:.2f} | {sw['parts']} | {tail} |"
            )
    lines += [
        "",
        "Runs/s end to end (pool start-up included), 1 and 2 workers back to back:",
        "",
        "| round | sweep | runs | 1 worker: s (runs/s) | 2 workers: s (runs/s) | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for t in r["throughput"]:
        j1, j2 = t["jobs1"], t["jobs2"]
        lines.append(
            f"| {t['round']} | {t['sweep']} | {j1['runs']} | {j1['seconds']:.1f} ({j1['runs_per_s']:.2f}) | "
            f"{j2['seconds']:.1f} ({j2['runs_per_s']:.2f}) | {t['speedup']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def write_section(path: str, section: str) -> None:
    """Replace (or append) the "## Sweeps" section of ``path``, atomically; other sections untouched."""
    from expreg.core.storage import atomic_open

    target = Path(path)
    old = target.read_text() if target.exists() else ""
    start = old.find("\n" + SECTION + "\n")
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + section
    else:
        end = old.find("\n## ", start + 1)
        new = old[: start + 1] + section + (old[end:] if end >= 0 else "")
    with atomic_open(target, "w") as fh:
        fh.write(new)


def _cpu_line() -> str:
    """The CPU (model, cores, ISA extensions, BLAS kernels: ``report.cpu_line``), so that a table says where it was measured."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from report import cpu_line, this_cpu

    return cpu_line(this_cpu())


if __name__ == "__main__":
    main()
