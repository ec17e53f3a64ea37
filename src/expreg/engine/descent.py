"""The one gradient-descent loop of docs/theory.md section 2, for a whole network or one rank's slice of it.

``descend`` runs W <- W - lr * dL/dW until ||u - y||_2 <= epsilon (the
paper's stopping rule) or ``max_steps``, recording per step the loss, the
residual norm and the weight movement, and every ``record_every`` steps the
kernel deviation ||H^dis(W(t)) - H^cts||_op and lambda_min(H^dis(W(t))).

What differs between ``expreg.train`` (one process, the whole network) and
``expreg.distributed.train_sharded`` (neurons split over ranks) is held by
two small objects:

* ``Shard``: this rank's neurons, with the three collective computations a
  step needs (the all-reduce of the partial predictions, the global Gram
  matrix, the global movement and overflow flag). With the single-process
  ``Communicator`` every collective is the identity and the shard is the
  whole network.
* ``Checkpoints``: where a run saves and resumes (one ``.npz`` file for
  ``train``; per-rank files and a manifest for ``train_sharded``).

The caller turns the finished run into its own result type (``make_result``).
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from ..core import display, kernels, ops, streams
from ..core.activations import Activation
from ..core.backends import Array, Backend
from ..core.errors import CheckpointError, ExpOverflowError, ExpregError, TrainingDivergedError, overflow_checked
from ..core.model import NetSpec
from .communicator import Communicator
from .options import TrainOptions

#: The loss may grow at most this factor above its initial value before the run counts as diverged.
DIVERGENCE_FACTOR = 1e4

ProgressFn = Callable[[int, float], None]
R = TypeVar("R")


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


@dataclass(repr=False)
class History:
    """Per-step records of a run; arrays indexed by step t = 0, 1, ..., steps.

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
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> History:
        h = cls()
        for k in h.__dict__:
            setattr(h, k, np.asarray(arrays[k]).tolist())
        return h

    def npz_fields(self) -> dict[str, np.ndarray]:
        """The records as ``.npz`` entries ``h_<field>``: the key format of every checkpoint."""
        return {f"h_{k}": v for k, v in self.as_arrays().items()}

    @classmethod
    def from_npz_fields(cls, data: dict[str, np.ndarray]) -> History:
        """The history stored in ``data`` (a loaded ``.npz``) by ``npz_fields``; other entries are ignored."""
        return cls.from_arrays({k[2:]: v for k, v in data.items() if k.startswith("h_")})

    def to_pandas(self) -> Any:
        """The records as a pandas DataFrame indexed by step t = 0 .. T.

        Columns ``loss``, ``residual``, ``max_movement``, ``frobenius_movement``
        (every step) and ``kernel_deviation``, ``kernel_lambda_min`` (NaN at the
        steps where the kernel was not recorded).
        """
        steps = len(self.residual)
        cols: dict[str, Any] = {k: np.asarray(getattr(self, k), dtype=float) for k in _PER_STEP}
        for k in ("kernel_deviation", "kernel_lambda_min"):
            col = np.full(steps, np.nan)
            for t, v in zip(self.kernel_step, getattr(self, k), strict=True):
                if t < steps:
                    col[t] = v
            cols[k] = col
        return display.frame(cols, index=np.arange(steps), index_name="step")

    def _figures(self) -> list[tuple[str, Any]]:
        if not self.residual:
            return [("steps", 0)]
        pairs: list[tuple[str, Any]] = [
            ("steps", len(self.residual) - 1),
            ("residual", f"{display.number(self.residual[0])} -> {display.number(self.residual[-1])}"),
        ]
        if self.max_movement:
            pairs.append(("max_movement", max(self.max_movement)))
        if self.kernel_step:
            pairs += [("kernel_records", len(self.kernel_step)), ("min_lambda_min", min(self.kernel_lambda_min))]
        return pairs

    def __repr__(self) -> str:
        return display.line("History", self._figures())

    def _repr_html_(self) -> str:
        return display.html_table("History (to_pandas() for every step)", self._figures())

    def truncate(self, steps: int) -> None:
        """Drop records after step ``steps``."""
        for k in ("loss", "residual", "max_movement", "frobenius_movement"):
            del getattr(self, k)[steps + 1 :]
        keep = [i for i, t in enumerate(self.kernel_step) if t <= steps]
        for k in ("kernel_step", "kernel_deviation", "kernel_lambda_min"):
            setattr(self, k, [getattr(self, k)[i] for i in keep])


