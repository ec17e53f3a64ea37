"""``expreg distributed``: width-sharded training, one process per rank (launched by torchrun).

    torchrun --nproc-per-node 2 --no-python expreg distributed --m 100001 --init gaussian --checkpoint-dir run/
    torchrun --nproc-per-node 2 -m expreg.distributed -- --m 100001 --init gaussian --checkpoint-dir run/

(torchrun takes an abbreviated --n, --d or --m as its own option unless the
arguments follow ``--``.) Run without torchrun it trains as the only rank.
Rank 0 prints the summary.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ._common import user_errors
from .train_cmd import Activation, DType, Init, Labels, Scaling, _parse_lr


@user_errors
def distributed_command(
    n: int = typer.Option(64, help="Number of data points (synthetic data)."),
    d: int = typer.Option(16, help="Input dimension (synthetic data)."),
    m: int = typer.Option(16384, help="Width of the whole network: neurons over all ranks."),
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
    backend: str = typer.Option("numpy", help="'numpy' or 'torch' (CUDA needs 'torch')."),
    device: Optional[str] = typer.Option(None, help="Torch device; 'cuda' means cuda:LOCAL_RANK and NCCL (else gloo)."),
    checkpoint_dir: Optional[Path] = typer.Option(None, help="Directory of per-rank checkpoints: written atomically, resumed from if present."),
    checkpoint_every: int = typer.Option(100, help="Steps between checkpoints."),
    init_method: Optional[str] = typer.Option(None, help="torch.distributed rendezvous URL: env:// (default, set by torchrun) or file:///shared/path."),
    log_every: int = typer.Option(0, help="Rank 0 prints the step and ||u - y|| on stderr every this many steps (0: never)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object with the summary on stdout (rank 0)."),
) -> None:
    """Train one network with its neurons split over the ranks of a torchrun launch (gloo on CPU, NCCL on CUDA)."""
    from .. import data as data_mod
    from ..distributed import NetSpec, init_from_environment, shutdown, train_sharded

    if device is not None and device.startswith("cuda") and backend != "torch":
        raise ValueError(f"device={device!r} needs --backend torch (got {backend!r})")
    comm, device = init_from_environment(device, init_method)
    try:
        if data is not None:
            X, y = data_mod.load_dataset(data)
            n, d = X.shape
        else:
            X, y = data_mod.make_dataset(n, d, seed=seed, label_kind=labels.value)
        spec = NetSpec(d, m, seed=seed, activation=activation.value, scaling=scaling.value, init=init.value,
                       dtype=np.dtype(dtype.value), backend=backend, device=device)

        def log(t: int, res: float) -> None:
            if log_every and comm.rank == 0 and t % log_every == 0:
                sys.stderr.write(f"step {t}  ||u - y|| = {res:.6e}\n")

        result = train_sharded(spec, X, y, lr=_parse_lr(lr), epsilon=epsilon, max_steps=max_steps, record_every=record_every,
                               progress=log, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, comm=comm)
    finally:
        shutdown(comm)
    if comm.rank != 0:
        return
    summary = {"n": int(X.shape[0]), "d": int(X.shape[1]), "seed": seed, "activation": activation.value, "scaling": scaling.value,
               "init": init.value, "dtype": dtype.value, "backend": backend, "device": device or "cpu",
               "checkpoint_dir": str(checkpoint_dir) if checkpoint_dir else None, **result.summary()}
    if json_out:
        typer.echo(json.dumps(summary))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"expreg distributed ({result.world_size} ranks)", show_header=False)
    for k, v in summary.items():
        table.add_row(k, f"{v:.6g}" if isinstance(v, float) and math.isfinite(v) else str(v))
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("distributed")(distributed_command)
