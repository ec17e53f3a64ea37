"""Every benchmark of issue 4 in one run; writes results-<cpu>.json and its CPU's section of RESULTS.md.

    python benchmarks/run_all.py            # full run (what `make bench` does), < 15 min on 2 cores
    python benchmarks/run_all.py --quick    # float32 only, fewer repetitions, memory test at 2^22

On a GPU (a CUDA build of PyTorch; jax[cuda12] for the JAX column), one
command per section, each well under ten minutes, each rewriting its own
section of RESULTS-cuda.md (results-cuda.json keeps the others):

    python benchmarks/run_all.py --device cuda --section step     # expreg-torch vs torch.compile, autograd, JAX: same GPU
    python benchmarks/run_all.py --device cuda --section kernel   # H(W): expreg vs a plain torch reference (bench_device.py)
    python benchmarks/run_all.py --device cuda --section scan     # the largest n a nested-width scan finishes in 9 minutes

1. The compute limit of the machine (``limits.py``).
2. The step table: ms per gradient step of each implementation
   (``impls.py``) on (n, d, m) = (1024, 32, 65536), (2048, 16, 131072),
   (512, 128, 32768) in float32 and float64, each in its own subprocess
   (``bench_step.py``), with peak memory.
3. The memory test: n = 4096, d = 16, float32; expreg trains m = 2^24 for
   a step; each approach's largest width within 16 GiB is estimated from
   its measured peak memory per neuron (two small widths), never by
   running it out of memory.
4. Sweeps (``bench_sweep.py``): worker start-up, per-run overhead, runs/s
   on 1 and 2 workers.

Subprocesses are killed above ``--mem-cap-gib`` of resident memory.

One table per CPU (issue 25): a CPU run writes ``results-<cpu>.json`` (the
CPU's model as a slug, e.g. results-amd-epyc.json) and replaces only its
own CPU's section of RESULTS.md (between ``<!-- cpu-table: <slug> -->``
markers), so runs on other CPUs are kept. Every table names the CPU, its
ISA extensions and the BLAS kernels (threadpoolctl), and the speed choices
``expreg.core.calibrate`` made there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import impls  # noqa: E402
import report  # noqa: E402
from runner import run_script  # noqa: E402

SHAPES = [(1024, 32, 65536), (2048, 16, 131072), (512, 128, 32768)]
CPU_IMPLS = list(impls.NAMES)  # every implementation of the step (benchmarks/impls.py)
GPU_IMPLS = ["expreg-torch", "torch-autograd", "torch-compile", "torch-manual", "jax-jit"]
#: Rerun in every round: expreg on the path a user calls (``expreg.train``, default backend) and the two fastest
#: competitors (PyTorch autograd trails torch.compile everywhere; see RESULTS.md).
CONTEST = ("expreg-train", "torch-compile", "jax-jit")
GPU_CONTEST = ("expreg-torch", "torch-compile", "jax-jit")
#: Sections of a GPU run (one command each); a CPU run does the step table, limits and memory test together.
GPU_SECTIONS = ("step", "kernel", "scan")
#: A GPU section stops starting new measurements after this many minutes (each command stays under ten).
GPU_MINUTES = 8.5
MEMORY_N, MEMORY_D, MEMORY_LIMIT = 4096, 16, 16 * 2**30
MEMORY_PROBE_WIDTHS = (2**13, 2**14)


def gpu_info(device: str) -> dict[str, Any]:
    """GPU name, memory, compute capability, CUDA and driver versions, asked of torch in a subprocess.

    A subprocess, so that this parent never holds a CUDA context (memory on
    the device) while the measurements run.
    """
    code = (
        f"import json, torch; d = torch.device({device!r}); p = torch.cuda.get_device_properties(d); "
        "print(json.dumps({'gpu': p.name, 'gpu_mem_gib': p.total_memory / 2**30, 'compute_capability': f'{p.major}.{p.minor}', "
        "'cuda': torch.version.cuda, 'cudnn': torch.backends.cudnn.version(), 'gpus_visible': torch.cuda.device_count()}))"
    )
    import subprocess

    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        info: dict[str, Any] = (
            json.loads(out.stdout.strip().splitlines()[-1])
            if out.returncode == 0
            else {"gpu_error": out.stderr.strip()[-300:]}
        )
    except (subprocess.TimeoutExpired, IndexError, ValueError) as exc:
        info = {"gpu_error": str(exc)}
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if smi.returncode == 0:
            info["driver"] = smi.stdout.strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        pass
    return info


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """CPU model, ISA extensions, BLAS kernels, the calibrated choices, cores and library versions; on a GPU also ``gpu_info``."""
    from expreg.core import calibrate

    info: dict[str, Any] = {"python": platform.python_version(), **report.this_cpu()}
    info["tuning"] = calibrate.current().as_dict()
    with contextlib.suppress(OSError, ValueError):
        info["mem_total_gib"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    from importlib.metadata import PackageNotFoundError, version

    for pkg in ("numpy", "numba", "torch", "jax", "jaxlib", "expreg"):
        try:
            info[pkg] = version(pkg)
        except PackageNotFoundError:
            info[pkg] = None
    if device != "cpu":
        info.update(gpu_info(device))
    return info


def step_table(impls: list[str], dtypes: list[str], device: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (dtype, shape, implementation) cell; ``args.rounds`` passes, keeping each cell's best.

    Later rounds rerun only the implementations the targets compare
    (``CONTEST``), minutes apart from the first, so that a burst of other
    load on the machine cannot decide a ratio.
    """
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    contest = CONTEST if device == "cpu" else GPU_CONTEST
    stop_at = time.time() + 60 * args.max_minutes if args.max_minutes else None
    for rnd in range(args.rounds):
        if rnd:
            print(f"step table, round {rnd + 1} ...", flush=True)
        for dtype in dtypes:
            for n, d, m in SHAPES:
                for impl in impls:
                    if rnd and impl not in contest:
                        continue
                    if stop_at is not None and time.time() > stop_at:
                        key = (dtype, n, d, m, impl)
                        best.setdefault(
                            key,
                            {
                                "impl": impl,
                                "n": n,
                                "d": d,
                                "m": m,
                                "dtype": dtype,
                                "device": device,
                                "round": rnd + 1,
                                "error": f"not run: the section's {args.max_minutes:g} minutes were spent",
                            },
                        )
                        continue
                    cli = [
                        "--impl",
                        impl,
                        "--n",
                        str(n),
                        "--d",
                        str(d),
                        "--m",
                        str(m),
                        "--dtype",
                        dtype,
                        "--device",
                        device,
                        "--reps",
                        str(args.reps),
                        "--budget-s",
                        str(args.budget_s),
                        "--warmup",
                        "2" if impl in ("torch-compile", "jax-jit") else "1",
                    ]
                    row = {"impl": impl, "n": n, "d": d, "m": m, "dtype": dtype, "device": device, "round": rnd + 1}
                    row.update(run_script("bench_step.py", cli, cap_bytes=args.mem_cap, timeout_s=args.timeout_s))
                    _progress(row)
                    key = (dtype, n, d, m, impl)
                    old = best.get(key)
                    rounds = [*(old or {}).get("ms_rounds", []), row.get("ms_min")]
                    if old is None or "error" in old or ("error" not in row and row["ms_min"] < old["ms_min"]):
                        best[key] = row
                    best[key]["ms_rounds"] = rounds
    return list(best.values())


