"""Analysis of the ``width`` experiment: censored fits of the per-seed thresholds, one function per table.

Each seed's threshold is an interval (lower, upper] (``thresholds``); a seed
whose scan ended without a stable pass is right-censored (upper = inf), kept,
and its cause recorded (``<crit>_censored_by``: the cap or the give-up rule).
Rows are grouped by variant (activation, init, design), the design being
``d=<d>`` for sphere data and ``rho=<rho>`` for the equicorrelated family.
For each variant and criterion (``width_rules.CRITERIA``, and GD's "conv"):

- exponent of m* on n (``censored.fit_censored`` of log m* = b0 + a log n + sigma eps),
  profile-likelihood interval at ``level``; for the equicorrelated family, whose
  lambda does not change with n, this is the n-exponent at fixed lambda;
- local exponents over windows [n0, window n0] (``censored.local_exponents``);
- per n: the median and q-quantile of a lognormal fitted to that n's intervals alone,
  and the censored count by cause.

Pooled fits over d and the candidate laws scored by prediction are in
``width_predict``; the figures in ``width_figures``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .censored import CensoredFit, fit_censored, local_exponents, quantile_interval, turnbull_quantile
from .fitting import format_estimate
from .width_rules import CONV_LABEL, CRITERIA, PROOF

THEOREM_EXPONENT = 2.0
VARIANT = ["activation", "init", "design"]


def label(crit: str) -> str:
    """What criterion ``crit`` (a name of ``CRITERIA`` or "conv") passes on."""
    return CRITERIA[crit].label if crit in CRITERIA else CONV_LABEL


def with_design(df: Any) -> Any:
    """``df`` with a ``design`` column ("d=8", "rho=0.25") and rows in (design, n, seed) order."""
    df = df.copy()
    df["data"], df["rho"] = df.get("data", "sphere"), df.get("rho", np.nan)
    df["design"] = [
        f"d={int(d)}" if k == "sphere" else f"rho={float(r):g}"
        for k, d, r in zip(df["data"], df["d"], df["rho"], strict=True)
    ]
    df["_order"] = [
        (k != "sphere", float(d) if k == "sphere" else float(r))
        for k, d, r in zip(df["data"], df["d"], df["rho"], strict=True)
    ]
    df = df.sort_values(["_order", "n", "seed"], kind="stable").drop(columns="_order")
    return df.reset_index(drop=True)


def _bounds(g: Any, crit: str, scaling_index: int) -> tuple[Any, np.ndarray, np.ndarray]:
    """(rows that have the criterion, lower, upper) of one criterion."""
    if f"{crit}_lower" not in g:  # not measured by this run (GD-only rows, or conv not run)
        return g.iloc[:0], np.empty(0), np.empty(0)
    if crit != "conv":
        return g, g[f"{crit}_lower"].to_numpy(float), g[f"{crit}_upper"].to_numpy(float)
    has = g["conv_lower"].map(lambda v: isinstance(v, (list, np.ndarray)) and len(v) > scaling_index)
    sub = g[has]
    lower = np.array([v[scaling_index] for v in sub["conv_lower"]], dtype=float)
    upper = np.array([v[scaling_index] for v in sub["conv_upper"]], dtype=float)
    return sub, lower, upper


def _column(g: Any, name: str) -> np.ndarray:
    """Column ``name`` as floats, nan where the rows do not have it."""
    return g[name].to_numpy(float) if name in g else np.full(len(g), np.nan)


def observations(g: Any, crit: str, scaling_index: int = 0) -> dict[str, Any]:
    """Arrays n, d, lower, upper, lambda, opnorm, variance, cause of criterion ``crit`` over the rows of ``g``.

    Rows without the criterion (conv not run) are left out; so are rows whose
    interval is (0, inf) (no information), counted in ``uninformative``.
    ``cause``: "" for a threshold seen, else why its scan ended ("cap", "give-up").
    """
    sub, lower, upper = _bounds(g, crit, scaling_index)
    keep = ~((lower == 0) & np.isinf(upper))
    cause_col = f"{crit}_censored_by"
    cause = (
        sub[cause_col].fillna("").astype(str).to_numpy() if cause_col in sub else np.where(np.isinf(upper), "cap", "")
    )
    out = {
        "n": sub["n"].to_numpy(float),
        "d": sub["d"].to_numpy(float),
        "lower": lower,
        "upper": upper,
        "lambda": sub["lambda"].to_numpy(float),
        "opnorm": _column(sub, "lambda_max"),
        "variance": _column(sub, "variance"),
        "cause": np.asarray(cause, dtype=object),
    }
    out = {k: v[keep] for k, v in out.items()}
    out["uninformative"] = int((~keep).sum())
    return out


def safe_fit(
    lower: np.ndarray, upper: np.ndarray, X: np.ndarray, names: tuple[str, ...], level: float | None
) -> CensoredFit | str:
    """The censored fit, or the reason it cannot be made (a one-line message)."""
    try:
        return fit_censored(lower, upper, X, names=names, level=level)
    except ValueError as exc:
        return str(exc)


def fmt_coef(fit: CensoredFit | str, name: str) -> str:
    """A coefficient and its interval, "c [lo, hi]", or "n/a (why)"."""
    if isinstance(fit, str):
        return f"n/a ({fit})"
    i = fit.names.index(name)
    lo, hi = fit.intervals[i]
    return format_estimate(float(fit.coef[i]), float(lo), float(hi))


class PerN(NamedTuple):
    """The fitted median and q-quantile of m* at one n, with what censoring left of the data."""

    point: float
    low: float
    high: float
    censored: int
    seeds: int
    floored: int = 0
    floor: float = math.nan
    median: float = math.nan
    median_low: float = math.nan
    median_high: float = math.nan


def per_n_quantile(obs: dict[str, np.ndarray], n: int, q: float, level: float) -> PerN:
    """m*_q and the median at one n from an intercept-only censored lognormal fit (nan where the fit fails)."""
    at = obs["n"] == n
    lo, up = obs["lower"][at], obs["upper"][at]
    if at.sum() == 0:
        return PerN(math.nan, math.nan, math.nan, 0, 0)
    floored = lo <= 0
    counts = (
        int(np.isinf(up).sum()),
        int(at.sum()),
        int(floored.sum()),
        float(up[floored].max()) if floored.any() else math.nan,
    )
    try:
        fit = fit_censored(lo, up, np.zeros((lo.size, 0)), names=("intercept",), level=None)
        point, low, high = quantile_interval(fit, q, np.zeros((1, 0)), level=level)
        med, mlo, mhi = quantile_interval(fit, 0.5, np.zeros((1, 0)), level=level)
        return PerN(
            float(point[0]), float(low[0]), float(high[0]), *counts, float(med[0]), float(mlo[0]), float(mhi[0])
        )
    except ValueError:
        return PerN(math.nan, math.nan, math.nan, *counts)


def analyse_variant(g: Any, crit: str, cfg: Any, scaling_index: int = 0) -> dict[str, Any]:
    """The fits of one criterion for one variant's rows ``g``: on n, local exponents, per n."""
    obs = observations(g, crit, scaling_index)
    out: dict[str, Any] = {"obs": obs, "ns": sorted({int(v) for v in obs["n"]})}
    if obs["n"].size == 0:
        return out
    logn = np.log(obs["n"])
    out["fit_n"] = safe_fit(obs["lower"], obs["upper"], logn, ("intercept", "log n"), cfg.level)
    try:
        out["local"] = local_exponents(obs["n"], obs["lower"], obs["upper"], window=cfg.window, level=cfg.level)
    except ValueError:
        out["local"] = []
    out["per_n"] = {n: per_n_quantile(obs, n, cfg.quantile, cfg.level) for n in out["ns"]}
    return out


