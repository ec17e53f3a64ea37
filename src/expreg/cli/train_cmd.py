"""``expreg train``: train one network on synthetic or user data."""

from __future__ import annotations

import json
import math
import time
from enum import Enum
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ._common import err_console, user_errors


class Activation(str, Enum):
    exp = "exp"
    relu = "relu"


class Scaling(str, Enum):
    none = "none"
    ntk = "ntk"


class Init(str, Enum):
    coupled = "coupled"
    gaussian = "gaussian"


class Labels(str, Enum):
    uniform = "uniform"
    sign = "sign"


class DType(str, Enum):
    float64 = "float64"
    float32 = "float32"


def _parse_lr(text: str) -> float | str:
    if text in ("auto", "empirical"):
        return text
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--lr must be 'auto', 'empirical' or a number, got {text!r}") from None


@user_errors
def train_command(
    n: int = typer.Option(64, help="Number of data points (synthetic data)."),
    d: int = typer.Option(16, help="Input dimension (synthetic data)."),
    m: int = typer.Option(16384, help="Width: number of neurons."),
    seed: int = typer.Option(0, help="Seed of the data and of the initialisation."),
    activation: Activation = typer.Option(Activation.exp, help="Activation function."),
    scaling: Scaling = typer.Option(Scaling.none, help="'none': the paper's F = sum a_r exp(<w_r,x>); 'ntk': times 1/sqrt(m)."),
    init: Init = typer.Option(Init.coupled, help="'coupled': paired neurons, F(W(0),x) = 0; 'gaussian': independent."),
    labels: Labels = typer.Option(Labels.uniform, help="Synthetic labels: uniform on [-1,1] or random signs."),
    data: Optional[Path] = typer.Option(None, "--data", help="Train on arrays X (n x d) and y (n) from this .npz file instead."),
    lr: str = typer.Option("auto", help="Step size: 'auto' (1/lambda_max(m s^2 H^cts)), 'empirical' (1/lambda_max(H(W(0)))) or a number."),
    epsilon: float = typer.Option(1e-3, help="Stop when ||u - y||_2 <= epsilon."),
    max_steps: int = typer.Option(20000, help="Step budget."),
    record_every: Optional[int] = typer.Option(None, help="Record the kernel deviation every this many steps (default: first and last step)."),
    dtype: DType = typer.Option(DType.float64, help="Floating-point precision."),
    backend: str = typer.Option("numpy", help="'numpy' or 'torch'."),
    device: Optional[str] = typer.Option(None, help="Torch device, e.g. 'cuda'."),
    checkpoint: Optional[Path] = typer.Option(None, help="Checkpoint file (.npz): written atomically, resumed from if present."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object with the summary on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train one network by full-batch gradient descent and print its summary."""
    from .. import data as data_mod
    from ..model import ExpNet
    from ..train import train

    if data is not None:
        X, y = data_mod.load_dataset(data)
        n, d = X.shape
    else:
        X, y = data_mod.make_dataset(n, d, seed=seed, label_kind=labels.value)
    net = ExpNet.init(d, m, seed=seed, activation=activation.value, scaling=scaling.value, init=init.value,
                      dtype=np.dtype(dtype.value), backend=backend, device=device)
    started = time.perf_counter()
    show_bar = not (json_out or quiet)
    if show_bar:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        bar = Progress(TextColumn("[bold]training[/bold]"), BarColumn(), MofNCompleteColumn(), TextColumn("||u-y|| {task.fields[res]}"),
                       TimeElapsedColumn(), TimeRemainingColumn(), console=err_console(), transient=False)
        with bar:
            task = bar.add_task("train", total=max_steps, res="-")
            result = train(net, X, y, lr=_parse_lr(lr), epsilon=epsilon, max_steps=max_steps, record_every=record_every,
                           checkpoint=checkpoint, progress=lambda t, r: bar.update(task, completed=t, res=f"{r:.3e}"))
            bar.update(task, total=result.steps or 1, completed=result.steps or 1, res=f"{result.final_residual:.3e}")
    else:
        result = train(net, X, y, lr=_parse_lr(lr), epsilon=epsilon, max_steps=max_steps, record_every=record_every, checkpoint=checkpoint)
    summary = {
        "n": int(X.shape[0]), "d": int(X.shape[1]), "m": m, "seed": seed, "activation": activation.value, "scaling": scaling.value,
        "init": init.value, "dtype": dtype.value, "backend": backend,
        **result.summary(),
    }
    summary["seconds"] = time.perf_counter() - started
    if json_out:
        typer.echo(json.dumps(summary))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="expreg train", show_header=False)
    for k, v in summary.items():
        table.add_row(k, f"{v:.6g}" if isinstance(v, float) and math.isfinite(v) else str(v))
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
