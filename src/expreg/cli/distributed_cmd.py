"""``expreg distributed``: width-sharded training, one process per rank (launched by torchrun).

    torchrun --nproc-per-node 2 --no-python expreg distributed --m 100001 --init gaussian --checkpoint-dir run/
    torchrun --nproc-per-node 2 -m expreg.distributed -- --m 100001 --init gaussian --checkpoint-dir run/

(torchrun takes an abbreviated --n, --d or --m as its own option unless the
arguments follow ``--``.) Run without torchrun it trains as the only rank.
Rank 0 prints the summary.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from ._common import print_summary, user_errors
from ._options import RunOptions, run_options


@user_errors
@run_options(m_help="Width of the whole network: neurons over all ranks.", backend_help="'numpy' or 'torch' (CUDA needs 'torch').",
             device_help="Torch device; 'cuda' means cuda:LOCAL_RANK and NCCL (else gloo).")
def distributed_command(
    opts: RunOptions,
    checkpoint_dir: Optional[Path] = typer.Option(None, help="Directory of per-rank checkpoints: written atomically, resumed from if present."),
    checkpoint_every: int = typer.Option(100, help="Steps between checkpoints."),
    init_method: Optional[str] = typer.Option(None, help="torch.distributed rendezvous URL: env:// (default, set by torchrun) or file:///shared/path."),
    log_every: int = typer.Option(0, help="Rank 0 prints the step and ||u - y|| on stderr every this many steps (0: never)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object with the summary on stdout (rank 0)."),
) -> None:
    """Train one network with its neurons split over the ranks of a torchrun launch (gloo on CPU, NCCL on CUDA)."""
    from ..distributed import NetSpec, init_from_environment, shutdown, train_sharded

    device, backend = opts.device, opts.backend
    if device is not None and device.startswith("cuda") and backend != "torch":
        raise ValueError(f"device={device!r} needs --backend torch (got {backend!r})")
    comm, device = init_from_environment(device, init_method)
    opts = replace(opts, device=device)  # "cuda" became cuda:LOCAL_RANK
    try:
        X, y = opts.dataset()
        spec = NetSpec(X.shape[1], opts.m, **opts.network())

        def log(t: int, res: float) -> None:
            if log_every and comm.rank == 0 and t % log_every == 0:
                sys.stderr.write(f"step {t}  ||u - y|| = {res:.6e}\n")

        result = train_sharded(spec, X, y, **opts.descent(), progress=log, checkpoint_dir=checkpoint_dir,
                               checkpoint_every=checkpoint_every, comm=comm)
    finally:
        shutdown(comm)
    if comm.rank != 0:
        return
    summary = {"n": int(X.shape[0]), "d": int(X.shape[1]), **opts.describe(), "device": device or "cpu",
               "checkpoint_dir": str(checkpoint_dir) if checkpoint_dir else None, **result.summary()}
    if json_out:
        typer.echo(json.dumps(summary))
        return
    print_summary(f"expreg distributed ({result.world_size} ranks)", summary)


def register(app: typer.Typer) -> None:
    app.command("distributed")(distributed_command)
