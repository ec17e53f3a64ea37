"""The nested-width scan: H^dis of every width of a grid in one pass over neurons (docs/theory.md sections 3, 6).

The neurons of a seed are nested (``initialisation``): the width-m network
is the first m neurons of any wider one. The kernel of the width-m network,

    H^dis_m = (1/m) (X X^T) o sum_{r<m} sigma'(X w_r) sigma'(X w_r)^T      (n x n, a_r^2 = 1),

is therefore a running sum: one pass over neurons 0 .. max(widths) - 1,
accumulated by ``gram.GramAccumulator`` (a symmetric rank-k update per
block, the same code as ``kernels.empirical_ntk``), hands out H^dis_m at
each grid width m. The whole grid costs what the widest kernel costs; memory
stays O(n^2 + n * block) whatever the widths.

Example
-------
>>> import numpy as np
>>> X = np.eye(3)[:2] * 0.5
>>> [(m, H.shape) for m, H in nested_gram(X, [2, 6], seed=0)]
[(2, (2, 2)), (6, (2, 2))]
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..core import gram
from ..core.activations import get_activation
from ..core.backends import Array, Backend, canonical_dtype, get_backend
from ..core.choices import Init
from ..core.errors import overflow_checked
from ..core.initialisation import CHUNK, init_weights
from ..core.validation import check_X


def check_widths(widths: Sequence[int]) -> list[int]:
    try:
        ws = [int(m) for m in widths]
    except (TypeError, ValueError):
        raise TypeError(f"widths must be a sequence of integers, got {widths!r}") from None
    if not ws:
        raise ValueError("widths is empty; give at least one width m >= 1")
    if (
        any(m != w for m, w in zip(ws, widths, strict=True))
        or ws[0] < 1
        or any(b <= a for a, b in itertools.pairwise(ws))
    ):
        raise ValueError(
            f"widths must be strictly increasing integers >= 1, got {list(widths)}; sort them and drop duplicates"
        )
    return ws


def nested_gram(
    X: np.ndarray,
    widths: Sequence[int],
    *,
    seed: int,
    activation: str = "exp",
    init: str = "coupled",
    dtype: Any = np.float64,
    backend: Backend | str | None = None,
    block: int | None = None,
    on_device: bool = False,
) -> Iterator[tuple[int, Any]]:
    """Yield ``(m, H^dis_m)`` for each width m of ``widths`` (increasing), in one pass over neurons.

    H^dis_m = (1/m) (X X^T) o (sum_{r<m} sigma'(X w_r) sigma'(X w_r)^T), the
    kernel of the width-m network of this seed (a_r^2 = 1; it equals
    ``kernels.empirical_ntk(ExpNet.init(d, m, seed=seed, activation=activation,
    init=init, dtype=dtype), X, average=True)``). Weights are drawn with
    ``initialisation.init_weights(d, lo, hi, seed=seed, init=init, dtype=dtype)``.

    Parameters
    ----------
    X : array (n, d)
        Inputs (finite).
    widths : sequence of int
        Strictly increasing widths >= 1; need not be multiples of the block
        (blocks are split at grid widths). With ``init="coupled"`` an odd
        width is the first m neurons (one pair left unfinished), which is
        not a network ``ExpNet.init`` would draw.
    seed : int
        The network's seed (>= 0).
    activation : {"exp", "relu"}
    init : {"coupled", "gaussian"}
    dtype : numpy.float64 or numpy.float32
        Dtype of the weights, activations and the accumulation; each yielded
        matrix is float64.
    backend : Backend or {"numpy", "torch"}, optional
        Where to compute (default NumPy).
    block : int, optional
        Neurons per rank-k update (default ``gram.gram_block``).
    on_device : bool
        Yield each H^dis_m as an array of the backend, on its device (float64),
        instead of a NumPy array: for criteria computed there
        (``eigen.lazy_criteria(..., backend=...)``), so that n^2 numbers never
        cross to the host.

    Yields
    ------
    m : int
    H : ndarray (n, n), float64, symmetric
        A fresh array (the caller may keep or modify it); a backend array
        with ``on_device``.

    Raises
    ------
    ExpOverflowError
        When an activation overflows (inputs far outside the unit ball).
    """
    dt = canonical_dtype(dtype)
    Xn = check_X(X, dtype=dt, warn_ball=False)
    ws = check_widths(widths)
    get_activation(activation)
    Init.check(init)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    be = backend if isinstance(backend, Backend) else get_backend(backend or "numpy")
    return _scan(be, Xn, ws, int(seed), activation, init, dt, block, bool(on_device))


def _scan(
    be: Backend,
    Xn: np.ndarray,
    widths: list[int],
    seed: int,
    activation: str,
    init: str,
    dt: np.dtype,
    block: int | None,
    on_device: bool,
) -> Iterator[tuple[int, Any]]:
    n, d = Xn.shape
    act = get_activation(activation)
    if block is None:
        block = gram.gram_block(n, dt.itemsize, be)
    block = max(1, min(int(block), widths[-1]))
    acc = gram.GramAccumulator(be, act, be.asarray(Xn, dt), block=block)
    draw = max(block, CHUNK)  # at least one generator chunk of ``initialisation`` per call of init_weights
    W: Array  # drawn on the loop's first pass (acc.count >= w_hi = 0)
    w_lo = w_hi = 0  # drawn neurons [w_lo, w_hi), held in W
    try:
        for m in widths:
            while acc.count < m:
                if acc.count >= w_hi:
                    w_lo, w_hi = acc.count, min(acc.count + draw, widths[-1])
                    W = be.asarray(init_weights(d, w_lo, w_hi, seed=seed, init=init, dtype=dt)[0], dt)
                hi = min(m, w_hi)
                with overflow_checked():
                    acc.add(W[:, acc.count - w_lo : hi - w_lo])
            yield m, (acc.kernel_array(1.0 / m) if on_device else acc.kernel(1.0 / m))
    finally:  # the last width handed out, or the caller stopped early: the buffers go back for the next scan
        acc.close()
