"""Analysis of the ``width`` experiment: censored fits of the per-seed thresholds, tables, figures.

Each seed's threshold is an interval (lower, upper] (``thresholds``); a seed
whose scan reached its cap without a stable pass is right-censored (upper =
inf) and kept. For each (activation, init, d) and criterion:

- exponent of m* on n: ``censored.fit_censored`` of log m* = b0 + a log n + sigma eps,
  with a profile-likelihood interval at ``level``; beside it the exponent of
  m* lambda^2 (the theorem's width scales with lambda^-2);
- pooled over d: log m* = b0 + a log n + b log lambda + sigma eps;
- local exponents over windows [n0, window n0] (``censored.local_exponents``);
- per n: the q-quantile width m*_q(n) of a lognormal fitted to that n's
  intervals alone (no power law assumed), with its profile interval.

The theorem's [paper] exponent 2 is at fixed lambda; the [derived] sufficient
width (``theory.required_width``, with lambda(n) and the e^B factors) is
fitted against n over the same range.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ..core.activations import ACTIVATIONS
from ._common import once_per_table
from .censored import CensoredFit, fit_censored, local_exponents, profile_interval, quantile_interval
from .fitting import format_estimate
from .search import geometric_grid
from .width import eig_passes, op_passes

THEOREM_EXPONENT = 2.0
VARIANT = ["activation", "init", "d"]
LABELS = {
    "op": "||H^dis - H^cts||_op <= lambda/2",
    "eig": "lambda_min(H^dis) >= lambda/2",
    "conv": "GD reaches epsilon",
}


def observations(g: Any, crit: str, scaling_index: int = 0) -> dict[str, Any]:
    """Arrays n, lower, upper, lambda of criterion ``crit`` ("op", "eig", "conv") over the rows of ``g``.

    Rows without the criterion (conv not run) are left out; so are rows whose
    interval is (0, inf) (passed at the first grid width, failed at the cap:
    no information), counted in ``uninformative``. Rows are taken in (n, d,
    seed) order, not the order runs finished in, so every fit sees the same
    arrays for the same results.
    """
    order = [c for c in ("n", "d", "seed") if c in g]
    if order:
        g = g.sort_values(order, kind="stable")
    if crit == "conv":
        if "conv_lower" not in g:
            return {
                "n": np.empty(0),
                "lower": np.empty(0),
                "upper": np.empty(0),
                "lambda": np.empty(0),
                "uninformative": 0,
            }
        sub = g[g["conv_lower"].map(lambda v: isinstance(v, (list, np.ndarray)) and len(v) > scaling_index)]
        lower = np.array([v[scaling_index] for v in sub["conv_lower"]], dtype=float)
        upper = np.array([v[scaling_index] for v in sub["conv_upper"]], dtype=float)
    else:
        sub = g
        lower = sub[f"{crit}_lower"].to_numpy(float)
        upper = sub[f"{crit}_upper"].to_numpy(float)
    n = sub["n"].to_numpy(float)
    lam = sub["lambda"].to_numpy(float)
    keep = ~((lower == 0) & np.isinf(upper))
    return {
        "n": n[keep],
        "lower": lower[keep],
        "upper": upper[keep],
        "lambda": lam[keep],
        "uninformative": int((~keep).sum()),
    }


def _safe_fit(
    lower: np.ndarray, upper: np.ndarray, X: np.ndarray, names: tuple[str, ...], level: float
) -> CensoredFit | str:
    """The censored fit, or the reason it cannot be made (a one-line message)."""
    try:
        return fit_censored(lower, upper, X, names=names, level=level)
    except ValueError as exc:
        return str(exc)


def _fmt_coef(fit: CensoredFit | str, name: str) -> str:
    if isinstance(fit, str):
        return f"n/a ({fit})"
    i = fit.names.index(name)
    lo, hi = fit.intervals[i]
    return format_estimate(fit.coef[i], lo, hi)


def _width_of(fit: CensoredFit | str, name: str) -> float:
    if isinstance(fit, str):
        return math.nan
    lo, hi = fit.intervals[fit.names.index(name)]
    return float(hi - lo)


class PerN(NamedTuple):
    """The fitted q-quantile of m* at one n, with what censoring left of the data."""

    point: float
    low: float
    high: float
    #: Seeds right-censored (no stable pass by the cap) ...
    censored: int
    #: ... of this many.
    seeds: int
    #: Seeds left-censored at the bottom of the grid (threshold <= ``floor``).
    floored: int = 0
    floor: float = math.nan


def per_n_quantile(obs: dict[str, np.ndarray], n: int, q: float, level: float) -> PerN:
    """m*_q at one n from an intercept-only censored lognormal fit (nan where the fit fails)."""
    at = obs["n"] == n
    lo, up = obs["lower"][at], obs["upper"][at]
    censored = int(np.isinf(up).sum())
    if at.sum() == 0:
        return PerN(math.nan, math.nan, math.nan, 0, 0)
    floored = lo <= 0
    floor = float(up[floored].max()) if floored.any() else math.nan
    counts = (censored, int(at.sum()), int(floored.sum()), floor)
    try:
        fit = fit_censored(lo, up, np.zeros((lo.size, 0)), names=("intercept",), level=None)
        point, low, high = quantile_interval(fit, q, np.zeros((1, 0)), level=level)
        return PerN(float(point[0]), float(low[0]), float(high[0]), *counts)
    except ValueError:
        return PerN(math.nan, math.nan, math.nan, *counts)


def analyse_variant(g: Any, crit: str, cfg: Any, scaling_index: int = 0) -> dict[str, Any]:
    """Every fit of one criterion for one variant's rows ``g`` (see the module docstring)."""
    obs = observations(g, crit, scaling_index)
    out: dict[str, Any] = {"obs": obs, "ns": sorted({int(v) for v in obs["n"]})}
    if obs["n"].size == 0:
        return out
    logn, loglam = np.log(obs["n"]), np.log(obs["lambda"])
    lam2 = obs["lambda"] ** 2
    out["fit_n"] = _safe_fit(obs["lower"], obs["upper"], logn, ("intercept", "log n"), cfg.level)
    out["fit_lam2"] = _safe_fit(obs["lower"] * lam2, obs["upper"] * lam2, logn, ("intercept", "log n"), cfg.level)
    out["fit_n_lambda"] = _safe_fit(
        obs["lower"], obs["upper"], np.column_stack([logn, loglam]), ("intercept", "log n", "log lambda"), cfg.level
    )
    try:
        out["local"] = local_exponents(obs["n"], obs["lower"], obs["upper"], window=cfg.window, level=cfg.level)
    except ValueError:
        out["local"] = []
    out["per_n"] = {n: per_n_quantile(obs, n, cfg.quantile, cfg.level) for n in out["ns"]}
    return out


