"""Analysis of the ``attention`` experiment: censored fits of the per-seed feature counts, tables, figures.

Each seed's m* is an interval (lower, upper] (``thresholds``), right-censored
at the scan's cap and kept. For each distribution, variant and criterion:

- exponents along each line through the centre: ``censored.fit_censored`` of
  log m* = b0 + a log x + sigma eps, x = n (at the centre's d and tau), d, or tau,
  with a profile-likelihood interval at ``level``;
- per cell (n, d, tau): the q-quantile m*_q of a lognormal fitted to that
  cell's intervals alone (``width_analysis.per_n_quantile``);
- the orthogonal variant's gain: log m* = cell effect + g [orthogonal] + sigma eps
  over every cross cell (both variants see the same queries and keys), the
  ratio m*_orth / m*_iid = e^g with its profile interval;
- side by side (self tasks): per n the quantiles of the attention thresholds,
  of the width criteria on H^dis and of the implied attention threshold,
  with the count of seeds where the proven bound op <= implied holds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._common import once_per_table
from .censored import CensoredFit, profile_interval
from .width_analysis import PerN, fmt_coef, per_n_quantile, safe_fit

LINES = {"n": "n", "d": "d", "temperature": "tau"}


def line_rows(df: Any, cfg: Any, dist: str, line: str) -> Any:
    """The cross rows of ``dist`` on one line through the centre (``line`` in ``LINES``)."""
    g = df[(df.pairing == "cross") & (df.dist == dist)]
    fixed = {"n": cfg.n_centre, "d": cfg.d_centre, "temperature": cfg.temperature_centre}
    for col, value in fixed.items():
        if col != line:
            g = g[np.isclose(g[col].to_numpy(float), value)]
    return g.sort_values([line, "variant", "seed"], kind="stable")


def bounds(g: Any, crit: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower, upper, keep) of criterion ``crit`` over rows ``g``; keep drops (0, inf) rows (no information)."""
    lo = g[f"{crit}_lower"].to_numpy(float)
    up = g[f"{crit}_upper"].to_numpy(float)
    return lo, up, ~((lo == 0) & np.isinf(up))


def line_exponent(g: Any, crit: str, line: str, level: float) -> CensoredFit | str:
    """Censored fit of log m* on log x along a line (rows ``g`` of one variant)."""
    lo, up, keep = bounds(g, crit)
    x = g[line].to_numpy(float)[keep]
    if np.unique(x).size < 2:
        return "fewer than two values on the line"
    return safe_fit(lo[keep], up[keep], np.log(x), ("intercept", f"log {LINES[line]}"), level)


def orthogonal_gain(df: Any, dist: str, crit: str, level: float) -> tuple[float, float, float, int] | str:
    """(m*_orth / m*_iid, low, high, cells) over every cross cell of ``dist``: cell effects plus an orthogonal indicator."""
    g = df[(df.pairing == "cross") & (df.dist == dist)]
    lo, up, keep = bounds(g, crit)
    keys = list(zip(g["n"].astype(float), g["d"].astype(float), g["temperature"].astype(float), strict=True))
    codes = {k: i for i, k in enumerate(sorted(set(keys)))}
    cells = np.array([codes[k] for k in keys], dtype=int)
    orth = (g["variant"] == "orthogonal").to_numpy(float)
    # a cell where every seed of both variants is censored on the same side says nothing about the ratio
    informative = {c for c in set(cells) if not (np.isinf(up[cells == c]).all() or (lo[cells == c] == 0).all())}
    sel = keep & np.array([c in informative for c in cells], dtype=bool)
    if orth[sel].min(initial=1) == orth[sel].max(initial=0):
        return "no cell with both variants informative"
    levels = sorted(informative)
    X = np.column_stack([orth] + [(cells == c).astype(float) for c in levels[1:]])[sel]
    names = ("intercept", "orthogonal", *(f"cell{j}" for j in range(1, len(levels))))
    fit = safe_fit(lo[sel], up[sel], X, names, None)
    if isinstance(fit, str):
        return fit
    low, high = profile_interval(fit, "orthogonal", level)
    return math.exp(fit.coef[1]), math.exp(low), math.exp(high), len(levels)


