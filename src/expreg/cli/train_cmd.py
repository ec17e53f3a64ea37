"""``expreg train``: train one network on synthetic or user data."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import typer

from ..core.progress import StepsToEpsilon, rich_bar
from ._common import EXIT_NOT_CONVERGED, err_console, exit_unless_converged, print_summary, user_errors
from ._options import RunOptions, run_options


@user_errors
@run_options(
    m_help="Width: number of neurons.", backend_help="'numpy' or 'torch'.", device_help="Torch device, e.g. 'cuda'."
)
def train_command(
    opts: RunOptions,
    scale_inputs: bool = typer.Option(
        False,
        "--scale-inputs",
        help="Map --data's X into the unit ball first: x -> (x - mean) / max_i ||x_i - mean|| (as UnitBallScaler).",
    ),
    checkpoint: Path | None = typer.Option(
        None, help="Checkpoint file (.npz): written atomically, resumed from if present."
    ),
    checkpoint_every: int = typer.Option(100, "--checkpoint-every", help="Steps between checkpoints."),
    allow_unconverged: bool = typer.Option(
        False,
        "--allow-unconverged",
        help=f"Exit 0 when max_steps ends the run before epsilon (default: exit code {EXIT_NOT_CONVERGED}).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object with the summary on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train one network by full-batch gradient descent and print its summary.

    Exit codes: 0 reached epsilon; 1 the run failed (diverged, a file could not
    be written); 2 bad command line or input; 3 stopped at --max-steps before
    --epsilon (unless --allow-unconverged); 130 interrupted.
    """
    from ..core.model import ExpNet
    from ..core.storage import check_writable
    from ..engine.checkpoints import ResultNotSavedError
    from ..engine.train import train

    if checkpoint is not None:
        check_writable(checkpoint, "--checkpoint")
    X, y = _checked_data(opts, scale_inputs)
    net = ExpNet.init(X.shape[1], opts.m, **opts.network())
    settings = opts.descent(checkpoint_every=checkpoint_every)
    started = time.perf_counter()

    def report(result: Any) -> None:
        summary = {"n": int(X.shape[0]), "d": int(X.shape[1]), "m": opts.m, **opts.describe(), **result.summary()}
        summary["seconds"] = time.perf_counter() - started
        if json_out:
            typer.echo(json.dumps(summary))
        else:
            print_summary("expreg train", summary)

    try:
        result = _run(net, X, y, settings, checkpoint, show_bar=not (json_out or quiet), train=train)
    except ResultNotSavedError as exc:  # the run finished: show its result, then the error
        report(exc.result)
        raise ResultNotSavedError(
            str(exc).replace("The result is in error.result (the command prints it)", "Its summary is above"),
            result=exc.result,
        ) from None
    report(result)
    exit_unless_converged(result, opts.max_steps, opts.epsilon, allow_unconverged)


def _checked_data(opts: RunOptions, scale_inputs: bool) -> tuple[Any, Any]:
    """(X, y) of the run: --data mapped into the unit ball with --scale-inputs, and checked to be trainable."""
    from ._trainable import check_trainable
    from ._trainable import scale_inputs as to_unit_ball

    X, y = opts.checked_dataset()
    if scale_inputs:
        X = to_unit_ball(X)
    if opts.data is not None:  # synthetic data lies on the sphere, distinct: nothing to check
        check_trainable(X, str(opts.network()["activation"]), scaled=scale_inputs)
    return X, y


def _run(net: Any, X: Any, y: Any, settings: Any, checkpoint: Path | None, *, show_bar: bool, train: Any) -> Any:
    """``train`` with a progress bar (its ETA from the residual's decay, ``StepsToEpsilon``) and the resume line."""
    from ..core.errors import TrainingDivergedError

    eta = StepsToEpsilon(epsilon=settings.epsilon, max_steps=settings.max_steps)
    first = [True]

    def resumed(t: int) -> None:
        if first[0] and t > 0:
            err_console().print(
                f"resuming from step {t:,} of at most {settings.max_steps:,} (checkpoint {checkpoint})",
                markup=False,
                soft_wrap=True,
            )
        first[0] = False

    try:
        if not show_bar:
            return train(net, X, y, settings, checkpoint=checkpoint, progress=lambda t, r: resumed(t))
        bar = rich_bar("training", "||u-y|| {task.fields[res]}  {task.fields[eta]}", eta=False)
        with bar:
            task = bar.add_task("train", total=None, res="-", eta="ETA -")

            def progress(t: int, r: float) -> None:
                resumed(t)
                eta.observe(t, r)
                end = eta.final_step()
                bar.update(
                    task, completed=t, total=None if end is None else max(end, t), res=f"{r:.3e}", eta=eta.describe()
                )

            result = train(net, X, y, settings, checkpoint=checkpoint, progress=progress)
            done = result.steps or 1
            bar.update(task, total=done, completed=done, res=f"{result.final_residual:.3e}", eta="done")
            return result
    except TrainingDivergedError as exc:  # the library's message names error.result; say it in options
        raise TrainingDivergedError(
            diverged_message(exc), result=exc.result, lr=exc.lr, suggested_lr=exc.suggested_lr
        ) from None


def diverged_message(exc: Any) -> str:
    """A divergence in command-line terms: what happened and the ``--lr`` to try."""
    found = re.search(r"diverged with lr = [^:]+: (.*?)\. The last finite weights", str(exc))
    why = f": {found.group(1)}" if found else ""
    return f"gradient descent diverged with --lr {exc.lr:.4g}{why}; try --lr {exc.suggested_lr:.4g}, or --lr empirical"


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