def analysed(df: Any, cfg: Any, key: tuple[Any, ...], crit: str, scaling_index: int = 0) -> dict[str, Any]:
    """``analyse_variant`` of the rows of variant ``key`` (activation, init, d), computed once per table.

    ``summarise`` and ``figures`` both need every fit (``once_per_table``), so a
    report fits each (variant, criterion) once.
    """

    def compute() -> dict[str, Any]:
        g = df[(df.activation == key[0]) & (df.init == key[1]) & (df.d == key[2])]
        return analyse_variant(g, crit, cfg, scaling_index)

    return once_per_table(df, cfg, ("width", tuple(key), crit, scaling_index), compute)


def pooled_over_d(df: Any, crit: str, cfg: Any) -> dict[tuple[str, str], CensoredFit | str]:
    """Per (activation, init): log m* on log n and log lambda, every d together."""
    out = {}
    for (act, init), g in df.groupby(["activation", "init"], sort=True):
        obs = observations(g, crit)
        if obs["n"].size == 0 or g["d"].nunique() < 2:
            continue
        X = np.column_stack([np.log(obs["n"]), np.log(obs["lambda"])])
        out[(act, init)] = _safe_fit(obs["lower"], obs["upper"], X, ("intercept", "log n", "log lambda"), cfg.level)
    return out