#: The records of ``History`` kept at every step (the kernel's only every ``record_every`` steps).
_PER_STEP = ("loss", "residual", "max_movement", "frobenius_movement")


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
    """Turn ``lr`` (a ``TrainOptions.lr``: "auto", "empirical" or a positive number) into (step, rule).

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


def run_fingerprint(
    net: Any,
    X: np.ndarray,
    y: np.ndarray,
    lr: float | str,
    record_every: int | None,
    track_movement: bool,
    weights: tuple[np.ndarray, ...] = (),
) -> str:
    """Identity of a run for its checkpoints (sha256 hex digest).

    Hashes the settings of ``net`` (an ``ExpNet`` or a ``NetSpec``: d, m, seed,
    activation, scaling and its multiplier alpha when not 1, init, dtype), the step size (its rule, "auto" or
    "empirical", when it was not given as a number: the computed value moves in
    its last bits with the BLAS thread count), what is recorded, the
    random-stream scheme (``streams.VERSION``), then
    ``weights`` (W(0) and a, for a network not drawn from its seed alone) and
    the data X (n, d), y (n,) as float64.
    """
    h = hashlib.sha256()
    h.update(
        repr(
            (
                net.d,
                net.m,
                net.seed,
                net.activation,
                net.scaling if getattr(net, "scale", 1.0) == 1.0 else (net.scaling, float(net.scale)),
                net.init,
                str(net.dtype),
                lr if isinstance(lr, str) else float(lr),
                record_every,
                bool(track_movement),
                streams.VERSION,
            )
        ).encode()
    )
    for w in weights:
        h.update(np.ascontiguousarray(w).tobytes())
    h.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
    return h.hexdigest()


def residual_norm(r: np.ndarray) -> float:
    """||r||_2 without overflow of the squares (inf only when the norm itself is)."""
    big = float(np.abs(r).max())
    if big == 0.0 or not math.isfinite(big):
        return big
    q = r / big
    return big * math.sqrt(float(q @ q))


@dataclass
class Shard:
    """One rank's neurons ``lo .. hi-1`` of a width-m network and the collectives of a step.

    With the single-process ``Communicator`` (lo, hi) = (0, m) and every
    collective is the identity: the shard is the whole network.

    Attributes
    ----------
    spec : model.NetSpec
        The whole network (global width m, s of the whole network).
    Xn : ndarray (n, d) float64, yn : ndarray (n,) float64
        The training data (the same on every rank).
    W0 : array (d, hi - lo)
        This rank's initial weights (backend array, the run's dtype).
    a : array (hi - lo,)
    comm : Communicator
    plan : ops.BlockPlan
        Blocking of this rank's passes (``spec.plan`` of n and hi - lo).
    be, act, s, m, dtype
        The spec's backend, activation, output scale, global width and dtype.
    """

    spec: NetSpec
    Xn: np.ndarray
    yn: np.ndarray
    W0: Array
    a: Array
    comm: Communicator

    def __post_init__(self) -> None:
        spec = self.spec
        self.be: Backend = spec.get_backend()
        self.act: Activation = spec.act
        self.s, self.m, self.dtype = spec.s, spec.m, spec.dtype
        self.plan: ops.BlockPlan = spec.plan(int(self.Xn.shape[0]), int(self.W0.shape[1]))
        self.Xb, self.yb = self.be.asarray(self.Xn, self.dtype), self.be.asarray(self.yn, self.dtype)

    @property
    def shape(self) -> tuple[int, int]:
        """(d, hi - lo): the shape of this rank's W."""
        return tuple(self.W0.shape)

    def gram(self, W: Array) -> np.ndarray:
        """H(W) of the whole network (n, n) float64, the same on every rank (docs/theory.md section 3)."""
        n = self.Xn.shape[0]
        buf = np.zeros(n * n + 1)
        try:
            with overflow_checked():  # overflow is detected by ops
                buf[:-1] = ops.gram(self.be, self.act, self.Xb, W, self.s).ravel()
        except ExpOverflowError:
            buf[-1] = 1.0  # tell the other ranks rather than leave them waiting
        buf = self.comm.sum(buf)
        if buf[-1] > 0:
            raise ExpOverflowError(
                "exp overflowed while computing the empirical kernel H(W) on some rank; lower the step size or use float64"
            )
        return buf[:-1].reshape(n, n)

    def forward_backward(self, W: Array, G: Array) -> tuple[Array | None, bool]:
        """(u, backward_overflowed), G written in place. u is None when the predictions overflowed (on every rank alike)."""
        reduced: list[Array] = []

        def all_reduce(u_partial: Array) -> Array:
            reduced.append(self.comm.sum_(u_partial))
            return reduced[0]

        try:
            with overflow_checked():  # overflow is detected by ops
                u, _ = ops.forward_backward(
                    self.be, self.act, self.Xb, W, self.a, self.yb, self.s, self.plan, G, reduce=all_reduce
                )
        except ExpOverflowError:
            if not reduced or not self.be.all_finite(reduced[0]):
                return None, False  # forward overflow: u is global, every rank sees it
            return reduced[0], True  # only this rank's gradient overflowed
        return u, False

    def step_scalars(self, W: Array, *, moved: bool, overflow: bool) -> tuple[float, float, bool]:
        """(max_r ||w_r - w_r(0)||, ||W - W(0)||_F, any rank overflowed) over all ranks.

        One sum all-reduce of [||W_k - W_k(0)||_F^2, flag], and one max
        all-reduce when ``moved`` (else the movement is 0).
        """
        worst, frob = ops.movement(self.be, W, self.W0, self.plan) if moved else (0.0, 0.0)
        frob_sq, flags = self.comm.sum(np.array([frob * frob, float(overflow)]))
        if moved:
            worst = float(self.comm.max(np.array([worst]))[0])
        return worst, math.sqrt(frob_sq), bool(flags > 0)


