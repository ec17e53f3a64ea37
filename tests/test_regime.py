"""The output multiplier alpha (ExpNet(..., scale=alpha)) and the ``regime`` experiment (issue 21, item 3)."""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import expreg
from expreg import ExpNet, kernels
from expreg.core.errors import CheckpointError
from expreg.experiments import ResultStore, get_config, make_tasks, run_experiment
from expreg.experiments.analysis import analyse


@pytest.mark.parametrize("scaling, base", [("none", lambda m: 1.0), ("ntk", lambda m: 1 / math.sqrt(m))])
def test_scale_multiplies_the_output_and_squares_into_the_kernel(scaling, base) -> None:
    X, y = expreg.make_dataset(5, 3, seed=0)
    one = ExpNet.init(3, 64, seed=1, scaling=scaling, init="gaussian")
    alpha = 0.37
    net = ExpNet.init(3, 64, seed=1, scaling=scaling, init="gaussian", scale=alpha)
    assert net.s == pytest.approx(alpha * base(64)) and net.scale == alpha
    np.testing.assert_array_equal(net.W, one.W)  # alpha changes s, never the draw
    # F = s sum_r a_r exp(<w_r, x>): by hand
    np.testing.assert_allclose(net.predict(X), alpha * base(64) * np.exp(X @ net.W) @ net.a, rtol=1e-12)
    # dL/dW = s X^T (r * E * a): r itself depends on alpha, so compare with the formula
    r = net.predict(X) - y
    G = net.s * X.T @ (r[:, None] * np.exp(X @ net.W) * net.a[None, :])
    np.testing.assert_allclose(net.gradient(X, y), G, rtol=1e-11)
    np.testing.assert_allclose(kernels.empirical_ntk(net, X), alpha**2 * kernels.empirical_ntk(one, X), rtol=1e-12)
    assert "scale=0.37" in repr(net) and "scale" not in repr(one)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_scale_must_be_positive_and_finite(bad) -> None:
    with pytest.raises(ValueError, match="scale must be a positive finite number"):
        ExpNet.init(3, 8, scale=bad)
    with pytest.raises(TypeError, match="scale must be a positive number"):
        ExpNet.init(3, 8, scale="big")


def test_checkpoint_of_another_alpha_is_refused(tmp_path) -> None:
    X, y = expreg.make_dataset(4, 3, seed=0)
    path = tmp_path / "run.npz"
    expreg.train(ExpNet.init(3, 32, scale=2.0), X, y, max_steps=3, record_every=0, checkpoint=path)
    with pytest.raises(CheckpointError, match="belongs to another run"):
        expreg.train(ExpNet.init(3, 32, scale=3.0), X, y, max_steps=3, record_every=0, checkpoint=path)
    resumed = expreg.train(ExpNet.init(3, 32, scale=2.0), X, y, max_steps=3, record_every=0, checkpoint=path)
    assert resumed.steps == 3


def test_regime_experiment_shows_the_lazy_to_rich_transition(tmp_path) -> None:
    """tiny preset: alpha in {0.03, 1, 30}; the relative changes fall with alpha at the slopes the module states."""
    cfg = get_config("regime", "tiny")
    run_experiment("regime", cfg, tmp_path, show_progress=False, executor_factory=lambda: ThreadPoolExecutor(2))
    summary = analyse(tmp_path / "regime")
    df = ResultStore(tmp_path / "regime").read()
    assert len(df) == len(make_tasks("regime", cfg)) == summary["runs"]
    assert json.loads((tmp_path / "regime" / "summary.json").read_text())["config_hash"] == cfg.config_hash
    assert (tmp_path / "regime" / "figures" / "regime_transition.png").stat().st_size > 1000
    lazy = df[df.alpha >= 1.0]
    assert lazy.converged.all() and not lazy.diverged.any()
    for m, g in df.groupby("m"):
        g = g.set_index("alpha")
        if g.loc[0.03, "diverged"]:  # the rich end may diverge at the fixed step: kept as its own outcome
            assert math.isnan(g.loc[0.03, "kernel_change"])
        else:
            assert g.loc[0.03, "kernel_change"] > 10 * g.loc[1.0, "kernel_change"], m
        # from alpha = 1 to 30: weights change as 1/alpha, the kernel as 1/alpha^2 (coupled pairs)
        w = math.log(g.loc[30.0, "weight_change"] / g.loc[1.0, "weight_change"]) / math.log(30.0)
        k = math.log(g.loc[30.0, "kernel_change"] / g.loc[1.0, "kernel_change"]) / math.log(30.0)
        assert w == pytest.approx(-1.0, abs=0.1) and k == pytest.approx(-2.0, abs=0.2), (m, w, k)
        assert g.loc[30.0, "linear_gap"] < 1e-4
    assert any("slope of kernel_change" in h for h in summary["headline"])
