"""Full-batch gradient descent of MATH.md 2, with the history the proof needs.

``train`` runs W <- W - lr * dL/dW until ||u - y||_2 <= epsilon (the paper's
stopping rule) or ``max_steps``, recording per step the loss, the residual
norm and the weight movement, and every ``record_every`` steps the kernel
deviation ||H^dis(W(t)) - H^cts||_op and lambda_min(H^dis(W(t))).
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import kernels, ops
from .errors import CheckpointError, ExpOverflowError, TrainingDivergedError, overflow_checked
from .model import ExpNet
from .storage import load_npz, save_npz_atomic
from .validation import check_positive_int, check_X_y

#: The loss may grow at most this factor above its initial value before the run counts as diverged.
DIVERGENCE_FACTOR = 1e4

ProgressFn = Callable[[int, float], None]


@dataclass
class History:
    """Per-step records of a run; arrays indexed by step t = 0 .. steps.

    Attributes
    ----------
    loss : (T+1,) 1/2 ||u(t) - y||^2
    residual : (T+1,) ||u(t) - y||_2
    max_movement : (T+1,) max_r ||w_r(t) - w_r(0)||_2
    frobenius_movement : (T+1,) ||W(t) - W(0)||_F
    kernel_step : (K,) steps at which the kernel was recorded
    kernel_deviation : (K,) ||H^dis(W(t)) - H^cts||_op
    kernel_lambda_min : (K,) lambda_min(H^dis(W(t)))
    """

    loss: list[float] = field(default_factory=list)
    residual: list[float] = field(default_factory=list)
    max_movement: list[float] = field(default_factory=list)
    frobenius_movement: list[float] = field(default_factory=list)
    kernel_step: list[int] = field(default_factory=list)
    kernel_deviation: list[float] = field(default_factory=list)
    kernel_lambda_min: list[float] = field(default_factory=list)

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Every record as a NumPy array, keyed by field name."""
        return {k: np.asarray(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "History":
        h = cls()
        for k in h.__dict__:
            setattr(h, k, np.asarray(arrays[k]).tolist())
        return h

    def truncate(self, steps: int) -> None:
        """Drop records after step ``steps``."""
        for k in ("loss", "residual", "max_movement", "frobenius_movement"):
            del getattr(self, k)[steps + 1 :]
        keep = [i for i, t in enumerate(self.kernel_step) if t <= steps]
        for k in ("kernel_step", "kernel_deviation", "kernel_lambda_min"):
            setattr(self, k, [getattr(self, k)[i] for i in keep])


@dataclass
class TrainResult:
    """What ``train`` returns.

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
        lambda_min(H^cts) of the training inputs (MATH.md 3).
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

    @property
    def final_residual(self) -> float:
        return float(self.history.residual[-1])

    @property
    def initial_residual(self) -> float:
        return float(self.history.residual[0])

    @property
    def max_movement(self) -> float:
        return float(self.history.max_movement[-1])

    def summary(self) -> dict[str, Any]:
        """JSON-ready headline figures."""
        return {
            "converged": bool(self.converged),
            "steps": int(self.steps),
            "lr": float(self.lr),
            "lr_rule": self.lr_rule,
            "epsilon": float(self.epsilon),
            "initial_residual": self.initial_residual,
            "final_residual": self.final_residual,
            "lambda_min": float(self.lambda_cts),
            "lambda_max": float(self.lambda_max_cts),
            "max_movement": self.max_movement,
            "frobenius_movement": float(self.history.frobenius_movement[-1]),
            "seconds": float(self.seconds),
        }


def resolve_lr(lr: float | str, m: int, s: float, lambda_max_cts: float, net: ExpNet | None = None, X: np.ndarray | None = None) -> tuple[float, str]:
    """Turn ``lr`` ("auto", "empirical" or a positive number) into (step, rule).

    "auto" = 1 / lambda_max(m s^2 H^cts); "empirical" = 1 / lambda_max(H(W(0)))
    (MATH.md 4).
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
            if net is None or X is None:
                raise ValueError("lr='empirical' needs the network and the inputs X")
            return 1.0 / kernels.lambda_max(kernels.empirical_ntk(net, X)), "empirical: 1/lambda_max(H(W(0)))"
        raise ValueError(f"lr={lr!r} is not known; use 'auto', 'empirical' or a positive number")
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating, np.integer)):
        raise TypeError(f"lr must be 'auto', 'empirical' or a number, got {type(lr).__name__}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr}; use lr='auto' for 1/lambda_max(m s^2 H^cts)")
    return float(lr), "given"


def _fingerprint(net: ExpNet, X: np.ndarray, y: np.ndarray, lr: float, record_every: int | None, track_movement: bool) -> str:
    """Hash of everything a run's trajectory depends on: W(0), a, settings, data, lr, what is recorded."""
    h = hashlib.sha256()
    h.update(repr((net.d, net.m, net.seed, net.activation, net.scaling, net.init, str(net.dtype), float(lr), record_every, bool(track_movement))).encode())
    W0, a = net.weights_numpy()
    h.update(np.ascontiguousarray(W0).tobytes())
    h.update(np.ascontiguousarray(a).tobytes())
    h.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
    return h.hexdigest()


