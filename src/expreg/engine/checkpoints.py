"""Checkpoints of a descent: the protocol the loop calls, a run's identity, and the one-file format of ``train``.

A run saves its weights W(t) and ``History`` every ``checkpoint_every``
steps and at the end; a relaunch with the same network, data, step-size
rule and recording settings resumes from the last one and ends exactly as
an uninterrupted run would (``check_resumable``). The loop
(``descent.descend``) sees only the ``Checkpoints`` protocol:

* ``FileCheckpoint`` (here): one ``.npz`` file, written atomically, for
  single-process ``expreg.train``. Keys: ``W`` (d, m), ``step``,
  ``fingerprint`` (``run_fingerprint``), ``streams`` (``streams.VERSION``)
  and the history as ``h_<field>`` (``History.npz_fields``).
* ``distributed.checkpoint.RankCheckpoints``: per-rank files and a
  manifest, for ``train_sharded``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..core import streams
from ..core.backends import Array
from ..core.errors import CheckpointError, ExpregError
from ..core.model import ExpNet, NetSpec
from ..core.storage import load_npz, remove_temporaries, save_npz_atomic
from .history import History
from .options import TrainOptions

__all__ = [
    "HISTORY_KEYS",
    "Checkpoints",
    "FileCheckpoint",
    "ResultNotSavedError",
    "check_resumable",
    "run_fingerprint",
]

#: The ``.npz`` keys of the history in every checkpoint (``h_loss``, ...).
HISTORY_KEYS = tuple(History().npz_fields())


class ResultNotSavedError(ExpregError, OSError):
    """A run finished but its final checkpoint could not be written.

    Attributes
    ----------
    result : TrainResult or ShardedTrainResult
        The finished run: nothing is lost but the file.
    """

    def __init__(self, message: str, *, result: Any) -> None:
        super().__init__(message)
        self.result = result


class Checkpoints(Protocol):
    """Where a run saves its state and resumes from (every rank calls both, collectively)."""

    @property
    def location(self) -> str:
        """The file or directory, for messages."""

    def resume(self) -> tuple[Array, History, int] | None:
        """(this rank's W after ``step`` steps, history up to step - 1, step), or None to start afresh."""

    def save(self, W: Array, history: History, step: int, *, final: bool) -> None:
        """Save W after ``step`` steps with ``history`` (up to step - 1, or up to ``step`` when final)."""


def run_fingerprint(
    net: ExpNet | NetSpec,
    X: np.ndarray,
    y: np.ndarray,
    settings: TrainOptions,
    weights: tuple[np.ndarray, ...] = (),
) -> str:
    """Identity of a run for its checkpoints (sha256 hex digest).

    Hashes ``net``'s ``NetSpec.identity`` (d, m, seed, activation, scaling,
    init, dtype, and the output multiplier scale when it is not 1), ``settings.lr`` as given (a rule,
    "auto" or "empirical", is hashed by name: its computed value moves in
    its last bits with the BLAS thread count), what is recorded, the
    random-stream scheme (``streams.VERSION``), then ``weights`` (W(0) and
    a, for a network not drawn from its seed alone) and the data X (n, d),
    y (n,) as float64. Not the number of ranks, epsilon or max_steps: a run
    may be continued with another budget (``check_resumable``).
    """
    lr = settings.lr
    spec: NetSpec = net.spec if isinstance(net, ExpNet) else net
    # (d, m, seed, activation, scaling, init, dtype[, scale]): scale = 1 is left out, so that runs without a
    # multiplier keep the fingerprints they had before it existed
    identity = tuple(value for name, value in spec.identity() if not (name == "scale" and value == 1.0))
    recorded = (lr if isinstance(lr, str) else float(lr), settings.record_every, bool(settings.track_movement))
    h = hashlib.sha256()
    h.update(repr((*identity, *recorded, streams.VERSION)).encode())
    for w in weights:
        h.update(np.ascontiguousarray(w).tobytes())
    h.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
    return h.hexdigest()


def check_resumable(history: History, step: int, settings: TrainOptions, location: str) -> None:
    """Refuse a checkpoint of ``step`` steps that an uninterrupted run with ``settings`` would never have reached.

    An uninterrupted run stops at the first t with ||u(t) - y|| <= epsilon or
    t = max_steps. ``history`` holds the residuals of steps 0 .. step - 1:
    if one of them is <= epsilon, or step > max_steps, that run would have
    stopped before ``step`` and the checkpoint's weights are not its result.

    Raises
    ------
    CheckpointError
        Naming the step the run would have stopped at and what to do.
    """
    hit = next((t for t, r in enumerate(history.residual[:step]) if r <= settings.epsilon), None)
    restart = f"delete {location!r} (or choose another checkpoint) to rerun from the start with these settings"
    if hit is not None:
        raise CheckpointError(
            f"the checkpoint {location!r} holds step {step}, but ||u - y|| = {history.residual[hit]:.4g} <= epsilon = "
            f"{settings.epsilon:g} already at step {hit}: a run with epsilon = {settings.epsilon:g} stops there, and the "
            f"weights of step {hit} are not kept. Use epsilon < {min(history.residual[:step]):.4g} to continue from step {step}, or {restart}"
        )
    if step > settings.max_steps:
        raise CheckpointError(
            f"the checkpoint {location!r} holds step {step}, past max_steps = {settings.max_steps}: a run with this budget stops "
            f"at step {settings.max_steps}, whose weights are not kept. Use max_steps >= {step} to continue from it, or {restart}"
        )


@dataclass
class FileCheckpoint:
    """The checkpoint of a single-process run: one ``.npz`` file (a ``Checkpoints``).

    Attributes
    ----------
    path : Path
    fingerprint : str
        ``run_fingerprint`` of the run; a file with another is refused.
    net : ExpNet
        The initial network (its shape, backend and dtype).
    """

    path: Path
    fingerprint: str
    net: ExpNet

    @property
    def location(self) -> str:
        return str(self.path)

    def resume(self) -> tuple[Any, History, int] | None:
        """W, history and step of the checkpoint ``save`` wrote for this run, or None when there is none.

        First removes the temporary files that killed writes of this checkpoint left (``.NAME.*.tmp``).
        """
        remove_temporaries(self.path)
        if not self.path.exists():
            return None
        path, net = self.path, self.net
        data = load_npz(path, required=("W", "step", "fingerprint", *HISTORY_KEYS))
        streams.check_checkpoint(data, path)
        if str(data["fingerprint"]) != self.fingerprint:
            raise CheckpointError(
                f"checkpoint {str(path)!r} belongs to another run (initial weights, data, lr or recording settings differ); "
                "delete it or choose another path"
            )
        if tuple(data["W"].shape) != (net.d, net.m):
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds W of shape {data['W'].shape}, expected {(net.d, net.m)}"
            )
        history = History.from_npz_fields(data)
        step = int(data["step"])
        if not (len(history.loss) in (step, step + 1) and np.isfinite(data["W"]).all()):
            raise CheckpointError(
                f"checkpoint {str(path)!r} is inconsistent (step {step}, {len(history.loss)} history rows); delete it"
            )
        if len(history.loss) > step:
            history.truncate(step - 1)
        return net.backend.asarray(data["W"], net.dtype), history, step

    def save(self, W: Any, history: History, step: int, *, final: bool) -> None:
        """Save W after ``step`` steps with the history up to step - 1 or ``step`` (atomic write)."""
        save_npz_atomic(
            self.path,
            W=self.net.backend.to_numpy(W),
            step=np.int64(step),
            fingerprint=np.array(self.fingerprint),
            streams=np.int64(streams.VERSION),
            **history.npz_fields(),
        )
