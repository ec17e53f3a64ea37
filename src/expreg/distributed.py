"""Width-sharded gradient descent on torch.distributed (MATH.md 2).

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
ranks, to rounding (the sums are taken in another order). The stopping rule,
step-size rules, divergence test and history are those of ``expreg.train``.

Launch with torchrun (gloo on CPU, NCCL when ``device`` is CUDA)::

    torchrun --nproc-per-node 2 -m expreg.distributed -- --n 64 --d 16 --m 100000 \\
        --checkpoint-dir run/

(after ``--``, so that torchrun does not read --n, --d, --m as its own options)

or in Python, inside an initialised process group, ``train_sharded(spec, X, y)``.
Without a process group it runs as the only rank.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import distributed_checkpoint as ckpt
from . import kernels, ops
from .activations import get_activation
from .backends import Array, canonical_dtype, get_backend
from .distributed_comm import Communicator, TorchCommunicator, communicator, init_from_environment, shutdown
from .errors import CheckpointError, ExpOverflowError, TrainingDivergedError
from .initialisation import INITS, init_weights
from .model import SCALINGS
from .train import DIVERGENCE_FACTOR, History, resolve_lr
from .train import _norm as residual_norm  # the overflow-free ||u - y|| of expreg.train
from .validation import check_positive_int, check_X_y

ProgressFn = Callable[[int, float], None]

__all__ = [
    "Communicator", "NetSpec", "ShardedTrainResult", "TorchCommunicator", "communicator", "fingerprint",
    "init_from_environment", "shard_range", "shutdown", "train_sharded",
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


@dataclass(frozen=True)
class NetSpec:
    """The network a sharded run trains: ``ExpNet.init``'s arguments, without drawing it.

    Attributes
    ----------
    d, m : int
        Input dimension and *global* width.
    seed : int
    activation : {"exp", "relu"}
    scaling : {"none", "ntk"}
        s = 1 or s = 1/sqrt(m), m the global width.
    init : {"coupled", "gaussian"}
        "coupled" needs m even; a shard boundary may split a pair.
    dtype : numpy.float64 or numpy.float32
    backend : {"numpy", "torch"}
    device : str, optional
        Torch device; "cuda" is mapped to ``cuda:LOCAL_RANK`` by ``init_from_environment``.
    block, memory_budget : int, optional
        Blocking of each rank's passes (``ops.plan_blocks``).
    """

    d: int
    m: int
    seed: int = 0
    activation: str = "exp"
    scaling: str = "none"
    init: str = "coupled"
    dtype: Any = np.float64
    backend: str = "numpy"
    device: str | None = None
    block: int | None = None
    memory_budget: int | None = None

    def __post_init__(self) -> None:
        check_positive_int(self.d, "d")
        check_positive_int(self.m, "m")
        check_positive_int(self.seed, "seed", minimum=0)
        get_activation(self.activation)
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling={self.scaling!r} is not known; choose 'none' (s = 1) or 'ntk' (s = 1/sqrt(m))")
        if self.init not in INITS:
            raise ValueError(f"init={self.init!r} is not known; choose 'coupled' or 'gaussian'")
        if self.init == "coupled" and self.m % 2:
            raise ValueError(f"init='coupled' pairs neurons, so m must be even; got m = {self.m}. Use m = {self.m + 1} or init='gaussian'")
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype))

    @property
    def s(self) -> float:
        """Output scale of the whole network: 1 ("none") or 1/sqrt(m) ("ntk")."""
        return 1.0 if self.scaling == "none" else 1.0 / math.sqrt(self.m)


# --------------------------------------------------------------------------- the run
@dataclass
class ShardedTrainResult:
    """What ``train_sharded`` returns on each rank.

    The same fields as ``expreg.TrainResult``, with the rank's slice of the
    network instead of the whole network.

    Attributes
    ----------
    converged : bool
    steps : int
    W : array (d, hi - lo)
        This rank's neurons after ``steps`` steps (backend array).
    a : array (hi - lo,)
    lo, hi, m : int
        The slice and the global width.
    rank, world_size : int
    lr : float
    lr_rule : str
    epsilon : float
    history : History
        Identical on every rank.
    lambda_cts, lambda_max_cts : float
    seconds : float
    """

    converged: bool
    steps: int
    W: Array
    a: Array
    lo: int
    hi: int
    m: int
    rank: int
    world_size: int
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

    def weights_numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """(W, a) of this rank as NumPy arrays, shapes (d, hi - lo) and (hi - lo,)."""
        def host(x: Array) -> np.ndarray:
            return x if isinstance(x, np.ndarray) else x.detach().cpu().numpy()

        return host(self.W), host(self.a)

    def summary(self) -> dict[str, Any]:
        """JSON-ready headline figures (the keys of ``TrainResult.summary``, plus the sharding)."""
        return {
            "converged": bool(self.converged), "steps": int(self.steps), "lr": float(self.lr), "lr_rule": self.lr_rule,
            "epsilon": float(self.epsilon), "initial_residual": float(self.history.residual[0]),
            "final_residual": self.final_residual, "lambda_min": float(self.lambda_cts), "lambda_max": float(self.lambda_max_cts),
            "max_movement": float(self.history.max_movement[-1]), "frobenius_movement": float(self.history.frobenius_movement[-1]),
            "seconds": float(self.seconds), "m": int(self.m), "world_size": int(self.world_size),
        }


def fingerprint(spec: NetSpec, X: np.ndarray, y: np.ndarray, lr: float, record_every: int | None, track_movement: bool) -> str:
    """Identity of a run for its checkpoints: network, data, step size and recording (not the number of ranks)."""
    h = hashlib.sha256()
    h.update(repr((spec.d, spec.m, spec.seed, spec.activation, spec.scaling, spec.init, str(spec.dtype), float(lr),
                   record_every, bool(track_movement))).encode())
    h.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
    return h.hexdigest()


@dataclass
class _Shard:
    """One rank's state and its collective computations (internal)."""

    spec: NetSpec
    comm: Communicator
    Xn: np.ndarray
    yn: np.ndarray
    H_cts: np.ndarray
    lo: int = field(init=False)
    hi: int = field(init=False)

    def __post_init__(self) -> None:
        spec = self.spec
        self.lo, self.hi = shard_range(spec.m, self.comm.world_size, self.comm.rank)
        self.be = get_backend(spec.backend, spec.device)
        self.act = get_activation(spec.activation)
        W0, a = init_weights(spec.d, self.lo, self.hi, seed=spec.seed, init=spec.init, dtype=spec.dtype)
        self.W0, self.a = self.be.asarray(W0, spec.dtype), self.be.asarray(a, spec.dtype)
        self.Xb, self.yb = self.be.asarray(self.Xn, spec.dtype), self.be.asarray(self.yn, spec.dtype)
        plan = ops.plan_blocks(self.Xn.shape[0], self.hi - self.lo, spec.dtype.itemsize, block=spec.block, memory_budget=spec.memory_budget)
        if spec.init == "coupled" and plan.block % 2 and plan.block < self.hi - self.lo:
            plan = replace(plan, block=plan.block + 1)  # keep pairs in one block (as ExpNet.plan): exact cancellation
        self.plan = plan

    def gram(self, W: Array) -> np.ndarray:
        """H(W) of the whole network (n, n) float64, the same on every rank (MATH.md 3)."""
        n = self.Xn.shape[0]
        buf = np.zeros(n * n + 1)
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is detected by ops
                H = ops.gram(self.be, self.act, self.Xb, W, self.spec.s, self.plan)
            buf[:-1] = self.be.to_numpy(H).astype(np.float64).ravel()
        except ExpOverflowError:
            buf[-1] = 1.0  # tell the other ranks rather than leave them waiting
        buf = self.comm.sum(buf)
        if buf[-1] > 0:
            raise ExpOverflowError("exp overflowed while computing the empirical kernel H(W) on some rank; lower the step size or use float64")
        return buf[:-1].reshape(n, n)

    def forward_backward(self, W: Array, G: Array) -> tuple[Array | None, bool]:
        """(u, backward_overflowed). u is None when the predictions overflowed (on every rank alike)."""
        reduced: list[Array] = []

        def all_reduce(u_partial: Array) -> Array:
            reduced.append(self.comm.sum_(u_partial))
            return reduced[0]

        try:
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is detected by ops
                u, _ = ops.forward_backward(self.be, self.act, self.Xb, W, self.a, self.yb, self.spec.s, self.plan, G, reduce=all_reduce)
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