def criteria(cfg: Any, df: Any) -> list[tuple[str, int, str]]:
    """(criterion, scaling index, name) of every analysed criterion present in ``df``."""
    out = [(c, 0, c) for c in CRITERIA if f"{c}_lower" in df]
    if getattr(cfg, "conv", True) and "conv_lower" in df:
        out += [("conv", i, f"conv, s={s}") for i, s in enumerate(cfg.scalings)]
    return out


def analysed(df: Any, cfg: Any) -> list[tuple[tuple[Any, ...], Any, list[tuple[str, str, dict[str, Any]]]]]:
    """Every (variant key, rows, [(criterion, name, analyse_variant)]) of a table prepared by ``with_design``."""
    out = []
    crits = criteria(cfg, df)
    for key, g in df.groupby(VARIANT, sort=False):
        out.append((key, g, [(c, name, analyse_variant(g, c, cfg, i)) for c, i, name in crits]))
    return out


def _variant_cols(key: tuple[Any, ...]) -> dict[str, Any]:
    return {"activation": key[0], "init": key[1], "design": key[2]}


def _cause_counts(obs: dict[str, Any]) -> str:
    right = np.isinf(obs["upper"])
    cap = int((right & (obs["cause"] == "cap")).sum())
    give = int((right & (obs["cause"] == "give-up")).sum())
    return f"{cap} cap, {give} give-up" if give else f"{cap} cap"


