"""From the result table to a summary and figures, for one experiment directory.

``analyse(directory)`` reads ``config.json`` (written by the runner), keeps
the rows of that configuration (its hash), and writes ``summary.json``
(headline numbers, tables, notes) and the figures under ``figures/``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..core.storage import write_json_atomic
from .base import get_experiment
from .records import read_config_record
from .store import ResultStore


class NoRunsError(ValueError):
    """An experiment directory without a finished run of its configuration."""


def load_run_config(directory: str | Path) -> tuple[str, Any, str]:
    """(experiment name, Config, configuration hash of the run) from ``directory/config.json``.

    The file is checked (``records.read_config_record``): a missing, unknown
    or invalid field, or fields that do not hash to the recorded hash, is a
    one-line ``CheckpointError`` naming the file. The hash is the one
    recorded by the run: a configuration written by an older version (fewer
    fields) still selects its own rows.
    """
    record, cfg = read_config_record(directory)
    return record.experiment, cfg, record.config_hash


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item"):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def analyse(directory: str | Path) -> dict[str, Any]:
    """Write ``summary.json`` and the figures of the experiment in ``directory``; return the summary."""
    directory = Path(directory)
    name, cfg, config_hash = load_run_config(directory)
    module = get_experiment(name)
    df = ResultStore(directory).read()
    df = df[df.config_hash == config_hash].reset_index(drop=True) if len(df) else df
    if not len(df):
        raise NoRunsError(
            f"{str(directory)!r} holds no finished runs of configuration {config_hash}; run the experiment first"
        )
    summary = module.summarise(df, cfg)
    stems = module.figures(df, cfg, directory / "figures")
    out = {
        "experiment": name,
        "versioned_name": cfg.versioned_name,
        "description": module.description,
        "config_hash": config_hash,
        "config": cfg.model_dump(mode="json"),
        "runs": len(df),
        "cpu_seconds": float(df.wall_seconds.sum()),
        "figures": stems,
        **summary,
    }
    write_json_atomic(directory / "summary.json", _jsonable(out))
    return out
