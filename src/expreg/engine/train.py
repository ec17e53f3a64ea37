"""Full-batch gradient descent of docs/theory.md section 2, with the history the proof needs.

``train`` runs W <- W - lr * dL/dW until ||u - y||_2 <= epsilon (the paper's
stopping rule) or ``max_steps``, recording per step the loss, the residual
norm and the weight movement, and every ``record_every`` steps the kernel
deviation ||H^dis(W(t)) - H^cts||_op and lambda_min(H^dis(W(t))).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core import streams
from ..core.errors import CheckpointError
from ..core.model import ExpNet
from ..core.storage import load_npz, save_npz_atomic
from ..core.validation import check_X_y
from . import descent
from .communicator import Communicator
from .descent import DIVERGENCE_FACTOR, History, ProgressFn, ResultFigures, resolve_lr
from .options import TrainOptions

__all__ = ["DIVERGENCE_FACTOR", "History", "TrainOptions", "TrainResult", "resolve_lr", "train"]


@dataclass(repr=False)  # the one-line repr of ResultFigures
class TrainResult(ResultFigures):
    """What ``train`` returns (``final_residual``, ``initial_residual``, ``max_movement``, ``summary()``: ``ResultFigures``).

    Attributes
    ----------
    converged : bool
        ||u - y||_2 <= epsilon was reached.
    steps : int
        Gradient steps taken.
    net : ExpNet
        The trained network (the input network is left unchanged).
    lr : float
        The step size used.
    lr_rule : str
        How it was chosen, e.g. "auto: 1/lambda_max(m s^2 H^cts)".
    epsilon : float
    history : History
    lambda_cts : float
        lambda_min(H^cts) of the training inputs (docs/theory.md section 3).
    lambda_max_cts : float
    seconds : float
        Wall time of the descent (kernel set-up included).
    """

    converged: bool
    steps: int
    net: ExpNet
    lr: float
    lr_rule: str
    epsilon: float
    history: History
    lambda_cts: float
    lambda_max_cts: float
    seconds: float


def train(
    net: ExpNet,
    X: Any,
    y: Any,
    options: TrainOptions | None = None,
    *,
    progress: ProgressFn | None = None,
    checkpoint: str | Path | None = None,
    **overrides: Any,
) -> TrainResult:
    """Full-batch gradient descent on L(W) = 1/2 ||F(W, X) - y||^2 (docs/theory.md section 2).

    Parameters
    ----------
    net : ExpNet
        Initial network W(0); not modified.
    X : array (n, d), y : array (n,)
        Training data; ||x_i|| <= 1 is what the theorem assumes (a warning otherwise).
    options : TrainOptions, optional
        The run's options: ``lr`` ("auto", "empirical" or a number),
        ``epsilon``, ``max_steps``, ``record_every``, ``track_movement``,
        ``checkpoint_every``; see ``TrainOptions`` for each. Default: all
        defaults.
    **overrides
        Any field of ``TrainOptions`` as a keyword (``lr=0.5, max_steps=200``),
        replacing that field of ``options``. An unknown keyword is a TypeError.
    progress : callable (step, residual) -> None, optional
        Called with (t, ||u(t) - y||_2) once step t is recorded, t = 0, 1, ...
        An exception it raises stops the run (a checkpointed run then resumes).
    checkpoint : path, optional
        ``.npz`` file written atomically every ``checkpoint_every`` steps and
        at the end; if it exists at start (same W(0), data, lr and recording
        settings), the run resumes from it and ends exactly as an
        uninterrupted run with the settings given now would: epsilon and
        max_steps may change between runs (a finished run can be continued
        with a tighter epsilon or a larger budget), but a checkpoint past
        the step where the new settings stop is refused (``CheckpointError``),
        since the weights of that step are not kept.

    Returns
    -------
    TrainResult

    Raises
    ------
    TrainingDivergedError
        The loss grew by more than ``DIVERGENCE_FACTOR`` or exp overflowed;
        the error's ``result`` holds the run up to the last finite weights
        and ``suggested_lr`` a stable step.
    ExpOverflowError
        exp overflows already at the initial weights (inputs far too large).
    CheckpointError
        The checkpoint belongs to another run, is corrupt, or is past the
        step where ``epsilon`` or ``max_steps`` stop this run.
    ResultNotSavedError
        The run finished but its final checkpoint could not be written;
        ``error.result`` is the ``TrainResult``.
    """
    started = time.perf_counter()
    settings = TrainOptions.merge(options, overrides, "train")
    Xn, yn = check_X_y(X, y, dtype=np.dtype(np.float64), d=net.d)
    shard = descent.Shard(net.spec, Xn, yn, net.W, net.a, Communicator())

    def make_result(W: Any, fields: dict[str, Any]) -> TrainResult:
        return TrainResult(net=net.with_weights(W), seconds=time.perf_counter() - started, **fields)

    def checkpoints(step: float) -> _FileCheckpoint:
        lr = settings.lr
        rule = (
            lr if isinstance(lr, str) else step
        )  # 'auto' hashed as such: its value moves in the last bits with BLAS threads
        fingerprint = descent.run_fingerprint(
            net, Xn, yn, rule, settings.record_every, settings.track_movement, weights=net.weights_numpy()
        )
        return _FileCheckpoint(Path(checkpoint), fingerprint, net)  # type: ignore[arg-type]

    return descent.descend(
        shard, settings, make_result, progress=progress, checkpoints=checkpoints if checkpoint is not None else None
    )


_HISTORY_KEYS = tuple(History().npz_fields())


@dataclass
class _FileCheckpoint:
    """The checkpoint of a single-process run: one ``.npz`` file (``descent.Checkpoints``)."""

    path: Path
    fingerprint: str
    net: ExpNet

    @property
    def location(self) -> str:
        return str(self.path)

    def resume(self) -> tuple[Any, History, int] | None:
        """W, history and step of the checkpoint ``save`` wrote for this run, or None when there is none."""
        if not self.path.exists():
            return None
        path, net = self.path, self.net
        data = load_npz(path, required=("W", "step", "fingerprint", *_HISTORY_KEYS))
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
