"""The width law's pieces against independent truth: the fixed-lambda family's closed forms, the Bernstein
variance against Monte Carlo, the five criteria from one pass, the censoring cause, laws recovered by
prediction from data simulated under a known law, and the user-data answer on orthonormal points."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from expreg.core import kernels
from expreg.core.data import equicorrelated
from expreg.experiments import get_config
from expreg.experiments.width import run_one, task_seed, tasks
from expreg.experiments.width_analysis import with_design
from expreg.experiments.width_laws import LAWS, bernstein_variance
from expreg.experiments.width_predict import fit_law, prediction_rows, score
from expreg.experiments.width_rules import CRITERIA, STOP_CAP, STOP_CONFIRMED, STOP_GIVE_UP, StopRule, geometric_grid

E2 = math.e**2


@pytest.mark.parametrize("rho", [0.0, 0.25, 0.5])
def test_equicorrelated_family_keeps_lambda_fixed_from_n_8_to_512(rho: float) -> None:
    """lambda(n) = e^2 - rho e^{1+rho} exactly (closed form of H^cts = (e^2 - c) I + c 1 1^T), so within 1.5."""
    expected = E2 - rho * math.exp(1 + rho)
    lams = []
    for n in (8, 16, 64, 256, 512):
        X = equicorrelated(n, rho, seed=n)
        assert X.shape == (n, n + 1)
        np.testing.assert_allclose(X @ X.T, (1 - rho) * np.eye(n) + rho, atol=1e-12)
        lam, top = kernels.extreme_eigenvalues(kernels.ntk(X), method="dense")
        assert top == pytest.approx(expected + n * rho * math.exp(1 + rho), rel=1e-9)
        lams.append(lam)
    np.testing.assert_allclose(lams, expected, rtol=1e-9)
    assert max(lams) / min(lams) <= 1.5


def test_equicorrelated_seeds_rotate_the_points_and_refuse_bad_rho() -> None:
    a, b = equicorrelated(6, 0.3, seed=0), equicorrelated(6, 0.3, seed=1)
    assert not np.allclose(a, b)
    with pytest.raises(ValueError, match="rho"):
        equicorrelated(4, 1.0)


def test_bernstein_variance_matches_monte_carlo() -> None:
    """v = ||E[h^2] - H^2|| from the closed form against a 10^6-neuron average (small norms: light tails)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 3))
    X *= 0.4 / np.linalg.norm(X, axis=1, keepdims=True)
    P = np.exp(X @ rng.standard_normal((3, 10**6)))
    G = X @ X.T
    Eh2 = np.einsum("ij,jk,ir,jr,kr->ik", G, G, P, P**2, P, optimize=True) / P.shape[1]
    H = kernels.ntk(X)
    assert bernstein_variance(X) == pytest.approx(np.linalg.norm(Eh2 - H @ H, 2), rel=0.02)


def test_bernstein_variance_of_orthonormal_points_is_e8_minus_e4() -> None:
    """Orthonormal points: h is diagonal with entries exp(2 g_i), so v = Var(exp(2g)) = e^8 - e^4."""
    X = np.linalg.qr(np.random.default_rng(1).standard_normal((9, 9)))[0][:5]
    assert bernstein_variance(X) == pytest.approx(math.exp(8) - math.exp(4), rel=1e-9)


def test_five_criteria_come_from_one_scan_and_nest() -> None:
    """Every criterion is read off the same trace; a stricter fraction never passes earlier or more stably."""
    cfg = get_config("width", "tiny", conv=False, train_n_max=0, m_cap=2**14)
    row = run_one(cfg, {"activation": "exp", "init": "coupled", "data": "sphere", "d": 8, "n": 4}, 0)
    widths, dev, eig = row["scan_widths"], row["scan_op"], row["scan_eig"]
    for name, c in CRITERIA.items():
        ok = c.passed(dev if c.kind == "op" else eig)
        upper = row[f"{name}_upper"]
        if math.isfinite(upper):
            assert all(ok[widths.index(upper) :]) and (widths.index(upper) == 0 or not ok[widths.index(upper) - 1])
        assert row[f"{name}_censored_by"] == ("" if math.isfinite(upper) else row["scan_stop"])
    stable = {k: row[f"{k}_upper"] for k in CRITERIA}
    assert stable["op1_4"] >= stable["op1_2"] >= stable["op3_4"]
    assert stable["eig3_4"] >= stable["eig1_2"]
    assert row["lambda_max"] > row["lambda"] > 0 and row["variance"] > 0


def _trace(widths: list[int], dev: float, eig: float) -> tuple[list[int], list[float], list[float]]:
    return widths, [dev] * len(widths), [eig] * len(widths)


