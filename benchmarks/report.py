"""Render ``run_all.py``'s results as benchmarks/RESULTS.md (markdown tables)."""

from __future__ import annotations

import re
from typing import Any

from limits import limit_ms

from expreg.core.tuning import Tuning

COMPETITORS = ("torch-autograd", "torch-compile", "jax-jit")
TARGET_SPEEDUP = {"float32": 1.5, "float64": 1.2}

#: The top of RESULTS.md, above the per-CPU sections (``run_all.write_cpu_markdown``).
HEADER = """\
# Benchmarks: one gradient step of the exponential network (issue 4)

One section per CPU that `make bench` (`python benchmarks/run_all.py`) has met, each from its own
results file (`benchmarks/results-<cpu>.json`); a run replaces only its own CPU's section. Every
table names the CPU it was measured on.
"""

NOTES = """\
### How to read this

- **ms/step**: best of the timed steps (up to 3, after 1-2 warm-up steps; the
  first call, compilation included, is listed apart), one fresh subprocess per
  cell, so libraries never share thread pools. expreg-train, torch-compile and
  jax-jit are measured in two rounds minutes apart and keep their better one
  (`ms_rounds` in results.json), so a burst of other load cannot decide a ratio. Every implementation does the
  same step: u = exp(XW)a, G = dL/dW, W <- W - lr G (`benchmarks/impls.py`).
  The median is in results.json.
- **expreg-train** is the path a user calls: one iteration of `expreg.train`
  itself (default backend and calibration, weight movement tracked, no kernel
  records), handed over by its progress callback; expreg-numpy and
  expreg-torch time the blocked passes alone (`ops.forward_backward` and the
  update). The targets are judged on expreg-train.
- **speed-up**: (this row's ms) / (expreg's best row's ms) on the same
  shape and dtype; above 1 means expreg is faster.
- **of limit**: compute limit / ms, where the limit is 4ndm flops at the
  large-GEMM rate plus nm exponentials at the fastest vectorised exp rate
  measured (both on all cores, no memory traffic: `benchmarks/limits.py`).
- **step MiB**: peak resident memory (ru_maxrss) of the process minus its
  resident memory once the inputs were built: what the step itself needed.
- The machine is shared with other work (the load average before each cell
  is in results.json): absolute times move between runs; ratios measured
  within one run are what count. The lead reruns `make bench` at the end.
- expreg's NumPy backend: blocks of neurons run on a thread per core (BLAS
  limited to one thread meanwhile); each block's GEMM writes into a reused
  buffer, exp runs in place fused with the partial predictions, and the block
  stays in memory (up to a 2 GiB budget) for the backward GEMM
  G_block = (X * r)^T E_block. The exp kernel (numba's, NumPy's or torch's),
  the GEMM library, the block size and the thread layout are those
  `expreg calibrate` measured on the CPU (the tuning line of each section).
  The PyTorch backend runs the same `expreg.core.ops` code with torch tensors.
- expreg's PyTorch backend runs the same blocked code, but on the CPU its
  exp is not fused with the row sums and its blocks run one after another
  (PyTorch threads each operation), so the NumPy backend is the faster one
  here; the PyTorch backend is there for GPUs.
- **speed-up in CPU time**: the same ratio on CPU time (all of a process's
  threads, spinning included; `cpu_ms_min` in results.json), a measure of
  the work that other load on the machine disturbs far less than wall time.
- On a GPU: `python benchmarks/run_all.py --device cuda --section step`
  (then `--section kernel`, `--section scan`) writes the step table of the
  CUDA backend against PyTorch autograd, torch.compile and JAX on that GPU,
  the kernel against a plain torch reference and the scan's reach to
  RESULTS-cuda.md (one command each, each under ten minutes).
"""


