"""Experiment ``realdata``: the network on scikit-learn's bundled diabetes data.

The 442 x 10 diabetes regression set (no download) is split by seed into
train and test (``test_fraction``); inputs are divided by the largest
training-row norm so ||x_i|| <= 1 (test rows are capped at norm 1), targets
are centred and divided by their largest training magnitude so |y_i| <= 1.

Models, each a run, reported as train and test mean squared error on that
scale:

- ``network``: the exp network of width m trained by GD (lr "auto", at most
  ``max_steps`` steps or until ||u - y||_2 <= epsilon);
- ``kernel_gd``: the infinite-width limit of the same descent, GD on the
  kernel m s^2 H^cts for the same number of steps and the same lr m s^2
  (``kernels.predicted_trajectory`` on train, its kernel extension on test);
- ``krr``: kernel ridge regression with H^cts (``kernels.ntk(X)``, ``kernels.ntk(X_test, X)``),
  alpha = (H^cts + ridge I)^-1 y.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import scipy.linalg
from pydantic import Field, field_validator

from ..core import kernels, streams
from ..core.validation import check_points_distinct
from ._common import train_safely
from .config import Scaling, TrainingConfig

name = "realdata"
description = (
    "Diabetes data (scikit-learn, bundled): network train/test error at several widths vs kernel regression with H^cts."
)


class Config(TrainingConfig):
    name = "realdata"
    version = 1

    d: int = Field(10, ge=10, le=10, description="fixed by the data set")
    widths: list[int] = Field(default_factory=lambda: [64, 256, 1024, 4096])
    ridges: list[float] = Field(default_factory=lambda: [1e-4, 1e-2, 1.0])
    scaling: Scaling = "none"
    test_fraction: float = Field(0.3, gt=0, lt=1)
    max_steps: int = Field(1000, ge=1)

    @field_validator("ridges")
    @classmethod
    def _r(cls, v: list[float]) -> list[float]:
        if any(r <= 0 for r in v):
            raise ValueError(f"ridges must be positive, got {v}")
        return v


PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"widths": [64, 256, 1024], "seeds": [0, 1], "max_steps": 300},
    "full": {"widths": [64, 256, 1024, 4096], "seeds": [0, 1, 2, 3, 4], "max_steps": 1000},
    "tiny": {"widths": [32, 128], "ridges": [1e-2], "seeds": [0], "max_steps": 30},
}


def load_split(seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, y_train, X_test, y_test) of the diabetes data, scaled into the unit ball and [-1, 1]."""
    from sklearn.datasets import load_diabetes  # bundled with scikit-learn: no download

    X, y = load_diabetes(return_X_y=True)
    rng = streams.generator(seed, streams.SPLIT)
    order = rng.permutation(len(y))
    n_test = round(test_fraction * len(y))
    test, train = order[:n_test], order[n_test:]
    scale = np.linalg.norm(X[train], axis=1).max()
    Xtr, Xte = X[train] / scale, X[test] / scale
    Xte = Xte / np.maximum(1.0, np.linalg.norm(Xte, axis=1, keepdims=True))
    mean = y[train].mean()
    yscale = np.abs(y[train] - mean).max()
    return Xtr, (y[train] - mean) / yscale, Xte, (y[test] - mean) / yscale


def check_inputs(cfg: Config) -> None:
    """Before the sweep: the data set's points distinct (lambda > 0; ``validation.check_points_distinct``)."""
    from sklearn.datasets import load_diabetes

    check_points_distinct(load_diabetes(return_X_y=True)[0], name="the diabetes data")


def tasks(cfg: Config) -> list[tuple[dict[str, Any], int]]:
    out: list[tuple[dict[str, Any], int]] = []
    for s in cfg.seeds:
        out += [({"model": "network", "m": m, "ridge": 0.0}, s) for m in cfg.widths]
        out += [({"model": "kernel_gd", "m": 0, "ridge": 0.0}, s)]
        out += [({"model": "krr", "m": 0, "ridge": r}, s) for r in cfg.ridges]
    return out


def cost(cfg: Config, params: dict[str, Any]) -> float:
    """Relative work of a run: the network's width; a kernel model (one n x n kernel, n ~ 300) counts as width 1."""
    return float(params["m"] or 1)


def _mse(a: np.ndarray, b: np.ndarray | float) -> float:
    return float(np.mean((np.asarray(a) - np.asarray(b)) ** 2))


