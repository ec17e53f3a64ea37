"""``expreg.load_results``: the runs of a results directory as one pandas DataFrame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import get_experiment
from .store import ResultStore


def _is_store(path: Path) -> bool:
    return (path / "results.parquet").is_file() or (path / "parts").is_dir()


def load_results(directory: str | Path, experiment: str | None = None) -> Any:
    """Every run stored under ``directory`` (the ``--out`` of ``expreg run``), one row per run.

    Parameters
    ----------
    directory : path
        A results directory (one sub-directory per experiment), or one
        experiment's directory itself.
    experiment : str, optional
        Only this experiment (e.g. ``"regime"``); default: every experiment
        found, stacked (columns absent from an experiment are NaN there).

    Returns
    -------
    pandas.DataFrame
        The key columns ``key``, ``experiment`` (versioned name, e.g.
        ``regime-v1``), ``config_hash``, ``seed``, each run's parameters and
        its outcome figures, as stored (``ResultStore.read``).

    Raises
    ------
    FileNotFoundError
        No such directory, or no experiment results in it.
    ValueError
        ``experiment`` is not a known experiment.
    """
    import pandas as pd

    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"no results directory at {str(root)!r}; run `expreg run NAME --out {root}` first")
    stores = _stores(root) if experiment is None else [_store_of(root, experiment)]
    frames = [f for f in (ResultStore(s).read() for s in stores) if len(f)]
    if not frames:
        return ResultStore(stores[0]).read()
    return pd.concat(frames, ignore_index=True, sort=False)


def _stores(root: Path) -> list[Path]:
    """``root`` itself when it is one experiment's directory, else its experiment sub-directories."""
    if _is_store(root):
        return [root]
    found = sorted(p for p in root.iterdir() if p.is_dir() and _is_store(p))
    if not found:
        raise FileNotFoundError(
            f"no experiment results under {str(root)!r} (no results.parquet in it or its sub-directories)"
        )
    return found


def _store_of(root: Path, experiment: str) -> Path:
    """The directory of ``experiment`` under ``root`` (or ``root`` itself, named so)."""
    get_experiment(experiment)  # a clear error naming the known experiments
    if root.name == experiment and _is_store(root):
        return root
    if _is_store(root / experiment):
        return root / experiment
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and _is_store(p))
    raise FileNotFoundError(
        f"no results of experiment {experiment!r} under {str(root)!r}"
        + (f" (found: {', '.join(found)})" if found else "")
        + f"; run `expreg run {experiment} --out {root}` first"
    )