def cell_quantile(g: Any, crit: str, q: float, level: float) -> PerN:
    """m*_q of the rows ``g`` (one cell, one variant): the width analysis's per-n lognormal quantile."""
    lo, up, _ = bounds(g, crit)
    return per_n_quantile({"n": np.zeros(lo.size), "lower": lo, "upper": up}, 0, q, level)


def fmt_quantile(m: PerN, cap: float) -> str:
    """One table cell: 'q [low, high]', or what the censored data bound it by."""
    tail = f" ({m.censored}/{m.seeds} censored)" if m.censored else ""
    if not math.isfinite(m.point):
        if m.censored:
            return f"> {cap:.3g}{tail}"
        return f"<= {m.floor:.3g} ({m.floored}/{m.seeds} at the grid floor)" if m.floored else "-"
    hi = "inf" if not math.isfinite(m.high) else f"{m.high:.3g}"
    return f"{m.point:.3g} [{m.low:.3g}, {hi}]{tail}"


def _labels(cfg: Any) -> dict[str, str]:
    out = {f"rel{k}": f"rel <= {v:g}" for k, v in enumerate(cfg.rel_levels)}
    out.update({f"tv{k}": f"tv <= {v:g}" for k, v in enumerate(cfg.tv_levels)})
    return out


def _main(cfg: Any) -> list[str]:
    """The headline criteria: the middle rel and tv levels."""
    return [f"rel{len(cfg.rel_levels) // 2}", f"tv{len(cfg.tv_levels) // 2}"]


def exponent_rows(df: Any, cfg: Any) -> list[dict[str, Any]]:
    """Every line exponent (distribution, variant, criterion, line), computed once per table."""

    def compute() -> list[dict[str, Any]]:
        rows = []
        labels = _labels(cfg)
        for dist in cfg.dists:
            for line in LINES:
                g = line_rows(df, cfg, dist, line)
                for variant in cfg.variants:
                    gv = g[g.variant == variant]
                    if gv[line].nunique() < 2:
                        continue
                    for crit, label in labels.items():
                        fit = line_exponent(gv, crit, line, cfg.level)
                        rows.append(
                            {
                                "dist": dist,
                                "variant": variant,
                                "criterion": label,
                                "along": f"{LINES[line]} = {_range(gv[line])}",
                                "seeds": len(gv),
                                "right-censored": int(np.isinf(gv[f"{crit}_upper"].to_numpy(float)).sum()),
                                f"exponent [{cfg.level:.0%}]": fmt_coef(fit, f"log {LINES[line]}"),
                                "sigma": f"{fit.sigma:.2f}" if not isinstance(fit, str) else "-",
                                "_crit": crit,
                                "_line": line,
                            }
                        )
        return rows

    return once_per_table(df, cfg, "attention-exponents", compute)


def _range(col: Any) -> str:
    v = sorted({float(x) for x in col})
    return f"{v[0]:g}..{v[-1]:g}"


def cell_rows(df: Any, cfg: Any) -> list[dict[str, Any]]:
    """Per cross cell and variant: m*_q of every criterion."""
    rows = []
    labels = _labels(cfg)
    cross = df[df.pairing == "cross"]
    for (dist, n, d, t, variant), g in cross.groupby(["dist", "n", "d", "temperature", "variant"], sort=True):
        row: dict[str, Any] = {"dist": dist, "n": int(n), "d": int(d), "tau": float(t), "variant": variant}
        row["seeds"] = len(g)
        row["||A||_op (median)"] = f"{np.median(g['norm_A']):.3g}"
        for crit, label in labels.items():
            row[f"m* q{cfg.quantile:.0%}: {label}"] = fmt_quantile(
                cell_quantile(g, crit, cfg.quantile, cfg.level), cfg.m_cap
            )
        rows.append(row)
    return rows


