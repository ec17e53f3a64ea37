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

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import fastpath
from .activations import Activation
from .backends import Array, Backend
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


def plan_blocks(
    n: int,
    m: int,
    itemsize: int,
    *,
    block: int | None = None,
    memory_budget: int | None = None,
    backend: Backend | None = None,
    pairs: bool = False,
) -> BlockPlan:
    """Choose the block size and whether to keep activations.

    Parameters
    ----------
    n, m : int
        Data points and neurons.
    itemsize : int
        Bytes per array element (4 for float32, 8 for float64).
    block : int, optional
        Neurons per block; default fills the backend's ``block_bytes``
        (``DEFAULT_BLOCK_BYTES`` without a backend), rounded to a multiple
        of 8 (whole SIMD vectors).
    memory_budget : int, optional
        Bytes allowed for the kept activations; default ``DEFAULT_MEMORY_BUDGET``
        on the host, and ``DEVICE_MEMORY_FRACTION`` of the backend's
        ``device_memory()`` on a GPU.
    backend : Backend, optional
        The backend the passes will run on (it sets the default block and budget).
    pairs : bool
        Round the block up to an even number, so that a coupled pair of
        neurons (2p, 2p+1) never straddles two blocks and its two terms
        cancel exactly (F(W(0), x) = 0 for every block size).
    """
    budget = default_memory_budget(backend) if memory_budget is None else int(memory_budget)
    if block is None:
        target = backend.block_bytes if backend is not None else DEFAULT_BLOCK_BYTES
        block = max(8, (target // max(1, n * itemsize)) // 8 * 8)
    block = int(max(1, min(block, m)))
    if pairs and block % 2 and block < m:
        block += 1
    keep = n * m * itemsize <= budget
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
) -> None:
    """The backward pass into G; ``kept(k, lo, hi)`` returns block k's kept activations (None: recompute).

    Sets ``ws.finite`` (one device flag per chunk) and reads nothing back
    to the host: the caller reads the flags, once per step.
    """
    chunks, first = ws.chunks, ws.first
    ws.xrt[...] = (X * r[:, None]).T
    XrT = ws.xrt
    sa = a * scale

    def chunk(worker: int, c: int) -> None:
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
            Gb *= sa[lo:hi]
        lo, hi = chunks[c][0][0], chunks[c][-1][1]
        ws.finite[c] = backend.isfinite_all(G[:, lo:hi])  # a device flag, computed chunk by chunk

    backend.parallel(len(chunks), chunk)


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
    """
    ws = _acquire(backend, X, W, plan)
    try:
        with overflow_checked():  # inf/NaN are detected below, not warned about on the way
            u = _forward(backend, act, X, W, a, ws)
            if reduce is not None:
                u = reduce(u)
            u *= scale
            u_finite = backend.isfinite_all(u)
            if G is None:
                G = backend.empty(tuple(W.shape), backend.dtype_of(X))
            kept = (lambda k, lo, hi: ws.block(0, lo, hi)) if plan.keep else None
            _backward(backend, act, X, W, a, u - y if weights is None else (u - y) * weights, scale, kept, G, ws)
        finite = backend.to_bools([u_finite, *ws.finite])
        if not finite[0]:
            raise _overflow("the predictions F(W, X)")
        if not all(finite[1:]):
            raise _overflow("the gradient dL/dW")
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
    compiled = backend.host_blas  # NumPy arrays: fastpath's one-pass kernel where numba is in use (else below)

    def chunk(worker: int, c: int) -> None:
        for lo, hi in chunks[c]:
            sq = norms[lo:hi] if norms is not None else None
            if compiled and fastpath.step_block_(out, W, G, lr, lo, hi, W0, sq):
                if sq is not None:
                    np.sqrt(sq, out=sq)  # squared column norms -> norms, in place
                continue
            block = out[:, lo:hi]
            block[...] = G[:, lo:hi]
            block *= -lr
            block += W[:, lo:hi]
            if norms is not None and W0 is not None:
                norms[lo:hi] = backend.column_norms(block - W0[:, lo:hi])

    backend.parallel(len(chunks), chunk)
    return None if norms is None else _max_and_root_sum_of_squares(backend, norms)


def _max_and_root_sum_of_squares(backend: Backend, norms: Array) -> tuple[float, float]:
    """(max, sqrt(sum of squares)) of the column norms, read back once and summed in float64 on the host."""
    host = backend.to_numpy(norms).astype(np.float64)
    return float(host.max()), float(np.sqrt((host**2).sum()))
