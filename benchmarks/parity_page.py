"""Render the figures of ``parity.py`` (benchmarks/parity.json) as the docs page docs/parity.md.

python benchmarks/parity_page.py            # re-render from benchmarks/parity.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

WHAT = {
    "ntk_exp": (
        "H^cts, exp",
        "`kernels.ntk(X)`",
        "`stax.serial(Dense(1, W_std=sqrt(d), b_std=None), Exp())`, `get='ntk'`",
    ),
    "nngp_exp": ("K, exp", "`kernels.nngp(X)`", "the same, `get='nngp'`"),
    "ntk_relu": ("H^cts, ReLU", "`kernels.ntk(X, activation='relu')`", "`... Relu()`, `get='ntk'`"),
    "nngp_relu": ("K, ReLU", "`kernels.nngp(X, activation='relu')`", "`... Relu()`, `get='nngp'`"),
    "empirical_ntk": (
        "H(W), n x n",
        "`kernels.empirical_ntk(net, X1)`",
        "`jit(nt.empirical_ntk_fn(f, vmap_axes=0))(X1, None, W)`",
    ),
    "empirical_ntk_cross": (
        "H(W), test x train",
        "`kernels.empirical_ntk(net, X2, X1)`",
        "`jit(nt.empirical_ntk_fn(f, vmap_axes=0))(X2, X1, W)`",
    ),
    "predict": (
        "GD outputs at t = 1, 10, 100, 1000, inf",
        "`predict.gradient_descent_mse(H, y, lr, loss='mean')`",
        "`nt.predict.gradient_descent_mse(H, y, lr)`",
    ),
}


def _agree(row: dict[str, Any]) -> str:
    return "; ".join(f"{k} {v:.1e}" for k, v in row["agreement"].items())


def _cell(t: dict[str, Any]) -> str:
    return f"{t['seconds'] * 1e3:.3g} ms, {t['peak_mib']:.0f} MiB ({t['first_call_mib']:.0f} MiB first call)"


def _figure(result: dict[str, Any], quantity: str, key: str) -> str:
    """One agreement figure of the run, e.g. the ReLU NTK's on the diagonal."""
    rows = [r for r in result["rows"] if r["quantity"] == quantity]
    return f"{rows[0]['agreement'][key]:.1e}" if rows and key in rows[0]["agreement"] else "n/a"


def _ratio(result: dict[str, Any], quantity: str, key: str = "peak_mib") -> str:
    """neural-tangents' figure over expreg's for one quantity (time or memory)."""
    rows = [r for r in result["rows"] if r["quantity"] == quantity]
    if not rows:
        return "n/a"
    ours, theirs = rows[0]["expreg"][key], rows[0]["neural_tangents"][key]
    return f"{theirs / ours:.0f}" if ours > 0 else "n/a"