def test_stop_rule_names_its_cause() -> None:
    grid = geometric_grid(2, 2**20, 2.0)
    rule = StopRule(confirm_factor=2.0, give_up=4.0, give_up_from=2**16, m_cap=grid[-1])
    assert rule.reason(*_trace(grid[:3], 0.1, 0.95)) == STOP_CONFIRMED  # everything passes over a factor 2
    # eig confirmed, op 40 lambda at 2^16: even m^-1/2 four times faster misses lambda/4 at 2^20 -> give up
    upto = grid[: grid.index(2**16) + 1]
    assert rule.reason(*_trace(upto, 40.0, 0.95)) == STOP_GIVE_UP
    assert rule.reason(*_trace(upto[:-1], 40.0, 0.95)) is None  # before give_up_from: go on
    assert rule.reason(*_trace(upto, 2.0, 0.95)) is None  # not hopeless: go on
    assert rule.reason(*_trace(upto, 40.0, 0.3)) is None  # eig not confirmed: go on
    assert rule.reason(*_trace(grid, 2.0, 0.95)) == STOP_CAP
    off = StopRule(2.0, 0.0, 2**16, grid[-1])
    assert off.reason(*_trace(upto, 40.0, 0.95)) is None and off.reason(*_trace(grid, 40.0, 0.95)) == STOP_CAP


def test_presets_of_the_designs() -> None:
    fam = get_config("width", "fixedlambda")
    ts = tasks(fam)
    assert {p["d"] - p["n"] for p, _ in ts} == {1} and {p["rho"] for p, _ in ts} == {0.0, 0.25}
    # each rho of the family draws its own networks: equal seeds never share one
    assert task_seed(0, 8, 9, 0.0) != task_seed(0, 8, 9, 0.25) != task_seed(0, 8, 9)
    beyond = get_config("width", "beyondcap")
    assert beyond.give_up == 0 and beyond.grid[-1] >= 2**26 and len(beyond.seeds) >= 10 and beyond.ns == [128]
    sweep = get_config("width", "dsweep")
    assert sweep.ds == [4, 6, 8, 12, 16, 24, 32, 64] and sweep.ns == [16, 64] and len(sweep.seeds) == 20
    # the GD-only presets rerun tasks of the designs they are filed under (same n, d, rho, seed: same data)
    for extra, base in (("full-gd", "full"), ("fixedlambda-gd", "fixedlambda")):
        cfg, ref = get_config("width", extra), get_config("width", base)
        assert not cfg.lazy and cfg.conv_n_max >= max(cfg.ns) == 256
        key = [(p["n"], p["d"], p.get("rho"), s) for p, s in tasks(cfg)]
        assert set(key) <= {(p["n"], p["d"], p.get("rho"), s) for p, s in tasks(ref)}


def _simulated(law_name: str, log_c: float, sigma: float, seed: int = 0) -> pd.DataFrame:
    """Per-seed intervals on a 2^(1/4) grid of thresholds drawn from a known law, for sphere-like and family designs."""
    rng = np.random.default_rng(seed)
    grid = np.array(geometric_grid(2, 2**30, 2**0.25), dtype=float)
    rows = []
    designs = [("sphere", d, np.nan, "full") for d in (8, 16, 32)] + [("sphere", d, np.nan, "dsweep") for d in (4, 64)]
    designs += [("equicorrelated", 0, r, "fixedlambda") for r in (0.0, 0.25)]
    for data, d, rho, preset in designs:
        for n in (8, 16, 32, 64, 128):
            for s in range(12):
                lam = 7.0 - rho * 3 if data != "sphere" else 8.0 * (d / 16) ** 0.5 * n ** (-4.0 / d)
                top = 7.0 + n * rho * 3 if data != "sphere" else 10.0 * n**0.5 * (16 / d)
                cov = {
                    "n": np.array([n]),
                    "lambda": np.array([lam]),
                    "opnorm": np.array([top]),
                    "variance": np.array([top * 50]),
                }
                law = LAWS[law_name]
                m = math.exp(log_c + law.offset(cov)[0] + sigma * rng.standard_normal())
                k = int(np.searchsorted(grid, m))
                rows.append(
                    {
                        "activation": "exp",
                        "init": "coupled",
                        "data": data,
                        "d": d if data == "sphere" else n + 1,
                        "rho": rho,
                        "n": n,
                        "seed": s,
                        "preset": preset,
                        "lambda": lam,
                        "lambda_max": top,
                        "variance": top * 50,
                        "op1_4_lower": grid[k - 1] if k else 0.0,
                        "op1_4_upper": grid[k],
                    }
                )
    return with_design(pd.DataFrame(rows))