def train_sharded(
    spec: NetSpec,
    X: Any,
    y: Any,
    *,
    lr: float | str = "auto",
    epsilon: float = 1e-3,
    max_steps: int = 10_000,
    record_every: int | None = None,
    track_movement: bool = True,
    progress: ProgressFn | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 100,
    comm: Communicator | None = None,
) -> ShardedTrainResult:
    """Full-batch gradient descent (MATH.md 2) with the neurons split over the ranks.

    Call it on every rank with the same arguments. The arguments and the
    rules (stopping, ``lr``, ``record_every``, divergence) are those of
    ``expreg.train``; ``spec`` replaces the network.

    Parameters
    ----------
    spec : NetSpec
        The network (global width m); each rank draws only its slice.
    X : array (n, d), y : array (n,)
        The same data on every rank.
    checkpoint_dir : path, optional
        Directory of per-rank checkpoints (``distributed_checkpoint``),
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
    TrainingDivergedError
        On every rank alike; ``error.result`` is a ``ShardedTrainResult``.
    """
    started = time.perf_counter()
    comm = communicator() if comm is None else comm
    max_steps = check_positive_int(max_steps, "max_steps", minimum=0)
    checkpoint_every = check_positive_int(checkpoint_every, "checkpoint_every")
    if isinstance(epsilon, bool) or not (isinstance(epsilon, (int, float, np.floating, np.integer)) and math.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    if record_every is not None:
        record_every = check_positive_int(record_every, "record_every", minimum=0)
    if spec.m < comm.world_size:
        raise ValueError(f"width m = {spec.m} is smaller than the number of ranks ({comm.world_size}); launch at most m processes")
    Xn, yn = check_X_y(X, y, dtype=np.float64, d=spec.d)
    H_cts = kernels.ntk(Xn, spec.activation)
    lam_min, lam_max = kernels.extreme_eigenvalues(H_cts)
    sh = _Shard(spec, comm, Xn, yn, H_cts)
    be = sh.be
    if lr == "empirical":
        step, rule = 1.0 / kernels.lambda_max(sh.gram(sh.W0)), "empirical: 1/lambda_max(H(W(0)))"
    else:
        step, rule = resolve_lr(lr, spec.m, spec.s, lam_max)

    W, history, start = be.copy(sh.W0), History(), 0
    if checkpoint_dir is not None:
        fp = fingerprint(spec, Xn, yn, step, record_every, track_movement)
        W, history, start = _resume(sh, Path(checkpoint_dir), fp, W, history)
    W_prev: Array = None  # W(t-1): the last weights known to give a finite loss
    spare = be.empty((spec.d, sh.hi - sh.lo), spec.dtype)  # buffer the next step is written into
    G = be.empty((spec.d, sh.hi - sh.lo), spec.dtype)

    def record_kernel(t: int, Wt: Array) -> None:
        try:
            Hdis = sh.gram(Wt) / (spec.m * spec.s**2)
            deviation, lam = kernels.operator_norm(Hdis - H_cts), kernels.lambda_min(Hdis)
        except ExpOverflowError as exc:  # a diagnostic must not end a run (as in expreg.train)
            warnings.warn(f"the kernel H(W({t})) overflowed ({exc}); its deviation and lambda_min are recorded as NaN", stacklevel=3)
            deviation = lam = math.nan
        history.kernel_step.append(t)
        history.kernel_deviation.append(deviation)
        history.kernel_lambda_min.append(lam)

    def finish(converged: bool, t: int, Wt: Array) -> ShardedTrainResult:
        if record_every != 0 and (not history.kernel_step or history.kernel_step[-1] != t):
            record_kernel(t, Wt)
        return ShardedTrainResult(
            converged=converged, steps=t, W=Wt, a=sh.a, lo=sh.lo, hi=sh.hi, m=spec.m, rank=comm.rank, world_size=comm.world_size,
            lr=step, lr_rule=rule, epsilon=float(epsilon), history=history, lambda_cts=lam_min, lambda_max_cts=lam_max,
            seconds=time.perf_counter() - started,
        )

    def diverged(why: str, t: int, Wt: Array) -> TrainingDivergedError:
        history.truncate(t)
        try:
            stable, how = 1.0 / kernels.lambda_max(sh.gram(sh.W0)), "1/lambda_max(H(W(0)))"
        except ExpOverflowError:
            stable, how = 1.0 / (spec.m * spec.s**2 * lam_max), "1/lambda_max(m s^2 H^cts)"
        safe = min(stable, step / 2)
        if safe < stable:
            how = f"half the step that diverged; {how} = {stable:.4g}"
        return TrainingDivergedError(
            f"gradient descent diverged with lr = {step:.4g}: {why}. The last finite weights (step {t}) are in "
            f"error.result. Try lr = {safe:.4g} ({how}).",
            result=finish(False, t, Wt), lr=step, suggested_lr=safe,
        )

    def overflowed(t: int, what: str = "exp overflowed") -> Exception:
        if W_prev is None:
            return ExpOverflowError(f"{what} at step {t}, before any step of this run: the inputs, targets or initial weights are too large")
        return diverged(f"{what} at step {t}", t - 1, W_prev)

    loss0 = history.loss[0] if history.loss else None
    t = start
    while True:
        u, grad_overflow = sh.forward_backward(W, G)
        if u is None:  # the predictions overflowed, alike on every rank
            raise overflowed(t)
        worst, frob, any_overflow = sh.step_scalars(W, moved=track_movement and t > 0, overflow=grad_overflow)
        if any_overflow:  # some rank's gradient overflowed
            raise overflowed(t)
        r = be.to_numpy(u).astype(np.float64) - yn
        res = residual_norm(r)
        loss = 0.5 * res * res
        if not math.isfinite(loss):  # u finite but ||u - y||^2 beyond float64
            raise overflowed(t, "the loss 1/2 ||u - y||^2 overflowed float64")
        if loss0 is None:
            loss0 = loss
        if len(history.loss) == t:
            history.loss.append(loss)
            history.residual.append(res)
            history.max_movement.append(worst if track_movement else math.nan)
            history.frobenius_movement.append(frob if track_movement else math.nan)
            if (record_every and t % record_every == 0) or (record_every is None and t == 0):
                record_kernel(t, W)
        if t > 0 and not loss <= DIVERGENCE_FACTOR * max(loss0, 1e-30):
            raise diverged(f"the loss grew from {loss0:.3g} to {loss:.3g} by step {t}", t, W)
        if progress is not None:
            progress(t, res)
        if res <= epsilon or t >= max_steps:
            result = finish(res <= epsilon, t, W)
            if checkpoint_dir is not None:
                _checkpoint(sh, Path(checkpoint_dir), fp, W, history, t, final=True)
            return result
        # W(t+1) = W(t) - lr G into the spare buffer, so W(t) survives (the same arithmetic as expreg.train)
        spare[...] = G
        spare *= -step
        spare += W
        W_prev, W = W, spare
        spare = W_prev
        t += 1
        if checkpoint_dir is not None and t % checkpoint_every == 0:
            _checkpoint(sh, Path(checkpoint_dir), fp, W, history, t, final=False)


def _resume(sh: _Shard, directory: Path, fp: str, W: Array, history: History) -> tuple[Array, History, int]:
    """Load this rank's slice of the newest complete checkpoint, if any; every rank must agree on it."""
    found = ckpt.latest_complete_step(directory)
    seen = sh.comm.max(np.array([-1.0 if found is None else found, -(-1.0 if found is None else found)]))
    if seen[0] != -seen[1]:
        raise RuntimeError(f"the ranks see different checkpoints in {str(directory)!r}; is it on a file system every rank shares?")
    if found is None:
        return W, history, 0
    Wn, history = ckpt.read_slice(directory, found, sh.lo, sh.hi, fingerprint=fp, d=sh.spec.d, m=sh.spec.m)
    history.truncate(found - 1)  # step `found` is recomputed (identically) on resume
    return sh.be.asarray(Wn, sh.spec.dtype), history, found


def _checkpoint(sh: _Shard, directory: Path, fp: str, W: Array, history: History, t: int, *, final: bool) -> None:
    """Every rank writes its file; once all files are seen by all ranks, rank 0 records the step and deletes the older ones."""
    comm = sh.comm
    ckpt.save_shard(directory, step=t, rank=comm.rank, world_size=comm.world_size, lo=sh.lo, hi=sh.hi, m=sh.spec.m,
                    W=sh.be.to_numpy(W), history=history, fingerprint=fp)
    comm.barrier()
    files = [ckpt.shard_path(directory, t, r, comm.world_size) for r in range(comm.world_size)]
    unseen = comm.sum(np.array([float(not all(f.exists() for f in files))]))[0]  # also a second barrier
    if unseen > 0:
        raise CheckpointError(
            f"checkpoint_dir {str(directory)!r} is not shared by every rank: some rank cannot see the files of step {t} "
            "the others wrote. Put it on a file system every rank mounts (or omit checkpoints)."
        )
    if comm.rank == 0:
        shards = [shard_range(sh.spec.m, comm.world_size, r) for r in range(comm.world_size)]
        ckpt.write_manifest(directory, step=t, world_size=comm.world_size, m=sh.spec.m, d=sh.spec.d, fingerprint=fp, shards=shards, final=final)
        ckpt.prune(directory, files)


def main(argv: list[str] | None = None) -> int:
    """``python -m expreg.distributed ...`` (for torchrun): the ``expreg distributed`` command."""
    from .cli import main as cli_main

    return cli_main(["distributed", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
