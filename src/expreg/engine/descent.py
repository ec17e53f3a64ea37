"""The one gradient-descent loop of docs/theory.md section 2, for a whole network or one rank's slice of it.

``descend`` runs W <- W - lr * dL/dW until ||u - y||_2 <= epsilon (the
paper's stopping rule) or ``max_steps``, recording per step the loss, the
residual norm and the weight movement, and every ``record_every`` steps the
kernel deviation ||H^dis(W(t)) - H^cts||_op and lambda_min(H^dis(W(t))).
It returns a ``history.Run`` (weights, history, step size, kernel figures).

What differs between ``expreg.train`` (one process, the whole network) and
``expreg.distributed.train_sharded`` (neurons split over ranks) is held by
two small objects the caller hands in:

* ``shard.Shard``: this rank's neurons, with the three collective computations a
  step needs (the all-reduce of the partial predictions, the global Gram
  matrix, the global movement and overflow flag). With the single-process
  ``Communicator`` every collective is the identity and the shard is the
  whole network.
* ``checkpoints.Checkpoints``: where a run saves and resumes (one ``.npz``
  file for ``train``; per-rank files and a manifest for ``train_sharded``).

The loop reads as: ``Descent`` (set-up: H^cts, the step size ``lr``) ->
``start`` (W(0) or the resumed weights) -> per step ``measure`` (forward,
backward, records, overflow and divergence tests) -> ``WeightBuffers.advance``
(the gradient step; on the host the backward pass has already written it,
block by block while each block of the gradient was in cache) -> ``finish``
(the ``Run``). The caller wraps the ``Run``
in its own result type (``history.RunResult``), also the one an error
carries (``results_as``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

from ..core import kernels, ops
from ..core.backends import Array, Backend
from ..core.errors import CheckpointError, ExpOverflowError, TrainingDivergedError
from .checkpoints import Checkpoints, ResultNotSavedError, check_resumable
from .history import History, Run
from .options import TrainOptions
from .shard import Shard

__all__ = [
    "DIVERGENCE_FACTOR",
    "Descent",
    "ProgressFn",
    "Shard",
    "WeightBuffers",
    "descend",
    "residual_norm",
    "resolve_lr",
    "results_as",
]

#: The loss may grow at most this factor above its initial value before the run counts as diverged.
DIVERGENCE_FACTOR = 1e4
#: On the host, each step's backward pass also runs the next step's forward pass (``ops.Step.ahead``: one sweep
#: over the kept activations per step instead of two, the same bits); False gives every step its own forward
#: pass (benchmarks/step_ab.py compares the two).
RUN_AHEAD = True

ProgressFn = Callable[[int, float], None]
R = TypeVar("R")


def resolve_lr(
    lr: float | str,
    m: int,
    s: float,
    lambda_max_cts: float,
    net: Any = None,
    X: np.ndarray | None = None,
    *,
    gram0: Callable[[], np.ndarray] | None = None,
) -> tuple[float, str]:
    """Turn ``lr`` (a ``TrainOptions.lr``: "auto", "empirical" or a positive number) into (lr, lr_rule): the step size and how it was chosen.

    "auto" = 1 / lambda_max(m s^2 H^cts); "empirical" = 1 / lambda_max(H(W(0)))
    (docs/theory.md section 4), H(W(0)) from ``gram0()`` or else ``kernels.empirical_ntk(net, X)``.
    """
    if isinstance(lr, str):
        if lr == "auto":
            if not lambda_max_cts > 0:
                raise ValueError(
                    f"lr='auto' needs lambda_max(H^cts) > 0, got {lambda_max_cts:.3g}: every input is zero, so the "
                    "gradient vanishes and there is nothing to train; check X or pass a number as lr"
                )
            return 1.0 / (m * s * s * lambda_max_cts), "auto: 1/lambda_max(m s^2 H^cts)"
        if lr == "empirical":
            if gram0 is None:
                if net is None or X is None:
                    raise ValueError("lr='empirical' needs the network and the inputs X")
                gram0 = lambda: kernels.empirical_ntk(net, X)  # noqa: E731
            return 1.0 / kernels.lambda_max(gram0()), "empirical: 1/lambda_max(H(W(0)))"
    return float(lr), "given"  # TrainOptions checked it: a positive finite number


def residual_norm(r: np.ndarray) -> float:
    """||r||_2 without overflow of the squares (inf only when the norm itself is)."""
    big = float(np.abs(r).max())
    if big == 0.0 or not math.isfinite(big):
        return big
    q = r / big
    return big * math.sqrt(float(q @ q))


class WeightBuffers:
    """W(t) and W(t-1) of one descent in two buffers (d, k) that swap roles at every step.

    W(t+1) = W(t) - lr G is written into the buffer that held W(t-1), so a
    step allocates nothing and W(t) survives the step (the last finite
    weights, should W(t+1) overflow). On the host (a NumPy backend) the
    backward pass writes it, block by block while each block of the
    gradient is in cache: ``fused_step`` hands ``measure`` the ``ops.Step``
    to take, and ``advance`` only swaps the buffers. Elsewhere ``advance``
    takes the step itself (``ops.advance``), the same arithmetic. Given
    ``W0``, the movement of W(t+1) from W(0) is measured in the same pass,
    kept in ``moved`` for the next step's record.

    Aliasing rule: ``previous`` and the buffer the next step writes into
    are one array. ``previous`` (W(t-1)) is valid from one ``advance``
    until the next ``measure`` begins; whoever needs it longer copies it.
    ``current`` never aliases ``previous`` or the gradient ``G``.

    Attributes
    ----------
    current : array (d, k)
        W(t).
    previous : array (d, k) or None
        W(t-1); None before the first step of this run (a resumed run included).
    moved : (float, float) or None
        (max_r ||w_r(t) - w_r(0)||, ||W(t) - W(0)||_F) of this rank's neurons, when ``advance`` measured
        it (None before the first step of this run, or without ``W0``).
    """

    def __init__(self, be: Backend, W: Array, dtype: np.dtype, plan: ops.BlockPlan, W0: Array | None = None) -> None:
        self.be, self.plan, self.W0 = be, plan, W0
        self.current: Array = W
        self.previous: Array | None = None
        self.moved: tuple[float, float] | None = None
        self._next: Array = be.empty(tuple(W.shape), dtype)
        self._norms: Array | None = None if W0 is None else be.empty((int(W.shape[1]),), dtype)
        self._step: ops.Step | None = None
        self.primed: ops.Primed | None = None

    def fused_step(self, lr: float) -> ops.Step | None:
        """The step W(t+1) = W(t) - lr G for the backward pass to take into the spare buffer (host backends);
        None where ``advance`` takes it. W(t-1) is overwritten once it is taken."""
        self._step = ops.Step(self._next, lr, self.W0, self._norms, ahead=RUN_AHEAD) if self.be.host_blas else None
        return self._step

    def advance(self, G: Array, lr: float) -> None:
        """W(t+1) = W(t) - lr G into the spare buffer (and its movement), unless the backward pass took it
        (``fused_step``); W(t) becomes ``previous``."""
        out, step, self._step = self._next, self._step, None
        self.primed = step.primed if step is not None else None
        if step is not None and step.taken:
            self.moved = step.moved(self.be)
        else:
            self.moved = ops.advance(self.be, out, self.current, G, lr, self.plan, self.W0)
        self.previous, self.current = self.current, out
        self._next = self.previous  # W(t-1) is no longer needed once W(t) is known finite


class Descent:
    """The state of one descent: its fixed figures, its history, and the tests of each step (see ``descend``).

    Attributes
    ----------
    shard : Shard
    settings : TrainOptions
    H_cts : ndarray (n, n)
        The infinite-width kernel of the training inputs (docs/theory.md section 3).
    lambda_cts, lambda_max_cts : float
        Its extreme eigenvalues.
    lr : float
        The step size (``resolve_lr`` of ``settings.lr``); ``lr_rule`` says how it was chosen.
    history : History
    loss0 : float or None
        The loss at step 0 (the reference of the divergence test), once known.
    """

    def __init__(self, shard: Shard, settings: TrainOptions) -> None:
        self.shard, self.settings = shard, settings
        self.H_cts = kernels.ntk(shard.Xn, activation=shard.act)
        self.lambda_cts, self.lambda_max_cts = kernels.extreme_eigenvalues(shard.kernel_scale(self.H_cts))
        self.lr, self.lr_rule = resolve_lr(
            settings.lr, shard.m, shard.s, self.lambda_max_cts, gram0=lambda: shard.gram(shard.W0)
        )
        self.history = History()
        self.loss0: float | None = None

    def start(self, checkpoints: Checkpoints | None) -> tuple[WeightBuffers, int]:
        """The weights to start from and their step: W(0) (copied), or the checkpoint's when there is one."""
        sh = self.shard
        W, t = sh.be.copy(sh.W0), 0
        resumed = checkpoints.resume() if checkpoints is not None else None
        if resumed is not None and checkpoints is not None:
            W, self.history, t = resumed
            check_resumable(self.history, t, self.settings, checkpoints.location)
            self.loss0 = self.history.loss[0] if self.history.loss else None
        return WeightBuffers(sh.be, W, sh.dtype, sh.plan, sh.W0 if self.settings.track_movement else None), t

    def measure(self, t: int, weights: WeightBuffers, G: Array) -> float:
        """Forward and backward at W(t) (G written in place), step t recorded; returns ||u(t) - y||_2.

        Raises the error of ``overflowed`` when exp or the loss overflowed,
        and of ``diverged`` when the loss grew past ``DIVERGENCE_FACTOR``.
        """
        sh, cfg, W = self.shard, self.settings, weights.current
        u, grad_overflow = sh.forward_backward(W, G, weights.fused_step(self.lr), weights.primed)
        if u is None:  # the predictions overflowed, alike on every rank (no step was taken: W(t-1) is intact)
            raise self.overflowed("exp overflowed", t, weights)
        moved = cfg.track_movement and t > 0
        worst, frob, any_overflow = sh.step_scalars(W, moved=moved, overflow=grad_overflow, local=weights.moved)
        res = residual_norm(sh.residual(u))
        loss = 0.5 * res * res
        overflow = any_overflow or not math.isfinite(loss)
        what = "exp overflowed in the gradient" if any_overflow else "the loss 1/2 ||u - y||^2 overflowed float64"
        if overflow and weights.previous is None:  # at the start of this run: an error of the input, not divergence
            raise self.overflowed(what, t, weights)
        if len(self.history.loss) == t:  # not yet recorded (a resumed run may have it)
            self.record(t, W, loss, res, worst, frob)
        if overflow:
            # The predictions at W(t) are finite, so the step from it may already be taken (``fused_step``):
            # W(t), finite, is the last weights kept, its step recorded.
            raise self.overflowed(what, t, weights, keep_current=True)
        if self.loss0 is None:
            self.loss0 = loss
        if t > 0 and not loss <= DIVERGENCE_FACTOR * max(self.loss0, 1e-30):
            raise self.diverged(f"the loss grew from {self.loss0:.3g} to {loss:.3g} by step {t}", t, W)
        return res

    def record(self, t: int, W: Array, loss: float, res: float, worst: float, frob: float) -> None:
        """Append step t to the history, and the kernel figures when ``record_every`` asks for them."""
        cfg = self.settings
        moved = cfg.track_movement
        self.history.append_step(loss, res, worst if moved else math.nan, frob if moved else math.nan)
        if (cfg.record_every and t % cfg.record_every == 0) or (cfg.record_every is None and t == 0):
            self.record_kernel(t, W)

    def record_kernel(self, t: int, Wt: Array) -> None:
        """Append ||H^dis(W(t)) - H^cts||_op and lambda_min(H^dis(W(t))) (NaN, with a warning, on overflow)."""
        sh = self.shard
        try:
            Hdis = sh.gram(Wt) / (sh.m * sh.s**2)
            deviation, lam = kernels.operator_norm(Hdis - self.H_cts), kernels.lambda_min(Hdis)
        except ExpOverflowError as exc:  # a diagnostic must not end a run: record NaN and say so
            warnings.warn(
                f"the kernel H(W({t})) overflowed ({exc}); its deviation and lambda_min are recorded as NaN",
                stacklevel=6,
            )
            deviation = lam = math.nan
        self.history.append_kernel(t, deviation, lam)

    def finish(self, converged: bool, t: int, Wt: Array) -> Run:
        """The run record after ``t`` steps at weights ``Wt`` (the kernel recorded at t unless it is, or never is)."""
        h = self.history
        if self.settings.record_every != 0 and (not h.kernel_step or h.kernel_step[-1] != t):
            self.record_kernel(t, Wt)
        return Run(
            W=Wt,
            converged=converged,
            steps=t,
            lr=self.lr,
            lr_rule=self.lr_rule,
            epsilon=self.settings.epsilon,
            history=h,
            lambda_cts=self.lambda_cts,
            lambda_max_cts=self.lambda_max_cts,
        )

    def finish_saved(self, res: float, t: int, W: Array, checkpoints: Checkpoints | None) -> Run:
        """``finish`` at the stopping step t, then the final checkpoint (``ResultNotSavedError`` if it fails)."""
        run = self.finish(res <= self.settings.epsilon, t, W)
        if checkpoints is None:
            return run
        try:
            checkpoints.save(W, run.history, t, final=True)
        except (OSError, CheckpointError) as exc:
            raise ResultNotSavedError(
                f"the run finished (step {t}, ||u - y|| = {res:.4g}) but its final checkpoint could not be written: {exc}. "
                "The result is in error.result (the command prints it); free space or fix the path, then run again to "
                "save it (it resumes from the last checkpoint)",
                result=run,
            ) from exc
        return run

    def overflowed(self, what: str, t: int, weights: WeightBuffers, *, keep_current: bool = False) -> Exception:
        """The error for an overflow at step t: divergence when this run has taken a step, from W(t-1), or from
        W(t) with ``keep_current`` (its predictions were finite, so its own step may already be taken)."""
        if weights.previous is None:
            return ExpOverflowError(
                f"{what} at step {t}, before any step of this run: the inputs, targets or initial weights are too large"
            )
        if keep_current:
            return self.diverged(f"{what} at step {t}", t, weights.current)
        return self.diverged(f"{what} at step {t}", t - 1, weights.previous)

    def diverged(self, why: str, t: int, Wt: Array) -> TrainingDivergedError:
        """The error for a run whose last finite weights are W(t) = ``Wt``; its ``result`` is the ``Run`` up to t."""
        sh = self.shard
        self.history.truncate(t)
        try:
            stable, how = 1.0 / kernels.lambda_max(sh.gram(sh.W0)), "1/lambda_max(H(W(0)))"
        except ExpOverflowError:
            stable, how = 1.0 / (sh.m * sh.s * sh.s * self.lambda_max_cts), "1/lambda_max(m s^2 H^cts)"
        safe = min(stable, self.lr / 2)
        if safe < stable:
            how = f"half the step that diverged; {how} = {stable:.4g}"
        run = self.finish(False, t, Wt)
        return TrainingDivergedError(
            f"gradient descent diverged with lr = {self.lr:.4g}: {why}. The last finite weights (step {t}) are in "
            f"error.result. Try lr = {safe:.4g} ({how}).",
            result=run,
            lr=self.lr,
            suggested_lr=safe,
        )