def theorem_slope(g: Any) -> float:
    """Least-squares slope of log m_theorem [derived] (with lambda(n) and e^B) on log n over the rows."""
    v = g["theorem_log10_m"].to_numpy(float) * math.log(10)
    n = g["n"].to_numpy(float)
    ok = np.isfinite(v)
    if np.unique(n[ok]).size < 2:
        return math.nan
    return float(np.polyfit(np.log(n[ok]), v[ok], 1)[0])


def _criteria(cfg: Any) -> list[tuple[str, int, str]]:
    """(criterion, scaling index, label) of every analysed criterion."""
    out = [("op", 0, "op"), ("eig", 0, "eig")]
    if cfg.conv:
        out += [("conv", i, f"conv, s={s}") for i, s in enumerate(cfg.scalings)]
    return out


def _fmt_m(m: PerN, cap: float, q: float) -> str:
    """One cell of the "m* per n" table: the q-quantile and its interval, or what the censored data bound it by.

    Where the fit fails: "> cap" when seeds were right-censored; "<= floor" when at least a fraction q of
    the seeds passed at the bottom of the grid (so the q-quantile lies there); "-" otherwise.
    """
    tail = f" ({m.censored}/{m.seeds} censored)" if m.censored else ""
    if not math.isfinite(m.point):
        if m.censored:
            return f"> {cap:.3g}{tail}"
        if m.seeds and m.floored >= q * m.seeds:
            return f"<= {m.floor:.3g} ({m.floored}/{m.seeds} at the grid floor)"
        return "-"
    hi = "inf" if not math.isfinite(m.high) else f"{m.high:.3g}"
    return f"{m.point:.3g} [{m.low:.3g}, {hi}]{tail}"


def _at_scaling(column: Any, i: int) -> np.ndarray:
    """Entry ``i`` (the i-th scaling) of each run's per-scaling list in ``column``, as floats; runs without one skipped."""
    return np.array([v[i] for v in column if isinstance(v, (list, np.ndarray)) and len(v) > i], dtype=float)


def _training_rows(df: Any, cfg: Any) -> list[dict[str, Any]]:
    """Along training at each seed's stable width: the criterion at t = 0, its worst value over the run, and how often it held."""
    rows = []
    spec: dict[str, tuple[str, str, str, Callable[[float], bool]]] = {
        "op": ("dev0", "sup_dev", "max", op_passes),
        "eig": ("eig0", "inf_eig", "min", eig_passes),
    }
    for crit, (k0, kt, worst, holds) in spec.items():
        if f"train_{crit}_{kt}" not in df:
            continue
        for (act, init, d, n), g in df.groupby(["activation", "init", "d", "n"], sort=True):
            for i, s in enumerate(cfg.scalings):
                v0, vt, conv, steps = (_at_scaling(g[f"train_{crit}_{k}"], i) for k in (k0, kt, "converged", "steps"))
                ok = np.isfinite(vt)
                if not ok.any():
                    continue
                ratio = vt[ok] / v0[ok]
                rows.append(
                    {
                        "activation": act,
                        "init": init,
                        "d": int(d),
                        "n": int(n),
                        "criterion": f"{crit}: {LABELS[crit]}",
                        "scaling": s,
                        "runs": int(ok.sum()),
                        "converged": int(np.nansum(conv)),
                        "steps (median)": int(np.median(steps[ok])),
                        "value / lambda at t=0 (median)": f"{np.median(v0[ok]):.3f}",
                        f"{worst} over training / lambda (median)": f"{np.median(vt[ok]):.3f}",
                        "largest relative change over training": f"{np.max(np.abs(ratio - 1)):.2e}",
                        "runs where it held at every record": int(sum(holds(v) for v in vt[ok])),
                    }
                )
    return rows


