"""numba kernels of ``fastpath`` (imported only when numba is installed).

Module-level functions, so numba's on-disk cache (``cache=True``) spares
later processes the compilation (about 2 s). See ``fastpath`` for the
accuracy of the exponential and the fallback.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

# Reassociation lets LLVM vectorise the row sum; no 'nnan'/'ninf', so
# inf and NaN keep their meaning (overflow detection relies on them).
FM = {"nsz", "arcp", "contract", "afn", "reassoc"}
# The exp itself must not be reassociated (Cody-Waite needs its order).
FE = {"contract"}
f32, f64, i32, i64 = np.float32, np.float64, np.int32, np.int64


def _bitcast(src: Any, dst: Any, dst_ir: Any) -> Any:
    @intrinsic
    def cast(typingctx: Any, x: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            return builder.bitcast(args[0], dst_ir)

        return dst(src), codegen

    return cast


_bits_f32 = _bitcast(types.int32, types.float32, ir.FloatType())
_bits_f64 = _bitcast(types.int64, types.float64, ir.DoubleType())
_int_of_f32 = _bitcast(types.float32, types.int32, ir.IntType(32))
_int_of_f64 = _bitcast(types.float64, types.int64, ir.IntType(64))


@njit(inline="always", fastmath=FE)
def exp32(x: float) -> float:
    # exp(x) = 2^k exp(f), |f| <= ln2/2; Cephes expf polynomial (~1 ulp).
    # k = round(x / ln2) by the 1.5 * 2^23 trick: k sits in t's low bits
    # (no float -> int conversion). Out-of-range x give garbage here,
    # replaced by the selects below.
    t = x * f32(1.44269504088896341) + f32(12582912.0)
    kf = t - f32(12582912.0)
    f = x - kf * f32(0.693359375)
    f = f - kf * f32(-2.12194440e-4)
    # Coefficients doubled so that 2^k needs no extra multiply (bias 126, not 127).
    p = f32(2 * 1.9875691500e-4)
    p = p * f + f32(2 * 1.3981999507e-3)
    p = p * f + f32(2 * 8.3334519073e-3)
    p = p * f + f32(2 * 4.1665795894e-2)
    p = p * f + f32(2 * 1.6666665459e-1)
    p = p * f + f32(2 * 5.0000001201e-1)
    p = p * (f * f) + (f * f32(2.0) + f32(2.0))
    r = p * _bits_f32((_int_of_f32(t) - i32(0x4B400000 - 126)) << i32(23))
    # NaN needs no select: it propagates through t, p and r, and fails both tests.
    r = f32(np.inf) if x > f32(88.72283905206835) else r
    return f32(0.0) if x < f32(-86.0) else r


@njit(inline="always", fastmath=FE)
def exp64(x: float) -> float:
    # exp(x) = 2^k exp(f), |f| <= ln2/2; degree-12 Taylor (error < 2e-16).
    t = x * f64(1.4426950408889634) + f64(6755399441055744.0)  # 1.5 * 2^52
    kf = t - f64(6755399441055744.0)
    f = x - kf * f64(6.93147180369123816490e-01)
    f = f - kf * f64(1.90821492927058770002e-10)
    p = f64(2.0 / 479001600.0)
    p = p * f + f64(2.0 / 39916800.0)
    p = p * f + f64(2.0 / 3628800.0)
    p = p * f + f64(2.0 / 362880.0)
    p = p * f + f64(2.0 / 40320.0)
    p = p * f + f64(2.0 / 5040.0)
    p = p * f + f64(2.0 / 720.0)
    p = p * f + f64(2.0 / 120.0)
    p = p * f + f64(2.0 / 24.0)
    p = p * f + f64(2.0 / 6.0)
    p = p * f + f64(1.0)
    p = p * (f * f) + (f * f64(2.0) + f64(2.0))
    r = p * _bits_f64((_int_of_f64(t) - i64(0x4338000000000000 - 1022)) << i64(52))
    r = f64(np.inf) if x > f64(709.782712893384) else r
    return f64(0.0) if x < f64(-707.0) else r


def expf(x):  # pragma: no cover - numba compares signatures: no annotations
    """exp of one float32 or float64, dispatched on the type in compiled code."""
    raise NotImplementedError


@overload(expf, inline="always")
def _expf(x):  # no annotations: numba compares them with the lambdas
    if x == types.float32:
        return lambda x: exp32(x)
    if x == types.float64:
        return lambda x: exp64(x)
    return None


@njit(fastmath=FE, cache=True)
def exp_row(z: np.ndarray) -> None:
    """z <- exp(z) in place, z 1-D contiguous."""
    for j in range(z.shape[0]):
        z[j] = expf(z[j])


@njit(fastmath=FM, cache=True)
def dot(z: np.ndarray, a: np.ndarray) -> Any:
    """sum_j z[j] a[j] (reassociated: vectorised)."""
    s = z.dtype.type(0.0)
    for j in range(z.shape[0]):
        s += z[j] * a[j]
    return s


@njit(nogil=True, cache=True)
def exp_matvec(Z: np.ndarray, a: np.ndarray, acc: np.ndarray) -> None:
    """Z <- exp(Z), acc += Z @ a, row by row (each row stays in L1)."""
    for i in range(Z.shape[0]):
        row = Z[i]
        exp_row(row)
        acc[i] += dot(row, a)


@njit(nogil=True, cache=True)
def exp_flat(z: np.ndarray) -> None:
    """z <- exp(z) for a 1-D contiguous array, releasing the GIL."""
    exp_row(z)


# The step kernels walk each row of a block as 1-D slices: with few arrays per loop LLVM vectorises it (its
# run-time overlap checks stay within bounds), about 10x faster than indexing the 2-D arrays inside the loop.
# No fastmath: each element is the IEEE operation NumPy does, so the weights are the same to the bit.


@njit(nogil=True, cache=True)
def step_movement(
    out: np.ndarray, W: np.ndarray, G: np.ndarray, neg_lr: Any, lo: int, hi: int, W0: np.ndarray, sq: np.ndarray
) -> None:
    """Columns lo..hi-1: out = W + G * neg_lr (IEEE, no contraction), sq[j - lo] = sum_i (out - W0)_ij^2.

    One pass over the block (W, G, W0 read once, out written once); all (d, m) arrays C-contiguous, sq (hi - lo,).
    """
    q = sq[: hi - lo]
    q[:] = 0.0
    for i in range(out.shape[0]):
        o, w, g, w0 = out[i, lo:hi], W[i, lo:hi], G[i, lo:hi], W0[i, lo:hi]
        for j in range(hi - lo):
            v = w[j] + g[j] * neg_lr
            o[j] = v
            t = v - w0[j]
            q[j] += t * t


@njit(nogil=True, cache=True)
def step_only(out: np.ndarray, W: np.ndarray, G: np.ndarray, neg_lr: Any, lo: int, hi: int) -> None:
    """Columns lo..hi-1: out = W + G * neg_lr, one pass."""
    for i in range(out.shape[0]):
        o, w, g = out[i, lo:hi], W[i, lo:hi], G[i, lo:hi]
        for j in range(hi - lo):
            o[j] = w[j] + g[j] * neg_lr


@njit(nogil=True, cache=True)
def scale_check(G: np.ndarray, sa: np.ndarray, lo: int, hi: int) -> bool:
    """Columns lo..hi-1: G *= sa (column j by sa[j], in G's dtype); True when every scaled entry is finite.

    One pass over the block, meant for right after the backward GEMM wrote it (in cache). v - v is 0 for a
    finite v and NaN for inf or NaN; or-ing the NaN tests is a reduction LLVM vectorises.
    """
    bad = False
    s = sa[lo:hi]
    for i in range(G.shape[0]):
        g = G[i, lo:hi]
        for j in range(hi - lo):
            v = g[j] * s[j]
            g[j] = v
            x = v - v
            bad |= x != x
    return not bad


@njit(nogil=True, cache=True)
def scale_check_step(
    G: np.ndarray, sa: np.ndarray, lo: int, hi: int, out: np.ndarray, W: np.ndarray, neg_lr: Any
) -> bool:
    """``scale_check`` and, in the same pass, out = W + G * neg_lr on the scaled columns (``step_only``)."""
    bad = False
    s = sa[lo:hi]
    for i in range(G.shape[0]):
        g, w, o = G[i, lo:hi], W[i, lo:hi], out[i, lo:hi]
        for j in range(hi - lo):
            v = g[j] * s[j]
            g[j] = v
            x = v - v
            bad |= x != x
            o[j] = w[j] + v * neg_lr
    return not bad


@njit(nogil=True, cache=True)
def scale_check_step_movement(
    G: np.ndarray,
    sa: np.ndarray,
    lo: int,
    hi: int,
    out: np.ndarray,
    W: np.ndarray,
    neg_lr: Any,
    W0: np.ndarray,
    sq: np.ndarray,
) -> bool:
    """``scale_check_step`` and sq[j - lo] = sum_i (out - W0)_ij^2 (``step_movement``), one pass."""
    bad = False
    s = sa[lo:hi]
    q = sq[: hi - lo]
    q[:] = 0.0
    for i in range(G.shape[0]):
        g, w, o, w0 = G[i, lo:hi], W[i, lo:hi], out[i, lo:hi], W0[i, lo:hi]
        for j in range(hi - lo):
            v = g[j] * s[j]
            g[j] = v
            x = v - v
            bad |= x != x
            ov = w[j] + v * neg_lr
            o[j] = ov
            t = ov - w0[j]
            q[j] += t * t
    return not bad