def memory_test(impls: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Largest trainable width for n = 4096, d = 16, float32 within 16 GiB, per approach."""
    out: dict[str, Any] = {"n": MEMORY_N, "d": MEMORY_D, "dtype": "float32", "limit_bytes": MEMORY_LIMIT}
    base = ["--n", str(MEMORY_N), "--d", str(MEMORY_D), "--dtype", "float32", "--reps", "0", "--warmup", "1"]
    m_big = 2**22 if args.quick else 2**24
    run = run_script(
        "bench_step.py", ["--impl", "expreg-numpy", "--m", str(m_big), *base], cap_bytes=args.mem_cap, timeout_s=900
    )
    run["m"] = m_big
    _progress({"impl": "expreg-numpy (memory)", **run})
    if "error" not in run:
        per_neuron = (run["rss_peak_mib"] - run["rss_start_mib"]) * 2**20 / m_big
        run["bytes_per_neuron"] = per_neuron
        run["max_m_est"] = int((MEMORY_LIMIT - run["rss_start_mib"] * 2**20) / per_neuron)
        run["steps_per_s"] = 1e3 / run["first_ms"]
    out["expreg"] = run
    alternatives: dict[str, Any] = {}
    for impl in impls:
        if impl.startswith("expreg"):
            continue
        points = []
        for m in MEMORY_PROBE_WIDTHS:
            r = run_script(
                "bench_step.py",
                ["--impl", impl, "--m", str(m), *base],
                cap_bytes=args.mem_cap,
                timeout_s=args.timeout_s,
            )
            points.append({"m": m, **r})
            _progress({"impl": f"{impl} (memory)", "m": m, **r})
        entry: dict[str, Any] = {"points": points}
        if all("error" not in p for p in points):
            (m1, p1), (m2, p2) = [(p["m"], p["rss_peak_mib"] * 2**20) for p in points]
            slope = (p2 - p1) / (m2 - m1)
            entry["bytes_per_neuron"] = slope
            entry["max_m_est"] = int(m1 + (MEMORY_LIMIT - p1) / slope) if slope > 0 else None
        alternatives[impl] = entry
    out["alternatives"] = alternatives
    return out


def _progress(row: dict[str, Any]) -> None:
    what = (
        row.get("error")
        or f"{row.get('ms_min', 0):.1f} ms (first {row.get('first_ms', 0):.0f} ms, peak {row.get('rss_peak_mib', 0):.0f} MiB)"
    )
    shape = f"({row.get('n')}, {row.get('d')}, {row.get('m')}) {row.get('dtype', '')}"
    print(f"  {row['impl']:<28} {shape:<28} {what}   [load {row.get('load_before', 0):.1f}]", flush=True)


#: Sections of RESULTS.md that other scripts own (bench_scaleout.py); kept when the file is rewritten.
FOREIGN_SECTIONS = (
    "\n## Scale-out\n",
    "\n## Sweeps\n",
    "\n## Kernel\n",
    "\n## Nested-width scan\n",
    "\n## Eigenvalues\n",
)


#: The one section of RESULTS-cuda.md that another script owns (bench_scaleout.py --device cuda).
FOREIGN_CUDA_SECTIONS = ("\n## Scale-out\n",)


#: The CPU's model as a file-name slug (``report.cpu_slug``).
cpu_slug = report.cpu_slug


def write_cpu_markdown(path: str, slug: str, block: str, kind: str = "cpu-table") -> None:
    """Replace (or add) the section of ``slug``'s CPU in RESULTS.md, keeping other CPUs' sections and the foreign ones.

    ``kind`` names the section's markers: "cpu-table" (this script's tables), "profile" (``profile_step.py``).
    A new section of another kind goes just before its CPU's tables when they exist (so each CPU's sections
    stay together), else before the foreign sections.
    """
    from expreg.core.storage import atomic_open

    target = Path(path)
    old = target.read_text() if target.exists() else report.HEADER
    begin, end = f"<!-- {kind}: {slug} -->", f"<!-- /{kind}: {slug} -->"
    section = f"{begin}\n{block.strip()}\n{end}\n"
    if begin in old and end in old:
        new = old[: old.index(begin)] + section + old[old.index(end) + len(end) :].lstrip("\n")
    elif kind != "cpu-table" and f"<!-- cpu-table: {slug} -->" in old:
        cut = old.index(f"<!-- cpu-table: {slug} -->")
        new = old[:cut] + section + old[cut:]
    else:
        starts = [old.index(h) for h in FOREIGN_SECTIONS if h in old]
        cut = min(starts) + 1 if starts else len(old)
        new = old[:cut].rstrip("\n") + "\n\n" + section + "\n" + old[cut:]
    with atomic_open(target, "w") as f:
        f.write(new)


def write_markdown(path: str, text: str, foreign: tuple[str, ...] = FOREIGN_SECTIONS) -> None:
    """Write ``text`` to ``path`` atomically, keeping the sections other benchmarks appended (``foreign``)."""
    from expreg.core.storage import atomic_open

    target = Path(path)
    old = target.read_text() if target.exists() else ""
    starts = [old.index(h) for h in foreign if h in old]
    tail = old[min(starts) :] if starts else ""
    with atomic_open(target, "w") as f:
        f.write(text.rstrip("\n") + "\n" + tail)


def _kernel_section(args: argparse.Namespace) -> None:
    import bench_kernel

    bench_kernel.main(["--md", args.md, *(["--dtypes", "float32", "--rounds", "2"] if args.quick else [])])


def _scan_section(args: argparse.Namespace) -> None:
    import bench_scan

    bench_scan.main(["--md", args.md, *(["--dtypes", "float32", "--rounds", "1"] if args.quick else [])])


def _eigen_section(args: argparse.Namespace) -> None:
    import bench_eigen

    bench_eigen.main(["--md", args.md, *(["--ns", "512", "1024", "2048", "--rounds", "1"] if args.quick else [])])


#: CPU sections run after the step table, each by its own script (issue 10: kernel, scan, eigenvalues).
SECTIONS = [("kernel", _kernel_section), ("scan", _scan_section), ("eigenvalues", _eigen_section)]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="float32 only, fewer repetitions, memory test at m = 2^22")
    p.add_argument(
        "--device", default="cpu", help="cpu (everything) or cuda (the PyTorch implementations and JAX on the GPU)"
    )
    p.add_argument(
        "--section",
        default="step",
        choices=GPU_SECTIONS,
        help="on a GPU: which section this command measures (step table, kernel, scan); a CPU run does its step table, limits and memory test",
    )
    p.add_argument(
        "--device-args",
        default="",
        help='extra arguments for bench_device.py (kernel and scan sections), e.g. "--ns 1024 --m 16384"',
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help=f"stop starting measurements after this long (default {GPU_MINUTES} on a GPU, none on the CPU)",
    )
    p.add_argument("--impls", nargs="*", default=None, help="subset of implementations")
    p.add_argument("--dtypes", nargs="*", default=None, choices=["float32", "float64"])
    p.add_argument("--reps", type=int, default=None, help="timed steps per measurement (default 3, quick 2)")
    p.add_argument(
        "--budget-s", type=float, default=None, help="seconds of timed steps per measurement (default 3, quick 2)"
    )
    p.add_argument(
        "--rounds", type=int, default=None, help="passes over the table, best kept per cell (default 2, quick 1)"
    )
    p.add_argument(
        "--mem-cap-gib",
        type=float,
        default=None,
        help="kill any measurement above this resident memory (default 14 GiB; 64 on a GPU machine)",
    )
    p.add_argument("--timeout-s", type=float, default=300.0)
    p.add_argument("--no-memory", action="store_true", help="skip the memory test")
    p.add_argument("--no-sweep", action="store_true", help="skip the sweep section (bench_sweep.py)")
    p.add_argument("--render", action="store_true", help="only rewrite the markdown from the existing results file")
    p.add_argument("--out", default=None, help="default benchmarks/results-<cpu>.json (results-cuda.json on a GPU)")
    p.add_argument("--md", default=None, help="default benchmarks/RESULTS.md (RESULTS-cuda.md on a GPU)")
    args = p.parse_args(argv)
    gpu = args.device != "cpu"
    args.reps = args.reps or (2 if args.quick else 3)
    args.rounds = args.rounds or (1 if args.quick or gpu else 2)  # a lent GPU is not shared: one round
    args.budget_s = args.budget_s if args.budget_s is not None else (2.0 if args.quick else 3.0)
    args.max_minutes = args.max_minutes if args.max_minutes is not None else (GPU_MINUTES if gpu else None)
    args.mem_cap = int((args.mem_cap_gib or (64.0 if gpu else 14.0)) * 2**30)
    if args.out is None and not gpu:
        args.out = str(HERE / f"results-{cpu_slug(machine_info())}.json")
    args.out = args.out or str(HERE / "results-cuda.json")
    args.md = args.md or str(HERE / ("RESULTS-cuda.md" if gpu else "RESULTS.md"))
    impls = args.impls or (GPU_IMPLS if gpu else CPU_IMPLS)
    dtypes = args.dtypes or (["float32"] if args.quick else ["float32", "float64"])

    from expreg.core.storage import write_json_atomic

    if args.render:
        results = json.loads(Path(args.out).read_text())
        if gpu:
            write_markdown(args.md, report.render_cuda(results), FOREIGN_CUDA_SECTIONS)
        else:
            write_cpu_markdown(args.md, cpu_slug(results["machine"]), report.render(results))
        print(f"wrote {args.md} from {args.out}")
        return results
    if gpu:
        return gpu_section(args, impls, dtypes, argv)

    started = time.time()
    results: dict[str, Any] = {
        "command": "python benchmarks/run_all.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "machine": machine_info(args.device),
        "quick": args.quick,
        "device": args.device,
    }
    if not gpu:
        print("compute limit ...", flush=True)
        results["limits"] = run_script("limits.py", [], cap_bytes=args.mem_cap, timeout_s=args.timeout_s)
    print("step table ...", flush=True)
    results["steps"] = step_table(impls, dtypes, args.device, args)
    if not gpu and not args.no_memory:
        print("memory test ...", flush=True)
        results["memory"] = memory_test(impls, args)
    if not gpu and not args.no_sweep:  # writes its own "## Sweeps" section of RESULTS.md
        print("sweeps ...", flush=True)
        results["sweep"] = run_script(
            "bench_sweep.py", ["--quick"] if args.quick else [], cap_bytes=args.mem_cap, timeout_s=1800
        )
    for name, section in SECTIONS:  # each writes its own JSON and its own section of the markdown
        print(f"{name} ...", flush=True)
        section(args)
    results["minutes"] = (time.time() - started) / 60
    write_json_atomic(args.out, results)
    write_cpu_markdown(args.md, cpu_slug(results["machine"]), report.render(results))
    print(f"wrote {args.out} and {args.md} in {results['minutes']:.1f} min")
    return results


def _commands(entry: dict[str, Any] | None) -> list[str]:
    """The commands that measured an earlier step section's rows (oldest first)."""
    if not entry:
        return []
    return list(entry.get("commands", [entry["command"]]))


