"""Experiments that test the theorem (docs/theory.md section 6): configurations, sweeps, results, report.

Needs the ``experiments`` extra (pydantic, pandas, pyarrow, matplotlib, rich);
``realdata`` also needs scikit-learn. Nothing here is imported by ``import expreg``.

>>> from expreg.experiments import EXPERIMENTS, get_config
>>> cfg = get_config("width", preset="quick")
>>> cfg.versioned_name
'width-v3'

Run one from Python (same as ``expreg run width --preset quick --out results``)::

    from expreg.experiments import run_experiment, build_report
    run_experiment("width", get_config("width", "quick"), "results", jobs=2)
    build_report("results")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import EXPERIMENTS, Task, execute, get_experiment, make_tasks
from .config import build_config, load_config
from .report import build_report
from .runner import make_executor, run_experiment, run_tasks
from .store import ResultStore

__all__ = [
    "EXPERIMENTS",
    "ResultStore",
    "Task",
    "build_report",
    "execute",
    "get_config",
    "get_experiment",
    "make_executor",
    "make_tasks",
    "run_experiment",
    "run_tasks",
]


def get_config(name: str, preset: str = "quick", config_file: str | Path | None = None, **overrides: Any) -> Any:
    """The configuration of experiment ``name``: a preset, or a TOML file (which may name its preset)."""
    module = get_experiment(name)
    if config_file is not None:
        cfg = load_config(module.Config, module.PRESETS, config_file, preset=preset)
        return build_config(module.Config, {"x": cfg.model_dump()}, "x", overrides) if overrides else cfg
    return build_config(module.Config, module.PRESETS, preset, overrides)
