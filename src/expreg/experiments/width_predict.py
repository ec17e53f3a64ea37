"""Candidate laws of the width threshold compared by prediction (docs/theory.md section 6).

Each law of ``width_laws.LAWS`` is fitted (censored lognormal regression with
the law's fixed part as an offset) on one set of designs and scored on designs
it did not see:

- leave one design out: each sphere dimension d (of the n-grid, when the rows
  say which preset they came from) predicted from the others;
- across designs, when the rows come from several presets: the d sweep and
  the fixed-lambda family predicted from the n-grid, and the family from the
  n-grid and the d sweep together.

Errors are in log2 units: per cell (design, n), the law's median prediction
against the cell's own median (a lognormal fitted to that cell's intervals
alone; cells whose median the data do not bound are counted, not scored);
per seed, against the geometric middle of the seed's bounded interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .censored import CensoredFit, fit_censored
from .width_analysis import observations, per_n_quantile
from .width_laws import LAWS, Law
from .width_rules import PROOF

#: Criteria the laws are scored on.
LAW_CRITERIA = (PROOF, "op1_2", "eig1_2")
_LOG2 = math.log(2.0)


@dataclass(frozen=True)
class Score:
    """Held-out errors of one law on one split (log2 units, rms), with how much was scored."""

    cells: int
    cell_rms: float
    seeds: int
    seed_rms: float
    unscored_cells: int


def fit_law(law: Law, obs: dict[str, np.ndarray], level: float = 0.9) -> CensoredFit:
    """The law fitted to observations (``width_analysis.observations``): log m* - offset on the law's covariates."""
    scale = np.exp(law.offset(obs))
    X = law.covariates(obs)
    return fit_censored(obs["lower"] / scale, obs["upper"] / scale, X, names=law.names, level=level)


def predict_log(law: Law, fit: CensoredFit, obs: dict[str, np.ndarray]) -> np.ndarray:
    """The law's predicted median log m* (natural log) for each observation."""
    X = law.covariates(obs)
    return np.asarray(fit.coef[0] + X @ fit.coef[1:] + law.offset(obs), dtype=float)


def _subset(obs: dict[str, Any], mask: np.ndarray) -> dict[str, Any]:
    return {k: (v[mask] if isinstance(v, np.ndarray) else v) for k, v in obs.items()}


def score(law: Law, fit: CensoredFit, obs: dict[str, Any], level: float = 0.9) -> Score:
    """Held-out errors of ``fit`` on observations ``obs`` (carrying a ``cell`` label per observation)."""
    pred = predict_log(law, fit, obs)
    cell_err, unscored = [], 0
    for cell in np.unique(obs["cell"]):
        at = obs["cell"] == cell
        sub = _subset(obs, at)
        p = per_n_quantile(sub, int(sub["n"][0]), 0.5, level)
        if not math.isfinite(p.median):
            unscored += 1
            continue
        cell_err.append((float(np.median(pred[at])) - math.log(p.median)) / _LOG2)
    bounded = (obs["lower"] > 0) & np.isfinite(obs["upper"])
    mid = 0.5 * (np.log(np.where(bounded, obs["lower"], 1.0)) + np.log(np.where(bounded, obs["upper"], 1.0)))
    seed_err = (pred[bounded] - mid[bounded]) / _LOG2
    return Score(len(cell_err), _rms(np.asarray(cell_err)), int(bounded.sum()), _rms(seed_err), unscored)


def _rms(errors: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(errors)))) if len(errors) else math.nan


def law_observations(df: Any, crit: str) -> dict[str, Any]:
    obs = observations(df, crit)
    sub = df[~((df[f"{crit}_lower"] == 0) & np.isinf(df[f"{crit}_upper"]))]
    obs["design"] = sub["design"].to_numpy(dtype=object)
    obs["preset"] = (sub["preset"] if "preset" in sub else sub["design"].map(lambda _: "")).to_numpy(dtype=object)
    obs["cell"] = np.array(
        [f"{p}|{d}|{int(n)}" for p, d, n in zip(obs["preset"], obs["design"], obs["n"], strict=True)], dtype=object
    )
    return obs


