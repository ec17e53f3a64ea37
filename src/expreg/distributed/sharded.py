"""Width-sharded gradient descent on torch.distributed (docs/theory.md section 2).

Neurons are independent given the residual, so a network too wide for one
device is split by neurons: rank k of P holds the contiguous slice
``lo .. hi-1`` (its columns of W and entries of a; ``shard_range``). A step:

    u_k = sigma(X W_k) a_k                    (n,)   partial sum on rank k
    u   = s * all_reduce_sum(u_k)             (n,)   the only communication
    G_k = s * X^T (r * sigma'(X W_k) * a_k)   (d, hi-lo), r = u - y
    W_k <- W_k - lr * G_k

with s of the *global* width (1/sqrt(m) for scaling "ntk"). The arithmetic is
``ops.forward_backward`` with its ``reduce`` hook; besides the n-vector, a
step all-reduces two scalars (the squared Frobenius movement and an overflow
flag, by sum) and one by max (the largest neuron movement). Kernel records
all-reduce the n x n partial Gram matrix.

Neuron r is drawn from (seed, r) alone (``initialisation``), so the run
equals single-process ``expreg.train`` on the same seed, for every number of
ranks, to rounding (the sums are taken in another order). The loop itself
(stopping rule, step-size rules, divergence test, history) is the one of
``expreg.train``: ``descent.descend``, run here on this rank's
``descent.Shard`` with a torch communicator and per-rank checkpoints.

Launch with torchrun (gloo on CPU, NCCL when ``device`` is CUDA)::

    torchrun --nproc-per-node 2 -m expreg.distributed -- --n 64 --d 16 --m 100000 \\
        --checkpoint-dir run/

(after ``--``, so that torchrun does not read --n, --d, --m as its own options)

or in Python, inside an initialised process group, ``train_sharded(spec, X, y)``.
Without a process group it runs as the only rank.

Before the first step the ranks check that they agree (``check_ranks_agree``):
each all-reduces a digest of every setting (network, step size, stopping
rule, recording, checkpoints) and of its data, so that ranks launched with
different arguments or data all stop with one message naming the first
setting that differs, instead of training a wrong network (with m = 1001 on
one rank and 2001 on the other, neurons 501..1000 would be dropped). A rank
that fails its own checks tells the others, which stop too.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.backends import Array, host_array
from ..core.errors import ExpregError
from ..core.model import NetSpec
from ..core.validation import check_X_y
from ..engine.checkpoints import run_fingerprint
from ..engine.communicator import Communicator
from ..engine.descent import ProgressFn, descend, results_as
from ..engine.history import Run, RunResult
from ..engine.options import TrainOptions
from ..engine.shard import Shard
from .checkpoint import RankCheckpoints
from .comm import TorchCommunicator, communicator, init_from_environment, shutdown

__all__ = [
    "Communicator",
    "NetSpec",
    "RanksDisagreeError",
    "ShardedTrainResult",
    "TorchCommunicator",
    "check_ranks_agree",
    "communicator",
    "init_from_environment",
    "shard_range",
    "shutdown",
    "train_sharded",
]


# --------------------------------------------------------------------------- sharding
def shard_range(m: int, world_size: int, rank: int) -> tuple[int, int]:
    """Neurons ``[lo, hi)`` of ``rank``: an even split, the first ``m % P`` ranks one larger.

    >>> [shard_range(7, 2, r) for r in range(2)]
    [(0, 4), (4, 7)]
    """
    base, extra = divmod(m, world_size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


# --------------------------------------------------------------------------- agreement
class RanksDisagreeError(ExpregError, ValueError):
    """The ranks of a sharded run were given different settings or data, or another rank failed its checks."""


def _digest(value: Any) -> float:
    """52 bits of sha256 of ``value`` (arrays: shape, dtype and bytes; else ``repr``), exact in float64."""
    h = hashlib.sha256()
    if isinstance(value, np.ndarray):
        h.update(repr((value.shape, str(value.dtype))).encode())
        h.update(np.ascontiguousarray(value).tobytes())
    else:
        h.update(repr(value).encode())
    return float(int(h.hexdigest()[:13], 16))


def _number(value: Any) -> float | None:
    """``value`` as a float when it is a real number (ints exact up to 2^53), else None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    return float(value)