def train(
    net: ExpNet,
    X: Any,
    y: Any,
    *,
    lr: float | str = "auto",
    epsilon: float = 1e-3,
    max_steps: int = 10_000,
    record_every: int | None = None,
    track_movement: bool = True,
    progress: ProgressFn | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 100,
) -> TrainResult:
    """Full-batch gradient descent on L(W) = 1/2 ||F(W, X) - y||^2 (MATH.md 2).

    Parameters
    ----------
    net : ExpNet
        Initial network W(0); not modified.
    X : array (n, d), y : array (n,)
        Training data; ||x_i|| <= 1 is what the theorem assumes (a warning otherwise).
    lr : "auto", "empirical" or float
        "auto" = 1/lambda_max(m s^2 H^cts); "empirical" = 1/lambda_max(H(W(0))).
    epsilon : float
        Stop once ||u - y||_2 <= epsilon.
    max_steps : int
        Step budget.
    record_every : int, optional
        Record ||H^dis(W(t)) - H^cts||_op and lambda_min(H^dis(W(t))) every
        this many steps (each costs 2 n^2 m flops); None records at the first
        and last step only, 0 never.
    track_movement : bool
        Record weight movement each step (reads W and W(0): d m per step).
    progress : callable (step, residual) -> None, optional
        Called with (t, ||u(t) - y||_2) once step t is recorded, t = 0, 1, ...
        An exception it raises stops the run (a checkpointed run then resumes).
    checkpoint : path, optional
        ``.npz`` file written atomically every ``checkpoint_every`` steps and
        at the end; if it exists at start (same W(0), data, lr and recording
        settings), the run resumes from it and ends exactly as an
        uninterrupted run would.
    checkpoint_every : int
        Steps between checkpoints.

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
    """
    started = time.perf_counter()
    max_steps = check_positive_int(max_steps, "max_steps", minimum=0)
    checkpoint_every = check_positive_int(checkpoint_every, "checkpoint_every")
    if isinstance(epsilon, bool) or not (isinstance(epsilon, (int, float, np.floating, np.integer)) and math.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    if record_every is not None:
        record_every = check_positive_int(record_every, "record_every", minimum=0)
    Xn, yn = check_X_y(X, y, dtype=np.dtype(np.float64), d=net.d)
    n = Xn.shape[0]
    be, act, s, dtype = net.backend, net.act, net.s, net.dtype

    H_cts = kernels.ntk(Xn, net.activation)
    lam_min_cts, lam_max_cts = kernels.extreme_eigenvalues(H_cts)
    step, rule = resolve_lr(lr, net.m, s, lam_max_cts, net, Xn)

    Xb, yb = be.asarray(Xn, dtype), be.asarray(yn, dtype)
    W0 = net.W
    W = be.copy(W0)
    W_prev: Any = None  # W(t-1): the last weights known to give a finite loss
    spare = be.empty((net.d, net.m), dtype)  # buffer the next step is written into
    plan = net.plan(n)
    G = be.empty((net.d, net.m), dtype)
    history = History()
    start_step = 0
    path = Path(checkpoint) if checkpoint is not None else None
    fingerprint = _fingerprint(net, Xn, yn, step, record_every, track_movement) if path is not None else ""
    if path is not None and path.exists():
        W, history, start_step = _load_checkpoint(path, fingerprint, be, dtype, net)

    def record_kernel(t: int, Wt: Any) -> None:
        try:
            Hdis = kernels.empirical_ntk(net.with_weights(Wt), Xn, average=True)
            deviation, lam = kernels.operator_norm(Hdis - H_cts), kernels.lambda_min(Hdis)
        except ExpOverflowError as exc:  # a diagnostic must not end a run: record NaN and say so
            warnings.warn(f"the kernel H(W({t})) overflowed ({exc}); its deviation and lambda_min are recorded as NaN", stacklevel=3)
            deviation = lam = math.nan
        history.kernel_step.append(t)
        history.kernel_deviation.append(deviation)
        history.kernel_lambda_min.append(lam)

    def finish(converged: bool, t: int, Wt: Any) -> TrainResult:
        if record_every != 0 and (not history.kernel_step or history.kernel_step[-1] != t):
            record_kernel(t, Wt)
        return TrainResult(
            converged=converged, steps=t, net=net.with_weights(Wt), lr=step, lr_rule=rule, epsilon=float(epsilon),
            history=history, lambda_cts=lam_min_cts, lambda_max_cts=lam_max_cts, seconds=time.perf_counter() - started,
        )

    def diverged(why: str, t: int, Wt: Any) -> TrainingDivergedError:
        """The error for a run whose last finite weights are W(t) = ``Wt``."""
        history.truncate(t)
        try:
            stable = 1.0 / kernels.lambda_max(kernels.empirical_ntk(net, Xn))
            how = "1/lambda_max(H(W(0)))"
        except ExpOverflowError:
            stable = 1.0 / (net.m * s * s * lam_max_cts)
            how = "1/lambda_max(m s^2 H^cts)"
        safe = min(stable, step / 2)
        if safe < stable:
            how = f"half the step that diverged; {how} = {stable:.4g}"
        result = finish(False, t, Wt)
        return TrainingDivergedError(
            f"gradient descent diverged with lr = {step:.4g}: {why}. The last finite weights (step {t}) are in "
            f"error.result. Try lr = {safe:.4g} ({how}).",
            result=result, lr=step, suggested_lr=safe,
        )

    loss0 = history.loss[0] if history.loss else None
    t = start_step
    while True:
        try:
            with overflow_checked():
                u, G = ops.forward_backward(be, act, Xb, W, net.a, yb, s, plan, G)
        except ExpOverflowError as exc:
            if W_prev is None:
                raise ExpOverflowError(f"{exc} (at step {t}, before any step of this run: the inputs or initial weights are too large)") from exc
            raise diverged(f"exp overflowed at step {t}", t - 1, W_prev) from exc
        r = be.to_numpy(u).astype(np.float64) - yn
        res = _norm(r)
        loss = 0.5 * res * res
        if not math.isfinite(loss):  # u finite but ||u - y||^2 beyond float64
            if W_prev is None:
                raise ExpOverflowError(f"the loss 1/2 ||u - y||^2 overflows float64 at step {t}, before any step of this run; scale the inputs or targets")
            raise diverged(f"the loss overflowed float64 at step {t}", t - 1, W_prev)
        if loss0 is None:
            loss0 = loss
        if len(history.loss) == t:  # not yet recorded (a resumed run may have it)
            history.loss.append(loss)
            history.residual.append(res)
            if track_movement:
                worst, frob = ops.movement(be, W, W0, plan) if t else (0.0, 0.0)
            else:
                worst, frob = math.nan, math.nan
            history.max_movement.append(worst)
            history.frobenius_movement.append(frob)
            if (record_every and t % record_every == 0) or (record_every is None and t == 0):
                record_kernel(t, W)
        if t > 0 and not loss <= DIVERGENCE_FACTOR * max(loss0, 1e-30):
            raise diverged(f"the loss grew from {loss0:.3g} to {loss:.3g} by step {t}", t, W)
        if progress is not None:
            progress(t, res)
        if res <= epsilon or t >= max_steps:
            result = finish(res <= epsilon, t, W)
            if path is not None:
                _save_checkpoint(path, fingerprint, be, W, history, t)
            return result
        # the gradient step W(t+1) = W(t) - lr G, written into the spare buffer so W(t) survives
        spare[...] = G
        spare *= -step
        spare += W
        W_prev, W = W, spare
        spare = W_prev  # W(t-1) is no longer needed once W(t) is known finite
        t += 1
        if path is not None and t % checkpoint_every == 0:
            _save_checkpoint(path, fingerprint, be, W, history, t - 1, pending_step=True)


def _norm(r: np.ndarray) -> float:
    """||r||_2 without overflow of the squares (inf only when the norm itself is)."""
    big = float(np.abs(r).max())
    if big == 0.0 or not math.isfinite(big):
        return big
    q = r / big
    return big * math.sqrt(float(q @ q))


def _save_checkpoint(path: Path, fingerprint: str, be: Any, W: Any, history: History, t: int, pending_step: bool = False) -> None:
    """Save W after ``t + pending_step`` steps with the history up to step t (atomic write)."""
    save_npz_atomic(path, W=be.to_numpy(W), step=np.int64(t + int(pending_step)), fingerprint=np.array(fingerprint), **{f"h_{k}": v for k, v in history.as_arrays().items()})


_HISTORY_KEYS = tuple(f"h_{k}" for k in History().__dict__)


def _load_checkpoint(path: Path, fingerprint: str, be: Any, dtype: np.dtype, net: ExpNet) -> tuple[Any, History, int]:
    """W, history and step of a checkpoint written by ``_save_checkpoint`` for this run."""
    data = load_npz(path, required=("W", "step", "fingerprint", *_HISTORY_KEYS))
    if str(data["fingerprint"]) != fingerprint:
        raise CheckpointError(
            f"checkpoint {str(path)!r} belongs to another run (initial weights, data, lr or recording settings differ); "
            "delete it or choose another path"
        )
    if tuple(data["W"].shape) != (net.d, net.m):
        raise CheckpointError(f"checkpoint {str(path)!r} holds W of shape {data['W'].shape}, expected {(net.d, net.m)}")
    history = History.from_arrays({k[2:]: v for k, v in data.items() if k.startswith("h_")})
    step = int(data["step"])
    if not (len(history.loss) in (step, step + 1) and np.isfinite(data["W"]).all()):
        raise CheckpointError(f"checkpoint {str(path)!r} is inconsistent (step {step}, {len(history.loss)} history rows); delete it")
    if len(history.loss) > step:
        history.truncate(step - 1)
    return be.asarray(data["W"], dtype), history, step