def _fmt_ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def _best_expreg(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    ok = [r for r in rows if r["impl"].startswith("expreg") and "error" not in r]
    return min(ok, key=lambda r: r["ms_min"]) if ok else None


def _user_path(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """expreg as a user runs it (``expreg-train``: ``expreg.train``, default backend), else (results files from
    before it was measured) the best of expreg's rows."""
    train = [r for r in rows if r["impl"] == "expreg-train" and "error" not in r]
    return train[0] if train else _best_expreg(rows)


def _limit(results: dict[str, Any], n: int, d: int, m: int, dtype: str) -> float | None:
    lim = results.get("limits") or {}
    if dtype not in lim:
        return None
    return limit_ms(n, d, m, lim[dtype]["gemm_best"], lim[dtype]["exp_best"])


def this_cpu() -> dict[str, Any]:
    """This machine's CPU: model, usable cores, ISA extensions, every BLAS loaded with its kernels (threadpoolctl)."""
    from expreg.core import calibrate

    identity = calibrate.machine_identity()
    return {
        "cpu": identity["cpu"],
        "cores": identity["cpus"],
        "isa": identity["isa"],
        "blas": calibrate.blas_kernels(only_numpy=False),
    }


def cpu_slug(machine: dict[str, Any]) -> str:
    """The CPU's model as a file-name slug: "AMD EPYC" -> "amd-epyc", "Intel(R) Xeon(R) Processor" -> "intel-xeon"."""
    name = re.sub(r"\((r|tm)\)|\b(processor|cpu)\b", " ", str(machine.get("cpu", "unknown cpu")).lower())
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "unknown-cpu"


def cpu_line(mi: dict[str, Any]) -> str:
    """The CPU a table comes from: model, cores, ISA extensions, BLAS kernels (what older results lack is said so)."""
    isa = ", ".join(mi["isa"]) if mi.get("isa") else "ISA extensions not recorded"
    blas = mi.get("blas")
    kernels = (
        "; ".join(f"{b.get('internal_api')} {b.get('version')} {b.get('architecture')}" for b in blas)
        if blas
        else "BLAS kernels not recorded"
    )
    return f"{mi.get('cpu', '?')}, {mi.get('cores')} cores ({isa}; BLAS: {kernels})"


def _on(mi: dict[str, Any]) -> list[str]:
    return [f"On {cpu_line(mi)}:", ""]


def _tuning_line(mi: dict[str, Any]) -> list[str]:
    t = mi.get("tuning")
    if not t:
        return [
            "expreg's speed choices: the fixed defaults (before calibration existed: numba exp, NumPy BLAS, 1 MiB blocks, blocks on every core).",
            "",
        ]
    threads = "every core" if t.get("threads") is None else f"{t['threads']} worker, BLAS threads"
    wide = f" ({t['block_bytes_wide'] // 1024} KiB for d > 64)" if "block_bytes_wide" in t else ""
    keep = ""
    if "recompute_d" in t:  # recorded since the keep-or-recompute choice exists
        tuning = Tuning.from_dict(t)
        keep = f"; {tuning.describe_keep()}"
        if tuning.recompute_d and tuning.recompute_beyond is not None:
            keep += f" (blocks of {tuning.block_bytes_recompute // 1024} KiB)"
    return [
        f"expreg's speed choices (`expreg calibrate --show`; {t.get('source', '?')}): exp float32 {t['exp_float32']}, "
        f"float64 {t['exp_float64']}; GEMM {t['gemm']}; blocks of {t['block_bytes'] // 1024} KiB{wide}; "
        f"threads: {threads}{keep}.",
        "",
    ]


def render(results: dict[str, Any]) -> str:
    """The section of one CPU in RESULTS.md (``run_all.write_cpu_markdown`` puts it between its markers)."""
    mi = results["machine"]
    out = [
        f"## Step benchmarks on {mi.get('cpu', '?')}",
        "",
        f"Command: `{results['command'].strip()}` (`make bench` runs `python benchmarks/run_all.py`), "
        f"started {results['started']}, {results.get('minutes', 0):.1f} min.",
        "",
        f"Machine: {cpu_line(mi)}, {mi.get('mem_total_gib', 0):.0f} GiB; "
        f"Python {mi.get('python')}, numpy {mi.get('numpy')}, numba {mi.get('numba')}, torch {mi.get('torch')}, jax {mi.get('jax')}; "
        f"device {results['device']}.",
        "",
        *_tuning_line(mi),
    ]
    loads = [r.get("load_before", 0) for r in results.get("steps", [])]
    if loads:
        out += [
            f"Load average before the cells: {min(loads):.1f} to {max(loads):.1f} (2 cores; above ~2 means other work competed).",
            "",
        ]
    out += (
        _limits_section(results)
        + _targets_section(results)
        + _steps_section(results)
        + _memory_section(results)
        + [NOTES]
    )
    return "\n".join(out)


def _limits_section(results: dict[str, Any]) -> list[str]:
    lim = results.get("limits")
    if not lim or "error" in lim:
        return [] if not lim else ["### Compute limit", "", f"not measured: {lim['error']}", ""]
    out = [
        "### Compute limit",
        "",
        *_on(results["machine"]),
        "| dtype | GEMM GFLOP/s (numpy / torch) | exp G/s on all cores | limit ms: "
        + " / ".join(f"({n},{d},{m})" for n, d, m in _shapes(results))
        + " |",
        "|---|---|---|---|",
    ]
    for dt in ("float32", "float64"):
        g, e = lim[dt]["gemm_flops"], lim[dt]["exp_per_s"]
        gs = " / ".join(f"{v / 1e9:.0f}" for v in g.values())
        es = ", ".join(f"{k} {v / 1e9:.2f}" for k, v in e.items())
        ls = " / ".join(_fmt_ms(_limit(results, n, d, m, dt)) for n, d, m in _shapes(results))
        out.append(f"| {dt} | {gs} | {es} | {ls} |")
    return [*out, ""]


def _shapes(results: dict[str, Any]) -> list[tuple[int, int, int]]:
    seen: list[tuple[int, int, int]] = []
    for r in results.get("steps", []):
        s = (r["n"], r["d"], r["m"])
        if s not in seen:
            seen.append(s)
    return seen


def _groups(results: dict[str, Any]) -> list[tuple[str, tuple[int, int, int], list[dict[str, Any]]]]:
    groups = []
    for dt in ("float32", "float64"):
        for s in _shapes(results):
            rows = [r for r in results.get("steps", []) if r["dtype"] == dt and (r["n"], r["d"], r["m"]) == s]
            if rows:
                groups.append((dt, s, rows))
    return groups


def _targets_section(results: dict[str, Any]) -> list[str]:
    out = [
        "### Targets",
        "",
        *_on(results["machine"]),
        "| shape (n, d, m) | dtype | expreg.train (ms) | fastest of autograd / compile / JAX (ms) | speed-up | target | of limit | speed-up in CPU time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dt, (n, d, m), rows in _groups(results):
        best = _user_path(rows)
        comp = [r for r in rows if r["impl"] in COMPETITORS and "error" not in r]
        if best is None or not comp:
            continue
        fastest = min(comp, key=lambda r: r["ms_min"])
        speedup = fastest["ms_min"] / best["ms_min"]
        lim = _limit(results, n, d, m, dt)
        frac = f"{lim / best['ms_min']:.2f}" if lim else "-"
        if lim and dt == "float32" and d >= 32:
            frac += " (target 0.5: " + ("met" if lim / best["ms_min"] >= 0.5 else "NOT met") + ")"
        target = TARGET_SPEEDUP[dt]
        verdict = "met" if speedup >= target else "NOT met"
        cpu = "-"
        if best.get("cpu_ms_min") and fastest.get("cpu_ms_min"):
            cpu = f"{fastest['cpu_ms_min'] / best['cpu_ms_min']:.2f}x"
        out.append(
            f"| ({n}, {d}, {m}) | {dt} | {_fmt_ms(best['ms_min'])} ({best['impl']}) | {_fmt_ms(fastest['ms_min'])} ({fastest['impl']}) | {speedup:.2f}x | {target}x: {verdict} | {frac} | {cpu} |"
        )
    return [*out, ""]


def _steps_section(results: dict[str, Any]) -> list[str]:
    out = [
        "### Step time",
        "",
        *_on(results["machine"]),
        "| shape (n, d, m) | dtype | implementation | ms/step | first call (ms) | speed-up of expreg | of limit | step MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dt, (n, d, m), rows in _groups(results):
        best = _best_expreg(rows)
        lim = _limit(results, n, d, m, dt)
        for r in rows:
            if "error" in r:
                out.append(f"| ({n}, {d}, {m}) | {dt} | {r['impl']} | {r['error']} | | | | |")
                continue
            sp = f"{r['ms_min'] / best['ms_min']:.2f}x" if best else "-"
            fr = f"{lim / r['ms_min']:.2f}" if lim else "-"
            out.append(
                f"| ({n}, {d}, {m}) | {dt} | {r['impl']} | {_fmt_ms(r['ms_min'])} | {_fmt_ms(r['first_ms'])} | {sp} | {fr} | {r['step_mib']:,.0f} |"
            )
    return [*out, ""]


def _memory_section(results: dict[str, Any]) -> list[str]:
    mem = results.get("memory")
    if not mem:
        return []
    lim_gib = mem["limit_bytes"] / 2**30
    out = [
        f"### Memory: the widest network each approach trains (n = {mem['n']}, d = {mem['d']}, float32, {lim_gib:.0f} GiB)",
        "",
        *_on(results["machine"]),
    ]
    e = mem["expreg"]
    if "error" in e:
        out.append(f"expreg at m = {e['m']:,}: {e['error']}")
    else:
        out.append(
            f"expreg (NumPy backend) trained m = {e['m']:,} (2^{e['m'].bit_length() - 1}) neurons: one step in {e['first_ms'] / 1e3:.1f} s "
            f"({e['steps_per_s']:.3f} steps/s), peak resident memory {e['rss_peak_mib'] / 1024:.2f} GiB "
            f"(the full activation matrix would be {mem['n'] * e['m'] * 4 / 2**30:,.0f} GiB)."
        )
    out += [
        "",
        "| approach | measured peak (m: MiB) | bytes per neuron | largest m within the limit (estimate) |",
        "|---|---|---|---|",
    ]
    if "error" not in e:
        out.append(
            f"| expreg-numpy | {e['m']:,}: {e['rss_peak_mib']:,.0f} | {e['bytes_per_neuron']:,.0f} | {e['max_m_est']:,} |"
        )
    for impl, entry in mem.get("alternatives", {}).items():
        pts = ", ".join(
            f"{p['m']:,}: " + (p["error"] if "error" in p else f"{p['rss_peak_mib']:,.0f}") for p in entry["points"]
        )
        bpn = f"{entry['bytes_per_neuron']:,.0f}" if entry.get("bytes_per_neuron") else "-"
        mx = f"{entry['max_m_est']:,}" if entry.get("max_m_est") else "-"
        out.append(f"| {impl} | {pts} | {bpn} | {mx} |")
    out += [
        "",
        "Alternatives' limits are extrapolated linearly from their peaks at the two widths (never run out of memory on purpose);"
        " expreg's from its measured peak at the large width.",
        "",
    ]
    return out


# ------------------------------------------------------------------ GPU (RESULTS-cuda.md)
CUDA_COMMANDS = (
    (
        "step",
        "python benchmarks/run_all.py --device cuda --section step",
        "ms per gradient step, expreg-torch against torch.compile, PyTorch autograd, hand-written PyTorch and jax.jit on the same GPU",
    ),
    (
        "kernel",
        "python benchmarks/run_all.py --device cuda --section kernel",
        "H(W) = (X X^T) o (E E^T): expreg's gram.gram (kernels.empirical_ntk's code) against the plain torch reference, n = 256, 1024, 4096, m = 65536",
    ),
    (
        "scan",
        "python benchmarks/run_all.py --device cuda --section scan",
        "the largest n whose nested-width scan (scan.nested_gram, widths 1024 ... 2^20, eigen.lazy_criteria at each) finishes within 7 minutes (the section's 8.5 less a margin)",
    ),
    (
        "scale-out",
        "python benchmarks/bench_scaleout.py --device cuda",
        "width-sharded training on the torch backend: one process, and NCCL ranks of one GPU each (the last section, written by that script)",
    ),
)


def render_cuda(results: dict[str, Any]) -> str:
    """RESULTS-cuda.md from ``run_all.py --device cuda`` results (any subset of the sections)."""
    sections = results.get("sections", {})
    out = ["# Benchmarks on a GPU (issue 10, item 5)", ""]
    if not sections:
        out += ["No GPU has run these yet.", ""]
    out += [
        "One command per section, each under ten minutes (it stops starting measurements after 8.5 minutes),",
        "each rewriting its own section here and in `benchmarks/results-cuda.json`. They need a CUDA build of",
        "PyTorch, and jax[cuda12] for the JAX column (without it that column says why it is empty):",
        "",
    ]
    out += [f"- `{cmd}`: {what}" for _, cmd, what in CUDA_COMMANDS] + [""]
    for name, render in (("step", _cuda_steps), ("kernel", _cuda_kernel), ("scan", _cuda_scan)):
        entry = sections.get(name)
        out += [f"## {name.capitalize()}", ""]
        if entry is None:
            out += ["Not measured yet.", ""]
            continue
        commands = entry.get("commands", [entry["command"]])
        out += [
            (
                f"Command: `{entry['command'].strip()}`, started {entry['started']}, {entry.get('minutes', 0):.1f} min."
                if len(commands) == 1
                else "Commands (each cell from the latest that measured it; the last started "
                f"{entry['started']}): " + "; ".join(f"`{c.strip()}`" for c in commands) + "."
            ),
            "",
            _gpu_line(entry["machine"]),
            "",
        ]
        out += [*render(entry), ""]
    return "\n".join(out)


def _gpu_line(mi: dict[str, Any]) -> str:
    gpu = mi.get("gpu") or f"GPU not identified ({mi.get('gpu_error', '?')})"
    return (
        f"Machine: {gpu}, {mi.get('gpu_mem_gib', 0):.0f} GiB, compute capability {mi.get('compute_capability', '?')}, "
        f"CUDA {mi.get('cuda', '?')}, driver {mi.get('driver', '?')}; {mi.get('cpu', '?')}, {mi.get('cores')} cores; "
        f"torch {mi.get('torch')}, jax {mi.get('jax')} (jaxlib {mi.get('jaxlib')}), numpy {mi.get('numpy')}."
    )


def _cuda_steps(entry: dict[str, Any]) -> list[str]:
    out = [
        "| shape (n, d, m) | dtype | implementation | runs on | ms/step | first call (ms) | speed-up of expreg-torch | step MiB (device) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    results = {"steps": entry.get("steps", [])}
    for dt, (n, d, m), rows in _groups(results):
        ref = next((r for r in rows if r["impl"] == "expreg-torch" and "error" not in r), None)
        for r in rows:
            if "error" in r:
                out.append(f"| ({n}, {d}, {m}) | {dt} | {r['impl']} | | {r['error']} | | | |")
                continue
            sp = f"{r['ms_min'] / ref['ms_min']:.2f}x" if ref else "-"
            mem = f"{r['step_mib']:,.0f}" + ("" if r.get("memory", "").startswith("CUDA") else " (host RSS)")
            out.append(
                f"| ({n}, {d}, {m}) | {dt} | {r['impl']} | {r.get('runs_on', r.get('device'))} | {_fmt_ms(r['ms_min'])} | "
                f"{_fmt_ms(r['first_ms'])} | {sp} | {mem} |"
            )
    return [
        *out,
        "",
        "speed-up: this row's ms / expreg-torch's ms on the same shape and dtype (above 1: expreg is faster). "
        "step MiB: torch.cuda.max_memory_allocated during the steps minus the memory held once the inputs were built "
        "(JAX's allocator is not visible to torch: its row is host RSS).",
    ]


def _cuda_kernel(entry: dict[str, Any]) -> list[str]:
    k = entry.get("kernel", {})
    if "error" in k:
        return [f"Not measured: {k['error']}"]
    out = [
        "| n | d | m | dtype | expreg gram.gram (ms) | plain torch, to host (ms) | expreg / plain | on the device: expreg rank-k (ms) | plain torch (ms) "
        "| expreg / plain | expreg TFLOP/s | plain TFLOP/s | max rel. difference |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in k.get("cells", []):
        out.append(
            f"| {c['n']} | {c['d']} | {c['m']} | {c['dtype']} | {_fmt_ms(c['expreg_ms'])} | {_fmt_ms(c['reference_host_ms'])} | {c['ratio']:.2f} | "
            f"{_fmt_ms(c['expreg_device_ms'])} | {_fmt_ms(c['reference_ms'])} | {c['device_ratio']:.2f} | "
            f"{c['expreg_device_tflops']:.1f} | {c['reference_tflops']:.1f} | {c['max_rel_diff']:.1e} |"
        )
    return [
        *out,
        "",
        "expreg gram.gram: what `kernels.empirical_ntk` runs (rank-k updates on the device, the Hadamard factor in float64 on the host); "
        "plain torch: `E = torch.exp(X @ W)`, `(X @ X.T) * ((E * a**2) @ E.T)` with E whole, then to the host as float64 (the same output). "
        "On the device: the rank-k updates alone against the plain product left on the device. TFLOP/s on 2 n^2 m flops; "
        "best of 5 synchronised calls; TF32 off (float32 is float32 on both sides).",
    ]


def _cuda_scan(entry: dict[str, Any]) -> list[str]:
    s = entry.get("scan", {})
    if "error" in s:
        return [f"Not measured: {s['error']}"]
    n = s.get("largest_n")
    out = [
        f"Largest n whose scan finished within {s['budget_s'] / 60:.1f} minutes: **{n if n else 'none'}**"
        + (
            f" ({s['largest_n_seconds']:.0f} s; the next n would take about {s['next_n_growth']:.1f}x as long)."
            if n
            else "."
        ),
        "",
        "| n | d | dtype | widths | last width | finished | seconds | Gram s | eigen s | widths/s | lambda_min(H^cts) | m_lazy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in s.get("runs", []):
        out.append(
            f"| {r['n']} | {r['d']} | {r['dtype']} | {r['widths']} | {r['last_width']:,} | {'yes' if r['finished'] else 'no'} | "
            f"{r['seconds']:.1f} | {r['gram_s']:.1f} | {r['eigen_s']:.1f} | {r['widths_per_s']:.2f} | {r['lambda_min_cts']:.3g} | {r['m_lazy'] or '-'} |"
        )
    on_device = all(r.get("criteria_on", "host") == "device" for r in s.get("runs", [])) and s.get("runs")
    where = (
        "H^dis kept on the GPU at every grid width, ratio 2) and `eigen.lazy_criteria(..., backend=...)` "
        "(||H^dis - H^cts||_op and lambda_min(H^dis) from the GPU's dense eigensolver)"
        if on_device
        else "H^dis handed to the host at every grid width, ratio 2) and `eigen.lazy_criteria` "
        "(||H^dis - H^cts||_op and lambda_min(H^dis), LAPACK on the CPU; the scan before 2026-11-27)"
    )
    return [
        *out,
        "",
        f"Each n: `scan.nested_gram` (one pass over neurons on the GPU, {where} at each width; seconds include "
        "H^cts and lambda_min(H^cts). m_lazy: the first width with ||H^dis - H^cts||_op <= lambda_min(H^cts) / 2 "
        "(the width experiment's lazy criterion at t = 0).",
    ]
