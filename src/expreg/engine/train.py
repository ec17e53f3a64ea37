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

from ..core.model import ExpNet
from ..core.validation import check_points_distinct, check_X_y
from .checkpoints import FileCheckpoint, run_fingerprint
from .communicator import Communicator
from .descent import DIVERGENCE_FACTOR, ProgressFn, descend, resolve_lr, results_as
from .history import History, Run, RunResult
from .options import TrainOptions
from .shard import Shard

__all__ = ["DIVERGENCE_FACTOR", "History", "TrainOptions", "TrainResult", "resolve_lr", "train"]


@dataclass(repr=False)  # the one-line repr of RunResult
class TrainResult(RunResult):
    """What ``train`` returns: the ``Run`` of the descent, the trained network and the wall time.

    The run's fields read through (``converged``, ``steps``, ``lr``,
    ``lr_rule``, ``epsilon``, ``history``, ``lambda_cts``,
    ``lambda_max_cts``), with the headline figures (``final_residual``,
    ``initial_residual``, ``max_movement``, ``summary()``): ``RunResult``.

    Attributes
    ----------
    run : Run
        The descent's record (``run.W`` is the trained W, a backend array).
    net : ExpNet
        The trained network (the input network is left unchanged).
    seconds : float
        Wall time of the descent (kernel set-up included).
    """

    run: Run
    net: ExpNet
    seconds: float


def train(
    net: ExpNet,
    X: Any,
    y: Any,
    options: TrainOptions | None = None,
    *,
    progress: ProgressFn | None = None,
    checkpoint: str | Path | None = None,
    sample_weight: Any = None,
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

    sample_weight : array (n,), optional
        Weights c_i >= 0 of the loss L = 1/2 sum_i c_i (F(W, x_i) - y_i)^2. Its
        gradient is that of the data set with x_i repeated c_i times (for
        integer c), and in the kernel regime the residual evolves by
        C^(1/2) H C^(1/2) instead of H (C = diag(c)): the stopping rule is on
        ||C^(1/2)(u - y)||_2, "auto" is 1/lambda_max(m s^2 C^(1/2) H^cts C^(1/2)),
        and ``lambda_cts`` is lambda_min of that matrix. A point with c_i = 0
        does not move the weights. Not combined with ``checkpoint``.

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
    check_points_distinct(Xn, activation=net.spec.activation, action="warn")  # lambda = 0 named before any step
    weights = None if sample_weight is None else check_sample_weight(sample_weight, Xn.shape[0])
    if weights is not None and checkpoint is not None:
        raise ValueError("sample_weight and checkpoint cannot be combined (a checkpoint does not record the weights)")
    shard = Shard(net.spec, Xn, yn, net.W, net.a, Communicator(), weights=weights)
    store = None
    if checkpoint is not None:
        fingerprint = run_fingerprint(net, Xn, yn, settings, weights=net.weights_numpy())
        store = FileCheckpoint(Path(checkpoint), fingerprint, net)

    def result(run: Run) -> TrainResult:
        return TrainResult(run=run, net=net.with_weights(run.W), seconds=time.perf_counter() - started)

    with results_as(result):
        return result(descend(shard, settings, progress=progress, checkpoints=store))


def check_sample_weight(sample_weight: Any, n: int) -> np.ndarray:
    """Weights of ``train``: shape (n,), finite, >= 0, not all 0; float64."""
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},) (one weight per row of X), got {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("sample_weight must be finite and >= 0")
    if not (w > 0).any():
        raise ValueError("sample_weight is 0 everywhere: no point would be fitted")
    return w
