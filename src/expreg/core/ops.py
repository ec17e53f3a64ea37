"""Blocked forward and backward passes: the hot path of a step (docs/theory.md section 2).

Neurons are independent given the residual, so every pass walks over
blocks of columns of W and never holds the n x m matrix exp(XW) whole,
unless it fits the memory budget, in which case each block's activations
are kept between the forward and backward passes instead of recomputed.

One step, per block of b neurons (a block of n x b activations sized for
cache):

    Z = X W_block                 GEMM, written into a reused buffer
    E = exp(Z) in place; acc += E a_block      (one fused pass, ``fastpath``)
    ...after all blocks: u = s * sum(acc), r = u - y, Xr = X * r[:, None]...
    G_block = (Xr^T E) * (s a_block)   GEMM straight into G's columns
    [W'_block = W_block - lr G_block]  with a ``Step``: the gradient step, in the
                                       same compiled pass as the scaling, while
                                       G_block is in cache
    [E'_block = exp(X W'_block); acc' += E'_block a_block]
                                       with ``Step.ahead`` and kept activations:
                                       the next step's forward pass, into E's
                                       buffer (``Primed`` hands it to the next call)

X^T (r[:, None] * E) = (X * r[:, None])^T E, so the residual scales the
n x d matrix X once per step instead of every n x b block. Blocks are
grouped into a fixed number of chunks that the backend's ``parallel`` runs
on its threads; each chunk accumulates its own partial predictions, summed
in chunk order, so thread counts never change results. Buffers (blocks,
partial sums, kept activations) live in a workspace reused across steps.

The Gram pass (the empirical kernel H(W)) has its own module, ``gram``.

Overflow checks stay on the device: each chunk of the gradient and the
predictions get a 0-d finiteness flag, and ``forward_backward`` reads
them back together, once per call (on a GPU, every read to the host is a
synchronisation).

All functions take backend arrays (see ``backends``) and trust their
inputs: validation happens at the public boundary (``validation``).

Shapes: X (n, d), W (d, m), a (m,), y (n,), u (n,), G (d, m), H (n, n).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import calibrate, fastpath
from .activations import EXP, Activation
from .backends import Array, Backend, NumpyBackend
from .errors import ExpOverflowError, overflow_checked
from .resources import DEFAULT_MEMORY_BUDGET
from .reuse import KEPT

#: Default bytes for one block of activations (n x block), used when the backend is not known.
DEFAULT_BLOCK_BYTES = 2**20
#: On a device (CUDA), the default budget is this fraction of the device memory the process may use.
DEVICE_MEMORY_FRACTION = 0.5
#: Blocks are grouped into at most this many chunks (units of parallel work).
MAX_CHUNKS = 64


@dataclass(frozen=True)
class BlockPlan:
    """How one pass over m neurons is cut.

    Attributes
    ----------
    block : int
        Neurons per block (the last block may be shorter).
    keep : bool
        Whether every block's activations stay in memory between the
        forward and the backward pass (n * m * itemsize <= memory budget).
    """

    block: int
    keep: bool

    def ranges(self, m: int) -> Iterator[tuple[int, int]]:
        """Yield ``(lo, hi)`` column ranges covering ``0..m``."""
        for lo in range(0, m, self.block):
            yield lo, min(lo + self.block, m)

    def chunks(self, m: int) -> list[list[tuple[int, int]]]:
        """The blocks of ``ranges(m)`` grouped into at most ``MAX_CHUNKS`` runs of neighbours.

        The grouping depends on m and the block only (never on threads), so
        partial sums per chunk make results independent of the thread count.
        """
        blocks = list(self.ranges(m))
        k = len(blocks)
        c = min(k, MAX_CHUNKS)
        return [blocks[i * k // c : (i + 1) * k // c] for i in range(c)]


@dataclass
class Step:
    """The gradient step W' = W - lr G, taken inside ``forward_backward``'s backward pass (docs/theory.md section 2).

    Each block of W' is written right after the block's gradient, while that block is in cache, instead of
    in a later sweep over the d x m weights (``advance``); the arithmetic is ``advance``'s, so the weights are
    the same to the bit. With ``W0`` (and ``norms``, an (m,) buffer) the column norms ||w'_r - w_r(0)|| are
    taken in the same pass (``moved`` turns them into the movement).

    Attributes
    ----------
    out : array (d, m)
        Where W' goes (never W itself, nor G).
    lr : float
    W0 : array (d, m), optional
    norms : array (m,), optional
        Filled with the column norms of W' - W0 when ``W0`` is given.
    taken : bool
        Set by ``forward_backward``: True once ``out`` holds W'. False when the predictions overflowed (the
        step is then not taken, so ``out`` keeps what it held).
    ahead : bool
        Also run the next step's forward pass, at W', in the same sweep (``Primed``): each block's
        activations exp(X W'_block) are computed right after its step, into the kept buffer that the
        backward GEMM has just read (its lines in cache), and summed into the next predictions. Only where
        the plan keeps activations; elsewhere ignored.
    primed : Primed or None
        Set by ``forward_backward`` when it ran the next forward pass (``ahead``, the step taken, every
        gradient block finite): hand it to the next ``forward_backward`` at W = ``out``.
    """

    out: Array
    lr: float
    W0: Array | None = None
    norms: Array | None = None
    taken: bool = False
    ahead: bool = False
    primed: Primed | None = None

    def moved(self, backend: Backend) -> tuple[float, float] | None:
        """(max_r ||w'_r - w_r(0)||_2, ||W' - W(0)||_F) from ``norms``; None without ``W0`` or before the step."""
        if not self.taken or self.W0 is None or self.norms is None:
            return None
        return _max_and_root_sum_of_squares(backend, self.norms)


@dataclass(frozen=True)
class Primed:
    """The forward pass at W' already run inside the backward pass of the step that wrote W' (``Step.ahead``).

    The workspace it names holds exp(X W') in its kept activations and the partial predictions per chunk in
    ``acc``, computed block by block with the forward pass's own operations in its order, so the next
    ``forward_backward`` at W' takes them instead of a forward pass: the same predictions to the bit, and one
    sweep over the activations per step instead of two. It is honoured only while nothing else has used that
    workspace since (``uses``) and for that very array W'; otherwise the forward pass runs as usual.
    """

    workspace: weakref.ref[_Workspace]
    W: Array
    uses: int

    def ready(self, ws: _Workspace, W: Array) -> bool:
        """Whether ``ws`` still holds the forward pass at ``W``."""
        return self.workspace() is ws and self.W is W and ws.uses == self.uses


def plan_blocks(
    n: int,
    m: int,
    itemsize: int,
    *,
    block: int | None = None,
    memory_budget: int | None = None,
    backend: Backend | None = None,
    pairs: bool = False,
    d: int | None = None,
) -> BlockPlan:
    """Choose the block size and whether to keep activations.

    Parameters
    ----------
    n, m : int
        Data points and neurons.
    itemsize : int
        Bytes per array element (4 for float32, 8 for float64).
    block : int, optional
        Neurons per block; default fills the backend's ``block_bytes_for(d, keep)``
        (``DEFAULT_BLOCK_BYTES`` without a backend), rounded to a multiple
        of 8 (whole SIMD vectors).
    memory_budget : int, optional
        Bytes allowed for the kept activations; default ``DEFAULT_MEMORY_BUDGET``
        on the host, and ``DEVICE_MEMORY_FRACTION`` of the backend's
        ``device_memory()`` on a GPU. Within it the backend may still
        recompute them (``Backend.keeps``: the NumPy backend's tuning does,
        for small d beyond the last-level cache, ``Tuning.keeps``).
    backend : Backend, optional
        The backend the passes will run on (it sets the default block and budget).
    pairs : bool
        Round the block up to an even number, so that a coupled pair of
        neurons (2p, 2p+1) never straddles two blocks and its two terms
        cancel exactly (F(W(0), x) = 0 for every block size).
    d : int, optional
        Input dimensions: the best block depends on the GEMMs' inner
        dimension (the NumPy backend's tuning measures two, ``tuning.WIDE_D``).
    """
    budget = default_memory_budget(backend) if memory_budget is None else int(memory_budget)
    nbytes = n * m * itemsize
    keep = nbytes <= budget and (backend is None or backend.keeps(nbytes, d))
    if block is None:
        target = backend.block_bytes_for(d, keep) if backend is not None else DEFAULT_BLOCK_BYTES
        block = max(8, (target // max(1, n * itemsize)) // 8 * 8)
    block = int(max(1, min(block, m)))
    if pairs and block % 2 and block < m:
        block += 1
    return BlockPlan(block=block, keep=keep)


def default_memory_budget(backend: Backend | None = None) -> int:
    """Bytes of activations a pass may keep: ``DEVICE_MEMORY_FRACTION`` of a device's memory, else ``DEFAULT_MEMORY_BUDGET``."""
    device = backend.device_memory() if backend is not None else None
    return DEFAULT_MEMORY_BUDGET if device is None else int(DEVICE_MEMORY_FRACTION * device)


def _overflow(what: str) -> ExpOverflowError:
    return ExpOverflowError(
        f"exp overflowed while computing {what}: some <w_r, x_i> is beyond the dtype's range "
        "(about 88 for float32, 709 for float64). Scale the inputs into the unit ball, "
        "lower the step size, or use float64."
    )


# ------------------------------------------------------------------ workspace
class _Workspace:
    """Buffers of the passes for one (backend, n, d, m, dtype, plan), reused across steps.

    z : one flat buffer of n * block per worker thread (recomputed blocks),
        allocated on first use (never when plan.keep)
    kept : flat buffer of n * m (block [lo, hi) at offset n * lo), when plan.keep
    acc : (chunks, n) partial predictions, one row per chunk
    xrt : (d, n) the residual-scaled inputs (X * r[:, None])^T, C-contiguous
    finite : one 0-d device flag per chunk: its gradient columns are all finite
        (read back once per step, with the predictions' flag)
    chunks : ``plan.chunks(m)``; first : the index of each chunk's first block
    """

    def __init__(
        self, backend: Backend, n: int, d: int, m: int, dtype: np.dtype, plan: BlockPlan, key: tuple[Any, ...]
    ) -> None:
        self.key = key
        self.n = n
        self._new_z: Callable[[], Array] = lambda: backend.empty((n * plan.block,), dtype)
        self.z: list[Array | None] = [None] * max(1, backend.threads)
        self.kept = backend.empty((n * m,), dtype) if plan.keep else None
        self.chunks = plan.chunks(m)
        self.first = [0]
        for blocks in self.chunks[:-1]:
            self.first.append(self.first[-1] + len(blocks))
        self.acc = backend.empty((len(self.chunks), n), dtype)
        self.xrt = backend.empty((d, n), dtype)
        self.finite: list[Array] = [None] * len(self.chunks)
        self.uses = 0  # passes that wrote the buffers (a ``Primed`` is valid for one value of it)

    def block(self, worker: int, lo: int, hi: int) -> Array:
        """A C-contiguous (n, hi - lo) buffer for block [lo, hi): kept or scratch."""
        n = self.n
        if self.kept is not None:
            return self.kept[n * lo : n * hi].reshape(n, hi - lo)
        z = self.z[worker]
        if z is None:  # each worker index is held by one thread at a time: no race
            z = self.z[worker] = self._new_z()
        return z[: n * (hi - lo)].reshape(n, hi - lo)


def _acquire(backend: Backend, X: Array, W: Array, plan: BlockPlan) -> _Workspace:
    """Take a workspace for these shapes out of ``reuse.KEPT.workspaces`` (or make one); give it back with ``_release``."""
    n, d = int(X.shape[0]), int(X.shape[1])
    m = int(W.shape[1])
    dtype = backend.dtype_of(X)
    key = (id(backend), backend.device, backend.threads, n, d, m, dtype.str, plan)
    ws = KEPT.workspaces.take(key)
    return ws if ws is not None else _Workspace(backend, n, d, m, dtype, plan, key)


def _release(ws: _Workspace) -> None:
    KEPT.workspaces.give(ws.key, ws)


def release_workspaces() -> None:
    """Free the buffers kept for reuse between steps (up to the memory budget each) and Gram passes: ``reuse.KEPT.clear()``."""
    KEPT.clear()


# ---------------------------------------------------------------- the passes
def forward(
    backend: Backend,
    act: Activation,
    X: Array,
    W: Array,
    a: Array,
    scale: float,
    plan: BlockPlan,
) -> Array:
    """Predictions u = s * sigma(X W) a, shape (n,) (docs/theory.md section 1).

    Raises
    ------
    ExpOverflowError
        If any activation or the sum overflowed.
    """
    ws = _acquire(backend, X, W, BlockPlan(plan.block, keep=False))
    try:
        u = _forward(backend, act, X, W, a, ws)
    finally:
        _release(ws)
    u *= scale
    if not backend.all_finite(u):
        raise _overflow("the predictions F(W, X)")
    return u


def _forward(backend: Backend, act: Activation, X: Array, W: Array, a: Array, ws: _Workspace) -> Array:
    chunks = ws.chunks
    ws.uses += 1

    def chunk(worker: int, c: int) -> None:
        acc = ws.acc[c]
        for lo, hi in chunks[c]:
            Z = backend.matmul(X, W[:, lo:hi], out=ws.block(worker, lo, hi))
            act.value_matvec_(backend, Z, a[lo:hi], acc)

    ws.acc[...] = 0  # one fill for all chunks' partial sums
    backend.parallel(len(chunks), chunk)
    return backend.sum_rows(ws.acc)


def _backward(
    backend: Backend,
    act: Activation,
    X: Array,
    W: Array,
    a: Array,
    r: Array,
    scale: float,
    kept: Callable[[int, int, int], Array] | None,
    G: Array,
    ws: _Workspace,
    step: Step | None = None,
) -> None:
    """The backward pass into G; ``kept(k, lo, hi)`` returns block k's kept activations (None: recompute).

    Each block's tail (the column scaling by s a, the finiteness test and,
    with ``step``, the gradient step) runs on the block right after its
    GEMM: one compiled pass on the NumPy backend with numba
    (``fastpath.scale_step_block_``), else NumPy's or the device's passes.
    Sets ``ws.finite`` (one flag per chunk) and reads nothing back
    to the host: the caller reads the flags, once per step.
    """
    chunks, first = ws.chunks, ws.first
    ws.xrt[...] = (X * r[:, None]).T
    XrT = ws.xrt
    sa = a * scale
    ahead = step is not None and step.ahead and kept is not None
    if ahead:
        ws.acc[...] = 0  # the next forward pass's partial sums (this one's were summed into u)

    def chunk(worker: int, c: int) -> None:
        flags: list[bool | None] = []
        for k, (lo, hi) in enumerate(chunks[c], start=first[c]):
            if kept is not None:
                E = kept(k, lo, hi)
            else:
                E = act.value_(backend, backend.matmul(X, W[:, lo:hi], out=ws.block(worker, lo, hi)))
            D = act.derivative(backend, E)
            Gb = G[:, lo:hi]
            if backend.matmul_out_ok(Gb):
                backend.matmul(XrT, D, out=Gb)
            else:
                Gb[...] = backend.matmul(XrT, D)
            flags.append(_block_tail(backend, G, sa, lo, hi, W, step))
            if ahead and step is not None:  # the next step's forward: into E's buffer, its lines in cache
                Z = backend.matmul(X, step.out[:, lo:hi], out=E)
                act.value_matvec_(backend, Z, a[lo:hi], ws.acc[c])
        if all(f is not None for f in flags):
            ws.finite[c] = np.bool_(all(flags))  # the compiled tails tested each block
        else:
            lo, hi = chunks[c][0][0], chunks[c][-1][1]
            ws.finite[c] = backend.isfinite_all(G[:, lo:hi])  # a device flag, computed chunk by chunk

    backend.parallel(len(chunks), chunk)


def _block_tail(backend: Backend, G: Array, sa: Array, lo: int, hi: int, W: Array, step: Step | None) -> bool | None:
    """Columns lo..hi-1 after the backward GEMM: G *= s a, then ``step``'s columns (``_step_block``).

    Returns the block's finiteness when the compiled pass did it all (NumPy backend with numba), else None
    (the caller tests the chunk).
    """
    if backend.host_blas:
        sq = None if step is None or step.norms is None or step.W0 is None else step.norms[lo:hi]
        if step is None:
            ok = fastpath.scale_step_block_(G, sa, lo, hi)
        else:
            ok = fastpath.scale_step_block_(G, sa, lo, hi, step.out, W, step.lr, step.W0, sq)
        if ok is not None:
            if sq is not None:
                np.sqrt(sq, out=sq)  # squared column norms -> norms, in place
            return ok
    Gb = G[:, lo:hi]
    Gb *= sa[lo:hi]
    if step is not None:
        _step_block(backend, step.out, W, G, step.lr, lo, hi, step.W0, step.norms)
    return None


def forward_backward(
    backend: Backend,
    act: Activation,
    X: Array,
    W: Array,
    a: Array,
    y: Array,
    scale: float,
    plan: BlockPlan,
    G: Array | None = None,
    reduce: Callable[[Array], Array] | None = None,
    weights: Array | None = None,
    step: Step | None = None,
    primed: Primed | None = None,
) -> tuple[Array, Array]:
    """Predictions and the gradient of L = 1/2 sum_i c_i (u_i - y_i)^2 (docs/theory.md section 2; c = 1 by default).

    u = s * sigma(X W) a                                  (n,)
    G = s * X^T ( r[:, None] * sigma'(X W) * a[None, :] )  (d, m), r = c * (u - y)

    Parameters
    ----------
    G : array (d, m), optional
        Output buffer for the gradient, reused across steps.
    reduce : callable, optional
        Applied to the partial sum sigma(X W) a before scaling; a
        width-sharded run passes an all-reduce (sum over ranks) here, the
        only communication of a step (docs/theory.md section 2).

    Returns
    -------
    u, G
        Predictions (n,) and gradient (d, m).

    Raises
    ------
    ExpOverflowError
        If u (message: "the predictions") or else G ("the gradient") has an
        inf or NaN. Both are checked together at the end, in one read from
        the device (the only host synchronisation of the call), so G is
        overwritten (with values of no use) even when u overflowed.

    ``weights`` : array (n,), optional
        The per-point weights c_i of a weighted loss (``train(sample_weight=...)``).
    ``step`` : Step, optional
        Also take the gradient step W' = W - lr G into ``step.out``, block by block inside the backward
        pass (see ``Step``); skipped (``step.taken`` False) when the predictions overflowed. When the
        gradient overflowed, ``step.out`` holds values of no use, like G.
    ``primed`` : Primed, optional
        The previous call's ``step.primed`` (that call's ``Step.ahead`` ran this call's forward pass): taken
        instead of the forward pass when it is still valid (``Primed.ready``).
    """
    if step is not None:
        step.primed = None
    ws = _acquire(backend, X, W, plan)
    try:
        with overflow_checked():  # inf/NaN are detected below, not warned about on the way
            if primed is not None and primed.ready(ws, W):
                u = backend.sum_rows(ws.acc)  # the forward pass at W, run by the previous call's backward pass
            else:
                u = _forward(backend, act, X, W, a, ws)
            if reduce is not None:
                u = reduce(u)
            u *= scale
            u_finite = backend.isfinite_all(u)
            if G is None:
                G = backend.empty(tuple(W.shape), backend.dtype_of(X))
            kept = (lambda k, lo, hi: ws.block(0, lo, hi)) if plan.keep else None
            if step is not None:  # W' only from finite predictions: a host read, on the device a synchronisation
                step.taken = bool(backend.to_bools([u_finite])[0])
            r = u - y if weights is None else (u - y) * weights
            taken = step if step is not None and step.taken else None
            ws.uses += 1  # the backward pass writes the buffers: an earlier ``Primed`` is spent, even if it fails
            _backward(backend, act, X, W, a, r, scale, kept, G, ws, taken)
        finite = backend.to_bools([u_finite, *ws.finite])
        if not finite[0]:
            raise _overflow("the predictions F(W, X)")
        if not all(finite[1:]):
            raise _overflow("the gradient dL/dW")
        if taken is not None and taken.ahead and plan.keep:
            taken.primed = Primed(weakref.ref(ws), taken.out, ws.uses)
    finally:
        _release(ws)
    return u, G


def movement(backend: Backend, W: Array, W0: Array, plan: BlockPlan) -> tuple[float, float]:
    """(max_r ||w_r - w_r(0)||_2, ||W - W(0)||_F), blocked over neurons.

    The m column norms are computed block by block on the device and read
    back in one copy (m numbers); max and sum of squares (in float64) are
    taken on the host.
    """
    m = int(W.shape[1])
    norms = backend.empty((m,), backend.dtype_of(W))
    for lo, hi in plan.ranges(m):
        norms[lo:hi] = backend.column_norms(W[:, lo:hi] - W0[:, lo:hi])
    return _max_and_root_sum_of_squares(backend, norms)


def advance(
    backend: Backend, out: Array, W: Array, G: Array, lr: float, plan: BlockPlan, W0: Array | None = None
) -> tuple[float, float] | None:
    """The gradient step W' = W - lr G into ``out`` (d, m), block by block on the backend's threads.

    With ``W0`` it also returns ``movement(backend, out, W0, plan)``, the
    movement of the new weights, taken in the same pass while each block of
    W' is in cache (one sweep over the d x m weights instead of two, on every
    core instead of one). On the NumPy backend with numba, each block is one
    compiled loop (``fastpath.step_block_``: W, G, W0 read once, W' written
    once); otherwise NumPy's passes per block. Each element is computed the
    same way either way, G * (-lr) + W in the arrays' dtype, so the weights
    are the same to the bit whatever the path, threads or blocks (the
    movement agrees to rounding: its sums run in another order).
    """
    m = int(W.shape[1])
    chunks = plan.chunks(m)
    norms = None if W0 is None else backend.empty((m,), backend.dtype_of(W))

    def chunk(worker: int, c: int) -> None:
        for lo, hi in chunks[c]:
            _step_block(backend, out, W, G, lr, lo, hi, W0, norms)

    backend.parallel(len(chunks), chunk)
    return None if norms is None else _max_and_root_sum_of_squares(backend, norms)


def _step_block(
    backend: Backend, out: Array, W: Array, G: Array, lr: float, lo: int, hi: int, W0: Array | None, norms: Array | None
) -> None:
    """Columns lo..hi-1 of out = W - lr G, as G * (-lr) + W in the arrays' dtype, and with W0 the column norms of
    out - W0 into norms[lo:hi]: one compiled pass on the NumPy backend with numba (``fastpath.step_block_``),
    else NumPy's or the device's passes."""
    sq = norms[lo:hi] if norms is not None and W0 is not None else None
    if backend.host_blas and fastpath.step_block_(out, W, G, lr, lo, hi, W0, sq):
        if sq is not None:
            np.sqrt(sq, out=sq)  # squared column norms -> norms, in place
        return
    block = out[:, lo:hi]
    block[...] = G[:, lo:hi]
    block *= -lr
    block += W[:, lo:hi]
    if norms is not None and W0 is not None:
        norms[lo:hi] = backend.column_norms(block - W0[:, lo:hi])


def _max_and_root_sum_of_squares(backend: Backend, norms: Array) -> tuple[float, float]:
    """(max, sqrt(sum of squares)) of the column norms, read back once and summed in float64 on the host."""
    host = backend.to_numpy(norms).astype(np.float64)
    return float(host.max()), float(np.sqrt((host**2).sum()))


def repeatable_train_step(
    tuning: Any, X: Array, W: Array, a: Array, y: Array
) -> tuple[Callable[[], Any], Callable[[], None]]:
    """(step, close): the step ``expreg.train`` takes, on a fresh NumPy backend of ``tuning``, to time it again
    and again (``calibrate`` races it; benchmarks/profile_step.py profiles it).

    ``forward_backward`` (exp activation, s = 1/sqrt(m)) with the gradient step and the movement from W taken
    in its backward pass and the next forward pass run ahead (``Step.ahead``), the weights in two buffers
    that swap roles as ``descent.WeightBuffers``' do; the step size is 0, so every step is at W's values.
    ``close`` frees the kept activations and workspace and ends the backend's threads.
    """
    be = NumpyBackend(tuning=tuning)
    n, d = int(X.shape[0]), int(X.shape[1])
    m = int(W.shape[1])
    plan = plan_blocks(n, m, X.dtype.itemsize, backend=be, d=d)
    G = np.empty_like(W)
    buffers = [W.copy(), np.empty_like(W)]
    norms = np.empty((m,), W.dtype)
    state: dict[str, Any] = {"t": 0, "primed": None}

    def step() -> None:
        t = state["t"]
        taken = Step(buffers[1 - t % 2], 0.0, W, norms, ahead=True)
        forward_backward(
            be, EXP, X, buffers[t % 2], a, y, 1.0 / np.sqrt(m), plan, G, step=taken, primed=state["primed"]
        )
        state["t"], state["primed"] = t + 1, taken.primed

    def close() -> None:
        state["primed"] = None
        KEPT.workspaces.clear()  # the steps' kept activations: none is used again
        be.close()

    return step, close


calibrate.set_step_maker(repeatable_train_step)
