"""The nested-width scan: grid widths per second (issue 10, item 2).

    python benchmarks/bench_scan.py                          # n = 256, 512; widths 2 .. 2^16 on a 2^(1/4) grid
    python benchmarks/bench_scan.py --ns 256 --m-max 16384

For one seed, the width experiment needs H^dis_m and its two lazy criteria
(||H^dis_m - H^cts||_2, lambda_min(H^dis_m)) at every width m of a geometric
grid. Measured in one process, each the best of ``--rounds``:

- ``scan``       ``scan.nested_gram`` over the whole grid (one pass over neurons)
- ``scan+criteria``  the same, with ``eigen.lazy_criteria`` at every width
- ``per-width``  the way without the scan: ``kernels.empirical_ntk(ExpNet.init(d, m))``
  afresh at each width (every width redraws and recomputes its neurons)

Results go to ``benchmarks/scan-<cpu>.json`` and this CPU's "Nested-width scan" section of RESULTS.md.
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
SECTION = "\n## Nested-width scan\n"


def grid(m_min: int, m_max: int, ratio: float) -> list[int]:
    """Even widths m_min * ratio^k rounded (even: ExpNet.init's coupled init needs it), distinct, up to m_max."""
    out: list[int] = []
    k = 0
    while True:
        m = round(m_min * ratio**k / 2) * 2
        if m > m_max:
            return out
        if not out or m > out[-1]:
            out.append(m)
        k += 1


def _best(fn: Any, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure(n: int, d: int, widths: list[int], dtype: str, rounds: int, device: str = "cpu") -> dict[str, Any]:
    from expreg import ExpNet, eigen, kernels, scan

    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    H_cts = kernels.ntk(X)
    lam = eigen.lambda_min(H_cts)

    from expreg.core.backends import get_backend

    be = get_backend("numpy") if device == "cpu" else get_backend("torch", device)

    def scan_only() -> None:
        for _ in scan.nested_gram(X, widths, seed=0, dtype=dtype, backend=be):
            pass

    def scan_criteria() -> None:
        for _, H in scan.nested_gram(X, widths, seed=0, dtype=dtype, backend=be):
            eigen.lazy_criteria(H, H_cts, lam)

    def per_width() -> None:
        for m in widths:
            net = ExpNet.init(d, m, seed=0, dtype=dtype, backend=be.name, device=None if device == "cpu" else device)
            kernels.empirical_ntk(net, X, average=True)

    scan_only()  # warm-up (numba, BLAS)
    load = os.getloadavg()[0]
    t_scan = _best(scan_only, rounds)
    t_crit = _best(scan_criteria, rounds)
    t_per = _best(per_width, rounds)
    k = len(widths)
    return {
        "n": n,
        "d": d,
        "dtype": dtype,
        "device": device,
        "widths": k,
        "m_max": widths[-1],
        "load": load,
        "seconds": {"scan": t_scan, "scan+criteria": t_crit, "per-width": t_per},
        "widths_per_s": {"scan": k / t_scan, "scan+criteria": k / t_crit, "per-width": k / t_per},
        "gflops_scan": n * n * widths[-1] / t_scan / 1e9,
    }


def section(
    ns: list[int] | None = None,
    d: int = 32,
    m_min: int = 2,
    m_max: int = 2**16,
    ratio: float = 2**0.25,
    dtypes: list[str] | None = None,
    rounds: int = 2,
    device: str = "cpu",
) -> dict[str, Any]:
    """Every cell of the scan table; the dict ``render`` turns into markdown."""
    widths = grid(m_min, m_max, ratio)
    rows = []
    for dtype in dtypes or ["float64", "float32"]:
        for n in ns or [256, 512]:
            row = measure(n, d, widths, dtype, rounds, device)
            rows.append(row)
            w = row["widths_per_s"]
            print(
                f"  scan n={n} {dtype}: {w['scan']:.1f} widths/s (with criteria {w['scan+criteria']:.1f}, per-width {w['per-width']:.2f})"
                f"  [load {row['load']:.1f}]",
                flush=True,
            )
    return {"rows": rows, "grid": {"m_min": m_min, "m_max": m_max, "ratio": ratio, "count": len(widths)}}


def render(result: dict[str, Any], command: str) -> str:
    """The "Nested-width scan" section of RESULTS.md."""
    g = result["grid"]
    out = [
        SECTION.strip(),
        "",
        f"Command: `{command}`. {g['count']} even widths from {g['m_min']} to {g['m_max']} (ratio {g['ratio']:.4g}), d = {result['rows'][0]['d']}, "
        f"one seed, device {result['rows'][0].get('device', 'cpu')}; grid widths per second (best round, one process).",
        "",
        "| n | dtype | scan (widths/s) | scan + lazy criteria (widths/s) | per-width empirical_ntk (widths/s) | scan speed-up | scan GFLOP/s (n^2 m_max) | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        w = r["widths_per_s"]
        out.append(
            f"| {r['n']} | {r['dtype']} | {w['scan']:.1f} | {w['scan+criteria']:.1f} | {w['per-width']:.2f} | "
            f"{w['scan'] / w['per-width']:.1f}x | {r['gflops_scan']:.0f} | {r['load']:.1f} |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from bench_kernel import write_section

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ns", type=int, nargs="*", default=[256, 512])
    p.add_argument("--d", type=int, default=32)
    p.add_argument("--m-min", type=int, default=2)
    p.add_argument("--m-max", type=int, default=2**16)
    p.add_argument("--ratio", type=float, default=2**0.25)
    p.add_argument("--dtypes", nargs="*", default=["float64", "float32"], choices=["float32", "float64"])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu (NumPy backend) or a torch device such as cuda")
    p.add_argument("--out", default=None, help="default benchmarks/scan-<cpu>.json (one file per CPU)")
    p.add_argument("--md", default=str(HERE / "RESULTS.md"))
    args = p.parse_args(argv)
    if args.out is None:
        from report import cpu_slug, this_cpu

        args.out = str(HERE / f"scan-{cpu_slug(this_cpu())}.json")
    command = ("python benchmarks/bench_scan.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    result = section(args.ns, args.d, args.m_min, args.m_max, args.ratio, args.dtypes, args.rounds, args.device)
    result["command"] = command
    from expreg.core.storage import write_json_atomic

    write_json_atomic(args.out, result)
    write_section(Path(args.md), render(result, command), SECTION)
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