def _show(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} with sha256 digest {int(_digest(value)):013x}"
    return repr(value)


def check_ranks_agree(
    comm: Communicator, fields: Sequence[tuple[str, Any]], error: BaseException | None = None
) -> None:
    """Stop every rank, with one message, unless all ranks hold the same ``fields`` and none failed.

    Collective: every rank must call it with the same field names in the same
    order. One max all-reduce of [failed flag per rank, digests, -digests,
    values, -values] (2 k + 2 k + P float64 for k fields) gives each field's
    largest and smallest digest and value over the ranks.

    Parameters
    ----------
    comm : Communicator
    fields : sequence of (name, value)
        Settings and data of this rank (arrays are hashed whole).
    error : exception, optional
        This rank's own failure before this point: it is re-raised here,
        after the other ranks were told, so that they stop too.

    Raises
    ------
    error
        On the rank that failed.
    RanksDisagreeError
        On every other rank when some rank failed; on every rank when a field
        differs, naming the first such field, its range over the ranks
        (numbers) and this rank's value.
    """
    digests = np.array([_digest(v) for _, v in fields])
    numbers = np.array([_number(v) if _number(v) is not None else 0.0 for _, v in fields])
    flags = np.zeros(comm.world_size)
    flags[comm.rank] = float(error is not None)
    reduced = comm.max(np.concatenate([flags, digests, -digests, numbers, -numbers]))
    k, P = len(fields), comm.world_size
    failed = [r for r in range(P) if reduced[r] > 0]
    hi_d, lo_d, hi_v, lo_v = (
        reduced[P : P + k],
        -reduced[P + k : P + 2 * k],
        reduced[P + 2 * k : P + 3 * k],
        -reduced[P + 3 * k :],
    )
    if error is not None:
        raise error
    if failed:
        raise RanksDisagreeError(
            f"rank {comm.rank} stops: rank(s) {', '.join(map(str, failed))} of {P} stopped before training with an error of their "
            "own (see their output); fix it and relaunch every rank"
        )
    for i, (name, value) in enumerate(fields):
        if hi_d[i] != lo_d[i]:
            spread = f" (from {lo_v[i]:.10g} to {hi_v[i]:.10g} over the ranks)" if _number(value) is not None else ""
            raise RanksDisagreeError(
                f"the ranks were launched with different settings: {name} differs{spread}; rank {comm.rank} has {_show(value)}. "
                "Launch every rank with the same arguments and the same data"
            )


def run_fields(spec: NetSpec, X: np.ndarray | None, y: np.ndarray | None, **settings: Any) -> list[tuple[str, Any]]:
    """What the ranks of one run must agree on: n, the network ``spec`` (not its device), ``settings``, then X and y."""
    n = None if X is None else int(X.shape[0])
    return [("n", n), *spec.identity(), ("backend", spec.backend), *settings.items(), ("X", X), ("y", y)]


# --------------------------------------------------------------------------- the run
@dataclass(repr=False)  # the one-line repr of RunResult
class ShardedTrainResult(RunResult):
    """What ``train_sharded`` returns on each rank: the ``Run`` of this rank's descent and its slice.

    The run's fields read through as for ``expreg.TrainResult`` (``converged``,
    ``steps``, ``lr``, ``history`` (identical on every rank), ...) with the
    same figures (``RunResult``); the rank's slice of the network replaces
    the whole network.

    Attributes
    ----------
    run : Run
        ``run.W`` (d, hi - lo) is this rank's neurons after ``steps`` steps (backend array).
    a : array (hi - lo,)
    lo, hi, m : int
        The slice and the global width.
    rank, world_size : int
    seconds : float
    """

    run: Run
    a: Array
    lo: int
    hi: int
    m: int
    rank: int
    world_size: int
    seconds: float

    @property
    def W(self) -> Array:
        """This rank's neurons (d, hi - lo) after ``steps`` steps."""
        return self.run.W

    def weights_numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """(W, a) of this rank as NumPy arrays, shapes (d, hi - lo) and (hi - lo,)."""
        return host_array(self.W), host_array(self.a)

    def summary(self) -> dict[str, Any]:
        """JSON-ready headline figures (the keys of ``TrainResult.summary``, plus the sharding)."""
        return {**super().summary(), "m": int(self.m), "world_size": int(self.world_size)}


