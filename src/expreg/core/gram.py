"""The Gram engine: the empirical kernel H(W) accumulated block by block (docs/theory.md section 3).

    H(W) = s^2 (X X^T) o S,   S = sum_r a_r^2 sigma'(X w_r) sigma'(X w_r)^T      (n x n)

The Gram pass needs n^2 m flops against n d m for a step, so its blocks are
larger than a step's (a few hundred neurons and more, ``gram_block``). Per
block of k neurons, D = sigma'(X W_block) (n, k) is formed, then S += D D^T
as a symmetric rank-k update; the Hadamard factor X X^T is applied once, in
float64, when the kernel is read. Where S is summed is a *strategy*, chosen
from what the backend declares (``Backend.host_blas``, never its name):

* ``PartsSum`` (host BLAS, n <= ``PARTS_GRAM_MAX_N``): the neurons of each
  ``add`` split into ``PARTS_GRAM_PARTS`` fixed contiguous parts, each summed
  by one thread with one-thread BLAS, the sums added in part order (so the
  thread count never changes the result);
* ``SyrkSum`` (host BLAS, larger n): one BLAS syrk per block on BLAS's own
  threads, into the lower triangle of a Fortran-ordered S;
* ``BackendSum`` (any other backend, e.g. PyTorch on CPU or GPU): one
  ``add_matmul_`` per block, the kernel assembled where S lives (on a GPU, on
  the device: one n^2 float64 copy to the host).

``GramAccumulator`` drives a strategy over blocks; ``gram`` is one whole
pass. Buffers given back by a closed accumulator (the block buffer, the
small-n parts) are kept for the next one of the same size in
``reuse.KEPT`` (the one place expreg keeps buffers between calls).

Shapes: X (n, d), W (d, m), a (m,), D (n, k), S and H (n, n).
"""

from __future__ import annotations

import itertools
from contextlib import nullcontext
from typing import Any

import numpy as np

from .activations import Activation
from .backends import Array, Backend, blas_single_thread
from .blas import syrk_lower_
from .errors import ExpOverflowError
from .reuse import KEPT

__all__ = [
    "GRAM_MIN_BLOCK",
    "PARTS_GRAM_MAX_N",
    "PARTS_GRAM_PARTS",
    "BackendSum",
    "GramAccumulator",
    "PartsSum",
    "SyrkSum",
    "gram",
    "gram_block",
    "sum_for",
]

#: Neurons per Gram block: at least this many (when m allows); the most, and the bytes of a
#: block, are the backend's ``gram_block_max`` and ``gram_block_bytes``.
GRAM_MIN_BLOCK = 256

#: Up to this n, the host-BLAS backend accumulates the Gram matrix in ``PARTS_GRAM_PARTS`` neuron parts run on its
#: threads with one-thread BLAS (``PartsSum``); above it, one BLAS syrk per block on BLAS's threads (``SyrkSum``).
#: The crossover is measured by ``make bench`` (benchmarks/RESULTS.md): the parts are faster where OpenBLAS's
#: two-thread syrk is far from its GEMM rate (small n), not from n = 1024 on.
PARTS_GRAM_MAX_N = 512
#: The fixed number of parts (results depend on it, never on the thread count).
PARTS_GRAM_PARTS = 4