def descend(
    shard: Shard,
    settings: TrainOptions,
    *,
    progress: ProgressFn | None = None,
    checkpoints: Checkpoints | None = None,
) -> Run:
    """Full-batch gradient descent on L(W) = 1/2 ||F(W, X) - y||^2 (docs/theory.md section 2).

    Parameters
    ----------
    shard : Shard
        This rank's neurons W(0) (not modified) and the data.
    settings : TrainOptions
        The run's options (validated when made); ``settings.lr`` goes through
        ``resolve_lr``, H(W(0)) coming from ``shard.gram``.
    progress : callable (step, residual) -> None, optional
    checkpoints : Checkpoints, optional
        Resumed from at the start, saved every ``checkpoint_every`` steps and at the end.

    Returns
    -------
    history.Run
        This rank's W(steps) and the run's figures (``history`` is global, identical on every rank).

    Raises
    ------
    TrainingDivergedError
        The loss grew by more than ``DIVERGENCE_FACTOR`` or exp overflowed;
        the error's ``result`` is the ``Run`` up to the last finite weights,
        and ``suggested_lr`` a stable step.
    ExpOverflowError
        exp (or the loss) overflows already at the first step of this run.
    ResultNotSavedError
        The final checkpoint could not be written; ``result`` is the ``Run``.
    """
    run = Descent(shard, settings)
    weights, t = run.start(checkpoints)
    G = shard.be.empty(shard.shape, shard.dtype)
    while True:
        res = run.measure(t, weights, G)
        if progress is not None:
            progress(t, res)
        if res <= settings.epsilon or t >= settings.max_steps:
            return run.finish_saved(res, t, weights.current, checkpoints)
        weights.advance(G, run.lr)
        t += 1
        if checkpoints is not None and t % settings.checkpoint_every == 0:
            checkpoints.save(weights.current, run.history, t, final=False)


@contextmanager
def results_as(wrap: Callable[[Run], Any]) -> Iterator[None]:
    """Inside: an error that carries a ``Run`` as ``result`` (divergence, an unsaved final checkpoint) carries ``wrap(run)``.

    So that ``train`` and ``train_sharded`` raise errors holding their own
    result type, built the same way as the result they return.
    """
    try:
        yield
    except (TrainingDivergedError, ResultNotSavedError) as exc:
        if isinstance(exc.result, Run):
            exc.result = wrap(exc.result)
        raise