def fits_table(an: list[Any], cfg: Any) -> list[dict[str, Any]]:
    """Exponent of m* on n per variant and criterion, with the censored count by cause."""
    rows = []
    for key, _g, results in an:
        for _crit, name, a in results:
            if "fit_n" not in a:
                continue
            obs, ns = a["obs"], a["ns"]
            rows.append(
                {
                    **_variant_cols(key),
                    "criterion": name,
                    "n range": f"{min(ns)}..{max(ns)}",
                    "seeds": int(obs["n"].size),
                    "right-censored (by cause)": _cause_counts(obs),
                    f"exponent of m* on n [{cfg.level:.0%}]": fmt_coef(a["fit_n"], "log n"),
                    "sigma": f"{a['fit_n'].sigma:.2f}" if not isinstance(a["fit_n"], str) else "-",
                    "lambda over n (median)": _lambda_range(obs),
                }
            )
    return rows


def _lambda_range(obs: dict[str, Any]) -> str:
    meds = [float(np.median(obs["lambda"][obs["n"] == n])) for n in np.unique(obs["n"])]
    return f"{meds[0]:.3g} .. {meds[-1]:.3g}"


def local_table(an: list[Any], cfg: Any) -> list[dict[str, Any]]:
    """Local exponents over windows [n0, window n0], per variant and criterion."""
    rows = []
    for key, _g, results in an:
        for _crit, name, a in results:
            for e in a.get("local", []):
                rows.append(
                    {
                        **_variant_cols(key),
                        "criterion": name,
                        "n window": f"{int(e.n_low)}..{int(e.n_high)}",
                        f"local exponent [{cfg.level:.0%}]": (
                            format_estimate(e.slope, e.low, e.high) if math.isfinite(e.slope) else f"n/a ({e.reason})"
                        ),
                        "right-censored": e.counts.get("right", 0),
                    }
                )
    return rows


def fmt_m(m: PerN, cap: float, q: float) -> str:
    """One cell of the "m* per n" table: the q-quantile and its interval, or what the censored data bound it by."""
    tail = f" ({m.censored}/{m.seeds} censored)" if m.censored else ""
    if not math.isfinite(m.point):
        if m.censored:
            return f"> {cap:.3g}{tail}"
        if m.seeds and m.floored >= q * m.seeds:
            return f"<= {m.floor:.3g} ({m.floored}/{m.seeds} at the grid floor)"
        return "-"
    hi = "inf" if not math.isfinite(m.high) else f"{m.high:.3g}"
    return f"{m.point:.3g} [{m.low:.3g}, {hi}]{tail}"


def per_n_table(an: list[Any], cfg: Any) -> list[dict[str, Any]]:
    """Per variant and n: lambda, ||H^cts||, the proof's median width, every criterion's q-quantile width."""
    rows = []
    for key, g, results in an:
        for n in sorted({int(v) for v in g["n"]}):
            at = g[g["n"] == n]
            row = {**_variant_cols(key), "n": n, "seeds": len(at)}
            row["lambda (median)"] = f"{np.median(at['lambda']):.3g}"
            row["||H^cts|| (median)"] = f"{np.median(_column(at, 'lambda_max')):.3g}"
            for crit, name, a in results:
                if n not in a.get("per_n", {}):
                    continue
                p = a["per_n"][n]
                cap = float(np.max(a["obs"]["lower"][a["obs"]["n"] == n], initial=0.0))
                if crit == PROOF:
                    row[f"m*_{name} median"] = f"{p.median:.3g}" if math.isfinite(p.median) else "-"
                row[f"m*_{name} q{cfg.quantile:.0%} [{cfg.level:.0%}]"] = fmt_m(p, cap, cfg.quantile)
            if "theorem_log10_m" in at and np.isfinite(at["theorem_log10_m"]).any():
                row["[derived] theorem width, log10"] = f"{np.nanmedian(at['theorem_log10_m']):.1f}"
            rows.append(row)
    return rows


