"""The empirical kernel H(W) on the user's path against plain NumPy, JAX and torch (issue 10, item 1).

    python benchmarks/bench_kernel.py                   # n = 256 .. 4096, m = 8192, d = 32, both dtypes
    python benchmarks/bench_kernel.py --ns 256 1024 --m 65536 --dtypes float32

Every implementation computes the same n x n matrix (docs/theory.md section 3), s = 1:

    H = (X X^T) o (E diag(a^2) E^T),   E = exp(X W)   (X (n, d), W (d, m), a = +-1)

- ``expreg``        ``kernels.empirical_ntk(net, X)`` (blocked syrk, the user's path, float64 result)
- ``expreg-torch``  the same on the PyTorch backend (CPU unless ``--device``)
- ``numpy-plain``   ``E = np.exp(X @ W); ((E * a**2) @ E.T) * (X @ X.T)``: the reference of the issue
- ``numpy-plain-1t``  the same with BLAS on one thread (threadpoolctl): on a machine whose cores
  are busy, OpenBLAS's threads wait on each other, and this is the faster reference
- ``jax-jit``       ``jax.jit`` of the same expression (float64 with x64 enabled)
- ``torch-plain``   the same expression in PyTorch
- ``neural-tangents``  ``nt.empirical_ntk_fn`` of the same network (``f(W) = exp(X W) a``), when the
  separate virtual environment ``--nt-python`` (neural-tangents 0.6.5 needs jax 0.4.23) exists, made with

      make benchmarks/.nt-venv/.installed      # the pins of the Makefile's NT_PKGS (also used by `make parity`)

All run in this one process, interleaved round by round (each cell keeps its
fastest round), so other load on the machine hits them alike; before each
timed call the process sleeps ``--settle`` seconds (0.25) so that the thread
pools of the call before have gone idle: OpenBLAS's threads spin for about
0.1 s after a multi-threaded call, and whichever implementation runs in that
window shares the cores with them (``--settle 0`` measures calls back to
back, artefact included); the ratio
``expreg / numpy-plain`` is the issue's target (<= 0.8). ``rel_err`` is the
largest |H - H64| / max |H64| against the float64 NumPy reference.
Results go to ``benchmarks/kernel-<cpu>.json`` and this CPU's "Kernel" section of RESULTS.md
(``--no-write``: printed only, for an ad-hoc rerun of a few cells that must not replace a full run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
IMPLS = ("expreg", "expreg-torch", "numpy-plain", "numpy-plain-1t", "jax-jit", "torch-plain")
SECTION = "\n## Kernel\n"
#: Fast cells get more rounds: until the slowest implementation's best call x rounds reaches this ...
MIN_TIMED_S = 0.3
#: ... but no more rounds than this.
MAX_ROUNDS = 15


def problem(n: int, d: int, m: int, dtype: Any, seed: int = 0) -> tuple[np.ndarray, Any]:
    """X (n, d) unit rows in ``dtype`` and the width-m network of ``seed`` (exp, coupled init)."""
    from expreg import ExpNet

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(dtype), ExpNet.init(d, m, seed=seed, dtype=dtype)


def build(name: str, X: np.ndarray, net: Any, device: str) -> Callable[[], np.ndarray]:
    """A function computing H for implementation ``name`` (its result as a NumPy array)."""
    W, a = net.weights_numpy()
    if name == "expreg":
        from expreg import kernels

        return lambda: kernels.empirical_ntk(net, X)
    if name == "expreg-torch":
        from expreg import kernels

        tnet = net.to("torch", device=device)
        return lambda: kernels.empirical_ntk(tnet, X)
    if name == "numpy-plain":

        def plain() -> np.ndarray:
            E = np.exp(X @ W)
            return ((E * a**2) @ E.T) * (X @ X.T)

        return plain
    if name == "numpy-plain-1t":
        from threadpoolctl import threadpool_limits

        def plain1() -> np.ndarray:
            with threadpool_limits(1, user_api="blas"):
                E = np.exp(X @ W)
                return ((E * a**2) @ E.T) * (X @ X.T)

        return plain1
    if name == "jax-jit":
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        f = jax.jit(lambda X, W, a: ((jnp.exp(X @ W) * a**2) @ jnp.exp(X @ W).T) * (X @ X.T))
        Xj, Wj, aj = (jax.device_put(v, jax.devices("cpu")[0]) for v in (X, W, a))
        return lambda: np.asarray(f(Xj, Wj, aj).block_until_ready())
    if name == "torch-plain":
        import torch

        Xt, Wt, at = (torch.as_tensor(v, device=device) for v in (X, W, a))

        def tplain() -> np.ndarray:
            E = torch.exp(Xt @ Wt)
            H = ((E * at**2) @ E.T) * (Xt @ Xt.T)
            return H.cpu().numpy()

        return tplain
    raise ValueError(f"unknown implementation {name!r}; choose from {IMPLS}")


def measure_cell(
    n: int, d: int, m: int, dtype: str, impls: list[str], rounds: int, device: str, settle: float = 0.0
) -> dict[str, Any]:
    """Seconds (best round, after one warm-up) of each implementation on one (n, d, m, dtype).

    At least ``rounds`` rounds (the implementations in turn, their order reversed every other round), more for
    fast cells: enough that the slowest implementation is timed for
    ``MIN_TIMED_S`` in all (at most ``MAX_ROUNDS``): a best of 3 calls of 10 ms is at the mercy of the machine's
    moment-to-moment speed (seen here: the same call 7.5 ms, then 9.9 ms a few seconds later).
    ``settle`` seconds of sleep before each timed call let the thread pools of the call before go idle
    (OpenBLAS's threads spin for about 0.1 s after a call, OpenMP's and JAX's for a while too), so that no
    implementation runs beside the spinning threads of another.
    """
    X, net = problem(n, d, m, np.dtype(dtype))
    W, _ = net.weights_numpy()
    X64, W64 = X.astype(np.float64), W.astype(np.float64)
    E64 = np.exp(X64 @ W64)
    truth = (E64 @ E64.T) * (X64 @ X64.T)
    del E64
    fns, errors, rel_err = {}, {}, {}
    for name in impls:
        try:
            fns[name] = build(name, X, net, device)
            H = np.asarray(fns[name](), dtype=np.float64)  # warm-up (compiles)
            rel_err[name] = float(np.abs(H - truth).max() / np.abs(truth).max())
        except Exception as exc:  # a missing or failing peer is reported, not fatal
            errors[name] = f"{type(exc).__name__}: {exc}"[:200]
            fns.pop(name, None)
    best = {name: float("inf") for name in fns}
    load = os.getloadavg()[0]
    done = 0
    while done < rounds or (done < MAX_ROUNDS and done * max(best.values(), default=0.0) < MIN_TIMED_S):
        order = list(fns) if done % 2 == 0 else list(reversed(fns))  # no implementation always first
        for name in order:
            fn = fns[name]
            if settle > 0:
                time.sleep(settle)
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
        done += 1
    flops = n * n * m  # the syrk's multiply-adds x 2 / 2 (one triangle)
    row: dict[str, Any] = {
        "n": n,
        "d": d,
        "m": m,
        "dtype": dtype,
        "load": load,
        "rounds": done,
        "seconds": best,
        "rel_err": rel_err,
        "errors": errors,
        "expreg_gflops": flops / best["expreg"] / 1e9 if "expreg" in best else None,
    }
    if "expreg" in best and "numpy-plain" in best:
        row["ratio_vs_numpy"] = best["expreg"] / best["numpy-plain"]
        row["ratio_vs_best_numpy"] = best["expreg"] / min(best["numpy-plain"], best.get("numpy-plain-1t", float("inf")))
    return row


def neural_tangents(python: str, n: int, d: int, m: int, dtype: str, rounds: int) -> dict[str, Any]:
    """Time ``nt.empirical_ntk_fn`` in its own interpreter (its jax is older than ours)."""
    code = f"""
import json, time, numpy as np, jax
jax.config.update('jax_enable_x64', True)
import jax.numpy as jnp, neural_tangents as nt
rng = np.random.default_rng(0)
X = rng.standard_normal(({n}, {d})); X /= np.linalg.norm(X, axis=1, keepdims=True); X = X.astype('{dtype}')
W = rng.standard_normal(({d}, {m})).astype('{dtype}'); a = np.where(rng.random({m}) < 0.5, -1.0, 1.0).astype('{dtype}')
f = lambda params, x: (jnp.exp(x @ params) @ a)[:, None]
k = jax.jit(nt.empirical_ntk_fn(f, vmap_axes=0))
k(X, None, W).block_until_ready()
best = float('inf')
for _ in range({rounds}):
    t = time.perf_counter(); k(X, None, W).block_until_ready(); best = min(best, time.perf_counter() - t)
H = np.asarray(k(X, None, W), dtype=np.float64)
X64, W64 = X.astype(np.float64), W.astype(np.float64)
E = np.exp(X64 @ W64); R = (E @ E.T) * (X64 @ X64.T)
print(json.dumps({{'seconds': best, 'rel_err': float(np.abs(H - R).max() / np.abs(R).max())}}))
"""
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=600)
        lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
        if out.returncode or not lines:
            return {
                "error": out.stderr.strip().splitlines()[-1][:200] if out.stderr.strip() else f"exit {out.returncode}"
            }
        return json.loads(lines[-1])
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"[:200]}


def section(
    ns: list[int] | None = None,
    d: int = 32,
    m: int = 8192,
    dtypes: list[str] | None = None,
    rounds: int = 5,
    impls: list[str] | None = None,
    device: str = "cpu",
    nt_python: str | None = None,
    nt_max_n: int = 512,
    settle: float = 0.0,
) -> dict[str, Any]:
    """Every cell of the kernel table; the dict ``render`` turns into markdown."""
    ns = ns or [256, 512, 1024, 2048, 4096]
    dtypes = dtypes or ["float32", "float64"]
    impls = list(impls or IMPLS)
    rows = []
    for dtype in dtypes:
        for n in ns:
            row = measure_cell(n, d, m, dtype, impls, rounds, device, settle)
            if nt_python and Path(nt_python).exists() and n <= nt_max_n:
                row["neural_tangents"] = neural_tangents(nt_python, n, d, m, dtype, rounds)
            rows.append(row)
            secs = "  ".join(f"{k} {v * 1e3:.0f} ms" for k, v in row["seconds"].items())
            print(
                f"  kernel n={n} {dtype}: {secs}  ratio {row.get('ratio_vs_numpy', float('nan')):.2f}  [load {row['load']:.1f}]",
                flush=True,
            )
    nt = nt_python if nt_python and Path(nt_python).exists() else None
    return {"rows": rows, "device": device, "nt_python": nt, "settle": settle}


def render(result: dict[str, Any], command: str) -> str:
    """The "Kernel" section of RESULTS.md."""
    rows = result["rows"]
    impls = [i for i in IMPLS if any(i in r["seconds"] for r in rows)]
    nt = any("neural_tangents" in r for r in rows)
    out = [
        SECTION.strip(),
        "",
        f"Command: `{command}`. H = (X X^T) o (E diag(a^2) E^T), E = exp(X W), d = {rows[0]['d']}, m = {rows[0]['m']}; "
        "ms per kernel (best of the cell's rounds: at least --rounds, more for fast cells, `rounds` in kernel.json; "
        "all implementations interleaved in one process, "
        f"{result.get('settle', 0.0):g} s of sleep before each timed call). "
        "Target (issue 10): expreg <= 0.8x numpy-plain.",
        "",
    ]
    if nt:
        out += [
            "neural-tangents 0.6.5 (jax 0.4.23, its own venv): `jax.jit(nt.empirical_ntk_fn(f, vmap_axes=0))` with f(W, x) = exp(x W) a; "
            "it forms the n x (d m) Jacobian, so it runs only up to `--nt-max-n`.",
            "",
        ]
    else:
        out += [
            "neural-tangents: not measured (no separate venv with neural-tangents 0.6.5 / jax 0.4.23 given via --nt-python).",
            "",
        ]
    head = (
        "| n | dtype | "
        + " | ".join(impls)
        + (" | neural-tangents" if nt else "")
        + " | expreg / numpy-plain | expreg / faster numpy | expreg GFLOP/s (n^2 m) | expreg rel. err | load |"
    )
    out += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [f"{r['seconds'][i] * 1e3:,.0f}" if i in r["seconds"] else "-" for i in impls]
        if nt:
            v = r.get("neural_tangents", {})
            cells.append(f"{v['seconds'] * 1e3:,.0f}" if "seconds" in v else "-")
        ratio = r.get("ratio_vs_numpy")
        gf = r.get("expreg_gflops")
        out.append(
            f"| {r['n']} | {r['dtype']} | "
            + " | ".join(cells)
            + f" | {ratio:.2f}x | {r['ratio_vs_best_numpy']:.2f}x | {gf:.0f} | {r['rel_err'].get('expreg', float('nan')):.1e} | {r['load']:.1f} |"
            if ratio is not None
            else f"| {r['n']} | {r['dtype']} | " + " | ".join(cells) + " | - | - | - | - | - |"
        )
    errs = sorted({f"{k}: {v}" for r in rows for k, v in r["errors"].items()})
    if errs:
        out += ["", "Failed: " + "; ".join(errs)]
    return "\n".join(out) + "\n"


def write_section(md: Path, text: str, heading: str) -> None:
    """Replace (or append) this CPU's section ``heading`` in ``md``, atomically; other CPUs' sections stay.

    The section's heading names the CPU (``heading (CPU model)``) and its
    first line the CPU's ISA extensions and BLAS kernels, so that each
    CPU met keeps its own table (sections from before issue 25, without a
    CPU in their heading, are left as they are).
    """
    from report import cpu_line, this_cpu

    from expreg.core.storage import atomic_open

    cpu = this_cpu()
    plain = heading.strip("\n")
    heading = f"\n{plain} ({cpu['cpu']})\n"
    if text.lstrip("\n").startswith(plain):
        text = text.lstrip("\n")[len(plain) :]
    text = f"{heading.strip()}\n\nOn {cpu_line(cpu)}:{text}"

    old = md.read_text() if md.exists() else ""
    if heading in old:
        start = old.index(heading)
        nxt = old.find("\n## ", start + len(heading))
        old = old[:start] + (old[nxt:] if nxt >= 0 else "\n")
    with atomic_open(md, "w") as f:
        f.write(old.rstrip("\n") + "\n\n" + text)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ns", type=int, nargs="*", default=[256, 512, 1024, 2048, 4096])
    p.add_argument("--d", type=int, default=32)
    p.add_argument("--m", type=int, default=8192)
    p.add_argument("--dtypes", nargs="*", default=["float32", "float64"], choices=["float32", "float64"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--impls", nargs="*", default=list(IMPLS), choices=list(IMPLS))
    p.add_argument("--device", default="cpu", help="torch device of expreg-torch and torch-plain")
    p.add_argument(
        "--nt-python", default=str(HERE / ".nt-venv" / "bin" / "python"), help="python of a venv with neural-tangents"
    )
    p.add_argument(
        "--nt-max-n",
        type=int,
        default=512,
        help="largest n for neural-tangents (its Jacobian is n x d m: d times the work and memory of the kernel)",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=0.25,
        help="seconds of sleep before each timed call, for the thread pools of the call before to go idle "
        "(0: calls back to back, each beside whatever the previous one left spinning)",
    )
    p.add_argument("--out", default=None, help="default benchmarks/kernel-<cpu>.json (one file per CPU)")
    p.add_argument("--md", default=str(HERE / "RESULTS.md"))
    p.add_argument(
        "--no-write",
        action="store_true",
        help="print the table only: neither the JSON file nor RESULTS.md is written (ad-hoc reruns of a few cells)",
    )
    args = p.parse_args(argv)
    if args.out is None:
        from report import cpu_slug, this_cpu

        args.out = str(HERE / f"kernel-{cpu_slug(this_cpu())}.json")
    command = "python benchmarks/bench_kernel.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result = section(
        args.ns,
        args.d,
        args.m,
        args.dtypes,
        args.rounds,
        args.impls,
        args.device,
        args.nt_python,
        args.nt_max_n,
        args.settle,
    )
    result["command"] = command.strip()
    if args.no_write:
        print(render(result, command.strip()))
        return result
    from expreg.core.storage import write_json_atomic

    write_json_atomic(args.out, result)
    write_section(Path(args.md), render(result, command.strip()), SECTION)
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent / "src"))
    main()
