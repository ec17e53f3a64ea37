"""What an experiment is: a configuration, a list of tasks, and ``run_one``.

Each experiment module (``convergence``, ``width``, ``lazy``, ``kernel``,
``realdata``, ``regime``, ``attention``) defines:

- ``Config``: a subclass of ``config.ExperimentConfig``;
- ``PRESETS``: {"quick": {...}, "full": {...}} field overrides;
- ``tasks(config) -> list[(params, seed)]``: the sweep, params a flat dict of
  JSON scalars;
- ``run_one(config, params, seed) -> dict``: one run's outcome figures (flat
  dict; lists of floats allowed), pure apart from its compute;
- ``cost(config, params) -> float`` (optional): the relative work of one run;
  a sweep submits the costliest runs first (longest-processing-time order),
  so that no worker is left alone with a long run at the end while the
  others idle (without it, runs go in the order of ``tasks``);
- ``summarise(df, config) -> dict``: headline numbers and tables;
- ``figures(df, config, directory) -> list[str]``: figure stems written as
  PNG and SVG.

``execute`` runs one task; ``execute_batch``, the function a sweep's
workers run, runs several in a row (one submission for many small runs).
Both are importable, so any ``concurrent.futures.Executor`` (a process
pool, Dask) can run them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib import import_module
from types import ModuleType
from typing import Any

from .store import task_key

#: Experiment name -> module (under expreg.experiments); the order of `expreg list`.
EXPERIMENTS: dict[str, str] = {
    "convergence": "convergence",
    "width": "width",
    "lazy": "lazy",
    "kernel": "kernel",
    "realdata": "realdata",
    "regime": "regime",
    "attention": "attention",
}


def get_experiment(name: str) -> ModuleType:
    """The module of experiment ``name``; ValueError naming the known ones otherwise."""
    if name not in EXPERIMENTS:
        raise ValueError(
            f"experiment {name!r} is not known; choose one of {', '.join(EXPERIMENTS)} (see `expreg list`)"
        )
    return import_module(f"{__package__}.{EXPERIMENTS[name]}")


@dataclass(frozen=True)
class Task:
    """One run: experiment, its configuration (as data), parameters and seed."""

    experiment: str
    config: dict[str, Any]
    config_hash: str
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    #: Relative work of the run (the module's ``cost``; 1 without one): the order of submission, not part of the key.
    cost: float = field(default=1.0, compare=False)

    @property
    def key(self) -> str:
        """The run's key in the result table (``store.task_key``)."""
        return task_key(self.experiment, self.config_hash, self.params, self.seed)


def make_tasks(name: str, config: Any) -> list[Task]:
    """The sweep of experiment ``name`` under ``config``, as Tasks."""
    module = get_experiment(name)
    data = config.model_dump(mode="json")
    cost = getattr(module, "cost", None)
    return [
        Task(name, data, config.config_hash, dict(params), int(seed), float(cost(config, params)) if cost else 1.0)
        for params, seed in module.tasks(config)
    ]


def check_inputs(name: str, config: Any, tasks: list[Task]) -> None:
    """Refuse, before any run, a sweep whose inputs have lambda = lambda_min(H^cts) = 0.

    By default the tasks' data are n points on the sphere S^{d-1}: for each
    (n, d) of the tasks, ``check_sphere_sample`` (d = 1 and n > 2 must
    coincide). A module whose data are otherwise defines its own
    ``check_inputs(config)``, which replaces that rule (realdata: its data
    set; attention: only its self-pairing tasks are sphere points).

    Raises
    ------
    CoincidentPointsError
        Naming the experiment, n and d (or the points) and what to do.
    """
    from ..core.validation import check_sphere_sample

    own = getattr(get_experiment(name), "check_inputs", None)
    if own is not None:
        own(config)
        return
    sizes = {(t.params.get("n", t.config.get("n")), t.params.get("d", t.config.get("d"))) for t in tasks}
    for n, d in sorted((n, d) for n, d in sizes if isinstance(n, int) and isinstance(d, int)):
        check_sphere_sample(n, d, where=f" for the {name} experiment's n = {n}, d = {d}")


def execute(task: Task) -> dict[str, Any]:
    """Run one task (in a worker): its row, with key columns, parameters and wall time."""
    module = get_experiment(task.experiment)
    config = module.Config(**task.config)
    started = time.perf_counter()
    outcome = module.run_one(config, dict(task.params), task.seed)
    row: dict[str, Any] = {
        "key": task.key,
        "experiment": config.versioned_name,
        "config_hash": task.config_hash,
        "seed": task.seed,
        **task.params,
        **outcome,
        "wall_seconds": time.perf_counter() - started,
    }
    return row


def execute_batch(tasks: list[Task]) -> list[tuple[bool, Any]]:
    """Run ``tasks`` one after the other (in a worker): per task (True, its row) or (False, the error).

    A task that raises does not stop the others; its entry is (False,
    "ExceptionType: message"), for the runner to retry or report.
    """
    out: list[tuple[bool, Any]] = []
    for task in tasks:
        try:
            out.append((True, execute(task)))
        except Exception as exc:  # reported per task by the runner
            out.append((False, f"{type(exc).__name__}: {exc}"))
    return out
