"""``expreg train``: train one network on synthetic or user data."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from ..core.progress import rich_bar
from ._common import print_summary, user_errors
from ._options import RunOptions, run_options


@user_errors
@run_options(
    m_help="Width: number of neurons.", backend_help="'numpy' or 'torch'.", device_help="Torch device, e.g. 'cuda'."
)
def train_command(
    opts: RunOptions,
    checkpoint: Path | None = typer.Option(
        None, help="Checkpoint file (.npz): written atomically, resumed from if present."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object with the summary on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train one network by full-batch gradient descent and print its summary."""
    from ..core.model import ExpNet
    from ..core.storage import check_writable
    from ..engine.checkpoints import ResultNotSavedError
    from ..engine.train import train

    if checkpoint is not None:
        check_writable(checkpoint, "--checkpoint")
    X, y = opts.checked_dataset()
    net = ExpNet.init(X.shape[1], opts.m, **opts.network())
    started = time.perf_counter()

    def report(result: Any) -> None:
        summary = {"n": int(X.shape[0]), "d": int(X.shape[1]), "m": opts.m, **opts.describe(), **result.summary()}
        summary["seconds"] = time.perf_counter() - started
        if json_out:
            typer.echo(json.dumps(summary))
        else:
            print_summary("expreg train", summary)

    try:
        if not (json_out or quiet):
            bar = rich_bar("training", "||u-y|| {task.fields[res]}")
            with bar:
                task = bar.add_task("train", total=opts.max_steps, res="-")
                result = train(
                    net,
                    X,
                    y,
                    opts.descent(),
                    checkpoint=checkpoint,
                    progress=lambda t, r: bar.update(task, completed=t, res=f"{r:.3e}"),
                )
                bar.update(
                    task, total=result.steps or 1, completed=result.steps or 1, res=f"{result.final_residual:.3e}"
                )
        else:
            result = train(net, X, y, opts.descent(), checkpoint=checkpoint)
    except ResultNotSavedError as exc:  # the run finished: show its result, then the error
        report(exc.result)
        raise
    report(result)


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