def test_a_known_law_wins_by_prediction_and_its_constant_is_recovered() -> None:
    """Thresholds simulated from C ||H|| ln(n) / lambda^2: held out, that law predicts within its noise, the
    pooled power law (fitted where n and lambda move together) does worse on the fixed-lambda family."""
    df = _simulated("concentration", log_c=3.0, sigma=0.3)
    rows = prediction_rows(df, "op1_4", level=0.9)
    conc = [r for r in rows if r["law"].startswith("concentration")]
    assert {r["tested on"] for r in conc} >= {"n-grid d=8", "dsweep", "fixedlambda"}
    assert all(float(r["held-out rms, cell medians (log2)"]) < 0.35 for r in conc)
    fam = {
        r["law"].split(":")[0]: float(r["held-out rms, cell medians (log2)"])
        for r in rows
        if r["fitted on"] == "full" and r["tested on"] == "fixedlambda"
    }
    assert fam["concentration"] < fam["pooled"]
    from expreg.experiments.width_predict import law_observations

    obs = law_observations(df, "op1_4")
    fit = fit_law(LAWS["concentration"], obs)
    lo, hi = fit.intervals[0]
    assert lo <= 3.0 <= hi and hi - lo < 0.2
    s = score(LAWS["concentration"], fit, obs)
    assert s.cell_rms < 0.3 and s.seeds == int((df["op1_4_lower"] > 0).sum())


def _orthonormal(n: int, seed: int = 3) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((n + 2, n + 2)))[0][:n]


def test_width_for_orthonormal_points_matches_an_independent_simulation() -> None:
    """Orthonormal points: H^dis is diagonal with entries the running means of e^{2g} (g ~ N(0, 1), one draw
    per coupled pair), so the op1_2 threshold's distribution is simulated without the library's scan."""
    from expreg.experiments.data_width import width_for_data

    n = 6
    answer = width_for_data(_orthonormal(n), seeds=12, m_cap=2**16, conv_seeds=0)
    assert answer.lam == pytest.approx(E2, rel=1e-12) and answer.opnorm == pytest.approx(E2, rel=1e-12)
    assert answer.variance == pytest.approx(math.exp(8) - math.exp(4), rel=1e-9)
    grid = np.array(geometric_grid(2, 2**16, 2**0.25))
    rng = np.random.default_rng(2024)
    stable = []
    for _ in range(300):
        g = rng.standard_normal((n, grid[-1] // 2))
        means = np.cumsum(np.exp(2 * g), axis=1)[:, grid // 2 - 1] / (grid // 2)
        dev, low = np.max(np.abs(means - E2), axis=0) / E2, np.min(means, axis=0) / E2
        passes = [dev <= 0.25, dev <= 0.5, dev <= 0.75, low >= 0.5, low >= 0.75]
        end = len(grid) - 1  # the documented stop: every criterion passing over a factor 2 of width
        for k in range(len(grid)):
            starts = [k - np.argmin(p[k::-1]) + 1 if not p[: k + 1].all() else 0 for p in passes]
            if all(p[k] and grid[k] >= 2 * grid[j] for p, j in zip(passes, starts, strict=True)):
                end = k
                break
        ok = passes[1][: end + 1]
        last_fail = np.flatnonzero(~ok)
        stable.append(grid[last_fail[-1] + 1] if last_fail.size else grid[0])
    c = answer.criteria["op1_2"]
    from scipy import stats

    library = [hi for _lo, hi in c["per_seed"]]  # each seed's stable pass, from the library's scan
    assert stats.mannwhitneyu(library, stable).pvalue > 0.01, (sorted(library), np.median(stable))
    assert c["censored"] == 0 and answer.criteria["op1_4"]["median"] > c["median"]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda X: np.vstack([X, X[2]]), "rows 2 and 6 coincide"),
        (lambda X: X * 1.5, "outside the unit ball"),
    ],
)
def test_width_for_data_refuses_data_without_a_positive_lambda(edit, message) -> None:
    from expreg.experiments.data_width import width_for_data

    with pytest.raises(ValueError, match=message):
        width_for_data(edit(_orthonormal(6)), seeds=2, m_cap=64, conv_seeds=0)


def test_cli_width_answers_in_json_and_refuses_duplicates(tmp_path) -> None:
    import json

    from expreg.cli import main

    X = _orthonormal(5)
    np.savez(tmp_path / "ok.npz", X=X, y=np.linspace(-0.5, 0.5, 5))
    np.savez(tmp_path / "dup.npz", X=np.vstack([X, X[:1]]), y=np.zeros(6))
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(
            [
                "width",
                "--data",
                str(tmp_path / "ok.npz"),
                "--seeds",
                "3",
                "--m-cap",
                "4096",
                "--conv-seeds",
                "1",
                "--json",
            ]
        )
    assert rc == 0
    answer = json.loads(out.getvalue())
    assert answer["n"] == 5 and set(answer["criteria"]) == set(CRITERIA) and answer["cost"]["seconds"] > 0
    assert len(answer["conv"]["per_seed"]) == 1
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["width", "--data", str(tmp_path / "dup.npz"), "--quiet"])
    assert rc == 2