class Checkpoints(Protocol):
    """Where a run saves its state and resumes from (every rank calls both, collectively)."""

    @property
    def location(self) -> str:
        """The file or directory, for messages."""

    def resume(self) -> tuple[Array, History, int] | None:
        """(this rank's W after ``step`` steps, history up to step - 1, step), or None to start afresh."""

    def save(self, W: Array, history: History, step: int, *, final: bool) -> None:
        """Save W after ``step`` steps with ``history`` (up to step - 1, or up to ``step`` when final)."""


#: ``make_result(W, fields)``: the caller's result from this rank's W(steps) and the fields every
#: result has (converged, steps, lr, lr_rule, epsilon, history, lambda_cts, lambda_max_cts).
MakeResult = Callable[[Array, dict[str, Any]], R]


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


class ResultFigures:
    """Headline figures of a result with the fields of ``MakeResult`` and ``seconds``.

    The mixin of ``TrainResult`` and ``ShardedTrainResult`` (it adds no dataclass fields).
    """

    history: History

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
        r: Any = self
        return {
            "converged": bool(r.converged),
            "steps": int(r.steps),
            "lr": float(r.lr),
            "lr_rule": r.lr_rule,
            "epsilon": float(r.epsilon),
            "initial_residual": self.initial_residual,
            "final_residual": self.final_residual,
            "lambda_min": float(r.lambda_cts),
            "lambda_max": float(r.lambda_max_cts),
            "max_movement": self.max_movement,
            "frobenius_movement": float(self.history.frobenius_movement[-1]),
            "seconds": float(r.seconds),
        }

    def _figures(self) -> list[tuple[str, Any]]:
        r: Any = self
        return [
            ("converged", bool(r.converged)),
            ("steps", int(r.steps)),
            ("residual", f"{display.number(self.initial_residual)} -> {display.number(self.final_residual)}"),
            ("epsilon", float(r.epsilon)),
            ("lr", float(r.lr)),
            ("max_movement", self.max_movement),
            ("m", int(r.net.m) if hasattr(r, "net") else int(r.m)),
            ("seconds", float(r.seconds)),
        ]

    def __repr__(self) -> str:
        """One line with the figures that matter; ``history`` and ``net`` are attributes, not printed."""
        return display.line(type(self).__name__, self._figures())

    def _repr_html_(self) -> str:
        r: Any = self
        rows = [*self._figures(), ("lr rule", r.lr_rule), ("lambda_min(H^cts)", float(r.lambda_cts))]
        return display.html_table(type(self).__name__, rows)