def gain_rows(df: Any, cfg: Any) -> list[dict[str, Any]]:
    """The orthogonal variant's gain per distribution and criterion (computed once per table)."""

    def compute() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        if not {"iid", "orthogonal"} <= set(cfg.variants):
            return rows
        for dist in cfg.dists:
            for crit, label in _labels(cfg).items():
                gain = orthogonal_gain(df, dist, crit, cfg.level)
                cell = (
                    f"n/a ({gain})"
                    if isinstance(gain, str)
                    else f"{gain[0]:.2f} [{gain[1]:.2f}, {gain[2]:.2f}] over {gain[3]} cells"
                )
                rows.append({"dist": dist, "criterion": label, f"m*_orth / m*_iid [{cfg.level:.0%}]": cell})
        return rows

    return once_per_table(df, cfg, "attention-gain", compute)


def side_rows(df: Any, cfg: Any) -> list[dict[str, Any]]:
    """Side by side per (variant, n): attention thresholds, width criteria, the implied bound and how often it held."""
    rows = []
    side = df[df.pairing == "self"]
    labels = _labels(cfg)
    main = _main(cfg)
    for (variant, n), g in side.groupby(["variant", "n"], sort=True):
        row: dict[str, Any] = {"variant": variant, "n": int(n), "d": int(g["d"].iloc[0]), "seeds": len(g)}
        row["lambda (median)"] = f"{np.median(g['lambda']):.3g}"
        row["||K||/lambda (median)"] = f"{np.median(g['norm_K'] / g['lambda']):.3g}"
        q = cfg.quantile
        for crit in main:
            row[f"m* q{q:.0%}: {labels[crit]}"] = fmt_quantile(cell_quantile(g, crit, q, cfg.level), cfg.side_m_cap)
        for j, c in enumerate(cfg.side_fractions):
            for kind, text in (
                ("op", f"||H^dis - H^cts|| <= {c:g} lambda"),
                ("eig", f"lambda_min(H^dis) >= {c:g} lambda"),
            ):
                row[f"m* q{q:.0%}: {text}"] = fmt_quantile(cell_quantile(g, f"{kind}{j}", q, cfg.level), cfg.side_m_cap)
            row[f"implied eps at c={c:g} (median)"] = f"{np.median(implied_levels(g, j)):.2g}"
            row[f"m* q{q:.0%}: rel <= eps (implied, c={c:g})"] = fmt_quantile(
                cell_quantile(g, f"implied{j}", q, cfg.level), cfg.side_m_cap
            )
            op, imp = g[f"op{j}_upper"].to_numpy(float), g[f"implied{j}_upper"].to_numpy(float)
            row[f"seeds with op <= implied (c={c:g})"] = f"{int((op <= imp).sum())}/{len(g)}"
            both = np.isfinite(op) & np.isfinite(imp)
            row[f"implied / op (median, c={c:g})"] = f"{np.median(imp[both] / op[both]):.3g}" if both.any() else "-"
        rows.append(row)
    return rows


def implied_levels(g: Any, j: int) -> np.ndarray:
    """eps_c of fraction j per row: from the run's list ``implied_levels``, or the per-seed table's ``implied_level{j}``."""
    if "implied_levels" in g:
        return np.array([v[j] for v in g["implied_levels"]], dtype=float)
    return g[f"implied_level{j}"].to_numpy(float)


def side_exponents(df: Any, cfg: Any) -> list[dict[str, Any]]:
    """Exponent on n of each side-by-side threshold, per variant."""
    rows = []
    side = df[df.pairing == "self"]
    crits = {crit: _labels(cfg)[crit] for crit in _main(cfg)}
    for j, c in enumerate(cfg.side_fractions):
        crits[f"op{j}"] = f"||H^dis - H^cts|| <= {c:g} lambda"
        crits[f"eig{j}"] = f"lambda_min(H^dis) >= {c:g} lambda"
    for variant, g in side.groupby("variant", sort=True):
        g = g.sort_values(["n", "seed"], kind="stable")
        if g["n"].nunique() < 2:
            continue
        for crit, label in crits.items():
            fit = line_exponent(g, crit, "n", cfg.level)
            rows.append(
                {
                    "variant": variant,
                    "criterion": label,
                    "n": _range(g["n"]),
                    "right-censored": int(np.isinf(g[f"{crit}_upper"].to_numpy(float)).sum()),
                    f"exponent of m* on n [{cfg.level:.0%}]": fmt_coef(fit, "log n"),
                }
            )
    return rows


