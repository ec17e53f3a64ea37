"""Figures of the ``width`` experiment, one function per figure (docs/theory.md section 6).

- ``width_thresholds``: per-seed intervals against n, censored seeds marked, per-n q-quantile, fitted line;
- ``width_local_exponents``: local exponents over windows of n;
- ``width_lambda``: lambda(n) per design;
- ``width_law``: observed cell medians against each law's prediction (fitted on every row).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import plots
from .width_analysis import THEOREM_EXPONENT, fmt_coef, label, per_n_quantile
from .width_laws import LAWS
from .width_predict import fit_law, law_observations, predict_log
from .width_rules import PROOF

#: Criteria shown in the threshold figures.
SHOWN = (PROOF, "op1_2", "eig1_2", "conv")


def _intervals(ax: Any, a: dict[str, Any], colour: str, k: int) -> None:
    """Per-seed intervals (vertical lines) and right-censored seeds (^) of one variant."""
    obs = a["obs"]
    x = obs["n"] * np.exp((np.random.default_rng(k).random(obs["n"].size) - 0.5) * 0.15)
    fin = np.isfinite(obs["upper"])
    low = np.maximum(obs["lower"], obs["upper"] / 64, where=fin, out=obs["lower"].copy())
    ax.vlines(x[fin], np.maximum(low[fin], 1), obs["upper"][fin], color=colour, alpha=0.25, linewidth=1)
    if (~fin).any():
        ax.scatter(x[~fin], obs["lower"][~fin], marker="^", s=14, color=colour, alpha=0.6)


def _quantiles(ax: Any, a: dict[str, Any], cfg: Any, colour: str, name: str) -> None:
    """The per-n q-quantile with its interval, and the fitted line, of one variant."""
    ns = np.array(a["ns"], dtype=float)
    qs = np.array([a["per_n"][int(n)][:3] for n in ns])
    if not isinstance(a["fit_n"], str) and ns.size > 1:
        name += f": a = {fmt_coef(a['fit_n'], 'log n')}"
        xs = np.geomspace(ns.min(), ns.max(), 30)
        ax.plot(xs, a["fit_n"].quantile(cfg.quantile, np.log(xs)), color=colour, linewidth=1.2)
    ok = np.isfinite(qs[:, 0])
    high = np.where(np.isfinite(qs[ok, 2]), qs[ok, 2], qs[ok, 0])
    ax.errorbar(
        ns[ok],
        qs[ok, 0],
        yerr=[qs[ok, 0] - qs[ok, 1], high - qs[ok, 0]],
        fmt="o",
        color=colour,
        markersize=4,
        capsize=2,
        label=name,
    )


def thresholds_figure(df: Any, an: list[Any], cfg: Any, directory: Any) -> str:
    """width_thresholds: one panel per shown criterion, one colour per variant."""
    shown = [c for c in SHOWN if any(c == r[0] for _k, _g, res in an for r in res)]
    fig, axes = plots.new_figure(ncols=max(1, len(shown)), nrows=1, width=5.0, height=4.2)
    for c, crit in enumerate(shown):
        ax = axes[0][c]
        for k, (key, _g, results) in enumerate(an):
            a: dict[str, Any] = next((r[2] for r in results if r[0] == crit), {})
            if "fit_n" not in a:
                continue
            colour = plots.COLOURS[k % len(plots.COLOURS)]
            _intervals(ax, a, colour, k)
            _quantiles(ax, a, cfg, colour, f"{key[2]}")
        plots.log_axes(
            ax,
            "n (data points)",
            f"width m (per-seed interval; ^ censored; o = q{cfg.quantile:.0%})",
            f"{crit}: {label(crit)}",
        )
    return plots.save(fig, directory, "width_thresholds")


def local_figure(an: list[Any], cfg: Any, directory: Any) -> str:
    """width_local_exponents: local exponents of the proof's criterion and of eig1_2 over windows of n."""
    fig, axes = plots.new_figure(ncols=2, nrows=1, width=5.0, height=4.0)
    for c, crit in enumerate((PROOF, "eig1_2")):
        ax = axes[0][c]
        for k, (key, _g, results) in enumerate(an):
            a: dict[str, Any] = next((r[2] for r in results if r[0] == crit), {})
            loc = [e for e in a.get("local", []) if all(math.isfinite(v) for v in (e.slope, e.low, e.high))]
            if not loc:
                continue
            xc, ys = np.array([e.n_centre for e in loc]), np.array([e.slope for e in loc])
            err = [ys - np.array([e.low for e in loc]), np.array([e.high for e in loc]) - ys]
            ax.errorbar(
                xc * (1 + 0.03 * k),
                ys,
                yerr=err,
                fmt="o-",
                color=plots.COLOURS[k % len(plots.COLOURS)],
                markersize=4,
                capsize=2,
                label=str(key[2]),
            )
        ax.axhline(THEOREM_EXPONENT, color="k", linestyle=":", label="theorem: 2")
        plots.log_axes(
            ax,
            "n (window centre)",
            f"local exponent [{cfg.level:.0%}]",
            f"{crit}: windows [n, {cfg.window:g} n]",
            y=False,
        )
    return plots.save(fig, directory, "width_local_exponents")