def summarise(df: Any, cfg: Any) -> dict[str, Any]:
    """Headline exponents, tables (fits, pooled fits, local exponents, m* per n, along training) and notes."""
    headline: dict[str, str] = {}
    fits, local, per_n = [], [], []
    for key, g in df.groupby(VARIANT, sort=True):
        act, init, d = key
        label = f"{act}, {init}, d={d}"
        covered = act in ACTIVATIONS and ACTIVATIONS[act].theorem  # the theorem's bounds hold for this activation
        thm = theorem_slope(g) if covered else math.nan
        # one entry per (criterion, scaling): "conv" repeats once per scaling, so not a dict keyed by criterion
        results = [(crit, name, analysed(df, cfg, key, crit, i)) for crit, i, name in _criteria(cfg)]
        for crit, name, a in results:
            if "fit_n" not in a:
                continue
            obs = a["obs"]
            ns = a["ns"]
            fits.append(
                {
                    "activation": act,
                    "init": init,
                    "d": int(d),
                    "criterion": name,
                    "n range": f"{min(ns)}..{max(ns)}",
                    "seeds": int(obs["n"].size),
                    "right-censored": int(np.isinf(obs["upper"]).sum()),
                    f"exponent of m* on n [{cfg.level:.0%}]": _fmt_coef(a["fit_n"], "log n"),
                    "exponent of m* lambda^2 on n": _fmt_coef(a["fit_lam2"], "log n"),
                    "m* ~ n^a lambda^b: a": _fmt_coef(a["fit_n_lambda"], "log n"),
                    "b": _fmt_coef(a["fit_n_lambda"], "log lambda"),
                    "sigma": f"{a['fit_n'].sigma:.2f}" if not isinstance(a["fit_n"], str) else "-",
                    "theorem [paper]": THEOREM_EXPONENT,
                    "[derived] bound's exponent here": f"{thm:.2f}" if math.isfinite(thm) else "-",
                }
            )
            if crit in ("op", "eig"):
                headline[f"{label}: m*_{crit} ({LABELS[crit]}) ~ n^a, a ="] = (
                    f"{_fmt_coef(a['fit_n'], 'log n')} over n = {min(ns)}..{max(ns)}; m* lambda^2 ~ n^{_fmt_coef(a['fit_lam2'], 'log n')}"
                )
            for e in a["local"]:
                local.append(
                    {
                        "activation": act,
                        "init": init,
                        "d": int(d),
                        "criterion": name,
                        "n window": f"{int(e.n_low)}..{int(e.n_high)}",
                        f"local exponent [{cfg.level:.0%}]": (
                            format_estimate(e.slope, e.low, e.high) if math.isfinite(e.slope) else f"n/a ({e.reason})"
                        ),
                        "right-censored": e.counts.get("right", 0),
                    }
                )
        for n in sorted({int(v) for v in g["n"]}):
            at = g[g["n"] == n]
            row = {
                "activation": act,
                "init": init,
                "d": int(d),
                "n": n,
                "seeds": len(at),
                "lambda (median)": f"{np.median(at['lambda']):.3g}",
            }
            for crit, name, a in results:
                if n in a.get("per_n", {}):
                    cap = cfg.m_max_conv if crit == "conv" else cfg.m_cap
                    row[f"m*_{name} q{cfg.quantile:.0%} [{cfg.level:.0%}]"] = _fmt_m(a["per_n"][n], cap, cfg.quantile)
            if covered:
                row["[derived] theorem width, log10"] = f"{np.median(at['theorem_log10_m']):.1f}"
            per_n.append(row)
    pooled = []
    for crit in ("op", "eig"):
        for (act, init), fit in pooled_over_d(df, crit, cfg).items():
            pooled.append(
                {
                    "activation": act,
                    "init": init,
                    "criterion": crit,
                    "ds": ", ".join(str(int(v)) for v in sorted(set(df.d))),
                    "a (log n)": _fmt_coef(fit, "log n"),
                    "b (log lambda)": _fmt_coef(fit, "log lambda"),
                    "sigma": f"{fit.sigma:.2f}" if not isinstance(fit, str) else "-",
                }
            )
            headline[f"{act}, {init}, all d: m*_{crit} ~ n^a lambda^b, (a; b) ="] = (
                f"{_fmt_coef(fit, 'log n')}; {_fmt_coef(fit, 'log lambda')} (theorem [paper]: a = 2 at fixed lambda; [derived]: b = -2)"
            )
    tables: dict[str, Any] = {
        "fitted exponents": fits,
        "pooled over d": pooled,
        "local exponents": local,
        "m* per n": per_n,
    }
    training = _training_rows(df, cfg)
    if training:
        tables["along training"] = training
    grid = geometric_grid(cfg.m_min, cfg.m_cap, cfg.grid_ratio)
    notes = [
        f"Thresholds per seed are intervals (earliest pass, stable pass] on the width grid (ratio {cfg.grid_ratio:.4g}, "
        f"{grid[0]}..{grid[-1]}); a scan stops once passes held over a factor {cfg.confirm_factor:g} of width, so a failure "
        "beyond that factor is not seen. Seeds with no stable pass by the cap are right-censored and kept.",
        f"Exponents: censored lognormal regression (maximum likelihood), {cfg.level:.0%} profile-likelihood intervals; "
        "valid under its model (log m* linear in log n, Gaussian scatter of constant sigma); local exponents test the first.",
        f"m*_q per n: the {cfg.quantile:.0%} quantile of a lognormal fitted to that n's intervals alone, {cfg.level:.0%} profile interval.",
        "Each (n, d, seed) task draws its own data and network (streams.derive): tasks are independent.",
        "theorem [paper]: m = n^{2+o(1)} log(n/delta) for s = 1 and coupled init (lambda fixed). "
        "[derived] bound: theory.required_width(n, lambda(n), delta = 0.1), whose growth with n includes lambda(n)^-2 and e^{4B}.",
        "These data say nothing outside the n, d and widths measured.",
    ]
    if cfg.conv:
        notes.append(
            f"conv: GD with lr = 1/lambda_max(H(W(0))), budget {cfg.budget_factor:g} x the kernel-predicted steps "
            f"(within {cfg.min_steps}..{cfg.max_steps}), widths up to {cfg.m_max_conv}, for n <= {cfg.conv_n_max}; "
            "diverged and out-of-budget widths are recorded per seed (conv_diverged, conv_budget)."
        )
    return {"headline": headline, "tables": tables, "notes": notes}