def in_task_order(df: Any) -> Any:
    """The rows sorted by task (``KEYS``), not by the order runs finished in: every fit then sees the same
    arrays for the same results (a censored fit near the edge of identifiability can depend on the order)."""
    return df.sort_values([c for c in KEYS if c in df], kind="stable").reset_index(drop=True)


def summarise(df: Any, cfg: Any) -> dict[str, Any]:
    """Headline exponents and gains, tables (exponents, gains, cells, side by side) and notes."""
    df = in_task_order(df)
    exps = exponent_rows(df, cfg)
    gains = gain_rows(df, cfg)
    labels = _labels(cfg)
    headline: dict[str, str] = {}
    for r in exps:
        if r["_crit"] in _main(cfg) and r["_line"] == "n":
            headline[f"{r['dist']}, {r['variant']}: m* ({r['criterion']}) ~ n^a along {r['along']}, a ="] = r[
                f"exponent [{cfg.level:.0%}]"
            ]
    main_labels = {labels[c] for c in _main(cfg)}
    for r in gains:
        if r["criterion"] in main_labels:
            headline[f"{r['dist']}: m*_orth / m*_iid ({r['criterion']}) ="] = r[f"m*_orth / m*_iid [{cfg.level:.0%}]"]
    side = side_rows(df, cfg) if (df.pairing == "self").any() else []
    for r in side:
        for c in cfg.side_fractions:
            key = f"side by side, {r['variant']}, n={r['n']}: op (c={c:g}) <= implied attention threshold in"
            headline[key] = f"{r[f'seeds with op <= implied (c={c:g})']} seeds (a theorem: must be all)"
    tables: dict[str, Any] = {
        "exponents along the lines": [{k: v for k, v in r.items() if not k.startswith("_")} for r in exps],
        "orthogonal vs i.i.d.": gains,
        "m* per cell": cell_rows(df, cfg),
    }
    if side:
        tables["side by side: attention vs the width criteria"] = side
        tables["side by side: exponents on n"] = side_exponents(df, cfg)
    return {"headline": headline, "tables": tables, "notes": _notes(cfg)}


def _notes(cfg: Any) -> list[str]:
    return [
        f"m* per seed is an interval (earliest pass, stable pass] on the grid (ratio {cfg.grid_ratio:.4g}, from "
        f"{cfg.m_min}, cap {cfg.m_cap} for cross scans, {cfg.side_m_cap} side by side); a scan stops once every criterion "
        f"held over a factor {cfg.confirm_factor:g} of m, so a failure beyond that factor is not seen. Censored seeds are kept.",
        "rel: ||Phi(Q) Phi(K)^T - exp(Q K^T)||_2 / ||exp(Q K^T)||_2; tv: mean over rows of the total variation between "
        "the row-normalised estimate and softmax(Q K^T). Features phi_w(x) = exp(<w,x> - ||x||^2/2) / sqrt(m).",
        "sphere: q = u / sqrt(tau), u uniform on S^{d-1}; gaussian: q ~ N(0, I/(d tau)); both E||q||^2 = 1/tau, logit sd "
        "1/(sqrt(d) tau) (a transformer's softmax(q.k/sqrt(d)), q, k ~ N(0, I), is gaussian at tau = 1/sqrt(d)). "
        "Queries and keys independent, from their own streams; i.i.d. and orthogonal features see the same Q, K.",
        f"Exponents: censored lognormal regression along each line through the centre (n = {cfg.n_centre}, "
        f"d = {cfg.d_centre}, tau = {cfg.temperature_centre:g}), {cfg.level:.0%} profile-likelihood intervals, valid under "
        "log m* linear in log x with Gaussian scatter; a power law in tau is a summary over the range, not a law "
        "(the features' variance grows like exp(||q + k||^2)).",
        "Side by side: X the width experiment's points of task (n, d, seed), Q = K = X, the same features give the "
        "attention estimate and H^dis = (X X^T) o (D A_hat D); the width experiment's coupled networks of width 2m have "
        "this H^dis. Proven per width: ||H^dis - H^cts|| <= max||x||^2 e^{max||x||^2} ||A_hat - A||, so the op threshold "
        "is at most the implied threshold (rel <= eps_c = c lambda / (e ||A||) on the unit sphere).",
        "These data say nothing outside the n, d, tau and feature counts measured.",
    ]


