"""Experiment ``regime``: from lazy (kernel) to rich (feature-learning) training as the output scale alpha moves.

The network F = s sum_r a_r exp(<w_r, x>) with s = alpha / sqrt(m)
(``ExpNet(..., scaling="ntk", scale=alpha)``, docs/theory.md section 4) is
trained from the coupled initialisation (F(W(0), .) = 0 for every alpha) with
lr = c / lambda_max(H(W(0))) (c = ``lr_factor``, 0.5), so that the outputs
move at the same pace for every alpha while the weights move by about 1/alpha. For each (alpha, m, seed)
the run records

- ``kernel_change`` = ||H(W(T)) - H(W(0))||_op / ||H(W(0))||_op;
- ``weight_change`` = ||W(T) - W(0)||_F / ||W(0)||_F and the largest
  per-neuron movement max_t max_r ||w_r(t) - w_r(0)||;
- ``train_error`` = ||F(W(T), X) - y|| / ||y|| and ``test_error`` =
  ||F(W(T), X') - y'|| / ||y'|| on fresh points of the same target;
- ``linear_gap`` = ||F(W(T), X') - F_lin(X')|| / ||F_lin(X')||, the distance
  on the test points to the linearised network after the same T steps
  (``expreg.predict.linearised``, empirical kernel): 0 in the lazy limit.

Expected (a scaling argument, tested by the data): in the lazy regime each
neuron moves by delta ~ 1/(alpha sqrt(m)), so the weights' relative change
falls as alpha^-1 (slope -1). With the coupled initialisation the two
neurons of a pair move by +delta and -delta to first order, so the
first-order changes of H cancel: the kernel's change, and the gap to the
linearised network it drives, fall as delta^2, slope -2 (with the gaussian
initialisation F(W(0)) grows with alpha and no slope is stated). As alpha
falls the changes reach order one (the rich regime), where the kernel
picture stops describing the network; for small enough alpha the fixed step
diverges (exp grows with the weights), kept as its own outcome.

The target is a single-index function y = sin(sqrt(d) <v, x>), v uniform on
the sphere, drawn from the labels stream (``streams.DATA_LABELS``); inputs on
the unit sphere (``streams.DATA_POINTS``, training points first).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from ..core import kernels, predict, streams
from ..core.data import sphere
from ..core.model import ExpNet
from ._common import once_per_table, train_safely
from .config import ExperimentConfig, Init, check_widths
from .fitting import bootstrap_slope, geometric_mean

name = "regime"
description = "Lazy-to-rich transition: kernel change, weight movement, train/test error against alpha and m."

#: Quantities summarised per (alpha, m); the first three are relative changes (slope -1 in alpha when lazy).
QUANTITIES = ("kernel_change", "weight_change", "linear_gap", "train_error", "test_error")
#: Expected slope against alpha in the lazy regime (alpha >= 1), coupled initialisation (module docstring).
EXPECTED = {"kernel_change": -2.0, "weight_change": -1.0, "linear_gap": -2.0}


class Config(ExperimentConfig):
    name = "regime"
    version = 1

    n: int = Field(16, ge=2)
    n_test: int = Field(128, ge=1)
    d: int = Field(8, ge=2, le=4096)
    alphas: list[float] = Field(default_factory=lambda: [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0], min_length=2)
    widths: list[int] = Field(default_factory=lambda: [256, 1024, 4096])
    init: Init = "coupled"
    epsilon: float = Field(1e-2, gt=0)
    lr_factor: float = Field(0.5, gt=0, le=2)
    max_steps: int = Field(2000, ge=1)
    n_boot: int = Field(200, ge=0)

    @field_validator("widths")
    @classmethod
    def _w(cls, v: list[int]) -> list[int]:
        return check_widths(v)

    @field_validator("alphas")
    @classmethod
    def _a(cls, v: list[float]) -> list[float]:
        if any(not (math.isfinite(a) and a > 0) for a in v) or sorted(set(v)) != list(v):
            raise ValueError(f"alphas must be distinct positive numbers in increasing order, got {v}")
        return v


PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"seeds": [0, 1, 2], "max_steps": 1500},
    "full": {
        "n": 32,
        "n_test": 256,
        "alphas": [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0],
        "widths": [256, 1024, 4096, 16384],
        "seeds": [0, 1, 2, 3, 4],
        "max_steps": 5000,
        "n_boot": 1000,
    },
    "tiny": {
        "n": 6,
        "n_test": 16,
        "d": 4,
        "alphas": [0.03, 1.0, 30.0],
        "widths": [64, 256],
        "seeds": [0],
        "max_steps": 300,
        "n_boot": 20,
    },
}


def tasks(cfg: Config) -> list[tuple[dict[str, Any], int]]:
    return [({"alpha": a, "m": m}, seed) for a in cfg.alphas for m in cfg.widths for seed in cfg.seeds]


def cost(cfg: Config, params: dict[str, Any]) -> float:
    """Relative work: the width, more steps for small alpha (the rich runs take longer)."""
    return float(params["m"]) * (1.0 + 1.0 / math.sqrt(float(params["alpha"])))


def teacher_data(n: int, n_test: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X (n, d), y (n,), X_test (n_test, d), y_test): y = sin(sqrt(d) <v, x>) on the unit sphere."""
    Z = sphere(n + n_test, d, seed=seed)
    v = streams.generator(seed, streams.DATA_LABELS).standard_normal(d)
    v /= np.linalg.norm(v)
    y = np.sin(math.sqrt(d) * (Z @ v))
    return Z[:n], y[:n], Z[n:], y[n:]


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def run_one(cfg: Config, params: dict[str, Any], seed: int) -> dict[str, Any]:
    X, y, Xt, yt = teacher_data(cfg.n, cfg.n_test, cfg.d, seed)
    net = ExpNet.init(cfg.d, params["m"], seed=seed, scaling="ntk", scale=params["alpha"], init=cfg.init)
    H0 = kernels.empirical_ntk(net, X)
    lr = cfg.lr_factor / kernels.lambda_max(H0)
    lin = predict.linearised(net, X, y, Xt, kernel="empirical", lr=lr)
    result, diverged = train_safely(net, X, y, lr=lr, epsilon=cfg.epsilon, max_steps=cfg.max_steps, record_every=0)
    W0, WT = net.weights_numpy()[0], result.net.weights_numpy()[0]
    row: dict[str, Any] = {
        "converged": bool(result.converged),
        "diverged": diverged,
        "steps": int(result.steps),
        "lr": float(lin.lr),
        "weight_change": _relative(WT, W0),
        "max_movement": float(np.max(result.history.max_movement)),
        "train_error": _relative(result.net.predict(X), y) if not diverged else math.nan,
    }
    if diverged:  # only the last finite weights are kept: none of the figures describes a finished run
        gone = ("weight_change", "kernel_change", "test_error", "linear_gap")
        return {**row, **dict.fromkeys(gone, math.nan)}
    HT = kernels.empirical_ntk(result.net, X)
    f_test = result.net.predict(Xt)
    f_lin = lin.at_step(result.steps).test
    assert f_lin is not None
    return {
        **row,
        "kernel_change": float(kernels.operator_norm(HT - H0) / kernels.operator_norm(H0)),
        "test_error": _relative(f_test, yt),
        "linear_gap": _relative(f_test, f_lin[0]),
    }