def splits(obs: dict[str, Any]) -> Iterable[tuple[str, str, np.ndarray, np.ndarray]]:
    """(fitted on, tested on, train mask, test mask) of every held-out comparison these rows allow."""
    presets = set(obs["preset"])
    grid = obs["preset"] == ("full" if "full" in presets else next(iter(presets)))
    sphere = np.array([str(d).startswith("d=") for d in obs["design"]])
    pool = grid & sphere
    for design in sorted(set(obs["design"][pool]), key=lambda s: float(s[2:])):
        test = pool & (obs["design"] == design)
        yield f"n-grid without {design}", f"n-grid {design}", pool & ~test, test
    for train, test in (("full", "dsweep"), ("full", "fixedlambda"), ("full+dsweep", "fixedlambda")):
        if test in presets and all(p in presets for p in train.split("+")):
            yield train, test, np.isin(obs["preset"], train.split("+")), obs["preset"] == test


def prediction_rows(df: Any, crit: str, level: float) -> list[dict[str, Any]]:
    """One row per (law, split): the law fitted on one part of the rows and scored on another."""
    obs = law_observations(df, crit)
    rows = []
    for fitted_on, tested_on, train, test in splits(obs):
        if not (train.any() and test.any()):
            continue
        for law in LAWS.values():
            row: dict[str, Any] = {"criterion": crit, "law": f"{law.name}: {law.formula}"}
            row |= {"fitted on": fitted_on, "tested on": tested_on}
            try:
                s = score(law, fit_law(law, _subset(obs, train), level=None), _subset(obs, test), level)  # type: ignore[arg-type]
            except ValueError as exc:
                rows.append({**row, "held-out rms, cell medians (log2)": f"n/a ({exc})"})
                continue
            rows.append(
                {
                    **row,
                    "cells scored": s.cells,
                    "held-out rms, cell medians (log2)": f"{s.cell_rms:.2f}",
                    "seeds scored": s.seeds,
                    "held-out rms, per seed (log2)": f"{s.seed_rms:.2f}",
                    "cells not scored (median beyond the data)": s.unscored_cells,
                }
            )
    return rows


def fitted_rows(df: Any, crit: str, level: float) -> list[dict[str, Any]]:
    """Each law fitted on every row: its coefficients with profile intervals, sigma, and the in-sample errors."""
    obs = law_observations(df, crit)
    rows: list[dict[str, Any]] = []
    for law in LAWS.values():
        try:
            fit = fit_law(law, obs, level)
        except ValueError as exc:
            rows.append({"criterion": crit, "law": law.name, "fit": f"n/a ({exc})"})
            continue
        lo, hi = fit.intervals[0]
        s = score(law, fit, obs, level)
        coefs = "; ".join(
            f"{n} {c:.2f} [{a:.2f}, {b:.2f}]"
            for n, c, (a, b) in zip(fit.names[1:], fit.coef[1:], fit.intervals[1:], strict=True)
        )
        rows.append(
            {
                "criterion": crit,
                "law": f"{law.name}: {law.formula}",
                f"C [{level:.0%}]": f"{math.exp(fit.coef[0]):.3g} [{math.exp(lo):.3g}, {math.exp(hi):.3g}]",
                "other coefficients": coefs or "-",
                "sigma (log m*)": f"{fit.sigma:.2f}",
                "in-sample rms, cell medians (log2)": f"{s.cell_rms:.2f}",
                "in-sample rms, per seed (log2)": f"{s.seed_rms:.2f}",
                "seeds": fit.n_obs,
            }
        )
    return rows