def figures(df: Any, cfg: Any, directory: Any) -> list[str]:
    """attention_thresholds (m*_q along each line, both variants), attention_errors (error vs m), attention_side."""
    from . import plots

    df = in_task_order(df)
    stems = [_thresholds_figure(df, cfg, directory, plots), _errors_figure(df, cfg, directory, plots)]
    if (df.pairing == "self").any():
        stems.append(_side_figure(df, cfg, directory, plots))
    return stems


def _quantile_series(
    ax: Any, g: Any, col: str, crit: str, cfg: Any, cap: float, style: dict[str, Any], label: str
) -> None:
    xs, pts, lo, hi = [], [], [], []
    for x, gx in g.groupby(col, sort=True):
        m = cell_quantile(gx, crit, cfg.quantile, cfg.level)
        if math.isfinite(m.point):
            xs.append(float(x))
            pts.append(m.point)
            lo.append(m.point - m.low)
            hi.append((m.high if math.isfinite(m.high) else cap) - m.point)
    if xs:
        ax.errorbar(xs, pts, yerr=[lo, hi], capsize=2, markersize=4, label=label, **style)


def _thresholds_figure(df: Any, cfg: Any, directory: Any, plots: Any) -> str:
    lines = [
        line for line in LINES if len(getattr(cfg, {"n": "ns", "d": "ds", "temperature": "temperatures"}[line])) > 1
    ]
    fig, axes = plots.new_figure(ncols=max(1, len(lines)), nrows=len(cfg.dists), width=4.4, height=3.6)
    labels = _labels(cfg)
    for i, dist in enumerate(cfg.dists):
        for j, line in enumerate(lines):
            ax = axes[i][j]
            g = line_rows(df, cfg, dist, line)
            for k, crit in enumerate(_main(cfg)):
                for v, variant in enumerate(cfg.variants):
                    style = {"fmt": "o-" if variant == "iid" else "s--", "color": plots.COLOURS[2 * k + v]}
                    _quantile_series(
                        ax, g[g.variant == variant], line, crit, cfg, cfg.m_cap, style, f"{labels[crit]}, {variant}"
                    )
            plots.log_axes(
                ax, LINES[line], f"m* (q{cfg.quantile:.0%}, {cfg.level:.0%} interval)", f"{dist}: along {LINES[line]}"
            )
    return str(plots.save(fig, directory, "attention_thresholds"))


