"""``expreg distributed``: width-sharded training, one process per rank (launched by torchrun).

    torchrun --nproc-per-node 2 --no-python expreg distributed --m 100001 --init gaussian --checkpoint-dir run/
    torchrun --nproc-per-node 2 -m expreg.distributed -- --m 100001 --init gaussian --checkpoint-dir run/

(torchrun takes an abbreviated --n, --d or --m as its own option unless the
arguments follow ``--``.) Run without torchrun it trains as the only rank.
Rank 0 prints the summary.

Every rank must be given the same arguments and data: before the first step
the ranks compare them (``distributed.sharded.check_ranks_agree``) and all stop
with one message naming the first that differs. A rank that fails its own
checks (a bad file, too little memory) makes the others stop too; one that
is gone, or silent for --timeout seconds, stops the others with a message.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import typer

from ._common import EXIT_NOT_CONVERGED, USER_ERRORS, exit_unless_converged, print_summary, user_errors
from ._options import RunOptions, plain, run_options


@user_errors
@run_options(
    m_help="Width of the whole network: neurons over all ranks.",
    backend_help="'numpy' or 'torch' (CUDA needs 'torch').",
    device_help="Torch device; 'cuda' means cuda:LOCAL_RANK and NCCL (else gloo).",
)
def distributed_command(
    opts: RunOptions,
    checkpoint_dir: Path | None = typer.Option(
        None, help="Directory of per-rank checkpoints: written atomically, resumed from if present."
    ),
    checkpoint_every: int = typer.Option(100, help="Steps between checkpoints."),
    init_method: str | None = typer.Option(
        None, help="torch.distributed rendezvous URL: env:// (default, set by torchrun) or file:///shared/path."
    ),
    log_every: int = typer.Option(
        0, help="Rank 0 prints the step and ||u - y|| on stderr every this many steps (0: never)."
    ),
    timeout: float = typer.Option(
        300.0,
        help="Seconds the start-up and each collective wait for the other ranks before every rank stops with an error.",
    ),
    allow_unconverged: bool = typer.Option(
        False,
        "--allow-unconverged",
        help=f"Exit 0 when max_steps ends the run before epsilon (default: exit code {EXIT_NOT_CONVERGED} on every rank).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object with the summary on stdout (rank 0)."),
) -> None:
    """Train one network with its neurons split over the ranks of a torchrun launch (gloo on CPU, NCCL on CUDA).

    Exit codes, alike on every rank: 0 reached epsilon; 1 the run failed (diverged, a peer was lost, a file
    could not be written); 2 bad command line or input; 3 stopped at --max-steps before --epsilon (unless
    --allow-unconverged); 130 interrupted.
    """
    from ..core.backends import check_device
    from ..distributed.sharded import check_ranks_agree, init_from_environment, shutdown, train_sharded
    from ..engine.checkpoints import ResultNotSavedError

    check_device(plain(opts.backend), opts.device)  # before a process group is formed
    comm, device = init_from_environment(opts.device, init_method, timeout_s=timeout)
    try:
        # the command lines first (before any rank can fail alone), then each rank's own checks
        check_ranks_agree(comm, command_fields(opts, checkpoint_dir, checkpoint_every))
        opts = replace(opts, device=device)  # "cuda" became cuda:LOCAL_RANK
        X, y, spec = _rank_inputs(opts, comm, checkpoint_dir)
        out = RankZeroOutput(
            comm.rank, log_every, json_out, {"n": int(X.shape[0]), "d": int(X.shape[1]), **opts.describe()}
        )
        out.settings.update(device=device or "cpu", checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None)
        try:
            descent = opts.descent(checkpoint_every=checkpoint_every)
            result = train_sharded(spec, X, y, descent, progress=out.progress, checkpoint_dir=checkpoint_dir, comm=comm)
        except ResultNotSavedError as exc:  # the run finished: rank 0 shows its result, then the error
            out.summary(exc.result)
            raise
    finally:
        shutdown(comm)
    out.summary(result)
    # every rank has the same residual, so all exit alike; rank 0 says why
    exit_unless_converged(result, opts.max_steps, opts.epsilon, allow_unconverged, speak=comm.rank == 0)


def _rank_inputs(opts: RunOptions, comm: Any, checkpoint_dir: Path | None) -> tuple[Any, Any, Any]:
    """(X, y, spec) of this rank, after every rank's own checks: a rank that fails them stops every rank."""
    from ..core.storage import check_writable
    from ..distributed.sharded import NetSpec, check_ranks_agree

    error: Exception | None = None
    X = y = spec = None
    try:
        if checkpoint_dir is not None:
            check_writable(checkpoint_dir, "--checkpoint-dir", directory=True)
        X, y = opts.checked_dataset(ranks=comm.world_size, ranks_here=int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        spec = NetSpec(X.shape[1], opts.m, **opts.network())
    except USER_ERRORS as exc:
        error = exc
    check_ranks_agree(comm, [], error)
    return X, y, spec


class RankZeroOutput:
    """What rank 0 prints: the progress on stderr (every ``log_every`` steps; 0: never) and the summary.

    Every other rank prints nothing. ``settings`` are the summary's first
    entries (data, network, device, checkpoints), the result's follow.
    """

    def __init__(self, rank: int, log_every: int, json_out: bool, settings: dict[str, Any]) -> None:
        self.rank, self.log_every, self.json_out, self.settings = rank, log_every, json_out, settings

    def progress(self, t: int, res: float) -> None:
        """The ``progress`` of ``train_sharded``: step t and ||u(t) - y||."""
        if self.log_every and self.rank == 0 and t % self.log_every == 0:
            sys.stderr.write(f"step {t}  ||u - y|| = {res:.6e}\n")
            sys.stderr.flush()

    def summary(self, result: Any) -> None:
        """The settings and ``result.summary()``, as JSON or as a table."""
        if self.rank != 0:
            return
        summary = {**self.settings, **result.summary()}
        if self.json_out:
            typer.echo(json.dumps(summary))
        else:
            print_summary(f"expreg distributed ({result.world_size} ranks)", summary)


def command_fields(opts: RunOptions, checkpoint_dir: Path | None, checkpoint_every: int) -> list[tuple[str, Any]]:
    """The options every rank must be given alike, as (flag, value): all but --device (cuda:LOCAL_RANK differs) and the output ones."""
    given = [
        (f"--{f.name.replace('_', '-')}", plain(getattr(opts, f.name))) for f in fields(opts) if f.name != "device"
    ]
    return [*given, ("--checkpoint-dir given", checkpoint_dir is not None), ("--checkpoint-every", checkpoint_every)]


def register(app: typer.Typer) -> None:
    app.command("distributed")(distributed_command)
