"""The width experiment's per-seed rows as a small stored table, and every width table recomputed from it.

``collect(run_dirs, path)`` keeps, from the result tables of several width
runs (one directory per preset, e.g. ``runs/full``, ``runs/dsweep``), the
per-seed columns the analysis reads (no scan traces; GD's and along-training
per-scaling lists reduced to the first scaling), with a ``preset`` column,
in a gzip CSV. ``summary(path, figures_dir)`` recomputes, from that file
alone, each preset's tables (``width_analysis``), the candidate laws scored
by prediction over every preset (``width_predict``) and the figures.
``docs/gen_results.py`` calls both; the README's and docs' width numbers are
read from what ``summary`` returns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .width_rules import CRITERIA

#: Scalar columns kept per seed (those present), beside each criterion's threshold columns.
BASE = ["preset", "activation", "init", "data", "d", "rho", "n", "seed", "task_seed", "lambda", "lambda_max"]
BASE += ["variance", "theorem_log10_m", "scan_stop", "wall_seconds"]
_THRESH = ["first", "stable", "lower", "upper", "scanned_to"]
#: Per-scaling list columns kept as their first entry (the first scaling).
LISTS = [f"conv_{k}" for k in (*_THRESH, "diverged", "budget")]
LISTS += [
    f"train_{c}_{k}"
    for c in ("op1_2", "eig1_2")
    for k in ("m", "steps", "converged", "dev0", "sup_dev", "eig0", "inf_eig")
]


def _columns() -> list[str]:
    return BASE + [f"{c}_{k}" for c in CRITERIA for k in (*_THRESH, "censored_by")]


def collect(run_dirs: Iterable[str | Path], path: str | Path) -> int:
    """Write the per-seed rows of each run directory to ``path`` (.csv.gz); the row count.

    A directory's name is its preset; ``DIR:LABEL`` files its rows under preset LABEL instead (e.g. the
    lazy-only rerun of ``full``'s small-n tasks, or the GD-only ``full-gd`` run, as ``full``). An entry that
    is a stored rows file (``.csv.gz``, this function's output) contributes its rows as they are, so new runs
    can be added to ``docs/results/width/rows.csv.gz`` without the run directories it was made from. A task
    present more than once under one label (same n, d, rho, seed: the same data and network) becomes one row:
    each column from the first entry given that has it (so a GD-only run fills the GD columns of a lazy
    run's rows, and never overwrites what an earlier entry measured).
    """
    import pandas as pd

    frames = [_stored(Path(spec)) if str(spec).endswith(".csv.gz") else _run_rows(str(spec)) for spec in run_dirs]
    out = pd.concat(frames, ignore_index=True)
    columns = [c for c in _columns() + LISTS if c in out]
    key = [c for c in ("preset", "data", "n", "d", "rho", "seed") if c in out]
    how: dict[str, Any] = {c: "first" for c in columns if c not in key}
    if "wall_seconds" in how:  # a task's time is the sum of its runs' (a lazy run and a GD-only run)
        how["wall_seconds"] = lambda v: v.sum(min_count=1)
    out = out.groupby(key, sort=False, dropna=False).agg(how).reset_index()[columns]
    from ..core.storage import atomic_open

    with atomic_open(path, "wb") as fh:  # gzip without a time stamp: the same rows give the same bytes
        out.to_csv(fh, index=False, float_format="%.10g", compression={"method": "gzip", "mtime": 0})
    return len(out)


def _stored(path: Path) -> Any:
    """Rows of a stored rows file as ``collect`` writes them (list columns as scalars)."""
    import pandas as pd

    if not path.is_file():
        raise ValueError(f"{str(path)!r} is not a stored rows file; give a width run directory or an existing .csv.gz")
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def _run_rows(spec: str) -> Any:
    """The kept columns of one width run directory (``DIR`` or ``DIR:LABEL``), list columns reduced."""
    from .store import ResultStore

    where, _, name = spec.partition(":")
    run = Path(where)
    df = ResultStore(run / "width").read()
    if not len(df):
        raise ValueError(f"{str(run)!r} holds no width rows; run `expreg run width --preset {run.name} --out {run}`")
    config = json.loads((run / "width" / "config.json").read_text())
    df = df[df.config_hash == config["config_hash"]].copy()
    df["preset"] = name or run.name
    for col in LISTS:
        if col in df:
            df[col] = [v[0] if isinstance(v, (list, np.ndarray)) and len(v) else np.nan for v in df[col]]
    return df[[c for c in _columns() + LISTS if c in df]]


def read(path: str | Path) -> Any:
    """The stored rows, with GD's and along-training columns as one-entry lists again (the analysis's form)."""
    import pandas as pd

    df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    for c in CRITERIA:
        col = f"{c}_censored_by"
        if col in df:
            df[col] = ["" if not isinstance(v, str) else v for v in df[col].astype(object)]
    for col in LISTS:
        if col in df:
            df[col] = [np.nan if np.isnan(v) else [float(v)] for v in df[col].to_numpy(float)]  # inf: censored
    return df


def _presets(df: Any) -> list[str]:
    order = ["full", "dsweep", "fixedlambda", "beyondcap", "heavy", *CHECKS]
    found = list(dict.fromkeys(df["preset"]))
    return [p for p in order if p in found] + [p for p in found if p not in order]


#: Robustness presets: each reruns tasks of ``full`` (same data and networks) with one setting changed.
CHECKS = {
    "check-float64": "features in float64 instead of float32",
    "check-grid": "grid ratio 2^(1/8) instead of 2^(1/4)",
}


def check_table(df: Any) -> list[dict[str, Any]]:
    """Each robustness preset against ``full`` on the same tasks: per criterion, how many seeds' intervals agree
    and the median ratio of stable passes (check / full)."""
    rows: list[dict[str, Any]] = []
    base = df[df["preset"] == "full"].set_index(["n", "d", "seed"])
    for preset, what in CHECKS.items():
        other = df[df["preset"] == preset].set_index(["n", "d", "seed"])
        common = other.index.intersection(base.index)
        if not len(common):
            continue
        for crit in CRITERIA:
            a, b = base.loc[common], other.loc[common]
            same = (a[f"{crit}_lower"] == b[f"{crit}_lower"]) & (a[f"{crit}_upper"] == b[f"{crit}_upper"])
            ratio = (b[f"{crit}_upper"] / a[f"{crit}_upper"]).to_numpy(float)
            ok = np.isfinite(ratio)
            rows.append(
                {
                    "check": f"{preset}: {what}",
                    "criterion": crit,
                    "seeds compared": len(common),
                    "identical interval": int(same.sum()),
                    "stable pass, check / full: median": f"{np.median(ratio[ok]):.3f}" if ok.any() else "-",
                    "range": f"{ratio[ok].min():.3f} .. {ratio[ok].max():.3f}" if ok.any() else "-",
                }
            )
    return rows


def time_table(df: Any, workers: int = 2) -> list[dict[str, Any]]:
    """Per preset: its tasks' run time summed (each task's wall time in its worker) and the least wall time on
    ``workers`` cores, max(sum / workers, longest task), as the stored rows record them."""
    rows = []
    for preset in _presets(df):
        t = df.loc[df["preset"] == preset, "wall_seconds"].to_numpy(float)
        t = t[np.isfinite(t)]
        if not len(t):
            continue
        rows.append(
            {
                "preset": preset,
                "tasks": len(t),
                "run time summed (h)": round(float(t.sum()) / 3600, 2),
                "longest task (min)": round(float(t.max()) / 60, 1),
                f"wall on {workers} cores, at least (h)": round(
                    max(float(t.sum()) / workers, float(t.max())) / 3600, 2
                ),
            }
        )
    return rows


def _with_gd_reach(cfg: Any, rows: Any) -> Any:
    """``cfg`` with ``conv_n_max`` raised to the largest n whose rows have GD's columns (a GD-only run filed
    under this preset, such as ``full-gd`` under ``full``, reaches further than the preset's own GD)."""
    if "conv_lower" not in rows:
        return cfg
    has = rows["conv_lower"].map(lambda v: isinstance(v, list) and len(v) > 0 and np.isfinite(v[0]))
    if not has.any():
        return cfg
    reach = int(rows.loc[has, "n"].max())
    return cfg.model_copy(update={"conv_n_max": max(cfg.conv_n_max, reach)})