def gram_block(n: int, itemsize: int, backend: Backend) -> int:
    """Neurons per block of the Gram passes: n x block activations fill about ``backend.gram_block_bytes``.

    At least ``GRAM_MIN_BLOCK``, at most ``backend.gram_block_max`` (None: no cap),
    a multiple of 8 in between.
    """
    block = max(GRAM_MIN_BLOCK, backend.gram_block_bytes // max(1, n * itemsize) // 8 * 8)
    cap = backend.gram_block_max
    return int(block if cap is None else min(cap, block))


def row_panels(n: int) -> list[tuple[int, int]]:
    """Row ranges [r_p, r_{p+1}) (multiples of 8, r_p ~ n sqrt(p / P)) over which a Gram block's
    features are computed on the backend's threads; P (1 to 8) depends on n only, never on threads."""
    panels = 1 if n < 256 else min(8, n // 128)
    bounds = sorted({0, n, *(min(n, round(n * np.sqrt(p / panels) / 8) * 8) for p in range(1, panels))})
    return list(itertools.pairwise(bounds))


def mirror_lower(H: np.ndarray, tile: int = 64) -> None:
    """Copy the strict lower triangle of H (n, n; zeros above) onto the upper, tile by tile (cache-sized transposes).

    64 x 64 float64 tiles (32 KiB, an L1 data cache) were the fastest of 32 to 256 at n = 256, 1024 and 4096
    (30 % faster than 256 on an Intel Xeon; an ad-hoc timing)."""
    n = H.shape[0]
    for i0 in range(0, n, tile):
        i1 = min(i0 + tile, n)
        for j0 in range(0, i0, tile):
            H[j0 : j0 + tile, i0:i1] = H[i0:i1, j0 : j0 + tile].T
        T = H[i0:i1, i0:i1]
        T += np.tril(T, -1).T


# ------------------------------------------------------------------ the strategies
class _HostSum:
    """What the host-BLAS sums share: row panels, X X^T and the kernel assembled on the host in float64."""

    parts: int

    def __init__(self, n: int) -> None:
        self.panels = row_panels(n)

    def lower(self, last: bool = False) -> np.ndarray:  # pragma: no cover - interface
        """The lower triangle of S (zeros above) as float64 (n, n); with ``last`` it may be S's own memory
        (S is not read again)."""
        raise NotImplementedError

    def outer(self, backend: Backend, X: Array) -> np.ndarray:
        """X X^T in float64 (n, n), of which ``kernel`` reads the lower triangle.

        A GEMM with a contiguous copy of X^T: NumPy's ``A @ A.T`` calls syrk, which OpenBLAS runs at a third
        of its GEMM rate for d = 32 (n = 2048: 24 ms against 7.6 ms on one thread of an Intel Xeon, ad hoc).
        """
        Xf = backend.to_numpy(X).astype(np.float64)
        limiter = blas_single_thread()  # 2 n^2 d flops: one thread, and no BLAS pool left spinning afterwards
        with limiter if limiter is not None else nullcontext():
            return Xf @ np.ascontiguousarray(Xf.T)

    def kernel(self, backend: Backend, xxt: np.ndarray, factor: float, last: bool = False) -> np.ndarray:
        """factor * (X X^T) o S in float64 (n, n), exactly symmetric: the lower triangle computed, then mirrored.

        ``last``: S is not read again, so a float64 S may become H in place (no n^2 copy).
        """
        H = self.lower(last)  # float64, zeros above the diagonal
        # Only H's lower triangle counts (above it: 0 times X X^T, overwritten by the mirror), so X X^T may be
        # taken transposed to match H's memory layout (a GEMM's two triangles agree to rounding).
        np.multiply(H, xxt.T if H.flags.f_contiguous else xxt, out=H)
        H *= factor
        mirror_lower(H)
        return H

    def release(self) -> None:
        """S will not be read again."""


class PartsSum(_HostSum):
    """S = S_0 + ... + S_{P-1}, part c updated by a one-thread syrk in the thread that owns it (``blas.syrk_lower_``).

    Each part is a Fortran-ordered n x n array whose lower triangle the syrk updates in place (no product
    buffer, no n^2 add; the GIL is released, so the parts run on the backend's threads at once). Memory:
    P n^2, for n <= ``PARTS_GRAM_MAX_N``; numbers differ from ``SyrkSum``'s in the last bits (another order
    of the sum), never with the thread count. A released sum is kept (``reuse.KEPT.gram_sums``) for the next
    of its size: fresh arrays cost their page faults on first touch.
    """

    def __init__(self, n: int, dtype: np.dtype, parts: int) -> None:
        super().__init__(n)
        self.parts = parts
        self.S = [np.zeros((n, n), dtype=dtype, order="F") for _ in range(parts)]

    @staticmethod
    def _key(n: int, dtype: Any, parts: int) -> tuple[int, str, int]:
        return (int(n), np.dtype(dtype).str, int(parts))

    @classmethod
    def take(cls, n: int, dtype: np.dtype, parts: int) -> PartsSum:
        """A zeroed sum: one released for this (n, dtype, parts) if kept, else a new one."""
        kept = KEPT.gram_sums.take(cls._key(n, dtype, parts))
        if kept is None:
            return cls(n, dtype, parts)
        for S in kept.S:
            S.fill(0)
        return kept

    def release(self) -> None:
        """Keep this sum for the next ``take`` of its size (its parts are not read again)."""
        KEPT.gram_sums.give(self._key(self.S[0].shape[0], self.S[0].dtype, self.parts), self)

    def update(self, D: np.ndarray, part: int) -> None:
        """Add D D^T (D (n, k)) to the lower triangle of part ``part``; one thread per part at a time."""
        syrk_lower_(self.S[part], np.ascontiguousarray(D))

    def lower(self, last: bool = False) -> np.ndarray:
        """The lower triangle of the sum of the parts, added in part order, as float64 (zeros above), Fortran-ordered.

        (A new array even with ``last``: the parts are kept for the next sum of this size.)
        """
        total = self.S[0].astype(np.float64, order="F")
        for S in self.S[1:]:
            total += S
        return total


class SyrkSum(_HostSum):
    """The lower triangle of S = sum D D^T (n x n), updated by BLAS ``syrk`` in place.

    One Fortran-ordered accumulator: a C-contiguous D (n, k) is D^T
    Fortran-contiguous, so the syrk (``blas.syrk_lower_``) adds D D^T (n^2 k
    flops, half a GEMM's) to its lower triangle without a copy, on BLAS's own
    threads. (Splitting S into row panels run on the backend's threads was
    slower, measured when the syrk still held the GIL; lower-triangle row
    panels of GEMMs were slower than one syrk at n = 256.)
    """

    #: One sum.
    parts = 1

    def __init__(self, n: int, dtype: np.dtype) -> None:
        super().__init__(n)
        self.S = np.zeros((n, n), dtype=dtype, order="F")

    def update(self, D: np.ndarray, part: int = 0) -> None:
        """Add D D^T, D (n, k)."""
        syrk_lower_(self.S, np.ascontiguousarray(D))

    def lower(self, last: bool = False) -> np.ndarray:
        """The lower triangle of S (zeros above) as a float64 (n, n) array, Fortran-ordered like S.

        With ``last`` and a float64 S, S itself (no n^2 copy: at n = 4096 a fresh 128 MiB array and its page
        faults); the sum is then spent.
        """
        if last and self.S.dtype == np.float64:
            return self.S  # syrk never writes above the diagonal: zeros there
        return self.S.astype(np.float64, order="F")


class BackendSum:
    """S (n x n) as one array of the backend, S += D D^T by ``Backend.add_matmul_`` (PyTorch: one ``addmm_``).

    X X^T and the kernel are assembled where S lives, in float64, by
    ``Backend.symmetric_from_lower`` (on a GPU: on the device, one n^2
    float64 copy to the host afterwards; assembling on the host instead took
    longer than the whole accumulation on a GPU: benchmarks/RESULTS-cuda.md).
    """

    #: One sum.
    parts = 1

    def __init__(self, backend: Backend, n: int, dtype: np.dtype) -> None:
        self.backend = backend
        self.S = backend.zeros((n, n), dtype)
        self.panels = [(0, n)]

    def update(self, D: Array, part: int = 0) -> None:
        """S += D D^T (at least on and below the diagonal), queued on the device."""
        self.backend.add_matmul_(self.S, D, D.T)

    def outer(self, backend: Backend, X: Array) -> Array:
        X64 = backend.asarray(X, np.dtype(np.float64))
        return backend.symmetric_from_lower(backend.matmul(X64, X64.T))

    def kernel(self, backend: Backend, xxt: Array, factor: float, last: bool = False) -> Array:
        H = backend.symmetric_from_lower(self.S)
        H *= xxt
        H *= factor
        return H

    def release(self) -> None:
        """S will not be read again."""


GramSum = PartsSum | SyrkSum | BackendSum


def sum_for(backend: Backend, n: int, dtype: np.dtype) -> GramSum:
    """The strategy that sums S for this backend and n (see the module's docstring), zeroed."""
    if not backend.host_blas:
        return BackendSum(backend, n, dtype)
    if n <= PARTS_GRAM_MAX_N:
        return PartsSum.take(n, dtype, PARTS_GRAM_PARTS)
    return SyrkSum(n, dtype)


# ------------------------------------------------------------------ the accumulator
def _buffer_key(backend: Backend, size: int, dtype: np.dtype) -> tuple[Any, ...]:
    return (id(backend), backend.device, size, np.dtype(dtype).str)


class GramAccumulator:
    """The Gram matrix of the neurons' features, accumulated block by block (docs/theory.md section 3).

        S = sum_r a_r^2 sigma'(X w_r) sigma'(X w_r)^T          (n x n)

    over every neuron handed to :meth:`add`, as a symmetric rank-k update per
    block of k neurons (the strategy of ``sum_for``), accumulated in the
    dtype of X. :meth:`kernel` returns c (X X^T) o S, the Hadamard factor
    applied once, whenever asked: the nested-width scan (``expreg.scan``)
    asks at every grid width, the empirical kernel (``gram``) once at the
    end. Memory: the accumulator (n^2) and one block of activations
    (n * block); with parts (``PartsSum``, small n) n^2 per part and one
    block per worker thread.

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
        self.S: GramSum | None = sum_for(backend, self.n, self.dtype)
        self.parts = self.S.parts
        self.panels = self.S.panels
        #: One block buffer per worker thread when the sum is kept in parts (each part runs in one thread).
        self._workers = min(self.parts, max(1, backend.threads)) if self.parts > 1 else 1
        self._buf: Array | None = self._take_buffer(self._workers * self.n * self.block)
        self._xxt: Any = None
        #: Neurons accumulated so far.
        self.count = 0

    def _take_buffer(self, size: int) -> Array:
        """A flat buffer of ``size`` elements: a kept one if there is one (``reuse.KEPT.gram_blocks``), else new."""
        buf = KEPT.gram_blocks.take(_buffer_key(self.backend, size, self.dtype))
        return buf if buf is not None else self.backend.empty((size,), self.dtype)

    def _open(self) -> tuple[GramSum, Array]:
        if self.S is None or self._buf is None:
            raise RuntimeError("this GramAccumulator was closed: make a new one to add neurons")
        return self.S, self._buf

    def add(self, W: Array, a: Array | None = None) -> None:
        """Accumulate the neurons in the columns of W (d, k); ``a`` (k,) their output weights (None: a_r^2 = 1)."""
        S, buf = self._open()
        be, n = self.backend, self.n
        k = int(W.shape[1])
        if self.parts > 1:
            self._add_by_parts(S, buf, W, a, k)
            self.count += k
            return
        for lo in range(0, k, self.block):
            hi = min(lo + self.block, k)
            D = buf[: n * (hi - lo)].reshape(n, hi - lo)
            Wb, ab = W[:, lo:hi], (None if a is None else abs(a[lo:hi]))

            def features(worker: int, p: int, D: Array = D, Wb: Array = Wb, ab: Array | None = ab) -> None:
                self._features(D, Wb, ab, *self.panels[p])  # by row panels

            be.parallel(len(self.panels), features)
            S.update(D, 0)
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

    def _add_by_parts(self, S: GramSum, buf: Array, W: Array, a: Array | None, k: int) -> None:
        """The neurons 0..k-1 of this call split into ``parts`` fixed contiguous ranges, part c into sum c."""
        be, n, P = self.backend, self.n, self.parts
        bounds = [k * c // P for c in range(P + 1)]
        todo = [c for c in range(P) if bounds[c + 1] > bounds[c]]
        size = n * self.block

        def part(worker: int, t: int) -> None:
            c = todo[t]
            scratch = buf[worker * size : (worker + 1) * size]
            for lo in range(bounds[c], bounds[c + 1], self.block):
                hi = min(lo + self.block, bounds[c + 1])
                D = scratch[: n * (hi - lo)].reshape(n, hi - lo)
                self._features(D, W[:, lo:hi], None if a is None else abs(a[lo:hi]))
                S.update(D, c)

        be.parallel(len(todo), part)

    def close(self) -> None:
        """Give the buffers back for the next accumulator of the same size; read the kernel before closing."""
        if self._buf is not None:
            buf, self._buf = self._buf, None
            KEPT.gram_blocks.give(_buffer_key(self.backend, int(buf.shape[0]), self.dtype), buf)
        if self.S is not None:
            self.S.release()
            self.S = None

    def kernel(self, factor: float, last: bool = False) -> np.ndarray:
        """factor * (X X^T) o S as a symmetric NumPy float64 array (n, n).

        The Hadamard product and the factor are applied in float64 (the
        accumulation stays in the dtype of X). ``last=True`` says no neuron
        is added nor the kernel read again (a whole pass, ``gram``): the sum
        may then become the kernel in place, and the accumulator is closed.

        Raises
        ------
        ExpOverflowError
            If any entry is inf or NaN (an activation overflowed).
        """
        H = self.backend.to_numpy(self.kernel_array(factor, last))
        if last:
            self.close()
        return H

    def kernel_array(self, factor: float, last: bool = False) -> Array:
        """``kernel`` as an array of the backend (float64, where S lives): nothing moves to the host."""
        be = self.backend
        if self.S is None:
            raise RuntimeError("this GramAccumulator was closed: read its kernel before close()")
        if self._xxt is None:
            self._xxt = self.S.outer(be, self.X)  # float64, once per accumulator, where the kernel is assembled
        H = self.S.kernel(be, self._xxt, factor, last)
        if last:  # spent (its memory may be H's now): no further add nor read
            spent, self.S = self.S, None
            spent.release()
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
        return acc.kernel(scale * scale, last=True)
    finally:
        acc.close()
