"""Each experiment end to end on its tiny preset: rows, columns, finite values, known signs."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from expreg import kernels
from expreg.experiments import ResultStore, get_config, make_tasks, run_experiment
from expreg.experiments.analysis import analyse


def run(name, tmp_path, **overrides):
    cfg = get_config(name, "tiny", **overrides)
    run_experiment(name, cfg, tmp_path, show_progress=False, executor_factory=lambda: ThreadPoolExecutor(2))
    summary = analyse(tmp_path / name)
    df = ResultStore(tmp_path / name).read()
    assert len(df) == len(make_tasks(name, cfg)) == summary["runs"]
    assert json.loads((tmp_path / name / "summary.json").read_text())["config_hash"] == cfg.config_hash
    for stem in summary["figures"]:
        for ext in ("png", "svg"):
            assert (tmp_path / name / "figures" / f"{stem}.{ext}").stat().st_size > 1000
    return cfg, df, summary


def finite(df, cols):
    for c in cols:
        assert np.isfinite(df[c].astype(float)).all(), c


def test_convergence(tmp_path):
    cfg, df, summary = run("convergence", tmp_path)
    finite(
        df,
        ["lr", "lambda", "initial_residual", "final_residual", "measured_rate", "predicted_rate", "max_gap_to_kernel"],
    )
    assert df.converged.all() and (df.final_residual <= cfg.epsilon).all()
    assert ((df.measured_rate > 0) & (df.measured_rate < 1) & (df.predicted_rate > 0) & (df.predicted_rate < 1)).all()
    for row in df.itertuples():
        assert len(row.curve_step) == len(row.curve_residual) == len(row.curve_predicted) == len(row.curve_bound)
        assert row.curve_residual[0] == pytest.approx(row.curve_predicted[0]) == pytest.approx(row.curve_bound[0])
    # wider networks follow the kernel-predicted trajectory more closely
    gap = df.groupby("m").max_gap_to_kernel.median()
    assert gap.loc[max(cfg.widths)] < gap.loc[min(cfg.widths)]
    assert any("gap to kernel" in k for k in summary["headline"])


def test_width(tmp_path):
    from expreg.core.model import ExpNet
    from expreg.experiments.width import task_seed

    cfg, df, summary = run("width", tmp_path, scan_dtype="float64")
    grid = [float(m) for m in cfg.grid]
    finite(df, ["lambda", "lambda_max", "theorem_log10_m"])
    for _, row in df.iterrows():
        X, _ = __import__("expreg").make_dataset(int(row.n), 4, seed=int(row.task_seed))
        Hc = kernels.ntk(X)
        assert row["lambda"] == pytest.approx(kernels.lambda_min(Hc), rel=1e-12)
        assert int(row.task_seed) == task_seed(int(row.seed), int(row.n), 4)
        widths = list(row.scan_widths)
        assert widths == grid[: len(widths)]
        # every scanned width re-checked independently: a fresh ExpNet of that width and the blocked empirical NTK
        for m, dev, eig in list(zip(widths, row.scan_op, row.scan_eig, strict=True))[:: max(1, len(widths) // 6)]:
            net = ExpNet.init(4, int(m), seed=int(row.task_seed))
            Hd = kernels.empirical_ntk(net, X, average=True)
            assert dev == pytest.approx(kernels.operator_norm(Hd - Hc) / row["lambda"], rel=1e-6, abs=1e-9)
            assert eig == pytest.approx(kernels.lambda_min(Hd) / row["lambda"], rel=1e-6, abs=1e-9)
        # the interval brackets the crossing: fail at lower (when on the grid), pass from upper on
        for crit, ok in (("op1_2", [v <= 0.5 for v in row.scan_op]), ("eig1_2", [v >= 0.5 for v in row.scan_eig])):
            lower, upper = row[f"{crit}_lower"], row[f"{crit}_upper"]
            if lower > 0:
                assert not ok[widths.index(lower)]
            if np.isfinite(upper):
                assert all(ok[widths.index(upper) :])
            else:
                assert not ok[-1] and widths[-1] == grid[-1]
    assert {"fitted exponents", "local exponents", "m* per n"} <= set(summary["tables"])
    assert any("m*_op" in k for k in summary["headline"])


def test_lazy_movement_shrinks_with_width(tmp_path):
    _cfg, df, summary = run("lazy", tmp_path)
    finite(df, ["max_movement", "frobenius_movement"])
    finite(df[df.scaling == "none"], ["movement_bound"])
    assert df.converged.all()
    slopes = {
        (r["scaling"], r["quantity"]): float(r["slope [90% CI]"].split()[0])
        for r in summary["tables"]["movement slopes"]
    }
    assert slopes[("none", "max_movement")] < -0.5 and slopes[("ntk", "max_movement")] < -0.2
    assert slopes[("none", "frobenius_movement")] < -0.2
    # the [derived] movement bound holds on every run (s = 1, coupled)
    none = df[df.scaling == "none"]
    assert (none.max_movement <= none.movement_bound).all()


def test_kernel_deviation_falls_with_width(tmp_path):
    cfg, df, summary = run("kernel", tmp_path)
    finite(df, ["deviation", "relative_deviation", "lambda", "lambda_min_init"])
    rows = summary["tables"]["relative kernel deviation ||H^dis(W(0)) - H^cts|| / lambda"]
    slope = float(rows[0]["slope [90% CI]"].split()[0])
    assert -1.0 < slope < -0.2
    trained = df[df.trained.astype(bool)]
    assert len(trained) == len(cfg.seeds) * len(cfg.train_widths)
    for row in trained.itertuples():
        assert row.kernel_step[0] == 0 and len(row.kernel_lambda_min) == len(row.kernel_step) >= 2
        assert row.kernel_lambda_min[0] == pytest.approx(row.lambda_min_init, rel=1e-9)


def test_realdata_matches_explicit_kernel_descent(tmp_path):
    from expreg.experiments.realdata import load_split

    cfg, df, summary = run("realdata", tmp_path)
    finite(df, ["train_mse", "test_mse", "baseline_test_mse"])
    Xtr, ytr, Xte, yte = load_split(0, cfg.test_fraction)
    assert np.linalg.norm(Xtr, axis=1).max() == pytest.approx(1.0) and np.abs(ytr).max() == pytest.approx(1.0)
    assert np.linalg.norm(Xte, axis=1).max() <= 1 + 1e-12
    # kernel GD in closed form == explicit iteration f <- f - lr H (f - y), extended to test points
    H, K = kernels.ntk(Xtr), kernels.ntk(Xte, Xtr)
    lr = 1.0 / kernels.lambda_max(H)
    f, coef = np.zeros_like(ytr), np.zeros_like(ytr)
    for _ in range(cfg.max_steps):
        step = lr * (ytr - f)
        coef += step
        f = f + H @ step
    kg = df[df.model == "kernel_gd"].iloc[0]
    assert kg.train_mse == pytest.approx(np.mean((f - ytr) ** 2), rel=1e-8)
    assert kg.test_mse == pytest.approx(np.mean((K @ coef - yte) ** 2), rel=1e-8)
    net = df[df.model == "network"]
    assert (net.train_mse < net.baseline_test_mse.iloc[0]).all()  # training reduced the error below predicting 0
    assert "best test MSE" in summary["headline"]


def test_width_scan_with_a_device_matches_the_cpu_scan(monkeypatch):
    """scan_device = "cuda": kernels and criteria stay on the torch backend (its CPU here when there is no GPU)."""
    torch = pytest.importorskip("torch")
    from expreg.core import backends
    from expreg.core.data import make_dataset
    from expreg.experiments import width

    if not torch.cuda.is_available():  # the same code path, on torch's CPU device
        monkeypatch.setattr(
            width,
            "backend_for_device",
            lambda device: backends.get_backend("torch" if device != "cpu" else "numpy", "cpu"),
        )
    X, _ = make_dataset(10, 4, seed=3)
    H_cts = kernels.ntk(X)
    lam = kernels.lambda_min(H_cts)
    cpu = get_config("width", "tiny", scan_dtype="float64")
    dev = get_config("width", "tiny", scan_dtype="float64", scan_device="cuda")
    on_cpu = width.lazy_scan(cpu, X, H_cts, lam, 1, "exp", "coupled")
    on_dev = width.lazy_scan(dev, X, H_cts, lam, 1, "exp", "coupled")
    assert on_dev[0] == on_cpu[0] and len(on_cpu[0]) > 3 and on_dev[3] == on_cpu[3]
    np.testing.assert_allclose(on_dev[1], on_cpu[1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(on_dev[2], on_cpu[2], rtol=1e-9, atol=1e-9)