def run_one(cfg: Config, params: dict[str, Any], seed: int) -> dict[str, Any]:
    Xtr, ytr, Xte, yte = load_split(seed, cfg.test_fraction)
    base = {"n_train": len(ytr), "n_test": len(yte), "baseline_test_mse": _mse(yte, 0.0)}
    if params["model"] == "network":
        net = cfg.network(params["m"], seed, "exp", cfg.scaling)
        result, diverged = train_safely(
            net, Xtr, ytr, epsilon=cfg.epsilon, max_steps=cfg.max_steps, record_every=0, track_movement=False
        )
        return {
            **base,
            "steps": int(result.steps),
            "diverged": diverged,
            "train_mse": _mse(result.net.predict(Xtr), ytr),
            "test_mse": _mse(result.net.predict(Xte), yte),
        }
    H = kernels.ntk(Xtr)
    K = kernels.ntk(Xte, Xtr)
    if params["model"] == "krr":
        alpha = scipy.linalg.solve(H + params["ridge"] * np.eye(len(ytr)), ytr, assume_a="pos")
        return {
            **base,
            "steps": 0,
            "diverged": False,
            "train_mse": _mse(H @ alpha, ytr),
            "test_mse": _mse(K @ alpha, yte),
        }
    # kernel_gd: GD on the kernel from f = 0 (r0 = -y) for max_steps steps with lr = 1 / lambda_max(H) (lr "auto", coupled init)
    T = cfg.max_steps
    traj = kernels.predicted_trajectory(H, -ytr, 1.0)
    traj = dataclasses.replace(traj, lr=1.0 / traj.eigenvalues[-1])  # lr from the trajectory's own eigenvalues
    f_train = ytr + traj(T)[0]
    f_test = traj.extension(K, T)[0]
    return {**base, "steps": T, "diverged": False, "train_mse": _mse(f_train, ytr), "test_mse": _mse(f_test, yte)}


def _label(model: str, m: int, ridge: float) -> str:
    if model == "network":
        return f"network m={m}"
    return "kernel GD (m = inf)" if model == "kernel_gd" else f"KRR H^cts ridge={ridge:g}"


def table(df: Any) -> list[dict[str, Any]]:
    rows = []
    for (model, m, ridge), g in df.groupby(["model", "m", "ridge"], sort=True):
        rows.append(
            {
                "model": _label(model, int(m), float(ridge)),
                "runs": len(g),
                "train MSE": float(g.train_mse.mean()),
                "test MSE": float(g.test_mse.mean()),
                "test MSE of predicting 0": float(g.baseline_test_mse.mean()),
            }
        )
    return rows


def summarise(df: Any, cfg: Config) -> dict[str, Any]:
    rows = table(df)
    best = min(rows, key=lambda r: r["test MSE"])
    widest = max(
        (r for r in rows if r["model"].startswith("network")), key=lambda r: int(r["model"].split("=")[1]), default=None
    )
    headline = {"best test MSE": f"{best['test MSE']:.4g} ({best['model']})"}
    if widest:
        headline[f"{widest['model']}: train / test MSE"] = f"{widest['train MSE']:.4g} / {widest['test MSE']:.4g}"
    headline["predicting 0: test MSE"] = f"{rows[0]['test MSE of predicting 0']:.4g}"
    return {
        "headline": headline,
        "tables": {"train and test error (targets scaled to [-1, 1])": rows},
        "notes": [f"GD budget {cfg.max_steps} steps, lr 'auto'; kernel GD uses the same steps and lr m s^2."],
    }


def figures(df: Any, cfg: Config, directory: Any) -> list[str]:
    from . import plots

    fig, axes = plots.new_figure()
    ax = axes[0][0]
    net = df[df.model == "network"].groupby("m")[["train_mse", "test_mse"]].mean().sort_index()
    ax.plot(net.index, net.train_mse, marker="o", color=plots.COLOURS[0], label="network: train MSE")
    ax.plot(net.index, net.test_mse, marker="s", color=plots.COLOURS[1], label="network: test MSE")
    kg = df[df.model == "kernel_gd"][["train_mse", "test_mse"]].mean()
    ax.axhline(kg.train_mse, color=plots.COLOURS[0], linestyle="--", label="kernel GD (m = inf): train")
    ax.axhline(kg.test_mse, color=plots.COLOURS[1], linestyle="--", label="kernel GD (m = inf): test")
    for i, (ridge, g) in enumerate(df[df.model == "krr"].groupby("ridge")):
        ax.axhline(g.test_mse.mean(), color=plots.COLOURS[2 + i], linestyle=":", label=f"KRR ridge {ridge:g}: test")
    ax.axhline(df.baseline_test_mse.mean(), color="k", linewidth=0.8, label="predict 0: test")
    plots.log_axes(ax, "width m", "mean squared error (scaled targets)", f"diabetes, {cfg.max_steps} GD steps")
    return [plots.save(fig, directory, "realdata_error")]