def _errors_figure(df: Any, cfg: Any, directory: Any, plots: Any) -> str:
    fig, axes = plots.new_figure(ncols=len(cfg.dists), nrows=1, width=5.0, height=3.8)
    for i, dist in enumerate(cfg.dists):
        ax = axes[0][i]
        g = line_rows(df, cfg, dist, "n")
        for k, ((n, variant), gv) in enumerate(g.groupby(["n", "variant"], sort=True)):
            grid = sorted({w for ws in gv["scan_widths"] for w in ws})
            med = [
                np.median(
                    [r[list(ws).index(w)] for ws, r in zip(gv["scan_widths"], gv["scan_rel"], strict=True) if w in ws]
                )
                for w in grid
            ]
            ax.plot(
                grid,
                med,
                "-" if variant == "iid" else "--",
                color=plots.COLOURS[(k // 2) % len(plots.COLOURS)],
                label=f"n={int(n)}, {variant}",
            )
        ax.plot(grid, 3 / np.sqrt(np.array(grid, dtype=float)), ":", color="k", label="slope -1/2")
        plots.log_axes(
            ax,
            "m (features)",
            "relative op-norm error (median over seeds)",
            f"{dist}, d={cfg.d_centre}, tau={cfg.temperature_centre:g}",
        )
    return str(plots.save(fig, directory, "attention_errors"))


def _side_figure(df: Any, cfg: Any, directory: Any, plots: Any) -> str:
    fig, axes = plots.new_figure(ncols=1, nrows=1, width=6.0, height=4.2)
    ax = axes[0][0]
    g = df[(df.pairing == "self") & (df.variant == cfg.variants[0])]
    labels = _labels(cfg)
    series = [(c, labels[c]) for c in _main(cfg)]
    for j, c in enumerate(cfg.side_fractions):
        series += [(f"op{j}", f"||H^dis - H^cts|| <= {c:g} lambda"), (f"eig{j}", f"lambda_min(H^dis) >= {c:g} lambda")]
        series += [(f"implied{j}", f"rel <= eps_c (implied, c={c:g})")]
    for k, (crit, label) in enumerate(series):
        style = {
            "fmt": "o-" if not crit.startswith("implied") else "^:",
            "color": plots.COLOURS[k % len(plots.COLOURS)],
        }
        _quantile_series(ax, g, "n", crit, cfg, cfg.side_m_cap, style, label)
    plots.log_axes(
        ax, "n", f"m* (q{cfg.quantile:.0%}), {cfg.variants[0]} features", f"side by side, d={cfg.side_d}, unit sphere"
    )
    return str(plots.save(fig, directory, "attention_side"))


#: Columns of the stored per-seed table (``per_seed_rows``): the task, then each criterion's (lower, upper].
KEYS = ["pairing", "dist", "n", "d", "temperature", "variant", "seed"]


def per_seed_rows(df: Any) -> Any:
    """The per-seed thresholds, small: the task columns and every criterion's lower and upper bound.

    What ``docs/results/attention/rows.csv`` holds (``write_per_seed_rows``); ``summarise`` (every fit
    and table of this module) runs on it as on the full result table; the figures need the scans too.
    """
    bounds_cols = sorted(c for c in df.columns if c.endswith(("_lower", "_upper")))
    extra = [c for c in ("lambda", "norm_A", "norm_K") if c in df.columns]
    table = df[KEYS + extra + bounds_cols].copy()
    if "implied_levels" in df:  # a list per side-by-side row: one column per fraction
        lists = [v if isinstance(v, (list, np.ndarray)) else [] for v in df["implied_levels"]]
        for j in range(max((len(v) for v in lists), default=0)):
            table[f"implied_level{j}"] = [float(v[j]) if len(v) > j else math.nan for v in lists]
    return table.sort_values(KEYS, kind="stable").reset_index(drop=True)


def write_per_seed_rows(directory: Any, path: Any) -> int:
    """Write ``per_seed_rows`` of the results in ``directory`` (one configuration: config.json's) to CSV ``path``.

    Returns the number of rows. Floats with 6 significant digits (grid widths are integers).
    """
    from pathlib import Path

    from ..core.storage import atomic_open
    from .analysis import load_run_config
    from .store import ResultStore

    _, _, config_hash = load_run_config(directory)
    df = ResultStore(directory).read()
    table = per_seed_rows(df[df.config_hash == config_hash])
    with atomic_open(Path(path), "w") as fh:
        table.to_csv(fh, index=False, float_format="%.6g")
    return len(table)


def read_per_seed_rows(path: Any) -> Any:
    """The table ``write_per_seed_rows`` wrote, with inf bounds restored (``pandas.read_csv``)."""
    import pandas as pd

    return pd.read_csv(path)