@dataclass
class _Descent(Generic[R]):
    """The state of one descent: the loop and what it records (internal; see ``descend``)."""

    shard: Shard
    settings: TrainOptions
    make_result: MakeResult[R]
    history: History = field(default_factory=History)

    def __post_init__(self) -> None:
        sh = self.shard
        self.H_cts = kernels.ntk(sh.Xn, activation=sh.act)
        self.lam_min, self.lam_max = kernels.extreme_eigenvalues(self.H_cts)
        self.step, self.rule = resolve_lr(self.settings.lr, sh.m, sh.s, self.lam_max, gram0=lambda: sh.gram(sh.W0))

    def record_kernel(self, t: int, Wt: Array) -> None:
        sh = self.shard
        try:
            Hdis = sh.gram(Wt) / (sh.m * sh.s**2)
            deviation, lam = kernels.operator_norm(Hdis - self.H_cts), kernels.lambda_min(Hdis)
        except ExpOverflowError as exc:  # a diagnostic must not end a run: record NaN and say so
            warnings.warn(
                f"the kernel H(W({t})) overflowed ({exc}); its deviation and lambda_min are recorded as NaN",
                stacklevel=4,
            )
            deviation = lam = math.nan
        self.history.kernel_step.append(t)
        self.history.kernel_deviation.append(deviation)
        self.history.kernel_lambda_min.append(lam)

    def finish(self, converged: bool, t: int, Wt: Array) -> R:
        h = self.history
        if self.settings.record_every != 0 and (not h.kernel_step or h.kernel_step[-1] != t):
            self.record_kernel(t, Wt)
        return self.make_result(
            Wt,
            dict(
                converged=converged,
                steps=t,
                lr=self.step,
                lr_rule=self.rule,
                epsilon=self.settings.epsilon,
                history=h,
                lambda_cts=self.lam_min,
                lambda_max_cts=self.lam_max,
            ),
        )

    def diverged(self, why: str, t: int, Wt: Array) -> TrainingDivergedError:
        """The error for a run whose last finite weights are W(t) = ``Wt``."""
        sh = self.shard
        self.history.truncate(t)
        try:
            stable, how = 1.0 / kernels.lambda_max(sh.gram(sh.W0)), "1/lambda_max(H(W(0)))"
        except ExpOverflowError:
            stable, how = 1.0 / (sh.m * sh.s * sh.s * self.lam_max), "1/lambda_max(m s^2 H^cts)"
        safe = min(stable, self.step / 2)
        if safe < stable:
            how = f"half the step that diverged; {how} = {stable:.4g}"
        result = self.finish(False, t, Wt)
        return TrainingDivergedError(
            f"gradient descent diverged with lr = {self.step:.4g}: {why}. The last finite weights (step {t}) are in "
            f"error.result. Try lr = {safe:.4g} ({how}).",
            result=result,
            lr=self.step,
            suggested_lr=safe,
        )


