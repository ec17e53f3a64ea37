"""``expreg width --data FILE``: how wide must the network be for these points? (docs/theory.md section 6)"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from ._common import err_console, user_errors


def _fmt(v: float) -> str:
    if math.isinf(v):
        return "inf"
    return "-" if not math.isfinite(v) else f"{v:.3g}"


def _beyond(c: dict[str, Any]) -> str:
    """What the scans bound an unidentified width by: above the largest censoring width."""
    lows = [lo for lo, hi in c["per_seed"] if math.isinf(hi)]
    return f"> {_fmt(max(lows))}" if lows else "-"


def _print(answer: Any) -> None:
    """The answer as a table on stdout."""
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False, width=120)
    out.print(
        f"n = {answer.n}, d = {answer.d}, lambda = {answer.lam:.4g}, ||H^cts|| = {answer.opnorm:.4g}, "
        f"{answer.seeds} network seeds, widths up to {answer.m_cap}, {answer.seconds:.0f} s"
    )
    table = Table(
        "criterion", "median m* [90%]", "90% quantile m* [90%]", "censored (cause)", "law's median", "law's 90%"
    )
    for name, c in answer.criteria.items():
        law = answer.law.get(name, {})
        lo, hi = c["median_interval"]
        qlo, qhi = c["q90_interval"]
        table.add_row(
            name,
            f"{_fmt(c['median'])} [{_fmt(lo)}, {_fmt(hi)}]" if math.isfinite(c["median"]) else _beyond(c),
            f"{_fmt(c['q90'])} [{_fmt(qlo)}, {_fmt(qhi)}]" if math.isfinite(c["q90"]) else _beyond(c),
            f"{c['censored']}/{answer.seeds} ({', '.join(c['censored_by']) or '-'})",
            _fmt(law.get("median", math.nan)),
            _fmt(law.get("q90", math.nan)),
        )
    out.print(table)
    for name, c in answer.criteria.items():
        out.print(f"  {name}: {c['label']}")
    if answer.conv:
        spans = ", ".join(f"({_fmt(lo)}, {_fmt(hi)}]" for lo, hi in answer.conv["per_seed"])
        out.print(f"GD m*_conv per seed: {spans}; {answer.conv['rule']}")
    for name, law in answer.law.items():
        out.print(
            f"law for {name}: {law['law']}, fitted on {law['fitted_on']}, held-out error {law['held_out_rms_log2']} log2 units"
            + (f"; an EXTRAPOLATION: {law['extrapolated']}" if law["extrapolated"] else "")
        )


@user_errors
def width_command(
    data: Path = typer.Option(
        ..., "--data", help="Arrays X (n x d) and y (n) in an .npz file (as `expreg train --data`)."
    ),
    seeds: int = typer.Option(10, "--seeds", min=2, help="Network seeds (the data stay fixed)."),
    m_cap: int = typer.Option(
        2**22, "--m-cap", min=4, help="Largest width scanned; beyond it thresholds are censored."
    ),
    give_up: float = typer.Option(4.0, "--give-up", min=0.0, help="Stop a hopeless scan early (0: never)."),
    conv_seeds: int = typer.Option(2, "--conv-seeds", min=0, help="Seeds with GD's m*_conv (0: skip GD)."),
    m_max_conv: int = typer.Option(1024, "--m-max-conv", min=2, help="Largest width GD is tried at."),
    max_steps: int = typer.Option(2000, "--max-steps", min=1, help="GD's step budget per width (at most)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No cost line, no progress bar."),
) -> None:
    """The width thresholds of the exp network on your data: every criterion's median and 90% quantile over
    network seeds, GD's m*_conv, and the best law's prediction; the cost is stated before the work starts."""
    from ..core import data as data_mod
    from ..core.progress import rich_bar
    from ..experiments.data_width import width_for_data

    X, y = data_mod.load_dataset(data, warn_ball=False)
    console = err_console()
    show = not (json_out or quiet)
    bar = rich_bar("width", "{task.fields[stage]}") if show else None

    def announce(cost: Any) -> None:
        if not quiet:
            console.print(f"cost: at most {cost.seconds:.0f} s ({cost.why})")

    tasks: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if bar is not None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, stage=stage)
            bar.update(tasks[stage], completed=done)

    kw: dict[str, Any] = dict(
        seeds=seeds, m_cap=m_cap, give_up=give_up, conv_seeds=conv_seeds, m_max_conv=m_max_conv, max_steps=max_steps
    )
    if bar is not None:
        with bar:
            answer = width_for_data(X, y, progress=progress, announce=announce, **kw)
    else:
        answer = width_for_data(X, y, announce=announce, **kw)
    if json_out:
        typer.echo(json.dumps(answer.to_dict(), default=lambda v: None))
    else:
        _print(answer)


def register(app: typer.Typer) -> None:
    app.command("width")(width_command)