def identification_rows(df: Any) -> list[dict[str, Any]]:
    """Per design: how far n and lambda(n) move together (corr of log n and log lambda), and lambda's range."""
    rows = []
    for design, g in df.groupby("design", sort=False):
        if g["n"].nunique() < 2:
            continue
        ln, ll = np.log(g["n"].to_numpy(float)), np.log(g["lambda"].to_numpy(float))
        ratio = float(np.exp(ll.max() - ll.min()))
        corr = float(np.corrcoef(ln, ll)[0, 1]) if np.ptp(ln) > 0 and np.ptp(ll) > 1e-9 else math.nan
        rows.append(
            {
                "design": design,
                "n": f"{int(g['n'].min())}..{int(g['n'].max())}",
                "lambda range (max/min over seeds)": f"{ratio:.3g}",
                "corr(log n, log lambda)": f"{corr:.3f}" if math.isfinite(corr) else "lambda fixed",
            }
        )
    return rows


def _pooled_rms(rows: list[dict[str, Any]]) -> tuple[float, int]:
    """(rms over every cell of ``rows``, cells): each row's cell rms weighted by its cell count."""
    key = "held-out rms, cell medians (log2)"
    scored = [r for r in rows if r.get("cells scored")]
    cells = sum(r["cells scored"] for r in scored)
    sq = sum(r["cells scored"] * float(r[key]) ** 2 for r in scored)
    return (math.sqrt(sq / cells) if cells else math.nan), cells


def winner_rows(predicted: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per criterion and law: the rms over every held-out comparison of the cell-median errors, and the winner."""
    out: list[dict[str, Any]] = []
    for crit in dict.fromkeys(r["criterion"] for r in predicted):
        mine = [r for r in predicted if r["criterion"] == crit]
        scores = {
            law: _pooled_rms([r for r in mine if r["law"] == law]) for law in dict.fromkeys(r["law"] for r in mine)
        }
        finite = [law for law, (rms, _cells) in scores.items() if math.isfinite(rms)]
        best = min(finite, key=lambda law: scores[law][0], default="")
        for law, (rms, cells) in scores.items():
            out.append(
                {
                    "criterion": crit,
                    "law": law,
                    "held-out comparisons": sum(1 for r in mine if r["law"] == law and "cells scored" in r),
                    "cells scored": cells,
                    "rms over every held-out cell (log2)": f"{rms:.2f}",
                    "winner": "yes" if law == best else "",
                }
            )
    return out


def law_tables(df: Any, cfg: Any) -> dict[str, list[dict[str, Any]]]:
    """The law tables of rows prepared by ``width_analysis.with_design`` (empty where too few designs)."""
    crits = [c for c in LAW_CRITERIA if f"{c}_lower" in df]
    predicted = [r for c in crits for r in prediction_rows(df, c, cfg.level)]
    fitted = [r for c in crits for r in fitted_rows(df, c, cfg.level)] if df["design"].nunique() > 1 else []
    return {
        "laws by prediction: the winner": winner_rows(predicted),
        "laws scored on designs they did not see": predicted,
        "laws fitted on every row": fitted,
        "n and lambda: identification per design": identification_rows(df),
    }


def fitted_constants(df: Any, crit: str, law_name: str, held_out_rms: str, level: float = 0.9) -> dict[str, Any]:
    """The entry of ``width_laws.FITTED`` for one criterion: law ``law_name`` fitted on every row of ``df``."""
    law = LAWS[law_name]
    fit = fit_law(law, law_observations(df, crit), level)
    lo, hi = fit.intervals[0]
    return {
        "law": law_name,
        "log_C": float(fit.coef[0]),
        "log_C_low": float(lo),
        "log_C_high": float(hi),
        "coef": [float(c) for c in fit.coef[1:]],
        "sigma": float(fit.sigma),
        "fitted_on": ", ".join(sorted(set(df["preset"]))) if "preset" in df else "these rows",
        "lambda_range": [float(df["lambda"].min()), float(df["lambda"].max())],
        "n_range": [int(df["n"].min()), int(df["n"].max())],
        "held_out_rms_log2": held_out_rms,
    }