def descend(
    shard: Shard,
    settings: TrainOptions,
    make_result: MakeResult[R],
    *,
    progress: ProgressFn | None = None,
    checkpoints: Callable[[float], Checkpoints] | None = None,
) -> R:
    """Full-batch gradient descent on L(W) = 1/2 ||F(W, X) - y||^2 (docs/theory.md section 2); returns ``make_result(run)``.

    Parameters
    ----------
    shard : Shard
        This rank's neurons W(0) (not modified) and the data.
    settings : TrainOptions
        The run's options (validated when made); ``settings.lr`` goes through
        ``resolve_lr``, H(W(0)) coming from ``shard.gram``.
    make_result : callable (W, fields) -> R
        Builds the caller's result from this rank's W(steps) and a dict of
        the shared fields (``MakeResult``; ``history`` is global, identical on every rank).
    progress : callable (step, residual) -> None, optional
    checkpoints : callable step_size -> Checkpoints, optional
        Built once the step size is known (it is part of a run's identity).

    Raises
    ------
    TrainingDivergedError
        The loss grew by more than ``DIVERGENCE_FACTOR`` or exp overflowed;
        the error's ``result`` is ``make_result`` of the run up to the last
        finite weights, and ``suggested_lr`` a stable step.
    ExpOverflowError
        exp (or the loss) overflows already at the first step of this run.
    """
    run: _Descent[R] = _Descent(shard, settings, make_result)
    step, cfg, be, history = run.step, settings, shard.be, run.history
    store = checkpoints(step) if checkpoints is not None else None

    W, t = be.copy(shard.W0), 0
    resumed = store.resume() if store is not None else None
    if resumed is not None:
        W, history, t = resumed
        check_resumable(history, t, cfg, store.location)  # type: ignore[union-attr]
        run.history = history
    W_prev: Array = None  # W(t-1): the last weights known to give a finite loss
    spare = be.empty(shard.shape, shard.dtype)  # buffer the next step is written into
    G = be.empty(shard.shape, shard.dtype)

    def overflowed(what: str) -> Exception:
        if W_prev is None:
            return ExpOverflowError(
                f"{what} at step {t}, before any step of this run: the inputs, targets or initial weights are too large"
            )
        return run.diverged(f"{what} at step {t}", t - 1, W_prev)

    loss0 = history.loss[0] if history.loss else None
    while True:
        u, grad_overflow = shard.forward_backward(W, G)
        if u is None:  # the predictions overflowed, alike on every rank
            raise overflowed("exp overflowed")
        worst, frob, any_overflow = shard.step_scalars(W, moved=cfg.track_movement and t > 0, overflow=grad_overflow)
        if any_overflow:  # some rank's gradient overflowed
            raise overflowed("exp overflowed")
        res = residual_norm(be.to_numpy(u).astype(np.float64) - shard.yn)
        loss = 0.5 * res * res
        if not math.isfinite(loss):  # u finite but ||u - y||^2 beyond float64
            raise overflowed("the loss 1/2 ||u - y||^2 overflowed float64")
        if loss0 is None:
            loss0 = loss
        if len(history.loss) == t:  # not yet recorded (a resumed run may have it)
            history.loss.append(loss)
            history.residual.append(res)
            history.max_movement.append(worst if cfg.track_movement else math.nan)
            history.frobenius_movement.append(frob if cfg.track_movement else math.nan)
            if (cfg.record_every and t % cfg.record_every == 0) or (cfg.record_every is None and t == 0):
                run.record_kernel(t, W)
        if t > 0 and not loss <= DIVERGENCE_FACTOR * max(loss0, 1e-30):
            raise run.diverged(f"the loss grew from {loss0:.3g} to {loss:.3g} by step {t}", t, W)
        if progress is not None:
            progress(t, res)
        if res <= cfg.epsilon or t >= cfg.max_steps:
            result = run.finish(res <= cfg.epsilon, t, W)
            if store is not None:
                try:
                    store.save(W, history, t, final=True)
                except (OSError, CheckpointError) as exc:
                    raise ResultNotSavedError(
                        f"the run finished (step {t}, ||u - y|| = {res:.4g}) but its final checkpoint could not be written: {exc}. "
                        "The result is in error.result (the command prints it); free space or fix the path, then run again to "
                        "save it (it resumes from the last checkpoint)",
                        result=result,
                    ) from exc
            return result
        # the gradient step W(t+1) = W(t) - lr G, written into the spare buffer so W(t) survives
        spare[...] = G
        spare *= -step
        spare += W
        W_prev, W = W, spare
        spare = W_prev  # W(t-1) is no longer needed once W(t) is known finite
        t += 1
        if store is not None and t % cfg.checkpoint_every == 0:
            store.save(W, history, t, final=False)
