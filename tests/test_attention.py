"""Experiment ``attention``: tokens, per-width scans against a direct computation, thresholds, the proven
relation between the width criteria and the attention error, the orthogonal-gain fit, and a whole run."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from expreg import ExpNet, kernels
from expreg.core.data import sphere
from expreg.core.softmax_features import feature_weights, positive_features
from expreg.experiments import attention, get_config
from expreg.experiments.attention_analysis import orthogonal_gain, summarise
from expreg.experiments.width import task_seed


def direct_errors(Q: np.ndarray, K: np.ndarray, m: int, seed: int, variant: str) -> tuple[float, float]:
    """Relative op-norm and mean row-TV error of the width-m estimate, from scratch (SVD, explicit rows)."""
    W = feature_weights(Q.shape[1], 0, m, seed=seed, variant=variant)
    A_hat = positive_features(Q, W) @ positive_features(K, W).T
    A = np.exp(Q @ K.T)
    s = lambda M: np.linalg.svd(M, compute_uv=False)[0]  # noqa: E731
    tv = np.mean([0.5 * np.abs(A_hat[i] / A_hat[i].sum() - A[i] / A[i].sum()).sum() for i in range(len(Q))])
    return s(A_hat - A) / s(A), float(tv)


def brute_threshold(widths: list[float], passed: list[bool]) -> tuple[float, float]:
    """(lower, upper) by definition: upper the smallest width from which all pass, lower the width before the first pass."""
    upper = next((w for i, w in enumerate(widths) if all(passed[i:])), math.inf)
    first = next((i for i, p in enumerate(passed) if p), None)
    lower = widths[-1] if first is None else (0.0 if first == 0 else widths[first - 1])
    return lower, upper


@pytest.fixture(scope="module")
def cfg() -> attention.Config:
    return get_config("attention", "tiny", m_cap=2**11, side_m_cap=2**12)


def test_tokens_follow_their_stated_distributions() -> None:
    Q, K = attention.tokens("sphere", 50, 6, 0.5, seed=3)
    np.testing.assert_allclose((Q * Q).sum(1), 2.0)  # ||q||^2 = 1/tau
    G, _ = attention.tokens("gaussian", 4000, 8, 2.0, seed=3)
    assert abs((G * G).sum(1).mean() - 0.5) < 5 * 0.5 * np.sqrt(2 / 8) / np.sqrt(
        4000
    )  # E||q||^2 = 1/tau, sd (1/tau) sqrt(2/d)
    assert abs(G.std() - np.sqrt(1 / (8 * 2.0))) < 0.01
    Q2, _ = attention.tokens("sphere", 50, 6, 0.5, seed=3)
    np.testing.assert_array_equal(Q, Q2)
    assert abs(np.corrcoef(Q.ravel(), K.ravel())[0, 1]) < 5 / np.sqrt(Q.size)  # queries and keys: own streams
    with pytest.raises(ValueError, match="dist"):
        attention.tokens("cauchy", 2, 2, 1.0, seed=0)


def test_config_lines_must_cross_at_the_centre() -> None:
    with pytest.raises(ValueError, match="n_centre in ns"):
        get_config("attention", "quick", n_centre=48)
    with pytest.raises(ValueError, match="positive"):
        get_config("attention", "quick", rel_levels=[0.1, -0.2])
    cfg = get_config("attention", "quick")
    cells = {(p["n"], p["d"], p["temperature"]) for p, _ in attention.tasks(cfg) if p["pairing"] == "cross"}
    assert len(cells) == len(cfg.ns) + len(cfg.ds) + len(cfg.temperatures) - 2  # three lines, one shared centre


@pytest.mark.parametrize(
    "params",
    [
        {"pairing": "cross", "dist": "sphere", "n": 8, "d": 4, "temperature": 1.0, "variant": "iid"},
        {"pairing": "cross", "dist": "gaussian", "n": 12, "d": 3, "temperature": 0.5, "variant": "orthogonal"},
    ],
)
def test_cross_scan_and_thresholds_match_a_direct_per_width_computation(cfg: attention.Config, params: dict) -> None:
    row = attention.run_one(cfg, params, seed=1)
    ts = attention.attention_seed(1, params["dist"], params["n"], params["d"], params["temperature"])
    Q, K = attention.tokens(params["dist"], params["n"], params["d"], params["temperature"], ts)
    widths = row["scan_widths"]
    direct = [direct_errors(Q, K, int(m), ts, params["variant"]) for m in widths]
    np.testing.assert_allclose(row["scan_rel"], [r for r, _ in direct], rtol=1e-9)
    np.testing.assert_allclose(row["scan_tv"], [t for _, t in direct], rtol=1e-9)
    for crit, (metric, level) in cfg.criteria().items():
        values = [r if metric == "rel" else t for r, t in direct]
        lower, upper = brute_threshold(widths, [v <= level for v in values])
        assert (row[f"{crit}_lower"], row[f"{crit}_upper"]) == (lower, upper), crit
    # the scan stopped at the cap or once every criterion had held over the confirmation factor
    assert widths[-1] == max(w for w in attention.geometric_grid(cfg.m_min, cfg.m_cap, cfg.grid_ratio)) or all(
        math.isfinite(row[f"{c}_upper"]) and widths[-1] >= cfg.confirm_factor * row[f"{c}_upper"]
        for c in cfg.criteria()
    )


@pytest.mark.parametrize("variant", ["iid", "orthogonal"])
def test_side_by_side_h_dis_is_the_coupled_networks_and_the_bound_holds(cfg: attention.Config, variant: str) -> None:
    n, d = 8, 4
    params = {"pairing": "self", "dist": "sphere", "n": n, "d": d, "temperature": 1.0, "variant": variant}
    row = attention.run_one(cfg, params, seed=2)
    ts = task_seed(2, n, d)
    X = sphere(n, d, seed=ts)  # the width experiment's points of task (n, d, seed 2)
    H_cts = kernels.ntk(X)
    lam = kernels.lambda_min(H_cts)
    assert row["lambda"] == pytest.approx(lam, rel=1e-10)
    for k in (0, 3, len(row["scan_widths"]) - 1):
        m = int(row["scan_widths"][k])
        W = feature_weights(d, 0, m, seed=ts, variant=variant)
        # a coupled network of width 2m with these w's (pairs w, w with a = +-1): its H^dis, by ops.gram
        net = ExpNet.from_weights(np.repeat(W, 2, axis=1), np.tile([1.0, -1.0], m), init="coupled")
        H_dis = kernels.empirical_ntk(net, X, average=True)
        assert row["scan_op"][k] == pytest.approx(np.abs(np.linalg.eigvalsh(H_dis - H_cts)).max() / lam, rel=1e-8)
        assert row["scan_eig"][k] == pytest.approx(np.linalg.eigvalsh(H_dis)[0] / lam, rel=1e-8, abs=1e-10)
    # proven per width: ||H^dis - H^cts|| <= max||x||^2 e^{max||x||^2} ||A_hat - A|| (= e rel ||A|| on the sphere)
    bound = math.e * np.array(row["scan_rel"]) * row["norm_A"]
    assert np.all(np.array(row["scan_op"]) * lam <= bound * (1 + 1e-9))
    for j, c in enumerate(cfg.side_fractions):
        assert row["implied_levels"][j] == pytest.approx(c * lam / (math.e * row["norm_A"]), rel=1e-9)
        assert row[f"op{j}_upper"] <= row[f"implied{j}_upper"]
        assert row[f"op{j}_first"] <= row[f"implied{j}_first"] or math.isnan(row[f"implied{j}_first"])


def test_the_schur_bound_behind_the_relation() -> None:
    # ||G o E||_op <= max_i G_ii ||E||_op for G positive semi-definite and E symmetric, on random instances
    rng = np.random.default_rng(0)
    for _ in range(200):
        X = rng.standard_normal((6, rng.integers(1, 6)))
        E = rng.standard_normal((6, 6))
        E = E + E.T
        G = X @ X.T
        lhs = np.abs(np.linalg.eigvalsh(G * E)).max()
        assert lhs <= np.diag(G).max() * np.abs(np.linalg.eigvalsh(E)).max() * (1 + 1e-12)


def synthetic_rows(ratio: float, seeds: int = 40, rng_seed: int = 0) -> pd.DataFrame:
    """Cross rows whose m* is lognormal with a known orthogonal / i.i.d. ratio, censored on a grid of ratio 2^(1/4)."""
    rng = np.random.default_rng(rng_seed)
    grid = 2.0 ** (np.arange(4, 64) / 4)
    rows = []
    for n, mu in ((16, 6.0), (32, 6.5), (64, 7.0)):
        for variant, shift in (("iid", 0.0), ("orthogonal", math.log(ratio))):
            for s in range(seeds):
                m = math.exp(mu + shift + 0.3 * rng.standard_normal())
                i = int(np.searchsorted(grid, m))
                lo, up = (grid[i - 1] if i else 0.0), (grid[i] if i < grid.size else math.inf)
                rows.append(
                    {
                        "pairing": "cross",
                        "dist": "sphere",
                        "n": n,
                        "d": 8,
                        "temperature": 1.0,
                        "variant": variant,
                        "seed": s,
                        "rel0_lower": lo,
                        "rel0_upper": up,
                    }
                )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("ratio", [0.5, 1.0])
def test_orthogonal_gain_recovers_a_known_ratio(ratio: float) -> None:
    hits = 0
    for rep in range(10):
        point, low, high, cells = orthogonal_gain(synthetic_rows(ratio, rng_seed=rep), "sphere", "rel0", 0.9)
        assert cells == 3
        assert 0.75 * ratio < point < 1.33 * ratio
        hits += low <= ratio <= high
    assert hits >= 7  # 90% intervals: at least 7 of 10 cover (probability of fewer ~ 0.07)


def test_tiny_run_end_to_end(tmp_path, cfg: attention.Config) -> None:
    from expreg.experiments import build_report, run_experiment

    run_experiment("attention", cfg, tmp_path, show_progress=False, executor_factory=lambda: ThreadPoolExecutor(2))
    _, _, summaries = build_report(tmp_path)
    s = summaries[0]
    assert s["experiment"] == "attention"
    assert any("op (c=0.5) <= implied" in k and v.startswith("2/2") for k, v in s["headline"].items())
    assert set(s["tables"]) >= {"exponents along the lines", "orthogonal vs i.i.d.", "m* per cell"}
    assert (tmp_path / "attention" / "figures" / "attention_side.png").is_file()
    df = pd.read_parquet(tmp_path / "attention" / "results.parquet")
    again = summarise(df, cfg)  # the same results give the same summary
    assert again["headline"] == {k: v for k, v in s["headline"].items()}
    # the small per-seed table of the docs gives the same fits as the result table
    from expreg.experiments.attention_analysis import read_per_seed_rows

    assert attention.write_per_seed_rows(tmp_path / "attention", tmp_path / "rows.csv") == len(df)
    from_csv = summarise(read_per_seed_rows(tmp_path / "rows.csv"), cfg)
    assert from_csv == again


def test_stored_rows_reproduce_the_stored_summary() -> None:
    # docs/results/attention holds the full preset's summary and its per-seed rows (gen_results --collect):
    # the docs' numbers must follow from the rows
    import json
    from pathlib import Path

    from expreg.experiments.attention_analysis import read_per_seed_rows

    stored = Path(__file__).resolve().parents[1] / "docs" / "results" / "attention"
    summary = json.loads((stored / "summary.json").read_text())
    rows = read_per_seed_rows(stored / "rows.csv")
    cfg = attention.Config(**summary["config"])
    assert len(rows) == summary["runs"] == len(attention.tasks(cfg))
    table = {
        (r["dist"], r["criterion"]): r["m*_orth / m*_iid [90%]"] for r in summary["tables"]["orthogonal vs i.i.d."]
    }
    for dist, crit, label in (("sphere", "rel1", "rel <= 0.1"), ("gaussian", "tv1", "tv <= 0.02")):
        ratio, low, high, cells = orthogonal_gain(rows, dist, crit, cfg.level)
        assert table[(dist, label)] == f"{ratio:.2f} [{low:.2f}, {high:.2f}] over {cells} cells"
