"""Experiment ``kernel``: how close is the finite-width kernel to H^cts? (docs/theory.md sections 3-4)

For each width m, activation and seed:

- ||H(W(0)) / (m s^2) - H^cts||_op = ||H^dis(W(0)) - H^cts||_op, relative to
  lambda (expected slope -1/2 in m: a mean of m independent terms);
- for the widths in ``train_widths``, lambda_min(H^dis(W(t))) along a GD run
  (recorded every ``record_every`` steps), beside lambda and lambda / 2 (the
  proof needs lambda_min(H(W(t))) >= m s^2 lambda / 2).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from ..core import kernels
from ._common import cost_by_width, dataset, once_per_table, train_safely
from .config import Activation, Scaling, TrainingConfig
from .fitting import width_fit

name = "kernel"
description = "||H^dis(W(0)) - H^cts||_op against m, and lambda_min(H^dis(W(t))) along training."

EXPECTED_SLOPE = -0.5


class Config(TrainingConfig):
    name = "kernel"
    version = 1

    n: int = Field(32, ge=2)
    widths: list[int] = Field(default_factory=lambda: [64, 256, 1024, 4096, 16384, 65536])
    train_widths: list[int] = Field(default_factory=lambda: [1024, 16384])
    activations: list[Activation] = Field(default_factory=lambda: ["exp", "relu"], min_length=1)
    scaling: Scaling = "none"
    max_steps: int = Field(2000, ge=1)
    record_every: int = Field(20, ge=1)
    n_boot: int = Field(1000, ge=0)


PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "n": 16,
        "widths": [64, 256, 1024, 4096, 16384],
        "train_widths": [1024],
        "seeds": [0, 1, 2],
        "max_steps": 1000,
    },
    "full": {
        "n": 32,
        "widths": [64, 256, 1024, 4096, 16384, 65536, 262144],
        "train_widths": [1024, 16384],
        "seeds": [0, 1, 2, 3, 4, 5, 6, 7],
        "max_steps": 2000,
    },
    "tiny": {
        "n": 6,
        "d": 4,
        "widths": [64, 256, 1024],
        "train_widths": [256],
        "seeds": [0, 1],
        "activations": ["exp"],
        "max_steps": 200,
        "record_every": 20,
        "epsilon": 1e-2,
        "n_boot": 50,
    },
}


def tasks(cfg: Config) -> list[tuple[dict[str, Any], int]]:
    return [({"activation": a, "m": m}, s) for a in cfg.activations for m in cfg.widths for s in cfg.seeds]


#: Relative work of a run: its width.
cost = cost_by_width


def run_one(cfg: Config, params: dict[str, Any], seed: int) -> dict[str, Any]:
    X, y = dataset(cfg.n, cfg.d, seed, cfg.label_kind)
    H_cts = kernels.ntk(X, activation=params["activation"])
    lam = kernels.lambda_min(H_cts)
    net = cfg.network(params["m"], seed, params["activation"], cfg.scaling)
    H0 = kernels.empirical_ntk(net, X, average=True)  # H^dis(W(0))
    dev = kernels.operator_norm(H0 - H_cts)
    row: dict[str, Any] = {
        "lambda": float(lam),
        "deviation": float(dev),
        "relative_deviation": float(dev / lam),
        "lambda_min_init": float(kernels.lambda_min(H0)),
        "trained": False,
        "kernel_step": [],
        "kernel_lambda_min": [],
        "kernel_deviation": [],
    }
    if params["m"] in cfg.train_widths:
        result, _ = train_safely(
            net, X, y, epsilon=cfg.epsilon, max_steps=cfg.max_steps, record_every=cfg.record_every, track_movement=False
        )
        h = result.history
        row.update(
            trained=True,
            converged=bool(result.converged),
            kernel_step=[int(t) for t in h.kernel_step],
            kernel_lambda_min=[float(v) for v in h.kernel_lambda_min],
            kernel_deviation=[float(v) for v in h.kernel_deviation],
            min_lambda_min=float(np.min(h.kernel_lambda_min)),
        )
    return row


def fits(df: Any, cfg: Config) -> list[dict[str, Any]]:
    """Per activation: geometric mean over seeds of the relative deviation per m and its fitted slope (once per table)."""
    return once_per_table(df, cfg, "kernel-fits", lambda: _fits(df, cfg))


def _fits(df: Any, cfg: Config) -> list[dict[str, Any]]:
    return [
        {"activation": act, **width_fit(g, "relative_deviation", cfg.n_boot)}
        for act, g in df.groupby("activation", sort=True)
    ]


def summarise(df: Any, cfg: Config) -> dict[str, Any]:
    headline, rows = {}, []
    for e in fits(df, cfg):
        headline[f"{e['activation']}: slope of ||H^dis(W(0)) - H^cts||_op vs m"] = (
            f"{e['fit']} (expected {EXPECTED_SLOPE:g})"
        )
        rows.append(
            {
                "activation": e["activation"],
                "slope [90% CI]": str(e["fit"]),
                "expected": EXPECTED_SLOPE,
                **{f"m={m}": f"{v:.3g}" for m, v in zip(e["m"], e["values"], strict=True)},
            }
        )
    trained = df[df.trained.astype(bool)] if "trained" in df else df.iloc[:0]
    lam_rows = [
        {
            "activation": a,
            "m": int(m),
            "lambda (median)": float(g["lambda"].median()),
            "min_t lambda_min(H^dis(W(t))) (median)": float(g.min_lambda_min.median()),
            "runs keeping >= lambda/2": f"{int((g.min_lambda_min >= g['lambda'] / 2).sum())}/{len(g)}",
        }
        for (a, m), g in trained.groupby(["activation", "m"], sort=True)
    ]
    return {
        "headline": headline,
        "tables": {
            "relative kernel deviation ||H^dis(W(0)) - H^cts|| / lambda": rows,
            "lambda_min along training": lam_rows,
        },
    }


def figures(df: Any, cfg: Config, directory: Any) -> list[str]:
    from . import plots

    fig, axes = plots.new_figure(ncols=2)
    ax = axes[0][0]
    for i, e in enumerate(fits(df, cfg)):
        plots.plot_width_fit(ax, e, e["activation"], plots.COLOURS[i])
    ax.axhline(0.5, color="k", linestyle=":", linewidth=0.8, label="lambda/2 (lazy threshold)")
    plots.log_axes(
        ax, "width m", "||H^dis(W(0)) - H^cts||_op / lambda", f"n = {cfg.n}, d = {cfg.d} (expected slope -1/2)"
    )
    ax = axes[0][1]
    trained = df[df.trained.astype(bool)] if "trained" in df else df.iloc[:0]
    for i, ((act, m), g) in enumerate(trained.groupby(["activation", "m"], sort=True)):
        row = g.sort_values("seed").iloc[0]
        c = plots.COLOURS[i % len(plots.COLOURS)]
        steps = np.asarray(row.kernel_step, dtype=float)
        ax.plot(
            steps + 1, np.asarray(row.kernel_lambda_min) / row["lambda"], marker=".", color=c, label=f"{act}, m = {m}"
        )
    ax.axhline(1.0, color="k", linewidth=0.8, label="lambda_min(H^cts)")
    ax.axhline(0.5, color="k", linestyle=":", linewidth=0.8, label="lambda / 2")
    plots.log_axes(
        ax, "step t + 1", "lambda_min(H^dis(W(t))) / lambda", "smallest eigenvalue along training (one seed)", y=False
    )
    return [plots.save(fig, directory, "kernel_deviation")]
