"""Experiment ``convergence``: does GD converge linearly, as the kernel predicts? (docs/theory.md section 4)

For each width m, activation and seed: train to ||u - y||_2 <= epsilon and
record ||u(t) - y||_2. Beside it, for the same data, step and r0 = u(0) - y:

- the kernel-predicted trajectory ||(I - lr m s^2 H^cts)^t r0||
  (``kernels.predicted_trajectory``);
- the linear-rate bound (1 - lr m s^2 lambda / 2)^{t/2} ||r0||
  (``theory.linear_rate_curve``), valid while lambda_min(H(W(t))) >= m s^2 lambda / 2.

Outcome figures per run: converged, steps, the measured rate (geometric mean
of ||r(t+1)|| / ||r(t)|| over the run), the predicted asymptotic rate
1 - lr m s^2 lambda, and the largest gap |measured - predicted| / ||r0||.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from ..core import kernels, theory
from ._common import cost_by_width, dataset, subsample, train_safely
from .config import Activation, Scaling, TrainingConfig

name = "convergence"
description = "Residual curves at several widths beside the kernel-predicted trajectory and the linear-rate bound."


class Config(TrainingConfig):
    name = "convergence"
    version = 1

    n: int = Field(32, ge=2)
    activations: list[Activation] = Field(default_factory=lambda: ["exp", "relu"], min_length=1)
    scaling: Scaling = "none"


PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"n": 16, "d": 16, "widths": [64, 512, 4096], "seeds": [0, 1], "max_steps": 1500},
    "full": {"n": 64, "d": 16, "widths": [256, 1024, 4096, 16384, 65536], "seeds": [0, 1, 2, 3, 4], "max_steps": 4000},
    "tiny": {
        "n": 6,
        "d": 4,
        "widths": [32, 256],
        "seeds": [0, 1],
        "activations": ["exp"],
        "max_steps": 400,
        "epsilon": 1e-2,
    },
}


def tasks(cfg: Config) -> list[tuple[dict[str, Any], int]]:
    return [({"activation": a, "m": m}, s) for a in cfg.activations for m in cfg.widths for s in cfg.seeds]


#: Relative work of a run: its width.
cost = cost_by_width


def run_one(cfg: Config, params: dict[str, Any], seed: int) -> dict[str, Any]:
    X, y = dataset(cfg.n, cfg.d, seed, cfg.label_kind)
    net = cfg.network(params["m"], seed, params["activation"], cfg.scaling)
    result, diverged = train_safely(net, X, y, epsilon=cfg.epsilon, max_steps=cfg.max_steps, record_every=0)
    res = np.asarray(result.history.residual)
    m, s, lam, lr = net.m, net.s, result.lambda_cts, result.lr
    r0 = net.predict(X) - y
    H = m * s * s * kernels.ntk(X, activation=params["activation"])
    t_all = np.arange(res.size)
    predicted = kernels.predicted_trajectory(H, r0, lr).norms(t_all)
    bound = theory.linear_rate_curve(t_all, lr, m, s, lam, float(np.linalg.norm(r0)))
    steps, res_s = subsample(res)
    ratios = res[1:] / res[:-1] if res.size > 1 else np.array([math.nan])
    return {
        "converged": bool(result.converged),
        "diverged": diverged,
        "steps": int(result.steps),
        "lr": float(lr),
        "lambda": float(lam),
        "lambda_max": float(result.lambda_max_cts),
        "initial_residual": float(res[0]),
        "final_residual": float(res[-1]),
        "measured_rate": float(np.exp(np.mean(np.log(ratios)))) if res.size > 1 else math.nan,
        "predicted_rate": float(1.0 - lr * m * s * s * lam),
        "max_gap_to_kernel": float(np.max(np.abs(res - predicted)) / max(res[0], 1e-300)),
        "bound_violations": int(np.sum(res > bound * (1 + 1e-9))),
        "curve_step": steps,
        "curve_residual": res_s,
        "curve_predicted": predicted[steps].tolist(),
        "curve_bound": bound[steps].tolist(),
    }


def summarise(df: Any, cfg: Config) -> dict[str, Any]:
    """Per (activation, m): runs converged, median steps, measured vs predicted rate, gap to the kernel."""
    rows = []
    for (act, m), g in df.groupby(["activation", "m"], sort=True):
        rows.append(
            {
                "activation": act,
                "m": int(m),
                "runs": len(g),
                "converged": f"{int(g.converged.sum())}/{len(g)}",
                "median steps": float(g.steps.median()),
                "measured rate": float(g.measured_rate.median()),
                "kernel rate (1 - lr m s^2 lambda)": float(g.predicted_rate.median()),
                "max |r - r_kernel| / |r0|": float(g.max_gap_to_kernel.median()),
                "bound violations": int(g.bound_violations.sum()),
            }
        )
    headline = {}
    for act in sorted(set(df.activation)):
        g = df[df.activation == act]
        widest = g[g.m == g.m.max()]
        headline[f"{act}: converged runs"] = f"{int(g.converged.sum())}/{len(g)}"
        headline[f"{act}: gap to kernel trajectory at m = {int(g.m.max())}"] = (
            f"{widest.max_gap_to_kernel.median():.3g} of ||r0||"
        )
    return {"headline": headline, "tables": {"per width": rows}}


def figures(df: Any, cfg: Config, directory: Any) -> list[str]:
    from . import plots

    acts = sorted(set(df.activation))
    fig, axes = plots.new_figure(ncols=len(acts))
    for ax, act in zip(axes[0], acts, strict=True):
        g = df[(df.activation == act) & (df.seed == df.seed.min())]
        for i, (m, row) in enumerate(g.sort_values("m").set_index("m").iterrows()):
            c = plots.COLOURS[i % len(plots.COLOURS)]
            t = np.asarray(row.curve_step, dtype=float)
            ax.plot(t, row.curve_residual, color=c, label=f"m = {m}")
            ax.plot(t, row.curve_predicted, color=c, linestyle="--")
            ax.plot(t, row.curve_bound, color=c, linestyle=":", alpha=0.7)
        for style, what in (("-", "GD"), ("--", "kernel prediction"), (":", "linear-rate bound")):
            ax.plot([], [], color="k", linestyle=style, label=what)
        ax.set_ylim(bottom=cfg.epsilon / 10)
        ax.axhline(cfg.epsilon, color="k", linewidth=0.8, alpha=0.5)
        plots.log_axes(
            ax,
            "step t (a straight line is a linear rate)",
            "||u(t) - y||_2 (log scale)",
            f"{act}, n = {cfg.n}, d = {cfg.d}, {cfg.init} init, scaling {cfg.scaling}, seed {int(g.seed.min()) if len(g) else 0}",
            x=False,
        )
    return [plots.save(fig, directory, "convergence_residuals")]
