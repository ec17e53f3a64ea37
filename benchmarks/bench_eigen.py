"""The lazy criteria's eigenvalues: dense LAPACK against Lanczos (issue 10, item 3).

    python benchmarks/bench_eigen.py                 # n = 512 .. 4096
    python benchmarks/bench_eigen.py --ns 512 1024

For a real kernel pair (H^cts of n unit vectors in d = 16, H^dis of the
width-m network, m = ``--width-factor`` * n), times ``eigen.lazy_criteria``
(||H^dis - H^cts||_2 and lambda_min(H^dis)) with ``method="dense"``
(``scipy.linalg.eigvalsh``, the full tridiagonal reduction) and
``method="iterative"`` (Lanczos from the top for the norm, Cholesky
shift-invert Lanczos for lambda_min), and the iterative error relative to
the spectral norm of H^dis. ``eigen.DENSE_LIMIT`` is chosen from this table.
Results go to ``benchmarks/eigen-<cpu>.json`` and this CPU's "Eigenvalues" section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SECTION = "\n## Eigenvalues\n"


def measure(n: int, width_factor: int, rounds: int) -> dict[str, Any]:
    from expreg import eigen, kernels, scan

    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 16))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    H_cts = kernels.ntk(X)
    lam = eigen.lambda_min(H_cts)
    ((m, Hdis),) = scan.nested_gram(X, [width_factor * n], seed=0)
    out: dict[str, Any] = {"n": n, "m": m, "load": os.getloadavg()[0], "seconds": {}, "values": {}}
    for method in ("dense", "iterative"):
        best = float("inf")
        for _ in range(rounds):
            t = time.perf_counter()
            vals = eigen.lazy_criteria(Hdis, H_cts, lam, method=method)
            best = min(best, time.perf_counter() - t)
        out["seconds"][method] = best
        out["values"][method] = vals
    norm = eigen.lambda_max(Hdis, method="dense")
    d, i = out["values"]["dense"], out["values"]["iterative"]
    out["rel_err"] = max(abs(d[0] - i[0]), abs(d[1] - i[1])) / norm
    out["deviation_over_lambda"] = d[0] / lam
    return out


def section(ns: list[int] | None = None, width_factor: int = 4, rounds: int = 2) -> dict[str, Any]:
    rows = []
    for n in ns or [512, 1024, 2048, 4096]:
        r = measure(n, width_factor, rounds)
        rows.append(r)
        print(
            f"  eigen n={n}: dense {r['seconds']['dense']:.3f} s, iterative {r['seconds']['iterative']:.3f} s, "
            f"rel. err {r['rel_err']:.1e}  [load {r['load']:.1f}]",
            flush=True,
        )
    return {"rows": rows}


def render(result: dict[str, Any], command: str) -> str:
    from expreg import eigen

    out = [
        SECTION.strip(),
        "",
        f"Command: `{command}`. `eigen.lazy_criteria` (spectral norm of H^dis - H^cts and lambda_min(H^dis)) on real kernels, "
        f'seconds (best round). `eigen.DENSE_LIMIT` = {eigen.DENSE_LIMIT}: "auto" is dense up to that n.',
        "",
        "| n | m | dense (s) | iterative (s) | dense / iterative | iterative error / norm | deviation / lambda | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        s = r["seconds"]
        out.append(
            f"| {r['n']} | {r['m']} | {s['dense']:.3f} | {s['iterative']:.3f} | {s['dense'] / s['iterative']:.1f}x | "
            f"{r['rel_err']:.1e} | {r['deviation_over_lambda']:.3g} | {r['load']:.1f} |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from bench_kernel import write_section

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ns", type=int, nargs="*", default=[512, 1024, 2048, 4096])
    p.add_argument("--width-factor", type=int, default=4, help="m = this * n")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default=None, help="default benchmarks/eigen-<cpu>.json (one file per CPU)")
    p.add_argument("--md", default=str(HERE / "RESULTS.md"))
    args = p.parse_args(argv)
    if args.out is None:
        from report import cpu_slug, this_cpu

        args.out = str(HERE / f"eigen-{cpu_slug(this_cpu())}.json")
    command = ("python benchmarks/bench_eigen.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    result = section(args.ns, args.width_factor, args.rounds)
    result["command"] = command
    from expreg.core.storage import write_json_atomic

    write_json_atomic(args.out, result)
    write_section(Path(args.md), render(result, command), SECTION)
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
