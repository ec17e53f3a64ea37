"""Per-seed thresholds from width scans, the step budget of the convergence probes, the censored analysis plumbing."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from expreg.experiments import get_config
from expreg.experiments.thresholds import confirmed, threshold
from expreg.experiments.width import budget, steps_to_epsilon
from expreg.experiments.width_analysis import observations, summarise


def test_monotone_scan_gives_the_grid_interval() -> None:
    t = threshold([2, 4, 8, 16], [False, False, True, True])
    assert (t.first, t.stable, t.lower, t.upper, t.censored) == (8.0, 8.0, 4.0, 8.0, False)


def test_non_monotone_scan_spans_earliest_to_stable_pass() -> None:
    t = threshold([2, 4, 8, 16, 32, 64], [False, True, True, False, True, True])
    assert (t.first, t.stable, t.lower, t.upper) == (4.0, 32.0, 2.0, 32.0)


def test_never_passing_seed_is_right_censored_at_its_last_width() -> None:
    t = threshold([2, 4, 8], [False, False, False])
    assert math.isnan(t.first) and t.lower == 8.0 and math.isinf(t.upper) and t.censored
    t = threshold([2, 4, 8], [False, True, False])  # passed once, failed at the cap: (2, inf)
    assert t.lower == 2.0 and t.censored


def test_first_grid_width_passing_is_left_censored() -> None:
    t = threshold([2, 4], [True, True])
    assert t.lower == 0.0 and t.upper == 2.0


@pytest.mark.parametrize("widths, passed", [([], []), ([2, 4], [True]), ([4, 2], [True, True])])
def test_threshold_refuses_bad_scans(widths, passed) -> None:
    with pytest.raises(ValueError):
        threshold(widths, passed)


def test_confirmed_needs_passes_over_the_factor() -> None:
    w = [2, 4, 8, 16, 32]
    assert confirmed(w[:3], [False, True, True], 2.0)  # passes from 4 to 8: a factor 2
    assert not confirmed(w[:3], [False, False, True], 2.0)
    assert confirmed(w, [False, True, False, True, True], 2.0)  # 16 .. 32
    assert not confirmed(w, [False, True, False, True, True], 4.0)
    assert not confirmed(w, [True, True, True, True, False], 2.0)


def test_steps_to_epsilon_matches_the_linear_recurrence() -> None:
    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 6))
    H = A @ A.T + 0.1 * np.eye(6)
    r0 = rng.standard_normal(6)
    lr = 1.0 / np.linalg.eigvalsh(H)[-1]
    eps = 1e-3
    r, t = r0.copy(), 0
    while np.linalg.norm(r) > eps:  # explicit iteration r <- (I - lr H) r
        r = r - lr * H @ r
        t += 1
    assert steps_to_epsilon(H, r0, lr, eps, cap=10 * t) == t
    assert math.isinf(steps_to_epsilon(H, r0, lr, eps, cap=t - 1))


def test_budget_is_a_multiple_of_the_prediction_within_bounds() -> None:
    cfg = get_config("width", "tiny")
    assert budget(cfg, 1000.0) == min(cfg.max_steps, int(cfg.budget_factor * 1000))
    assert budget(cfg, 1.0) == cfg.min_steps
    assert budget(cfg, math.inf) == cfg.max_steps


def _synthetic(exponent: float, seeds: int = 25, cap: float = 2**12) -> pd.DataFrame:
    """Rows as run_one writes them, with thresholds log m* = 1 + exponent log n + 0.5 eps on a 2^(1/4) grid."""
    rng = np.random.default_rng(1)
    grid = 2.0 ** (np.arange(4, 68) / 4)
    rows = []
    for n in (8, 16, 32, 64, 128):
        for s in range(seeds):
            m = math.exp(1 + exponent * math.log(n) + 0.5 * rng.standard_normal())
            k = int(np.searchsorted(grid, m))
            lower = grid[k - 1] if k > 0 else 0.0
            upper = grid[k] if grid[k] <= cap else math.inf
            lower = min(lower, cap) if math.isinf(upper) else lower
            rows.append(
                {
                    "activation": "exp",
                    "init": "coupled",
                    "d": 16,
                    "n": n,
                    "seed": s,
                    "lambda": 1.0,
                    "theorem_log10_m": 20.0,
                    "op1_2_lower": lower,
                    "op1_2_upper": upper,
                    "eig1_2_lower": lower,
                    "eig1_2_upper": upper,
                }
            )
    return pd.DataFrame(rows)


def test_summary_recovers_a_known_exponent_and_keeps_censored_seeds() -> None:
    cfg = get_config("width", "tiny", conv=False, ns=[8, 16, 32, 64, 128])
    df = _synthetic(1.5)
    obs = observations(df, "op1_2")
    assert obs["n"].size == len(df) and np.isinf(obs["upper"]).sum() > 0  # censored kept
    summary = summarise(df, cfg)
    row = next(r for r in summary["tables"]["fitted exponents"] if r["criterion"] == "op1_2")
    _point, interval = row["exponent of m* on n [90%]"].split(" ", 1)
    lo, hi = (float(v) for v in interval.strip("[]").split(","))
    assert lo <= 1.5 <= hi and hi - lo < 0.3
    assert row["right-censored (by cause)"] == f"{int(np.isinf(obs['upper']).sum())} cap"


def test_uninformative_seed_is_counted_not_fitted() -> None:
    df = _synthetic(1.0).iloc[:12].copy()
    df.loc[0, ["op1_2_lower", "op1_2_upper"]] = [0.0, math.inf]
    obs = observations(df, "op1_2")
    assert obs["uninformative"] == 1 and obs["n"].size == 11


def test_summary_fits_each_scalings_convergence_threshold_under_its_own_label() -> None:
    """Two scalings with known, different exponents of m*_conv: each "conv, s=..." row recovers its own."""
    cfg = get_config("width", "tiny", conv=True, scalings=["none", "ntk"], ns=[8, 16, 32, 64, 128])
    df_none, df_ntk = _synthetic(1.0), _synthetic(1.75, cap=2**16)
    df = df_none.copy()
    df["conv_lower"] = [[a, b] for a, b in zip(df_none.op1_2_lower, df_ntk.op1_2_lower, strict=True)]
    df["conv_upper"] = [[a, b] for a, b in zip(df_none.op1_2_upper, df_ntk.op1_2_upper, strict=True)]
    rows = {r["criterion"]: r for r in summarise(df, cfg)["tables"]["fitted exponents"]}
    assert {"conv, s=none", "conv, s=ntk"} <= rows.keys()
    for label, exponent in (("conv, s=none", 1.0), ("conv, s=ntk", 1.75)):
        _point, interval = rows[label]["exponent of m* on n [90%]"].split(" ", 1)
        lo, hi = (float(v) for v in interval.strip("[]").split(","))
        assert lo <= exponent <= hi and hi - lo < 0.3, (label, interval)