def _merge_steps(old: dict[str, Any] | None, new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The new step rows, with each cell this run did not measure kept from the earlier run.

    A lease is short: one command may measure float32 and the next float64;
    a measured cell replaces the earlier one, a cell skipped for time keeps it.
    """
    if not old:
        return new

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["dtype"], r["n"], r["d"], r["m"], r["impl"])

    def skipped(r: dict[str, Any]) -> bool:
        return str(r.get("error", "")).startswith("not run")

    merged = {key(r): r for r in old.get("steps", [])}
    for r in new:
        if not (skipped(r) and key(r) in merged and not skipped(merged[key(r)])):
            merged[key(r)] = r
    return list(merged.values())


def gpu_section(
    args: argparse.Namespace, impls: list[str], dtypes: list[str], argv: list[str] | None
) -> dict[str, Any]:
    """Measure one section on the GPU and merge it into results-cuda.json (the other sections are kept)."""
    from expreg.core.storage import write_json_atomic

    path = Path(args.out)
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"device": args.device, "sections": {}}
    started = time.time()
    entry: dict[str, Any] = {
        "command": "python benchmarks/run_all.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "machine": machine_info(args.device),
    }
    print(f"{args.section} on {entry['machine'].get('gpu', args.device)} ...", flush=True)
    limit = 60 * args.max_minutes + 60  # the scan stops itself at its budget; this only guards a hang
    if args.section == "step":
        entry["steps"] = _merge_steps(results["sections"].get("step"), step_table(impls, dtypes, args.device, args))
        entry["commands"] = [*_commands(results["sections"].get("step")), entry["command"]]
    elif args.section == "kernel":
        entry["kernel"] = run_script(
            "bench_device.py",
            ["kernel", "--device", args.device, "--dtypes", *dtypes, *args.device_args.split()],
            cap_bytes=args.mem_cap,
            timeout_s=limit,
        )
    else:
        budget = (
            60 * args.max_minutes - 90
        )  # a width's eigenvalues may overrun the scan's budget: keep a margin before the kill
        entry["scan"] = run_script(
            "bench_device.py",
            [
                "scan",
                "--device",
                args.device,
                "--dtypes",
                dtypes[0],
                "--budget-s",
                f"{budget:.0f}",
                *args.device_args.split(),
            ],
            cap_bytes=args.mem_cap,
            timeout_s=limit,
        )
    entry["minutes"] = (time.time() - started) / 60
    results["sections"][args.section] = entry
    write_json_atomic(path, results)
    write_markdown(args.md, report.render_cuda(results), FOREIGN_CUDA_SECTIONS)
    print(f"wrote {path} and {args.md} in {entry['minutes']:.1f} min")
    return results


if __name__ == "__main__":
    main()
