"""Blocked forward, backward and Gram passes: the hot path (docs/theory.md sections 2-3).

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

The Gram pass (``GramAccumulator``, used by ``gram`` and ``scan``) needs
n^2 m flops against n d m for a step, so its blocks are larger (a few
hundred neurons and more, ``gram_block``): per block, D = sigma'(X W_block)
is formed by row panels on the backend's threads, then S += D D^T as a
symmetric rank-k update (NumPy: one BLAS syrk on BLAS's threads, writing
the lower triangle of a Fortran-ordered S in place; PyTorch: one ``addmm_``), and
the Hadamard factor X X^T is applied once, in float64, when the kernel is
read (on a GPU, on the device). For small n (NumPy, n <= 512) the neurons
of each ``add`` are instead split into a fixed number of parts, each
accumulated into its own sum by one thread (features and ``D @ D.T`` with
one-thread BLAS), the sums added in part order (``Backend.gram_parts``).

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

from .activations import Activation
from .backends import Array, Backend, gram_parts_kept
from .errors import ExpOverflowError, overflow_checked
from .reuse import KeptForReuse

#: Default bytes for one block of activations (n x block), used when the backend is not known.
DEFAULT_BLOCK_BYTES = 2**20
#: Default bytes the forward pass may keep for reuse in the backward pass (host memory).
DEFAULT_MEMORY_BUDGET = 2 * 2**30
#: On a device (CUDA), the default budget is this fraction of the device memory the process may use.
DEVICE_MEMORY_FRACTION = 0.5
#: Blocks are grouped into at most this many chunks (units of parallel work).
MAX_CHUNKS = 64
#: Workspaces kept for reuse (each holds up to the memory budget).
WORKSPACE_CACHE_SIZE = 2


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


#: Step workspaces kept for the next step of the same shapes (``WORKSPACE_CACHE_SIZE`` of them).
_workspaces: KeptForReuse[tuple[Any, ...], _Workspace] = KeptForReuse(WORKSPACE_CACHE_SIZE)


def _acquire(backend: Backend, X: Array, W: Array, plan: BlockPlan) -> _Workspace:
    """Take a workspace for these shapes out of the cache (or make one); give it back with ``_release``."""
    n, d = int(X.shape[0]), int(X.shape[1])
    m = int(W.shape[1])
    dtype = backend.dtype_of(X)
    key = (id(backend), backend.device, backend.threads, n, d, m, dtype.str, plan)
    ws = _workspaces.take(key)
    return ws if ws is not None else _Workspace(backend, n, d, m, dtype, plan, key)


def _release(ws: _Workspace) -> None:
    _workspaces.give(ws.key, ws)


def release_workspaces() -> None:
    """Free the buffers kept for reuse between steps (up to the memory budget each) and Gram passes."""
    _workspaces.clear()
    _gram_buffers.clear()
    gram_parts_kept.clear()


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
            if _matmul_out_ok(backend, Gb):
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


#: Bytes of one block of activations in the Gram passes (larger than a step's: the
#: rank-k update reads and writes the n x n accumulator once per block, so k must be
#: a few hundred for it to run at the machine's GEMM rate).
GRAM_BLOCK_BYTES = 16 * 2**20
#: Neurons per Gram block: at least this many (when m allows) ...
GRAM_MIN_BLOCK = 256
#: ... and at most this many.
GRAM_MAX_BLOCK = 4096


def gram_block(n: int, itemsize: int, backend: Backend | None = None) -> int:
    """Neurons per block of the Gram passes: the n x block activations fill about ``GRAM_BLOCK_BYTES``.

    Clipped to [``GRAM_MIN_BLOCK``, ``GRAM_MAX_BLOCK``] on the CPU; on a GPU the
    backend's (larger) ``block_bytes`` sets it.
    """
    target = GRAM_BLOCK_BYTES
    if backend is not None and backend.device != "cpu":
        target = max(target, backend.block_bytes)
        return max(GRAM_MIN_BLOCK, target // max(1, n * itemsize) // 8 * 8)
    return int(min(GRAM_MAX_BLOCK, max(GRAM_MIN_BLOCK, target // max(1, n * itemsize) // 8 * 8)))


#: Gram block buffers kept for the next accumulator of the same size: a fresh buffer costs its page
#: faults on first touch (measured: a third of the whole kernel at n = 256, m = 8192 on 2 cores).
_gram_buffers: KeptForReuse[tuple[Any, ...], Array] = KeptForReuse(WORKSPACE_CACHE_SIZE)


def _gram_buffer_key(backend: Backend, size: int, dtype: np.dtype) -> tuple[Any, ...]:
    return (id(backend), backend.device, size, np.dtype(dtype).str)


def _take_gram_buffer(backend: Backend, size: int, dtype: np.dtype) -> Array:
    """A flat buffer of ``size`` elements: a kept one if there is one, else new."""
    buf = _gram_buffers.take(_gram_buffer_key(backend, size, dtype))
    return buf if buf is not None else backend.empty((size,), dtype)


def _give_gram_buffer(backend: Backend, buf: Array) -> None:
    """Keep ``buf`` for reuse (the ``WORKSPACE_CACHE_SIZE`` most recent)."""
    _gram_buffers.give(_gram_buffer_key(backend, int(buf.shape[0]), backend.dtype_of(buf)), buf)


class GramAccumulator:
    """The Gram matrix of the neurons' features, accumulated block by block (docs/theory.md section 3).

        S = sum_r a_r^2 sigma'(X w_r) sigma'(X w_r)^T          (n x n)

    over every neuron handed to :meth:`add`, as a symmetric rank-k update per
    block of k neurons (BLAS ``syrk`` on NumPy: n^2 k flops, half a GEMM's;
    ``addmm_`` on PyTorch), accumulated in the dtype of X. :meth:`kernel`
    returns c (X X^T) o S, the Hadamard factor applied once, whenever asked:
    the nested-width scan (``expreg.scan``) asks at every grid width, the
    empirical kernel (``gram``) once at the end. Memory: the accumulator
    (n^2) and one block of activations (n * block); with parts
    (``Backend.gram_parts`` > 1, small n) 2 n^2 per part and one block per
    worker thread.

    Parameters
    ----------
    backend : Backend
    act : Activation
    X : backend array (n, d)
        Inputs in the dtype of the accumulation (float32 or float64).
    block : int
        Neurons per rank-k update; ``add`` splits longer weight matrices.
    """

    def __init__(self, backend: Backend, act: Activation, X: Array, *, block: int) -> None:
        self.backend = backend
        self.act = act
        self.X = X
        self.n = int(X.shape[0])
        self.block = int(block)
        self.dtype = backend.dtype_of(X)
        self.S = backend.gram_state(self.n, self.dtype)
        self.parts = backend.gram_parts(self.S)
        self.panels = backend.row_panels(self.n)
        #: One block buffer per worker thread when the sum is kept in parts (each part runs in one thread).
        self._workers = min(self.parts, max(1, backend.threads)) if self.parts > 1 else 1
        self._buf: Array | None = _take_gram_buffer(backend, self._workers * self.n * self.block, self.dtype)
        self._xxt: Any = None
        #: Neurons accumulated so far.
        self.count = 0

    def add(self, W: Array, a: Array | None = None) -> None:
        """Accumulate the neurons in the columns of W (d, k); ``a`` (k,) their output weights (None: a_r^2 = 1)."""
        be, n = self.backend, self.n
        if self._buf is None:
            raise RuntimeError("this GramAccumulator was closed: make a new one to add neurons")
        k = int(W.shape[1])
        if self.parts > 1:
            self._add_by_parts(W, a, k)
            self.count += k
            return
        for lo in range(0, k, self.block):
            hi = min(lo + self.block, k)
            D = self._buf[: n * (hi - lo)].reshape(n, hi - lo)
            Wb, ab = W[:, lo:hi], (None if a is None else abs(a[lo:hi]))

            def features(worker: int, p: int, D: Array = D, Wb: Array = Wb, ab: Array | None = ab) -> None:
                self._features(D, Wb, ab, *self.panels[p])  # by row panels

            be.parallel(len(self.panels), features)
            be.rank_update_(self.S, D)
        self.count += k

    def _features(self, D: Array, Wb: Array, ab: Array | None, r0: int = 0, r1: int | None = None) -> None:
        """Rows r0..r1-1 (default all) of D (n, k_b) <- sigma'(X W_b) |a_b|, in the calling thread."""
        be, act = self.backend, self.act
        r1 = self.n if r1 is None else r1
        Dp = act.value_(be, be.matmul(self.X[r0:r1], Wb, out=D[r0:r1]))
        Dd = act.derivative(be, Dp)
        if Dd is not Dp:  # exp's derivative is its value
            Dp[...] = Dd
        if ab is not None:
            Dp *= ab

    def _add_by_parts(self, W: Array, a: Array | None, k: int) -> None:
        """The neurons 0..k-1 of this call split into ``parts`` fixed contiguous ranges, part c into sum c."""
        be, n, P = self.backend, self.n, self.parts
        bounds = [k * c // P for c in range(P + 1)]
        todo = [c for c in range(P) if bounds[c + 1] > bounds[c]]
        size = n * self.block
        buf = self._buf
        assert buf is not None

        def part(worker: int, t: int) -> None:
            c = todo[t]
            scratch = buf[worker * size : (worker + 1) * size]
            for lo in range(bounds[c], bounds[c + 1], self.block):
                hi = min(lo + self.block, bounds[c + 1])
                D = scratch[: n * (hi - lo)].reshape(n, hi - lo)
                self._features(D, W[:, lo:hi], None if a is None else abs(a[lo:hi]))
                be.rank_update_(self.S, D, c)

        be.parallel(len(todo), part)

    def close(self) -> None:
        """Give the buffers back for the next accumulator of the same size; read the kernel before closing."""
        if self._buf is not None:
            _give_gram_buffer(self.backend, self._buf)
            self._buf = None
        if self.S is not None:
            self.backend.gram_release(self.S)
            self.S = None

    def kernel(self, factor: float) -> np.ndarray:
        """factor * (X X^T) o S as a symmetric NumPy float64 array (n, n).

        The Hadamard product and the factor are applied in float64 (the
        accumulation stays in the dtype of X).

        Raises
        ------
        ExpOverflowError
            If any entry is inf or NaN (an activation overflowed).
        """
        return self.backend.to_numpy(self.kernel_array(factor))

    def kernel_array(self, factor: float) -> Array:
        """``kernel`` as an array of the backend (float64, on its device): nothing moves to the host."""
        be = self.backend
        if self.S is None:
            raise RuntimeError("this GramAccumulator was closed: read its kernel before close()")
        if self._xxt is None:
            self._xxt = be.gram_outer(self.X)  # float64, once per accumulator, where the backend assembles
        H = be.gram_kernel(self.S, self._xxt, factor)
        if not be.all_finite(H):
            raise ExpOverflowError(
                "the empirical kernel H(W) has inf or NaN entries: some sigma(<w_r, x_i>) or <x_i, x_j> overflowed "
                f"{self.dtype} (exp: beyond about 88 in float32, 709 in float64). Scale the inputs into the unit ball or use float64."
            )
        return H


def gram(
    backend: Backend,
    act: Activation,
    X: Array,
    W: Array,
    scale: float,
    *,
    a: Array | None = None,
    block: int | None = None,
) -> np.ndarray:
    """Finite-width NTK H(W) = s^2 (X X^T) o (D diag(a^2) D^T), D = sigma'(X W) (docs/theory.md section 3).

    Shape (n, n), a NumPy float64 array (accumulated in the dtype of X by
    ``GramAccumulator``). ``a`` (m,) defaults to a_r^2 = 1, which holds for
    every network expreg draws. Divide by m s^2 for the paper's average
    form H^dis.
    """
    n = int(X.shape[0])
    dtype = backend.dtype_of(X)
    if a is not None and bool((abs(a) == 1).all()):
        a = None  # a_r = +-1 (every network expreg draws): a_r^2 = 1 drops out, no per-block product
    if block is None:
        block = gram_block(n, dtype.itemsize, backend)
    acc = GramAccumulator(backend, act, X, block=max(1, min(int(block), int(W.shape[1]))))
    try:
        acc.add(W, a)
        return acc.kernel(scale * scale)
    finally:
        acc.close()


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
    host = backend.to_numpy(norms).astype(np.float64)
    return float(host.max()), float(np.sqrt((host**2).sum()))


def _matmul_out_ok(backend: Backend, out: Array) -> bool:
    """Whether ``matmul(..., out=out)`` writes the 2-D view ``out`` in place (``Backend.matmul_out_ok``)."""
    return backend.matmul_out_ok(out)
