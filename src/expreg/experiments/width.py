"""Experiment ``width``: how wide must the network be as n grows? (MATH.md 6)

For each n, activation, initialisation, scaling and seed, two searches over
a geometric grid of widths (``search.smallest_passing``: doubling, then
bisection; the neurons of a seed are nested across widths, neuron r depends
only on (seed, r)):

- m_conv(seed): the smallest grid width (up to ``m_max_conv``) at which GD
  reaches ||u - y||_2 <= epsilon within ``max_steps`` (divergence counts as
  failure);
- m_lazy(seed): the smallest grid width whose run stays in the proof's regime,
  sup_t ||H^dis(W(t)) - H^cts||_op <= lambda / 2, the sup taken over t = 0 and
  every ``lazy_record_every`` steps of a run of at most ``lazy_max_steps``
  steps (a width failing at t = 0 is rejected without training).

m*_conv(n) is the smallest width at which at least ``quantile`` (90%) of the
seeds converge: under monotonicity in m, the ceil(0.9 S)-th smallest
m_conv(seed). Same for m*_lazy(n). The exponents are slopes of log m*
against log n with a bootstrap interval over seeds (``fitting``), printed
next to the theorem's 2 ([paper]: m = n^{2+o(1)} for s = 1, coupled init).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field, field_validator, model_validator

from .. import kernels, theory
from ._common import dataset, network, train_safely
from .config import Activation, ExperimentConfig, Init, Scaling
from .fitting import bootstrap_slope, fit_loglog, order_statistic
from .search import geometric_grid, smallest_passing

name = "width"
description = "Smallest convergent width m*_conv(n) and smallest lazy width m*_lazy(n): fitted exponents vs the theorem's 2."

THEOREM_EXPONENT = 2.0


class Config(ExperimentConfig):
    name = "width"
    version = 1

    ns: list[int] = Field(default_factory=lambda: [8, 16, 32, 64], min_length=2)
    activations: list[Activation] = Field(default_factory=lambda: ["exp", "relu"], min_length=1)
    inits: list[Init] = Field(default_factory=lambda: ["coupled", "gaussian"], min_length=1)
    scalings: list[Scaling] = Field(default_factory=lambda: ["none", "ntk"], min_length=1)
    epsilon: float = Field(1e-2, gt=0)
    max_steps: int = Field(2000, ge=1)
    m_min: int = Field(2, ge=2)
    m_max: int = Field(2**18, ge=2)
    m_max_conv: int = Field(2**14, ge=2, description="largest width the convergence search tries (each failing probe costs max_steps steps)")
    grid_ratio: float = Field(2**0.5, gt=1, le=16)
    lazy: bool = True
    lazy_max_steps: int = Field(300, ge=1)
    lazy_record_every: int = Field(25, ge=1)
    quantile: float = Field(0.9, gt=0, le=1)
    n_boot: int = Field(1000, ge=0)

    @field_validator("ns")
    @classmethod
    def _ns(cls, v: list[int]) -> list[int]:
        if min(v) < 2 or sorted(set(v)) != list(v):
            raise ValueError(f"ns must be distinct increasing integers >= 2, got {v}")
        return v

    @model_validator(mode="after")
    def _grid(self) -> "Config":
        geometric_grid(self.m_min, self.m_max, self.grid_ratio)
        return self


PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"ns": [4, 8, 16, 32], "d": 16, "seeds": [0, 1, 2], "max_steps": 1500, "m_max": 2**16, "grid_ratio": 2.0,
              "inits": ["coupled"], "scalings": ["none"], "lazy_max_steps": 150, "lazy_record_every": 50},
    "full": {"ns": [8, 16, 32, 64], "d": 16, "seeds": [0, 1, 2, 3, 4], "max_steps": 3000, "m_max": 2**18,
             "grid_ratio": 2**0.5, "lazy_max_steps": 100, "lazy_record_every": 25},
    "tiny": {"ns": [3, 6], "d": 4, "seeds": [0, 1], "activations": ["exp"], "inits": ["coupled"], "scalings": ["none"],
             "max_steps": 600, "m_max": 2**12, "m_max_conv": 2**10, "grid_ratio": 2.0, "lazy_max_steps": 60, "lazy_record_every": 30, "n_boot": 50},
}


def tasks(cfg: Config) -> list[tuple[dict[str, Any], int]]:
    """One task per (activation, init, scaling, n, seed): both searches run inside it."""
    return [({"activation": a, "init": i, "scaling": s, "n": n}, seed)
            for a in cfg.activations for i in cfg.inits for s in cfg.scalings for n in cfg.ns for seed in cfg.seeds]


def run_one(cfg: Config, params: dict[str, Any], seed: int) -> dict[str, Any]:
    act, init, scaling, n = params["activation"], params["init"], params["scaling"], params["n"]
    X, y = dataset(n, cfg.d, seed, cfg.label_kind)
    H_cts = kernels.ntk(X, act)
    lam = kernels.lambda_min(H_cts)
    grid = geometric_grid(cfg.m_min, cfg.m_max, cfg.grid_ratio)

    def converges(m: int) -> bool:
        result, diverged = train_safely(network(cfg.d, m, seed, act, init, scaling), X, y, epsilon=cfg.epsilon,
                                        max_steps=cfg.max_steps, record_every=0, track_movement=False)
        return result.converged and not diverged

    def lazy(m: int) -> bool:
        net = network(cfg.d, m, seed, act, init, scaling)
        if kernels.operator_norm(kernels.empirical_ntk(net, X, average=True) - H_cts) > lam / 2:
            return False
        result, diverged = train_safely(net, X, y, epsilon=cfg.epsilon, max_steps=cfg.lazy_max_steps,
                                        record_every=cfg.lazy_record_every, track_movement=False)
        return not diverged and max(result.history.kernel_deviation) <= lam / 2

    i_conv, probes_conv = smallest_passing([m for m in grid if m <= cfg.m_max_conv], converges)
    row: dict[str, Any] = {
        "lambda": float(lam),
        "m_conv": float(grid[i_conv]) if i_conv is not None else math.nan,
        "probes_conv": probes_conv,
        "theorem_log10_m": float(theory.required_width(n, lam, 0.1).log10_m) if act == "exp" else math.nan,
    }
    if cfg.lazy:
        i_lazy, probes_lazy = smallest_passing(grid, lazy)
        row.update(m_lazy=float(grid[i_lazy]) if i_lazy is not None else math.nan, probes_lazy=probes_lazy)
    else:
        row.update(m_lazy=math.nan, probes_lazy=0)
    return row


VARIANT = ["activation", "init", "scaling"]


def _seed_table(g: Any, column: str, ns: list[int], seeds: list[int]) -> np.ndarray:
    """(len(ns), len(seeds)) table of ``column`` (nan where missing)."""
    piv = g.pivot_table(index="n", columns="seed", values=column, aggfunc="first", dropna=False)
    return piv.reindex(index=ns, columns=seeds).to_numpy(dtype=float)


def exponents(df: Any, cfg: Config) -> list[dict[str, Any]]:
    """Per variant: m*(n) for both criteria, lambda(n), and the fitted exponents with bootstrap intervals."""
    out = []
    stat = order_statistic(cfg.quantile)
    for key, g in df.groupby(VARIANT, sort=True):
        ns = sorted(int(v) for v in set(g.n))
        seeds = sorted(int(v) for v in set(g.seed))
        entry: dict[str, Any] = dict(zip(VARIANT, key))
        entry["n"] = ns
        entry["lambda"] = [float(np.median(g[g.n == n]["lambda"])) for n in ns]
        entry["lambda_fit"] = fit_loglog(np.array(ns), np.array(entry["lambda"]))
        entry["theorem_log10_m"] = [float(np.median(g[g.n == n]["theorem_log10_m"])) for n in ns]
        for crit in ("conv", "lazy"):
            table = _seed_table(g, f"m_{crit}", ns, seeds)
            entry[f"m_{crit}"] = [stat(row) for row in table]
            entry[f"m_{crit}_seeds"] = table
            entry[f"fit_{crit}"] = bootstrap_slope(np.array(ns, dtype=float), table, stat, n_boot=cfg.n_boot)
        out.append(entry)
    return out


def _fmt_m(v: float, m_max: int) -> str:
    return f"> {m_max}" if not math.isfinite(v) else f"{int(v)}"


def summarise(df: Any, cfg: Config) -> dict[str, Any]:
    headline: dict[str, str] = {}
    fits, per_n = [], []
    for e in exponents(df, cfg):
        label = f"{e['activation']}, {e['init']}, {e['scaling']}"
        for crit in ("conv", "lazy"):
            f = e[f"fit_{crit}"]
            headline[f"{label}: m*_{crit} ~ n^a, a ="] = f"{f} (theorem: {THEOREM_EXPONENT:g})"
        fits.append({"activation": e["activation"], "init": e["init"], "scaling": e["scaling"],
                     "exponent m*_conv [90% CI]": str(e["fit_conv"]), "exponent m*_lazy [90% CI]": str(e["fit_lazy"]),
                     "exponent of lambda(n)": f"{e['lambda_fit'].slope:.2f}", "theorem": THEOREM_EXPONENT})
        for i, n in enumerate(e["n"]):
            per_n.append({"activation": e["activation"], "init": e["init"], "scaling": e["scaling"], "n": n,
                          "lambda": e["lambda"][i], "m*_conv": _fmt_m(e["m_conv"][i], cfg.m_max_conv),
                          "m*_lazy": _fmt_m(e["m_lazy"][i], cfg.m_max) if cfg.lazy else "-",
                          "theorem's m [derived], log10": f"{e['theorem_log10_m'][i]:.1f}" if e["activation"] == "exp" else "-"})
    return {"headline": headline, "tables": {"fitted exponents": fits, "m* per n": per_n},
            "notes": [f"m* = smallest grid width (ratio {cfg.grid_ratio:.3g}, {cfg.m_min}..{cfg.m_max}) at which >= {cfg.quantile:.0%} of "
                      f"{len(cfg.seeds)} seeds pass; intervals: 90% bootstrap over seeds ({cfg.n_boot} resamples).",
                      "with few seeds the 90% order statistic is the largest seed's m*, so the bootstrap interval's upper end "
                      "often equals the point estimate.",
                      "theorem's m [derived]: MATH.md 5 full form with delta = 0.1 (s = 1, coupled init; shown for every exp variant).",
                      "theorem exponent 2: [paper] m = n^{2+o(1)} log(n/delta) for s = 1 and coupled init; "
                      "[derived] about 4 for gaussian init or s = 1/sqrt(m) (MATH.md 1)."]}


def figures(df: Any, cfg: Config, directory: Any) -> list[str]:
    from . import plots

    ex = exponents(df, cfg)
    acts = sorted(set(df.activation))
    fig, axes = plots.new_figure(ncols=2, nrows=len(acts))
    markers = {"coupled": "o", "gaussian": "s"}
    for r, act in enumerate(acts):
        for c, crit in enumerate(("conv", "lazy")):
            ax = axes[r][c]
            for i, e in enumerate(x for x in ex if x["activation"] == act):
                ns = np.array(e["n"], dtype=float)
                colour = plots.COLOURS[i % len(plots.COLOURS)]
                seeds_tab = e[f"m_{crit}_seeds"]
                sx = np.repeat(ns, seeds_tab.shape[1])
                plots.plot_power_law(ax, ns, np.array(e[f"m_{crit}"]), e[f"fit_{crit}"], f"{e['init']}, s={e['scaling']}", colour,
                                     markers.get(e["init"], "o"), scatter=(sx, seeds_tab.ravel()))
            ref = np.array([min(cfg.ns), max(cfg.ns)], dtype=float)
            y_ref = np.nanmin([np.nanmin(np.where(np.isfinite(e[f"m_{crit}"]), e[f"m_{crit}"], np.nan)) for e in ex
                               if e["activation"] == act] or [1.0])
            if np.isfinite(y_ref):
                ax.plot(ref, y_ref * (ref / ref[0]) ** THEOREM_EXPONENT, color="k", linestyle=":", label="slope 2 (theorem)")
            what = "m*_conv: GD reaches epsilon" if crit == "conv" else "m*_lazy: sup_t ||H^dis - H^cts|| <= lambda/2"
            plots.log_axes(ax, "n (data points)", f"m* ({cfg.quantile:.0%} of seeds)", f"{act}: {what}")
    stems = [plots.save(fig, directory, "width_exponents")]
    fig, axes = plots.new_figure()
    ax = axes[0][0]
    for i, act in enumerate(acts):
        e = next(x for x in ex if x["activation"] == act)
        plots.plot_power_law(ax, np.array(e["n"], dtype=float), np.array(e["lambda"]), e["lambda_fit"], f"lambda, {act}", plots.COLOURS[i])
    plots.log_axes(ax, "n (data points)", "lambda = lambda_min(H^cts) (median over seeds)", f"d = {cfg.d}")
    stems.append(plots.save(fig, directory, "width_lambda"))
    return stems