def test_stored_law_constants_are_recomputed_from_the_stored_rows() -> None:
    """width_laws.FITTED (what `expreg width --data` predicts with) is the fit of the stored per-seed rows."""
    from pathlib import Path

    from expreg.experiments import width_rows
    from expreg.experiments.width_laws import FITTED
    from expreg.experiments.width_predict import fitted_constants

    rows = Path(__file__).resolve().parents[1] / "docs" / "results" / "width" / "rows.csv.gz"
    if not FITTED:
        pytest.fail("width_laws.FITTED is empty: fill it from python docs/gen_results.py")
    df = with_design(width_rows.read(rows))
    df = df[~df["preset"].isin(list(width_rows.CHECKS))]
    for crit, stored in FITTED.items():
        again = fitted_constants(df, crit, stored["law"], stored["held_out_rms_log2"])
        for key in ("log_C", "log_C_low", "log_C_high", "sigma"):
            assert again[key] == pytest.approx(stored[key], rel=1e-6, abs=1e-9), (crit, key)
        np.testing.assert_allclose(again["coef"], stored["coef"], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(again["lambda_range"], stored["lambda_range"], rtol=1e-9)
        assert again["n_range"] == stored["n_range"]


def test_gd_only_rows_fill_the_gd_columns_of_the_lazy_rows_of_the_same_tasks(tmp_path) -> None:
    """`lazy = false` runs GD's scan alone on the same data and networks; collect files it beside the lazy rows."""
    from expreg.experiments import width_rows
    from expreg.experiments.width import Config
    from expreg.experiments.width_rules import CRITERIA as CRITS

    base = {"ns": [8], "ds": [4], "seeds": [0], "m_cap": 2**10, "grid_ratio": 2**0.5, "m_max_conv": 64}
    base |= {"max_steps": 3000, "train_n_max": 0}
    with pytest.raises(ValueError, match="lazy = false keeps only GD"):
        Config(**{**base, "train_n_max": 8}, lazy=False)
    gd_only, lazy = Config(**base, lazy=False, conv_n_max=8), Config(**base, conv=False)
    params = {"activation": "exp", "init": "coupled", "data": "sphere", "d": 4, "n": 8}
    g, z = run_one(gd_only, params, 0), run_one(lazy, params, 0)
    assert not any(k.startswith(tuple(CRITS)) for k in g) and "conv_upper" not in z
    assert g["task_seed"] == z["task_seed"] and g["lambda"] == z["lambda"]  # the same task: same data
    # without the lazy scan GD meets the same data and networks: its columns are those of a run with both
    both = run_one(Config(**base, conv_n_max=8), params, 0)
    assert {k: v for k, v in g.items() if k.startswith("conv")} == {
        k: v for k, v in both.items() if k.startswith("conv")
    }
    assert both["op1_4_upper"] == z["op1_4_upper"] and np.isfinite(g["conv_upper"][0])
    first_pass = g["conv_first"][0]
    # a GD-only run's own report: GD's table, no lazy criteria and no law
    from expreg.experiments import width

    df = pd.DataFrame([{**g, **params, "seed": 0, "rho": np.nan}])
    summary = width.summarise(df, gd_only)
    assert summary["tables"]["GD convergence"] and not any(k.startswith("laws") for k in summary["tables"])
    assert "width_law" not in width.figures(df, gd_only, tmp_path / "figures")

    def stored(name: str, row: dict, wall: float) -> str:
        path = tmp_path / f"{name}.csv.gz"
        flat = {k: (v[0] if isinstance(v, list) else v) for k, v in row.items() if not k.startswith("scan_")}
        flat |= {**params, "seed": 0, "rho": np.nan, "preset": "full", "wall_seconds": wall}
        pd.DataFrame([flat]).to_csv(path, index=False)
        return str(path)

    out = tmp_path / "rows.csv.gz"
    conflicting = dict(g, lambda_max=-1.0)  # a later entry never overwrites what an earlier one has
    assert width_rows.collect([stored("lazy", z, 1800.0), stored("gd", conflicting, 5400.0)], out) == 1
    merged = width_rows.read(out).iloc[0]
    assert merged["op1_4_upper"] == z["op1_4_upper"] and merged["conv_first"] == [first_pass]
    assert merged["lambda_max"] == pytest.approx(z["lambda_max"], rel=1e-9)
    # the task's time is both runs' (0.5 h + 1.5 h): one task, so at least its 2 h on any number of cores
    (timing,) = width_rows.time_table(width_rows.read(out))
    assert timing["run time summed (h)"] == 2.0 and timing["wall on 2 cores, at least (h)"] == 2.0
    with pytest.raises(ValueError, match="not a stored rows file"):
        width_rows.collect([str(tmp_path / "missing.csv.gz")], out)