def summary(path: str | Path, figures_dir: str | Path | None = None) -> dict[str, Any]:
    """Every width table (per preset, and the laws over all presets) and figure, from the stored rows alone."""
    from . import width_analysis, width_figures, width_predict
    from .width import PRESETS, Config

    df = read(path)
    tables: dict[str, Any] = {}
    headline: dict[str, str] = {}
    stems: list[str] = []
    for preset in [p for p in _presets(df) if p not in CHECKS]:
        cfg = Config(**PRESETS[preset]) if preset in PRESETS else Config()
        rows = width_analysis.with_design(df[df["preset"] == preset])
        cfg = _with_gd_reach(cfg, rows)
        part = width_analysis.summarise(rows, cfg)
        tables.update({f"{preset}: {k}": v for k, v in part["tables"].items()})
        headline.update({f"{preset}: {k}": v for k, v in part["headline"].items()})
        if figures_dir is not None and preset == "full":
            an = width_analysis.analysed(rows, cfg)
            stems += width_figures.all_figures(rows, an, cfg, figures_dir)
    tables["robustness: float64 and grid ratio against full"] = check_table(df)
    tables["run time per preset"] = time_table(df)
    every = width_analysis.with_design(df[~df["preset"].isin(list(CHECKS))])
    tables.update({f"laws: {k}": v for k, v in width_predict.law_tables(every, Config()).items()})
    notes = width_analysis.notes(Config(**PRESETS["full"]))
    notes.append("Presets: " + "; ".join(f"{p}: {int((df.preset == p).sum())} rows" for p in _presets(df)))
    return {
        "experiment": "width",
        "versioned_name": "width-v3",
        "description": "Per-seed width thresholds of several designs, recomputed from docs/results/width/rows.csv.gz.",
        "runs": len(df),
        "headline": headline,
        "tables": tables,
        "notes": notes,
        "figures": stems,
    }