def train_sharded(
    spec: NetSpec,
    X: Any,
    y: Any,
    options: TrainOptions | None = None,
    *,
    progress: ProgressFn | None = None,
    checkpoint_dir: str | Path | None = None,
    comm: Communicator | None = None,
    **overrides: Any,
) -> ShardedTrainResult:
    """Full-batch gradient descent (docs/theory.md section 2) with the neurons split over the ranks.

    Call it on every rank with the same arguments. The run's options
    (``options`` and keyword ``overrides``: the fields of ``TrainOptions``)
    and the rules (stopping, ``lr``, ``record_every``, divergence) are those
    of ``expreg.train``; ``spec`` replaces the network.

    Parameters
    ----------
    spec : NetSpec
        The network (global width m); each rank draws only its slice.
    X : array (n, d), y : array (n,)
        The same data on every rank.
    options : TrainOptions, optional
        As for ``expreg.train``; ``**overrides`` replace its fields.
    checkpoint_dir : path, optional
        Directory of per-rank checkpoints (``distributed.checkpoint``),
        written every ``checkpoint_every`` steps and at the end; a relaunch
        (with any number of ranks) resumes from its newest complete step.
    comm : Communicator, optional
        Default: the initialised torch.distributed group, or a single process.

    Returns
    -------
    ShardedTrainResult
        This rank's neurons and the (global) history.

    Raises
    ------
    RanksDisagreeError
        On every rank, before any step, when the ranks were given different
        arguments or data (the first field that differs is named), or when
        another rank's arguments were invalid (this rank's own ValueError).
    PeerLostError
        Another rank is gone or did not answer within the timeout.
    TrainingDivergedError
        On every rank alike; ``error.result`` is a ``ShardedTrainResult``.
    """
    started = time.perf_counter()
    comm = communicator() if comm is None else comm
    error: Exception | None = None
    Xn = yn = None
    settings: TrainOptions | None = None
    try:
        settings = TrainOptions.merge(options, overrides, "train_sharded")
        if spec.m < comm.world_size:
            raise ValueError(
                f"width m = {spec.m} is smaller than the number of ranks ({comm.world_size}); launch at most m processes"
            )
        Xn, yn = check_X_y(X, y, dtype=np.float64, d=spec.d)
    except (ValueError, TypeError) as exc:  # told to the other ranks before it is raised here
        error = exc
    check_ranks_agree(
        comm,
        run_fields(
            spec,
            Xn,
            yn,
            **(settings.as_fields() if settings is not None else _given_fields(options, overrides)),
            checkpoints=checkpoint_dir is not None,
        ),
        error,
    )
    assert Xn is not None and yn is not None and settings is not None
    lo, hi = shard_range(spec.m, comm.world_size, comm.rank)
    shard = Shard(spec, Xn, yn, *spec.draw(lo, hi), comm)
    store = None
    if checkpoint_dir is not None:
        tiles = [shard_range(spec.m, comm.world_size, r) for r in range(comm.world_size)]
        store = RankCheckpoints(shard, spec, Path(checkpoint_dir), run_fingerprint(spec, Xn, yn, settings), tiles)

    def result(run: Run) -> ShardedTrainResult:
        return ShardedTrainResult(
            run=run,
            a=shard.a,
            lo=lo,
            hi=hi,
            m=spec.m,
            rank=comm.rank,
            world_size=comm.world_size,
            seconds=time.perf_counter() - started,
        )

    with results_as(result):
        return result(descend(shard, settings, progress=progress, checkpoints=store))


def _given_fields(options: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """The run options as given, when they did not validate on this rank (compared all the same)."""
    given = options.as_fields() if isinstance(options, TrainOptions) else {}
    return {**given, **overrides}