def lambda_figure(df: Any, directory: Any) -> str:
    """width_lambda: the median lambda(n) of each design."""
    fig, axes = plots.new_figure()
    ax = axes[0][0]
    for k, (design, g) in enumerate(df.groupby("design", sort=False)):
        med = g.groupby("n")["lambda"].median()
        ax.plot(
            med.index.to_numpy(float),
            med.to_numpy(float),
            "o-",
            color=plots.COLOURS[k % len(plots.COLOURS)],
            label=str(design),
        )
    plots.log_axes(ax, "n (data points)", "lambda = lambda_min(H^cts) (median over seeds)", "lambda(n)")
    return plots.save(fig, directory, "width_lambda")


def law_figure(df: Any, cfg: Any, directory: Any) -> str | None:
    """width_law: per cell, the observed median of the proof's m* against each law's median prediction."""
    obs = law_observations(df, PROOF)
    if len(set(obs["design"])) < 2:
        return None
    fig, axes = plots.new_figure(ncols=len(LAWS), nrows=1, width=4.4, height=4.2)
    for c, law in enumerate(LAWS.values()):
        ax = axes[0][c]
        try:
            pred = predict_log(law, fit_law(law, obs, level=None), obs)  # type: ignore[arg-type]
        except ValueError:
            continue
        designs = list(dict.fromkeys(obs["design"]))
        for cell in dict.fromkeys(obs["cell"]):
            at = obs["cell"] == cell
            p = per_n_quantile(
                {k: (v[at] if isinstance(v, np.ndarray) else v) for k, v in obs.items()},
                int(obs["n"][at][0]),
                0.5,
                cfg.level,
            )
            if math.isfinite(p.median):
                k = designs.index(obs["design"][at][0])
                ax.scatter(
                    math.exp(float(np.median(pred[at]))), p.median, s=14, color=plots.COLOURS[k % len(plots.COLOURS)]
                )
        lim = ax.get_xlim()
        ax.plot(lim, lim, color="k", linestyle=":")
        plots.log_axes(ax, "predicted median width", f"observed median m*_{PROOF}", f"{law.name}: {law.formula}")
    return plots.save(fig, directory, "width_law")


def all_figures(df: Any, an: list[Any], cfg: Any, directory: Any) -> list[str]:
    """Every width figure of rows prepared by ``width_analysis.with_design``; their stems."""
    stems = [thresholds_figure(df, an, cfg, directory), local_figure(an, cfg, directory), lambda_figure(df, directory)]
    law = law_figure(df, cfg, directory) if f"{PROOF}_lower" in df else None  # GD-only rows: no law to show
    return stems + ([law] if law else [])
