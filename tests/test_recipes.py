"""The three recipes of docs/architecture.md, each performed as the page writes it.

* Add an activation: an ``Activation`` and ``ACTIVATIONS.register``; the
  network trains with it and its closed-form kernel matches the empirical
  one of a wide network (Monte Carlo over neurons).
* Add a backend: a ``Backend`` subclass that declares its data and a
  ``BACKENDS.register`` call; training and the kernel agree with the NumPy
  backend (which sums the Gram matrix by another strategy) to rounding.
* Add an experiment: a module with ``Config`` (a ``TrainingConfig``),
  ``PRESETS``, ``tasks``, ``run_one``, ``summarise``, one line in
  ``EXPERIMENTS``; its sweep runs and summarises.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

import expreg
from expreg.core import gram
from expreg.core.activations import ACTIVATIONS, Activation
from expreg.core.backends import BACKENDS, Array, Backend, NumpyBackend, get_backend
from expreg.core.reuse import KEPT

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def test_the_page_names_these_tests() -> None:
    text = DOC.read_text()
    for name in ("test_add_an_activation", "test_add_a_backend", "test_add_an_experiment"):
        assert f"tests/test_recipes.py::{name}" in text


# ------------------------------------------------------------------ an activation
def _softplus_like_(be: Backend, Z: Array) -> Array:
    """sigma(z) = exp(z / 2), in place."""
    Z *= 0.5
    return be.exp_(Z)


def test_add_an_activation() -> None:
    half = Activation(
        "exp_half_recipe",
        value_=_softplus_like_,
        derivative_from_value=lambda be, E: E * 0.5,  # sigma' = sigma / 2, out of place
        ntk=lambda A, B, G: G * np.exp(((A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] + 2 * G) / 8) / 4,
        nngp=lambda A, B, G: np.exp(((A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] + 2 * G) / 8),
    )
    ACTIVATIONS.register(half.name, half)
    try:
        X, y = expreg.make_dataset(6, 3, seed=0)
        result = expreg.train(expreg.ExpNet.init(3, 64, seed=1, activation=half.name), X, y, max_steps=20)
        assert result.final_residual < result.initial_residual
        wide = expreg.ExpNet.init(3, 200_000, seed=2, activation=half.name, init="gaussian")
        H_emp = expreg.kernels.empirical_ntk(wide, X, average=True)
        np.testing.assert_allclose(H_emp, expreg.kernels.ntk(X, activation=half.name), rtol=0.05, atol=0.01)
    finally:
        ACTIVATIONS.unregister(half.name)


# ------------------------------------------------------------------ a backend
class ListeningBackend(NumpyBackend):
    """NumPy arithmetic that declares itself a device-style backend: Gram sums go through ``add_matmul_``."""

    name = "listening"
    host_blas = False  # data, not a hook: gram.sum_for picks BackendSum
    gram_block_bytes = 4 * 2**20

    def __init__(self, threads: int | None = None) -> None:
        super().__init__(threads)
        self.rank_updates = 0

    def add_matmul_(self, C: Array, A: Array, B: Array) -> None:
        self.rank_updates += 1
        C += A @ B


def test_add_a_backend() -> None:
    BACKENDS.register("listening", lambda device, threads: ListeningBackend(threads))
    try:
        X, y = expreg.make_dataset(8, 3, seed=3)
        mine = expreg.ExpNet.init(3, 600, seed=4, backend="listening")
        ref = expreg.ExpNet.init(3, 600, seed=4)
        be = mine.backend
        assert isinstance(be, ListeningBackend) and isinstance(get_backend("listening"), ListeningBackend)
        assert isinstance(gram.sum_for(be, 8, np.dtype(np.float64)), gram.BackendSum)
        H, H_ref = expreg.kernels.empirical_ntk(mine, X), expreg.kernels.empirical_ntk(ref, X)
        assert be.rank_updates > 0
        np.testing.assert_allclose(H, H_ref, rtol=1e-12)
        run, run_ref = expreg.train(mine, X, y, max_steps=10), expreg.train(ref, X, y, max_steps=10)
        np.testing.assert_allclose(run.history.residual, run_ref.history.residual, rtol=1e-12)
    finally:
        BACKENDS.unregister("listening")
        KEPT.made.backends.clear()


# ------------------------------------------------------------------ an experiment
RECIPE_MODULE = """
from typing import Any

from pydantic import Field

from expreg.experiments._common import dataset, train_safely
from expreg.experiments.config import TrainingConfig

name = "residual_at_width"
description = "Final residual against width (a recipe)."


class Config(TrainingConfig):
    name = "residual_at_width"
    version = 1

    n: int = Field(8, ge=2)


PRESETS: dict[str, dict[str, Any]] = {"quick": {"d": 3, "widths": [16, 64], "seeds": [0, 1], "max_steps": 50}}


def tasks(cfg: Config) -> list[tuple[dict[str, Any], int]]:
    return [({"m": m}, s) for m in cfg.widths for s in cfg.seeds]


def run_one(cfg: Config, params: dict[str, Any], seed: int) -> dict[str, Any]:
    X, y = dataset(cfg.n, cfg.d, seed, cfg.label_kind)
    res, diverged = train_safely(cfg.network(params["m"], seed, "exp", "none"), X, y,
                                 epsilon=cfg.epsilon, max_steps=cfg.max_steps)
    return {"final_residual": res.final_residual, "diverged": diverged}


def summarise(df: Any, cfg: Config) -> dict[str, Any]:
    return {"headline": {"median final residual": float(df.final_residual.median())}}


def figures(df: Any, cfg: Config, directory: Any) -> list[str]:
    return []
"""


def test_add_an_experiment(monkeypatch: pytest.MonkeyPatch) -> None:
    pd = pytest.importorskip("pandas")
    from expreg.experiments import base, get_config, make_tasks
    from expreg.experiments.base import execute

    module = types.ModuleType("expreg.experiments.residual_at_width")
    exec(compile(RECIPE_MODULE, module.__name__, "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)  # as a file beside the others would be
    monkeypatch.setitem(base.EXPERIMENTS, "residual_at_width", "residual_at_width")
    cfg = get_config("residual_at_width", "quick")
    tasks = make_tasks("residual_at_width", cfg)
    assert [(t.params["m"], t.seed) for t in tasks] == [(16, 0), (16, 1), (64, 0), (64, 1)]
    rows = pd.DataFrame([execute(t) for t in tasks])
    assert rows.final_residual.notna().all() and not rows.diverged.any()
    summary = module.summarise(rows, cfg)
    assert summary["headline"]["median final residual"] > 0
    with pytest.raises(ValueError, match="widths must be even"):  # the rules of TrainingConfig come with it
        get_config("residual_at_width", "quick", widths=[15])


def test_the_page_is_in_the_docs_site() -> None:
    index = (DOC.parent / "index.md").read_text()
    toctree = index[index.index("{toctree}") :]
    assert "\narchitecture\n" in toctree[: toctree.index("```")]
