"""Experiment ``lazy``: how far do the weights move? (docs/theory.md section 5, movement bound)

For each width m, activation, scaling and seed: train to epsilon and record
max_t max_r ||w_r(t) - w_r(0)|| and ||W(T) - W(0)||_F. Fitted slopes of
log movement against log m.

Expected slopes (a scaling argument, stated here and tested by the data):
with lr = 1/lambda_max(m s^2 H^cts), each step moves a neuron by
lr * s * O(||r||), so per-neuron movement ~ m^-1 for s = 1 (the [derived]
bound 4 sqrt(n) e^{B+R} ||u(0) - y|| / (m lambda) has the same m^-1) and
~ m^-1/2 for s = 1/sqrt(m) (the usual NTK statement: "slope -1/2");
||W(T) - W(0)||_F adds sqrt(m): m^-1/2 for s = 1, m^0 for s = 1/sqrt(m).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from ..core import theory
from ..core.activations import get_activation
from ._common import cost_by_width, dataset, once_per_table, train_safely
from .config import Activation, Scaling, TrainingConfig
from .fitting import width_fit

name = "lazy"
description = "Weight movement (max per neuron, Frobenius) against width m, with fitted slopes."

#: (quantity, scaling) -> expected slope (scaling argument in the module docstring).
EXPECTED = {
    ("max_movement", "none"): -1.0,
    ("max_movement", "ntk"): -0.5,
    ("frobenius_movement", "none"): -0.5,
    ("frobenius_movement", "ntk"): 0.0,
}


class Config(TrainingConfig):
    name = "lazy"
    version = 1

    n: int = Field(32, ge=2)
    activations: list[Activation] = Field(default_factory=lambda: ["exp", "relu"], min_length=1)
    scalings: list[Scaling] = Field(default_factory=lambda: ["none", "ntk"], min_length=1)
    n_boot: int = Field(1000, ge=0)


PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"n": 16, "d": 16, "widths": [256, 1024, 4096, 16384], "seeds": [0, 1, 2], "max_steps": 1500},
    "full": {"n": 32, "d": 16, "widths": [256, 1024, 4096, 16384, 65536], "seeds": [0, 1, 2, 3, 4], "max_steps": 3000},
    "tiny": {
        "n": 6,
        "d": 4,
        "widths": [64, 256, 1024],
        "seeds": [0, 1],
        "activations": ["exp"],
        "max_steps": 500,
        "epsilon": 1e-2,
        "n_boot": 50,
    },
}


def tasks(cfg: Config) -> list[tuple[dict[str, Any], int]]:
    return [
        ({"activation": a, "scaling": s, "m": m}, seed)
        for a in cfg.activations
        for s in cfg.scalings
        for m in cfg.widths
        for seed in cfg.seeds
    ]


#: Relative work of a run: its width.
cost = cost_by_width


def run_one(cfg: Config, params: dict[str, Any], seed: int) -> dict[str, Any]:
    X, y = dataset(cfg.n, cfg.d, seed, cfg.label_kind)
    net = cfg.network(params["m"], seed, params["activation"], params["scaling"])
    result, diverged = train_safely(net, X, y, epsilon=cfg.epsilon, max_steps=cfg.max_steps, record_every=0)
    h = result.history
    row = {
        "converged": bool(result.converged),
        "diverged": diverged,
        "steps": int(result.steps),
        "lambda": float(result.lambda_cts),
        "max_movement": float(np.max(h.max_movement)),
        "frobenius_movement": float(h.frobenius_movement[-1]),
        "initial_residual": float(h.residual[0]),
    }
    if get_activation(params["activation"]).theorem and params["scaling"] == "none":
        B = theory.weight_bound(params["m"], cfg.n, 0.1)
        R = theory.radius(result.lambda_cts, cfg.n, B)
        row["movement_bound"] = theory.movement_bound(cfg.n, B, R, h.residual[0], params["m"], result.lambda_cts)
    return row


def fits(df: Any, cfg: Config) -> list[dict[str, Any]]:
    """Per (activation, scaling, quantity): geometric mean over seeds per m and the fitted slope (once per table)."""
    return once_per_table(df, cfg, "lazy-fits", lambda: _fits(df, cfg))


def _fits(df: Any, cfg: Config) -> list[dict[str, Any]]:
    return [
        {
            "activation": act,
            "scaling": sc,
            "quantity": q,
            **width_fit(g, q, cfg.n_boot),
            "expected": EXPECTED[(q, sc)],
        }
        for (act, sc), g in df.groupby(["activation", "scaling"], sort=True)
        for q in ("max_movement", "frobenius_movement")
    ]


def summarise(df: Any, cfg: Config) -> dict[str, Any]:
    headline, rows = {}, []
    for e in fits(df, cfg):
        label = f"{e['activation']}, s={e['scaling']}: slope of {e['quantity']} vs m"
        headline[label] = f"{e['fit']} (expected {e['expected']:g})"
        rows.append(
            {
                "activation": e["activation"],
                "scaling": e["scaling"],
                "quantity": e["quantity"],
                "slope [90% CI]": str(e["fit"]),
                "expected": e["expected"],
                **{f"m={m}": f"{v:.3g}" for m, v in zip(e["m"], e["values"], strict=True)},
            }
        )
    conv = f"{int(df.converged.sum())}/{len(df)}"
    return {
        "headline": headline,
        "tables": {"movement slopes": rows},
        "notes": [
            f"runs converged to epsilon = {cfg.epsilon:g}: {conv}; values are geometric means over seeds.",
            "expected: -1/2 is the usual NTK statement for s = 1/sqrt(m); with s = 1 and lr = 1/lambda_max(m H^cts), "
            "per-neuron movement scales as 1/m (as the [derived] movement bound), Frobenius as 1/sqrt(m).",
        ],
    }


def figures(df: Any, cfg: Config, directory: Any) -> list[str]:
    from . import plots

    ex = fits(df, cfg)
    fig, axes = plots.new_figure(ncols=2)
    for c, q in enumerate(("max_movement", "frobenius_movement")):
        ax = axes[0][c]
        for i, e in enumerate(x for x in ex if x["quantity"] == q):
            label = f"{e['activation']}, s={e['scaling']} (exp. {e['expected']:g})"
            plots.plot_width_fit(ax, e, label, plots.COLOURS[i % len(plots.COLOURS)])
        ylabel = "max_t max_r ||w_r(t) - w_r(0)||_2" if q == "max_movement" else "||W(T) - W(0)||_F"
        plots.log_axes(ax, "width m", ylabel, f"n = {cfg.n}, d = {cfg.d}, {cfg.init} init")
    return [plots.save(fig, directory, "lazy_movement")]
