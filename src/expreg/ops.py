"""Blocked forward, backward and Gram passes: the hot path (MATH.md 2-3).

Neurons are independent given the residual, so every pass walks over
blocks of columns of W and never holds the n x m matrix exp(XW) whole,
unless it fits the memory budget, in which case each block's activations
are kept between the forward and backward passes instead of recomputed.

All functions take backend arrays (see ``backends``) and trust their
inputs: validation happens at the public boundary (``validation``).

Shapes: X (n, d), W (d, m), a (m,), y (n,), u (n,), G (d, m), H (n, n).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from .activations import Activation
from .backends import Array, Backend
from .errors import ExpOverflowError

#: Default bytes for one block of activations (n x block): sized for cache.
DEFAULT_BLOCK_BYTES = 4 * 2**20
#: Default bytes the forward pass may keep for reuse in the backward pass.
DEFAULT_MEMORY_BUDGET = 2 * 2**30


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


def plan_blocks(
    n: int,
    m: int,
    itemsize: int,
    *,
    block: int | None = None,
    memory_budget: int | None = None,
) -> BlockPlan:
    """Choose the block size and whether to keep activations.

    Parameters
    ----------
    n, m : int
        Data points and neurons.
    itemsize : int
        Bytes per array element (4 for float32, 8 for float64).
    block : int, optional
        Neurons per block; default fills ``DEFAULT_BLOCK_BYTES``.
    memory_budget : int, optional
        Bytes allowed for the kept activations; default ``DEFAULT_MEMORY_BUDGET``.
    """
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else int(memory_budget)
    if block is None:
        block = max(1, DEFAULT_BLOCK_BYTES // max(1, n * itemsize))
    block = int(max(1, min(block, m)))
    keep = n * m * itemsize <= budget
    return BlockPlan(block=block, keep=keep)


def _overflow(what: str) -> ExpOverflowError:
    return ExpOverflowError(
        f"exp overflowed while computing {what}: some <w_r, x_i> is beyond the dtype's range "
        "(about 88 for float32, 709 for float64). Scale the inputs into the unit ball, "
        "lower the step size, or use float64."
    )


def forward(
    backend: Backend,
    act: Activation,
    X: Array,
    W: Array,
    a: Array,
    scale: float,
    plan: BlockPlan,
) -> Array:
    """Predictions u = s * sigma(X W) a, shape (n,) (MATH.md 1).

    Raises
    ------
    ExpOverflowError
        If any activation or the sum overflowed.
    """
    u, _ = forward_pass(backend, act, X, W, a, BlockPlan(plan.block, keep=False))
    u *= scale
    if not backend.all_finite(u):
        raise _overflow("the predictions F(W, X)")
    return u


def forward_pass(
    backend: Backend,
    act: Activation,
    X: Array,
    W: Array,
    a: Array,
    plan: BlockPlan,
) -> tuple[Array, list[Array] | None]:
    """Unscaled partial predictions sigma(X W) a (n,), and the kept blocks.

    The second value is the list of each block's activations when
    ``plan.keep``, else None (the backward pass recomputes them).
    """
    n = X.shape[0]
    u = backend.zeros((n,), _dtype_of(backend, X))
    kept: list[Array] | None = [] if plan.keep else None
    for lo, hi in plan.ranges(W.shape[1]):
        E = act.value_(backend, backend.matmul(X, W[:, lo:hi]))
        u += backend.matmul(E, a[lo:hi])
        if kept is not None:
            kept.append(E)
    return u, kept


def backward_pass(
    backend: Backend,
    act: Activation,
    X: Array,
    W: Array,
    a: Array,
    r: Array,
    scale: float,
    plan: BlockPlan,
    kept: list[Array] | None,
    G: Array,
) -> Array:
    """G = s * X^T ( r[:, None] * sigma'(X W) * a[None, :] ), written into G (d, m).

    ``kept`` (from ``forward_pass``) is consumed: its blocks are overwritten.
    """
    XT = X.T
    rc = r[:, None]
    for k, (lo, hi) in enumerate(plan.ranges(W.shape[1])):
        if kept is not None:
            E = kept[k]
            kept[k] = None  # release as we go
        else:
            E = act.value_(backend, backend.matmul(X, W[:, lo:hi]))
        D = act.derivative(backend, E)
        D *= rc
        Gb = G[:, lo:hi]
        if _contiguous_out_ok(backend, Gb):
            backend.matmul(XT, D, out=Gb)
        else:
            Gb[...] = backend.matmul(XT, D)
        Gb *= a[lo:hi] * scale
    if not backend.all_finite(G):
        raise _overflow("the gradient dL/dW")
    return G


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
) -> tuple[Array, Array]:
    """Predictions and the gradient of L = 1/2 ||u - y||^2 (MATH.md 2).

    u = s * sigma(X W) a                                  (n,)
    G = s * X^T ( r[:, None] * sigma'(X W) * a[None, :] )  (d, m), r = u - y

    Parameters
    ----------
    G : array (d, m), optional
        Output buffer for the gradient, reused across steps.
    reduce : callable, optional
        Applied to the partial sum sigma(X W) a before scaling; a
        width-sharded run passes an all-reduce (sum over ranks) here, the
        only communication of a step (MATH.md 2).

    Returns
    -------
    u, G
        Predictions (n,) and gradient (d, m). If the forward pass
        overflows, raises ``ExpOverflowError`` before ``G`` is touched.
    """
    u, kept = forward_pass(backend, act, X, W, a, plan)
    if reduce is not None:
        u = reduce(u)
    u *= scale
    if not backend.all_finite(u):
        raise _overflow("the predictions F(W, X)")
    if G is None:
        G = backend.empty(tuple(W.shape), _dtype_of(backend, X))
    backward_pass(backend, act, X, W, a, u - y, scale, plan, kept, G)
    return u, G


def gram(
    backend: Backend,
    act: Activation,
    X: Array,
    W: Array,
    scale: float,
    plan: BlockPlan,
) -> Array:
    """Finite-width NTK H(W) = s^2 (X X^T) * (D D^T), D = sigma'(X W) (MATH.md 3).

    Shape (n, n). Divide by m s^2 for the paper's average form H^dis.
    """
    n = X.shape[0]
    m = W.shape[1]
    S = backend.zeros((n, n), _dtype_of(backend, X))
    for lo, hi in plan.ranges(m):
        E = act.value_(backend, backend.matmul(X, W[:, lo:hi]))
        D = act.derivative(backend, E)
        S += backend.matmul(D, D.T)
    H = backend.matmul(X, X.T) * S
    H *= scale * scale
    if not backend.all_finite(H):
        raise _overflow("the empirical kernel H(W)")
    return H


def movement(backend: Backend, W: Array, W0: Array, plan: BlockPlan) -> tuple[float, float]:
    """(max_r ||w_r - w_r(0)||_2, ||W - W(0)||_F), blocked over neurons."""
    m = W.shape[1]
    worst = 0.0
    total = 0.0
    for lo, hi in plan.ranges(m):
        diff = W[:, lo:hi] - W0[:, lo:hi]
        norms = backend.to_numpy(backend.column_norms(diff))
        worst = max(worst, float(norms.max()))
        total += float((norms.astype(np.float64) ** 2).sum())
    return worst, float(np.sqrt(total))


def _dtype_of(backend: Backend, x: Array) -> np.dtype:
    if backend.name == "numpy":
        return x.dtype
    return np.dtype(str(x.dtype).replace("torch.", ""))


def _contiguous_out_ok(backend: Backend, out: Array) -> bool:
    # np.matmul(out=) accepts strided views; torch's out= must be contiguous.
    return backend.name == "numpy" or out.is_contiguous()