def lognormal_check_table(an: list[Any], cfg: Any) -> list[dict[str, Any]]:
    """Per variant, n and criterion (op1_4, eig1_2): the lognormal fit's median and q-quantile beside Turnbull's
    nonparametric MLE of the same intervals (which assumes no distribution), and the censored count by cause."""
    rows = []
    for key, _g, results in an:
        for crit, name, a in results:
            if crit not in (PROOF, "eig1_2"):
                continue
            obs = a["obs"]
            for n, p in a.get("per_n", {}).items():
                at = obs["n"] == n
                lo, up, cause = obs["lower"][at], obs["upper"][at], obs["cause"][at]
                rows.append(
                    {
                        **_variant_cols(key),
                        "criterion": name,
                        "n": n,
                        "seeds": int(at.sum()),
                        "censored: cap / give-up": f"{int((np.isinf(up) & (cause == 'cap')).sum())} / "
                        f"{int((np.isinf(up) & (cause == 'give-up')).sum())}",
                        "median: lognormal / nonparametric": f"{_g3(p.median)} / {_g3(turnbull_quantile(lo, up, 0.5))}",
                        f"q{cfg.quantile:.0%}: lognormal / nonparametric": (
                            f"{_g3(p.point)} / {_g3(turnbull_quantile(lo, up, cfg.quantile))}"
                        ),
                    }
                )
    return rows


def _g3(v: float) -> str:
    if math.isinf(v):
        return "beyond the data"
    return f"{v:.3g}" if math.isfinite(v) else "-"


def fraction_ratio_table(df: Any) -> list[dict[str, Any]]:
    """How much later the proof's criterion (lambda/4) passes than lambda/2: per-seed ratios of earliest and stable passes."""
    rows: list[dict[str, Any]] = []
    if "op1_4_first" not in df or "op1_2_first" not in df:
        return rows
    for key, g in df.groupby(VARIANT, sort=False):
        for which in ("first", "stable"):
            a, b = g[f"op1_4_{which}"].to_numpy(float), g[f"op1_2_{which}"].to_numpy(float)
            ok = np.isfinite(a) & np.isfinite(b) & (b > 0)
            if not ok.any():
                continue
            r = a[ok] / b[ok]
            rows.append(
                {
                    **_variant_cols(key),
                    "pass": "earliest" if which == "first" else "stable",
                    "seeds with both": int(ok.sum()),
                    "m(lambda/4) / m(lambda/2): median": f"{np.median(r):.2f}",
                    "range": f"{r.min():.2f} .. {r.max():.2f}",
                }
            )
    return rows


def _at_scaling(column: Any, i: int) -> np.ndarray:
    """Entry ``i`` (the i-th scaling) of each run's per-scaling list in ``column``, as floats; runs without one skipped."""
    return np.array([v[i] for v in column if isinstance(v, (list, np.ndarray)) and len(v) > i], dtype=float)


def training_table(df: Any, cfg: Any) -> list[dict[str, Any]]:
    """Along training at each seed's stable width: the criterion at t = 0, its worst value over the run, how often it held."""
    rows = []
    spec = {"op1_2": ("dev0", "sup_dev", "max"), "eig1_2": ("eig0", "inf_eig", "min")}
    for crit, (k0, kt, worst) in spec.items():
        if f"train_{crit}_{kt}" not in df:
            continue
        for (*key, n), g in df.groupby([*VARIANT, "n"], sort=False):
            for i, s in enumerate(cfg.scalings):
                v0, vt, conv = (_at_scaling(g[f"train_{crit}_{k}"], i) for k in (k0, kt, "converged"))
                ok = np.isfinite(vt)
                if not ok.any():
                    continue
                rows.append(
                    {
                        **_variant_cols(tuple(key)),
                        "n": int(n),
                        "criterion": f"{crit}: {label(crit)}",
                        "scaling": s,
                        "runs": int(ok.sum()),
                        "converged": int(np.nansum(conv)),
                        "value / lambda at t=0 (median)": f"{np.median(v0[ok]):.3f}",
                        f"{worst} over training / lambda (median)": f"{np.median(vt[ok]):.3f}",
                        "largest relative change": f"{np.max(np.abs(vt[ok] / v0[ok] - 1)):.2e}",
                        "runs where it held at every record": int(sum(CRITERIA[crit].passes(v) for v in vt[ok])),
                    }
                )
    return rows


def _count(g: Any, column: str, i: int) -> int:
    """Sum of entry ``i`` of a per-scaling count column (0 when absent)."""
    return int(_at_scaling(g[column], i).sum()) if column in g else 0