def table(df: Any, cfg: Config, quantity: str) -> tuple[list[float], list[int], np.ndarray]:
    """(alphas, widths, array (alphas, widths, seeds)) of one quantity; NaN where a run is missing or diverged."""
    alphas = sorted(float(a) for a in set(df.alpha))
    ms = sorted(int(m) for m in set(df.m))
    seeds = sorted(int(s) for s in set(df.seed))
    out = np.full((len(alphas), len(ms), len(seeds)), np.nan)
    for r in df.itertuples():
        out[alphas.index(float(r.alpha)), ms.index(int(r.m)), seeds.index(int(r.seed))] = getattr(r, quantity)
    return alphas, ms, out


def fits(df: Any, cfg: Config) -> list[dict[str, Any]]:
    """Per width and relative change: slope against alpha over alpha >= 1 (the lazy side), once per table."""
    return once_per_table(df, cfg, "regime-fits", lambda: _fits(df, cfg))


def _fits(df: Any, cfg: Config) -> list[dict[str, Any]]:
    out = []
    for q in ("kernel_change", "weight_change", "linear_gap"):
        alphas, ms, t = table(df, cfg, q)
        lazy = [i for i, a in enumerate(alphas) if a >= 1.0]
        for j, m in enumerate(ms):
            x = np.array([alphas[i] for i in lazy])
            fit = bootstrap_slope(x, t[lazy, j, :], geometric_mean, n_boot=cfg.n_boot) if len(lazy) >= 2 else None
            out.append(
                {"quantity": q, "m": m, "alpha": alphas, "values": [geometric_mean(r) for r in t[:, j, :]], "fit": fit}
            )
    return out


