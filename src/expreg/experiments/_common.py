"""Pieces the experiment modules share: data, networks, safe training, subsampling, per-table results."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import numpy as np

from ..core.data import make_dataset
from ..core.errors import TrainingDivergedError
from ..core.model import ExpNet
from ..engine.train import TrainResult, train


def dataset(n: int, d: int, seed: int, label_kind: str = "uniform") -> tuple[np.ndarray, np.ndarray]:
    """(X, y) on the unit sphere for one seed (``expreg.data.make_dataset``)."""
    return make_dataset(n, d, seed=seed, label_kind=label_kind)


def train_safely(net: ExpNet, X: np.ndarray, y: np.ndarray, **kw: Any) -> tuple[TrainResult, bool]:
    """``train``, turning divergence into (the run up to the last finite step, diverged=True)."""
    try:
        return train(net, X, y, **kw), False
    except TrainingDivergedError as exc:
        return exc.result, True


def subsample(values: Any, points: int = 200) -> tuple[list[int], list[float]]:
    """(steps, values) at about ``points`` evenly spaced steps (step 0 and the last always kept)."""
    v = np.asarray(values, dtype=float)
    idx = np.arange(v.size) if v.size <= points else np.unique(np.linspace(0, v.size - 1, points).round().astype(int))
    return idx.tolist(), v[idx].tolist()


def cost_by_width(cfg: Any, params: dict[str, Any]) -> float:
    """An experiment's ``cost`` when a run's work grows with its width m (a step costs n d m, a kernel n^2 m,
    n and d the same for every run of the sweep): m."""
    return float(params["m"])


T = TypeVar("T")


def once_per_table(df: Any, cfg: Any, slot: Hashable, compute: Callable[[], T]) -> T:
    """``compute()`` the first time (table ``df``, configuration ``cfg``, ``slot``) is asked for; the same value after.

    ``summarise`` and ``figures`` both need an experiment's fits (bootstraps,
    censored regressions): the value is kept in ``df.attrs`` under the
    configuration's hash, so a report computes each once.
    """
    cache = df.attrs.setdefault("_expreg_once", {})
    key = (getattr(cfg, "config_hash", id(cfg)), slot)
    if key not in cache:
        cache[key] = compute()
    value: T = cache[key]
    return value
