"""The progress bar every long expreg job shows on stderr (rich, from the ``cli`` or ``experiments`` extra).

One layout for ``expreg train`` (steps) and the experiment sweeps (runs):
title, bar, done/total, a counter text of the caller's, elapsed time, ETA.
"""

from __future__ import annotations

from typing import Any


def rich_bar(title: str, counter: str, *, eta_label: bool = False) -> Any:
    """A ``rich.progress.Progress`` on stderr with expreg's columns.

    Parameters
    ----------
    title : str
        Shown in bold first.
    counter : str
        A ``TextColumn`` template after done/total, e.g. ``"runs, {task.fields[left]} left"``.
    eta_label : bool
        Write "ETA" before the time remaining.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[ProgressColumn] = [
        TextColumn(f"[bold]{title}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(counter),
        TimeElapsedColumn(),
    ]
    if eta_label:
        columns.append(TextColumn("ETA"))
    columns.append(TimeRemainingColumn())
    return Progress(*columns, console=Console(stderr=True, highlight=False))