def page(result: dict[str, Any]) -> str:
    s = result["sizes"]
    lines = [
        "# Parity with neural-tangents",
        "",
        "expreg and [neural-tangents](https://github.com/google/neural-tangents) "
        f"{result['nt_version']} (jax {result['jax_version']}, in its own virtual environment) compute the same "
        "quantities from the same float64 arrays, each in a fresh process. This page is written by "
        "`benchmarks/parity.py` (run it with `make parity`, which first makes the neural-tangents venv "
        "`benchmarks/.nt-venv` from PyPI); the raw figures are in `benchmarks/parity.json`.",
        "",
        f"Sizes: closed forms on n = {s['n']} points in d = {s['d']}; the empirical kernel of one exp network of "
        f"width m = {s['m']} (s = 1/sqrt(m)) on n = {s['n_emp']} training and {s['n_test']} test points; the "
        f"predictions of gradient descent with the kernel H^cts of those {s['n_emp']} points. Points have norms "
        "uniform in [0.5, 1].",
        "",
        "## Agreement",
        "",
        "max |expreg - neural-tangents| / max |neural-tangents|, over all entries and, for square kernels, over "
        "the diagonal and the off-diagonal entries apart.",
        "",
        "| quantity | expreg | neural-tangents | agreement |",
        "|---|---|---|---|",
    ]
    for row in result["rows"]:
        name, ours, theirs = WHAT[row["quantity"]]
        lines.append(f"| {name} | {ours} | {theirs} | {_agree(row)} |")
    lines += [
        "",
        "## Time and peak memory",
        "",
        f"Best of {result['rounds']} calls after one warm-up call (neural-tangents jit-compiles there); memory is the "
        "growth of the process's peak resident set over its resident set before the calls, in steady state and "
        "(in brackets) for the first call, compilation and kept buffers included.",
        "",
        f"Measured on {result['machine']} (Python {result['python']}). This machine was shared with other jobs "
        "while the figures were taken: the times are indicative only (a ratio within a factor of about two means "
        "nothing); the memory figures and the agreement do not depend on the load.",
        "",
        "| quantity | expreg | neural-tangents |",
        "|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(f"| {WHAT[row['quantity']][0]} | {_cell(row['expreg'])} | {_cell(row['neural_tangents'])} |")
    lines += [
        "",
        "What these figures show, within that caveat: on the closed forms neural-tangents' jit-compiled, fused "
        "XLA expression was faster than expreg's NumPy evaluation (which makes a few n x n temporaries); on the "
        "empirical kernel expreg was faster and, in steady state, needed far less memory (the square kernel: "
        f"neural-tangents took {_ratio(result, 'empirical_ntk', 'seconds')} times expreg's time and "
        f"{_ratio(result, 'empirical_ntk')} times its steady-state memory, {_ratio(result, 'empirical_ntk', 'first_call_mib')} "
        "times its first-call memory), since expreg never forms the Jacobian. expreg's "
        "first call of the empirical kernel costs more memory than the later ones: one-off work (loading and "
        "compiling its fused CPU kernels, the block buffers it keeps for the next call of the same size).",
    ]
    lines += [
        "",
        "## Where the two differ, and how they map",
        "",
        "- **H^cts is the first-layer part of neural-tangents' NTK.** expreg's network trains W and keeps the "
        "output signs a fixed, so its tangent kernel has one term, H^cts_ij = <x_i, x_j> E[sigma'(<w, x_i>) "
        "sigma'(<w, x_j>)] (docs/theory.md section 3). `stax.serial(stax.Dense(1, W_std=sqrt(d), b_std=None), "
        "stax.Exp())` (no readout; `W_std = sqrt(d)` makes neural-tangents' `W_std / sqrt(d)` a standard normal "
        "w) gives exactly that NTK and the NNGP kernel K. With a trained readout, "
        "`stax.serial(..., stax.Exp(), stax.Dense(1, b_std=None))`, neural-tangents' NTK is **H^cts + K** "
        "(the readout's own term is K): the row 'readout: H^cts + K' checks that sum. neural-tangents' readout "
        "is s = 1/sqrt(m) with a ~ N(0, 1); expreg's a = +-1 has the same a^2 expectation, and expreg's "
        '`scaling="ntk"` is that s.',
        "- **ReLU on the diagonal.** neural-tangents computes the angle theta as arccos of the cosine, which "
        "loses about half the digits where the cosine is near 1 (a rounding of 1e-16 in the cosine moves "
        "arccos by 1e-8): on the diagonal its ReLU NTK, whose factor (pi - theta) is linear in theta, differs "
        f"from expreg's by {_figure(result, 'ntk_relu', 'diagonal')} relative (off the diagonal "
        f"{_figure(result, 'ntk_relu', 'off-diagonal')}). expreg computes the angle as "
        "2 atan2(||u - v||, ||u + v||) (`activations.angles`), exact to rounding at theta = 0; the exact "
        "diagonal is ||x||^2 / 2, which expreg's test suite checks. The ReLU NNGP kernel is not affected "
        "(sin theta + (pi - theta) cos theta is flat at theta = 0: "
        f"{_figure(result, 'nngp_relu', 'diagonal')} on the diagonal).",
        "- **The loss of the predictions.** neural-tangents' `gradient_descent_mse` descends the mean "
        "1/(2n) ||f - y||^2, expreg's training the sum 1/2 ||f - y||^2; `expreg.predict.gradient_descent_mse` "
        "takes `loss='mean'` for the former (used here) and `loss='sum'` (its default) for the latter: the same "
        "dynamics with the step divided by n. Time t is counted in steps in both (absolute time eta t).",
        "- **Memory of the empirical kernel.** neural-tangents contracts Jacobians: n x (d m) per input set; "
        "expreg never forms the Jacobian and sums the kernel over blocks of neurons, n1 n2 + (n1 + n2) x block.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "parity.json"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE.parent / "docs" / "parity.md"
    out.write_text(page(json.loads(src.read_text())))
    print(f"wrote {out}")
