"""Scale-out benchmark (issue 6): sweep throughput and width-sharded training speed.

    python benchmarks/bench_scaleout.py            # full: the "width" quick sweep, m = 2^17
    python benchmarks/bench_scaleout.py --quick    # the "convergence" tiny sweep, m = 2^15
    python benchmarks/bench_scaleout.py --markdown-only   # rewrite the RESULTS.md section from scaleout.json
    python benchmarks/bench_scaleout.py --device cuda     # on a GPU: sharded training only (torch backend, NCCL)

1. Sweep throughput: one experiment sweep run end to end (pool start-up
   included) on the local process pool (``make_executor(jobs)``) and on a
   Dask LocalCluster (127.0.0.1, ``--scheduler`` path), with 1 and 2
   workers of one thread each; runs per second.
2. Width-sharded training: ``train_sharded`` for a fixed number of steps,
   as one process without torch.distributed, and as P = 1 and 2 gloo ranks
   (file rendezvous on loopback, 1 thread per rank); steps per second
   measured from step 1 to the last step (set-up and the first step excluded).

Results go to ``benchmarks/scaleout.json`` and replace (or append) the
"## Scale-out" section at the end of ``benchmarks/RESULTS.md``. With
``--device cuda`` only part 2 runs, on the torch backend (one process
without torch.distributed, then NCCL ranks, one GPU each: P = 1, and P = 2
where two GPUs are visible), into ``scaleout-cuda.json`` and the same
section of ``RESULTS-cuda.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SECTION = "## Scale-out"


# ---------------------------------------------------------------- sweeps
def sweep_throughput(experiment: str, preset: str, workers: int, kind: str) -> dict[str, Any]:
    """Runs per second of one sweep on ``workers`` local workers ("pool" or "dask")."""
    from expreg.experiments import ResultStore, get_config, make_executor, make_tasks, run_tasks

    tasks = make_tasks(experiment, get_config(experiment, preset))
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(tmp)
        if kind == "pool":
            started = time.perf_counter()
            run_tasks(tasks, store, lambda: make_executor(workers))
            seconds = time.perf_counter() - started
        else:
            import logging

            from distributed import LocalCluster

            with LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                silence_logs=logging.ERROR,
            ) as cluster:
                started = time.perf_counter()  # cluster start-up excluded: it is already running for a user
                run_tasks(tasks, store, lambda: make_executor(scheduler=cluster.scheduler_address))
                seconds = time.perf_counter() - started
        assert len(store.read()) == len(tasks)
    return {
        "experiment": experiment,
        "preset": preset,
        "executor": kind,
        "workers": workers,
        "runs": len(tasks),
        "seconds": seconds,
        "runs_per_s": len(tasks) / seconds,
    }


# ---------------------------------------------------------------- sharded training
def _train_worker(args: argparse.Namespace) -> None:
    """One rank (or the single process): train, print steps/s as JSON on rank 0."""
    import numpy as np

    import expreg
    from expreg.distributed.sharded import NetSpec, init_from_environment, shutdown, train_sharded

    gpu = args.device != "cpu"
    comm, device = init_from_environment(args.device if gpu else None, args.init_method)
    X, y = expreg.make_dataset(args.n, args.d, seed=0)
    stamps: dict[int, float] = {}
    spec = NetSpec(
        args.d,
        args.m,
        seed=0,
        init="gaussian",
        scaling="ntk",
        dtype=np.dtype(args.dtype),
        backend="torch" if gpu else "numpy",
        device=device if gpu else None,
    )
    result = train_sharded(
        spec,
        X,
        y,
        epsilon=0.0,
        max_steps=args.steps,
        record_every=0,
        comm=comm,
        progress=lambda t, r: stamps.__setitem__(t, time.perf_counter()),
    )
    shutdown(comm)
    if comm.rank == 0:
        steps = result.steps - 1
        print(
            json.dumps(
                {
                    "steps_per_s": steps / (stamps[result.steps] - stamps[1]),
                    "steps": result.steps,
                    "final_residual": result.final_residual,
                    "world_size": comm.world_size,
                }
            )
        )


def sharded_steps(
    n: int, d: int, m: int, steps: int, world: int | None, threads: int, dtype: str, device: str = "cpu"
) -> dict[str, Any]:
    """Steps per second of ``train_sharded`` on ``world`` ranks, gloo (CPU) or NCCL (CUDA) (None: one process, no torch.distributed)."""
    cmd = [
        sys.executable,
        __file__,
        "_train",
        "--n",
        str(n),
        "--d",
        str(d),
        "--m",
        str(m),
        "--steps",
        str(steps),
        "--dtype",
        dtype,
        "--device",
        device,
    ]
    env = {
        **os.environ,
        "EXPREG_NUM_THREADS": str(threads),
        "OMP_NUM_THREADS": str(threads),
        "GLOO_SOCKET_IFNAME": "lo",
    }
    env.pop("WORLD_SIZE", None)
    with tempfile.TemporaryDirectory() as tmp:
        if world is None:
            procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)]
        else:
            store = ["--init-method", f"file://{tmp}/{uuid.uuid4().hex}"]
            procs = [
                subprocess.Popen(
                    cmd + store,
                    env={**env, "WORLD_SIZE": str(world), "RANK": str(r), "LOCAL_RANK": str(r)},
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for r in range(world)
            ]
        outs = [p.communicate(timeout=600)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a rank failed: return codes {[p.returncode for p in procs]}")
    row = json.loads(outs[0].strip().splitlines()[-1])
    return {
        "n": n,
        "d": d,
        "m": m,
        "dtype": dtype,
        "processes": world or 1,
        "torch_distributed": world is not None,
        "threads_per_process": threads,
        "device": device,
        **row,
    }


# ---------------------------------------------------------------- report
def markdown(results: dict[str, Any]) -> str:
    """The "## Scale-out" section."""
    lo, hi = results.get("load_average", ["?", "?"])
    lines = [
        SECTION,
        "",
        f"Command: `{results['command']}` ({results['date']}; {results['machine']}; 1-minute load average "
        f"{lo} at the start, {hi} at the end: other jobs shared the cores, so speed-ups from a second worker are "
        "understated and every figure is noisy).",
        "",
        "Sweep throughput: one sweep end to end, start-up of the workers included (the Dask cluster itself is "
        "started before the clock).",
        "",
        "| executor | workers | sweep | runs | seconds | runs/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["sweeps"]:
        lines.append(
            f"| {r['executor']} | {r['workers']} | {r['experiment']} {r['preset']} | {r['runs']} | {r['seconds']:.1f} | {r['runs_per_s']:.2f} |"
        )
    gpu = results.get("device", "cpu") != "cpu"
    if gpu:
        lines = [
            *lines[:3],
            "",
            f"GPU: {results.get('gpu', '?')}; sweeps are not measured on the GPU (they run on the CPU).",
        ]
    lines += [
        "",
        "Width-sharded training (`train_sharded`, gaussian init, scaling ntk, lr auto), steps/s from step 1 "
        "to the last step:",
        "",
        "| processes | torch.distributed | device | threads/process | n | d | m | dtype | steps | steps/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["sharded"]:
        dist = ("nccl" if gpu else "gloo") if r["torch_distributed"] else "no"
        lines.append(
            f"| {r['processes']} | {dist} | {r.get('device', 'cpu')} | {r['threads_per_process']} | {r['n']} | {r['d']} | "
            f"{r['m']} | {r['dtype']} | {r['steps']} | {r['steps_per_s']:.2f} |"
        )
    if not gpu:
        lines += [
            "",
            "GPU (NCCL): `python benchmarks/bench_scaleout.py --device cuda` writes the same table to RESULTS-cuda.md.",
        ]
    return "\n".join([*lines, ""])


def write_section(path: Path, text: str) -> None:
    """Replace the "## Scale-out" section of ``path`` (it runs to the end of the file), or append it."""
    from expreg.core.storage import atomic_open

    old = path.read_text() if path.exists() else ""
    head = old.split(f"\n{SECTION}\n")[0] if f"\n{SECTION}\n" in old else (old if not old.startswith(SECTION) else "")
    with atomic_open(path, "w") as fh:
        fh.write((head.rstrip("\n") + "\n\n" if head.strip() else "") + text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "_train"])
    parser.add_argument("--quick", action="store_true", help="a small sweep and width (a minute)")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--d", type=int, default=32)
    parser.add_argument("--m", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--dtype", default="float64")
    parser.add_argument("--init-method", default=None)
    parser.add_argument(
        "--device", default="cpu", help="cpu, or cuda: sharded training on the torch backend, NCCL between ranks"
    )
    parser.add_argument(
        "--markdown-only",
        action="store_true",
        help="only (re)write the RESULTS.md section from benchmarks/scaleout.json (e.g. after run_all.py rewrote the file)",
    )
    args = parser.parse_args()
    if args.mode == "_train":
        _train_worker(args)
        return
    gpu = args.device != "cpu"
    json_path, md_path = (
        (HERE / "scaleout-cuda.json", HERE / "RESULTS-cuda.md")
        if gpu
        else (HERE / "scaleout.json", HERE / "RESULTS.md")
    )
    if args.markdown_only:
        write_section(md_path, markdown(json.loads(json_path.read_text())))
        return
    load_before = os.getloadavg()[0]
    experiment, preset = ("convergence", "tiny") if args.quick else ("width", "quick")
    m = args.m or ((2**15 if args.quick else 2**17) * (16 if gpu else 1))
    steps = args.steps or (10 if args.quick else 30)
    sweeps = [] if gpu else [sweep_throughput(experiment, preset, w, kind) for kind in ("pool", "dask") for w in (1, 2)]
    for r in sweeps:
        print(
            f"sweep {r['executor']:5s} {r['workers']} workers: {r['runs_per_s']:.2f} runs/s ({r['seconds']:.1f} s)",
            flush=True,
        )
    layouts = ((None, 1), (None, 2), (1, 2), (2, 1))
    gpu_name = None
    if gpu:
        import torch  # the parent only counts the GPUs (no CUDA context); each rank takes one

        gpus = torch.cuda.device_count()
        if gpus < 1:
            raise SystemExit(
                "--device cuda: torch sees no GPU here (torch.cuda.device_count() is 0); run without --device"
            )
        gpu_name = torch.cuda.get_device_name(0)
        layouts = ((None, 1), (1, 1)) + (((2, 1),) if gpus >= 2 else ())
    sharded = [
        sharded_steps(args.n, args.d, m, steps, world, threads, args.dtype, args.device) for world, threads in layouts
    ]
    for r in sharded:
        print(
            f"sharded P={r['processes']} dist={r['torch_distributed']} threads={r['threads_per_process']}: {r['steps_per_s']:.2f} steps/s",
            flush=True,
        )
    results = {
        "command": "python benchmarks/bench_scaleout.py"
        + (" --quick" if args.quick else "")
        + (f" --device {args.device}" if gpu else ""),
        "date": time.strftime("%Y-%m-%d"),
        "machine": _cpu_line(),
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "sweeps": sweeps,
        "sharded": sharded,
        "device": args.device,
        "gpu": gpu_name,
    }
    json_path.write_text(json.dumps(results, indent=2))
    write_section(md_path, markdown(results))


def _cpu_line() -> str:
    """The CPU (model, cores, ISA extensions, BLAS kernels: ``report.cpu_line``), so that a table says where it was measured."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from report import cpu_line, this_cpu

    return cpu_line(this_cpu())


if __name__ == "__main__":
    main()