def conv_table(df: Any, cfg: Any) -> list[dict[str, Any]]:
    """GD's threshold per variant and n: median and q-quantile width, widths that diverged or ran out of budget."""
    rows: list[dict[str, Any]] = []
    if "conv_lower" not in df:
        return rows
    for key, g in df.groupby(VARIANT, sort=False):
        for i, s in enumerate(cfg.scalings):
            obs = observations(g, "conv", i)
            for n in sorted({int(v) for v in obs["n"]}):
                p = per_n_quantile(obs, n, cfg.quantile, cfg.level)
                at = g[g["n"] == n]
                rows.append(
                    {
                        **_variant_cols(key),
                        "scaling": s,
                        "n": n,
                        "seeds": p.seeds,
                        "m*_conv median": f"{p.median:.3g}" if math.isfinite(p.median) else "-",
                        f"m*_conv q{cfg.quantile:.0%} [{cfg.level:.0%}]": fmt_m(p, float(cfg.m_max_conv), cfg.quantile),
                        "neurons per point (median)": f"{p.median / n:.3g}" if math.isfinite(p.median) else "-",
                        "seeds that never converged": p.censored,
                        "widths diverged (all seeds)": _count(at, "conv_diverged", i),
                        "widths out of budget (all seeds)": _count(at, "conv_budget", i),
                    }
                )
    return rows


def notes(cfg: Any) -> list[str]:
    """What every width table assumes and cannot see."""
    out = [
        f"Thresholds per seed are intervals (earliest pass, stable pass] on the width grid (ratio {cfg.grid_ratio:.4g}); "
        f"a scan stops once every criterion held over a factor {cfg.confirm_factor:g} of width, so a failure beyond "
        "that factor is not seen. Seeds with no stable pass are right-censored, kept, and counted by cause: the cap, "
        f"or the give-up rule (give_up = {cfg.give_up:g}: from width {cfg.give_up_from} on, stop once every eig "
        "criterion is confirmed and even a decay like m^-1/2, give_up times faster, would miss every open op criterion "
        "at the cap; 0 = never).",
        "op1_4 (||H^dis - H^cts||_op <= lambda/4) is the proof's criterion (lemma 1); op1_2, op3_4 are looser; "
        "eig1_2 is what the linear rate needs.",
        f"Exponents: censored lognormal regression, {cfg.level:.0%} profile-likelihood intervals; valid under its model "
        "(log m* linear in log n, Gaussian scatter of constant sigma); local exponents test the first.",
        f"m* per n: the median and {cfg.quantile:.0%} quantile of a lognormal fitted to that n's intervals alone.",
        "Each task draws its own data and network (streams.derive): tasks are independent.",
        "These data say nothing outside the n, d, rho and widths measured.",
    ]
    if getattr(cfg, "conv", False):
        out.append(
            f"conv: GD with lr = 1/lambda_max(H(W(0))), budget {cfg.budget_factor:g} x the kernel-predicted steps "
            f"(within {cfg.min_steps}..{cfg.max_steps}), widths up to {cfg.m_max_conv}, for n <= {cfg.conv_n_max}."
        )
    return out


def headline(an: list[Any]) -> dict[str, str]:
    """The exponent on n of the proof's criterion and of eig1_2, per variant."""
    out = {}
    for key, _g, results in an:
        for crit, _name, a in results:
            if crit in (PROOF, "eig1_2") and "fit_n" in a:
                ns = a["ns"]
                out[f"{key[0]}, {key[1]}, {key[2]}: m*_{crit} ~ n^a, a ="] = (
                    f"{fmt_coef(a['fit_n'], 'log n')} over n = {min(ns)}..{max(ns)} ({label(crit)})"
                )
    return out


def summarise(df: Any, cfg: Any) -> dict[str, Any]:
    """Headline exponents, tables and notes of one width run (or of stored rows of several designs)."""
    df = with_design(df)
    an = analysed(df, cfg)
    tables: dict[str, Any] = {
        "fitted exponents": fits_table(an, cfg),
        "local exponents": local_table(an, cfg),
        "m* per n": per_n_table(an, cfg),
        "lambda/4 against lambda/2": fraction_ratio_table(df),
        "lognormal against nonparametric, censoring by cause": lognormal_check_table(an, cfg),
    }
    extra = {"GD convergence": conv_table(df, cfg), "along training": training_table(df, cfg)}
    tables.update({k: v for k, v in extra.items() if v})
    return {"headline": headline(an), "tables": tables, "notes": notes(cfg)}