def figures(df: Any, cfg: Any, directory: Any) -> list[str]:
    """width_thresholds (per-seed intervals, censored marked, per-n quantile, fit), width_local, width_lambda."""
    from . import plots

    stems = []
    crits = [c for c in _criteria(cfg)]
    keys = [k for k, _ in df.groupby(VARIANT, sort=True)]
    fig, axes = plots.new_figure(ncols=len(crits), nrows=1, width=5.0, height=4.2)
    fig_l, axes_l = plots.new_figure(ncols=len(crits), nrows=1, width=5.0, height=4.0)
    for c, (crit, si, name) in enumerate(crits):
        ax, ax_l = axes[0][c], axes_l[0][c]
        anchor: tuple[float, float] | None = None
        for k, key in enumerate(keys):
            a = analysed(df, cfg, key, crit, si)
            if "fit_n" not in a:
                continue
            colour = plots.COLOURS[k % len(plots.COLOURS)]
            obs = a["obs"]
            jitter = np.exp((np.random.default_rng(k).random(obs["n"].size) - 0.5) * 0.15)
            x = obs["n"] * jitter
            fin = np.isfinite(obs["upper"])
            low = np.maximum(obs["lower"], obs["upper"] / 64, where=fin, out=obs["lower"].copy())
            ax.vlines(x[fin], np.maximum(low[fin], 1), obs["upper"][fin], color=colour, alpha=0.25, linewidth=1)
            if (~fin).any():
                ax.scatter(x[~fin], obs["lower"][~fin], marker="^", s=14, color=colour, alpha=0.6)
            ns = np.array(a["ns"], dtype=float)
            qs = np.array([a["per_n"][int(n)][:3] for n in ns])
            label = f"{key[0]}, {key[1]}, d={key[2]}"
            if not isinstance(a["fit_n"], str):
                label += f": a = {_fmt_coef(a['fit_n'], 'log n')}"
                xs = np.geomspace(ns.min(), ns.max(), 30)
                ax.plot(xs, a["fit_n"].quantile(cfg.quantile, np.log(xs)), color=colour, linewidth=1.2)
            ok = np.isfinite(qs[:, 0])
            if anchor is None and ok.any():
                anchor = (float(ns[ok][0]), float(qs[ok, 0][0]))
            ax.errorbar(
                ns[ok],
                qs[ok, 0],
                yerr=[qs[ok, 0] - qs[ok, 1], np.where(np.isfinite(qs[ok, 2]), qs[ok, 2], qs[ok, 0]) - qs[ok, 0]],
                fmt="o",
                color=colour,
                markersize=4,
                capsize=2,
                label=label,
            )
            loc = [e for e in a["local"] if math.isfinite(e.slope) and math.isfinite(e.low) and math.isfinite(e.high)]
            if loc:
                xc = np.array([e.n_centre for e in loc])
                ys = np.array([e.slope for e in loc])
                lo_ = np.array([e.low if math.isfinite(e.low) else e.slope for e in loc])
                hi_ = np.array([e.high if math.isfinite(e.high) else e.slope for e in loc])
                ax_l.errorbar(
                    xc * (1 + 0.03 * k),
                    ys,
                    yerr=[ys - lo_, hi_ - ys],
                    fmt="o-",
                    color=colour,
                    markersize=4,
                    capsize=2,
                    label=f"{key[0]}, {key[1]}, d={key[2]}",
                )
        if anchor is not None:
            ref = np.array([anchor[0], max(cfg.ns)], dtype=float)
            ax.plot(
                ref, anchor[1] * (ref / ref[0]) ** THEOREM_EXPONENT, color="k", linestyle=":", label="slope 2 (theorem)"
            )
        plots.log_axes(
            ax,
            "n (data points)",
            f"width m (per-seed interval; ^ censored; o = q{cfg.quantile:.0%})",
            f"{name}: {LABELS[crit.split(',')[0]]}",
        )
        if not ax_l.lines and not ax_l.containers:  # no window with a bounded interval: no empty panel
            fig_l.delaxes(ax_l)
            continue
        ax_l.axhline(THEOREM_EXPONENT, color="k", linestyle=":", label="theorem: 2")
        plots.log_axes(
            ax_l,
            "n (window centre)",
            f"local exponent [{cfg.level:.0%}]",
            f"{name}: over windows [n, {cfg.window:g} n] (windows with an unbounded interval left out)",
            y=False,
        )
    stems.append(plots.save(fig, directory, "width_thresholds"))
    if fig_l.axes:  # a figure whose every panel was empty is not drawn at all
        stems.append(plots.save(fig_l, directory, "width_local_exponents"))
    else:
        plots.pyplot().close(fig_l)
    fig, axes = plots.new_figure()
    ax = axes[0][0]
    for k, ((act, d), g) in enumerate(df.groupby(["activation", "d"], sort=True)):
        med = g.groupby("n")["lambda"].median()
        ax.plot(
            med.index.to_numpy(float),
            med.to_numpy(float),
            "o-",
            color=plots.COLOURS[k % len(plots.COLOURS)],
            label=f"{act}, d={d}",
        )
    plots.log_axes(ax, "n (data points)", "lambda = lambda_min(H^cts) (median over seeds)", "lambda(n)")
    stems.append(plots.save(fig, directory, "width_lambda"))
    return stems


__all__ = [
    "analyse_variant",
    "figures",
    "observations",
    "pooled_over_d",
    "profile_interval",
    "summarise",
    "theorem_slope",
]