def summarise(df: Any, cfg: Config) -> dict[str, Any]:
    headline: dict[str, str] = {}
    for e in fits(df, cfg):
        if e["fit"] is not None and e["m"] == max(cfg.widths):
            expected = f" (expected {EXPECTED[e['quantity']]:g})" if cfg.init == "coupled" else ""
            headline[f"m = {e['m']}: slope of {e['quantity']} vs alpha (alpha >= 1)"] = f"{e['fit']}{expected}"
    alphas, ms, kc = table(df, cfg, "kernel_change")
    j = len(ms) - 1
    means = [geometric_mean(kc[i, j]) for i in range(len(alphas))]
    kept = [i for i, v in enumerate(means) if np.isfinite(v)]  # alphas where some run did not diverge
    if kept:
        lo, hi = kept[0], kept[-1]
        headline[f"m = {ms[j]}: kernel change at alpha = {alphas[lo]:g} / at alpha = {alphas[hi]:g}"] = (
            f"{means[lo]:.3g} / {means[hi]:.3g}"
        )
    rows = []
    for a in alphas:
        for m in ms:
            g = df[(df.alpha.astype(float) == a) & (df.m.astype(int) == m)]
            rows.append(
                {
                    "alpha": a,
                    "m": m,
                    **{q: f"{geometric_mean(g[q].to_numpy(float)):.3g}" for q in QUANTITIES},
                    "converged": f"{int(g.converged.sum())}/{len(g)}",
                    "diverged": int(g.diverged.sum()),
                }
            )
    return {
        "headline": headline,
        "tables": {"geometric means over seeds per (alpha, m)": rows},
        "notes": [
            f"s = alpha / sqrt(m), {cfg.init} init, lr = {cfg.lr_factor:g} / lambda_max(H(W(0))), epsilon = {cfg.epsilon:g}, "
            f"at most {cfg.max_steps} steps; n = {cfg.n}, {cfg.n_test} test points, d = {cfg.d}; "
            "target y = sin(sqrt(d) <v, x>).",
            "relative changes: ||H(W(T)) - H(W(0))||_op / ||H(W(0))||_op, ||W(T) - W(0)||_F / ||W(0)||_F, "
            "and the test outputs' distance to the linearised network after the same steps; errors are ||f - y|| / ||y||.",
            "slopes are fitted over alpha >= 1 only (the lazy side); expected: -1 for the weights, -2 for the kernel "
            "and the linear gap (coupled pairs cancel the first-order change), a scaling argument (module docstring).",
            "runs that diverged (exp of the moving weights outgrows the fixed step) are counted, not plotted.",
        ],
    }


def figures(df: Any, cfg: Config, directory: Any) -> list[str]:
    from . import plots

    fig, axes = plots.new_figure(ncols=3, nrows=2, width=4.6, height=3.6)
    labels = {
        "kernel_change": "||H(W(T)) - H(W(0))||_op / ||H(W(0))||_op",
        "weight_change": "||W(T) - W(0)||_F / ||W(0)||_F",
        "linear_gap": "test outputs: distance to linearised",
        "train_error": "train error ||f - y|| / ||y||",
        "test_error": "test error ||f - y|| / ||y||",
    }
    for k, q in enumerate(QUANTITIES):
        ax = axes[k // 3][k % 3]
        alphas, ms, t = table(df, cfg, q)
        for j, m in enumerate(ms):
            c = plots.COLOURS[j % len(plots.COLOURS)]
            ax.scatter(np.repeat(alphas, t.shape[2]), t[:, j, :].ravel(), s=8, alpha=0.3, color=c)
            ax.plot(alphas, [geometric_mean(r) for r in t[:, j, :]], marker="o", color=c, label=f"m = {m}")
        plots.log_axes(ax, "output scale alpha (s = alpha / sqrt(m))", labels[q], "rich <- alpha -> lazy")
    ax = axes[1][2]
    alphas, ms, steps = table(df, cfg, "steps")
    steps[table(df, cfg, "diverged")[2] > 0] = np.nan  # a diverged run stopped, it did not reach epsilon
    for j, m in enumerate(ms):
        ax.plot(
            alphas,
            [np.median(r[np.isfinite(r)]) if np.isfinite(r).any() else np.nan for r in steps[:, j, :]],
            marker="o",
            color=plots.COLOURS[j],
            label=f"m = {m}",
        )
    plots.log_axes(
        ax, "output scale alpha", "steps to epsilon (median, diverged runs left out)", f"cap {cfg.max_steps}"
    )
    return [plots.save(fig, directory, "regime_transition")]
