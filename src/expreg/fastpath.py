"""Fused, vectorised exp + partial predictions for one block (MATH.md 2).

The hot loop of a step, for one block of neurons held in cache:

    E = exp(Z)          in place, Z (n, b) = X W_block
    acc += E a_block    (n,)

NumPy's ``exp`` is a separate pass at about 0.4-0.6 G exp/s per core in
float32 and 0.2 in float64 on AVX2 machines. With numba installed (the
``fast`` extra), this module compiles one loop that computes a
Cody-Waite range-reduced polynomial exp (vectorised by LLVM: 8 float32 or
4 float64 lanes) and the row sums in the same pass, releasing the GIL so
that ``ops`` can run blocks on all cores. Without numba, or with
``EXPREG_FASTPATH=0`` in the environment, it falls back to ``np.exp``
followed by a matrix-vector product; results agree to rounding.

Accuracy (measured against float64 ``np.exp`` in tests/test_ops.py):
relative error below 2^-22 in float32 and 2^-50 in float64 on the normal
range; exp(x) = inf above the dtype's overflow threshold (88.72 / 709.78)
and NaN in gives NaN out, so overflow detection downstream is unchanged.
Results below about 1e-37 (float32) / 1e-307 (float64) flush to zero.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

import numpy as np

_lock = threading.Lock()
_kernels: dict[str, Callable[..., None]] | None = None
_failed: str | None = None


def enabled() -> bool:
    """True when the compiled kernels are in use (numba importable, not disabled)."""
    return _get() is not None


def exp_matvec_(Z: np.ndarray, a: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Overwrite Z (n, b) with exp(Z) and add exp(Z) @ a to acc (n,); returns Z.

    All three arrays share one floating dtype; Z is C-contiguous.
    """
    kernels = _get()
    if kernels is None or not Z.flags.c_contiguous or Z.dtype not in (np.float32, np.float64):
        with np.errstate(over="ignore", invalid="ignore"):
            np.exp(Z, out=Z)
            acc += Z @ a
        return Z
    kernels[Z.dtype.name](Z, a, acc)
    return Z


def exp_(Z: np.ndarray) -> np.ndarray:
    """exp in place with the compiled kernel (np.exp when unavailable); returns Z."""
    kernels = _get()
    if kernels is None or not Z.flags.c_contiguous or Z.dtype not in (np.float32, np.float64):
        with np.errstate(over="ignore"):
            return np.exp(Z, out=Z)
    kernels["exp_" + Z.dtype.name](Z.reshape(-1))
    return Z


def _get() -> dict[str, Callable[..., None]] | None:
    global _kernels, _failed
    if os.environ.get("EXPREG_FASTPATH", "1") in ("0", "false", "no", "off"):
        return None
    if _kernels is not None or _failed is not None:
        return _kernels
    with _lock:
        if _kernels is None and _failed is None:
            try:
                _kernels = _compile()
            except ImportError as exc:  # numba missing: the NumPy fallback is used
                _failed = str(exc)
    return _kernels


def _compile() -> dict[str, Callable[..., None]]:
    """Build the numba kernels (compiled once per process, cached on disk)."""
    import numba  # noqa: F401  (ImportError -> fallback)
    from llvmlite import ir
    from numba import njit, types
    from numba.extending import intrinsic

    @intrinsic
    def _bits_f32(typingctx: Any, x: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            return builder.bitcast(args[0], ir.FloatType())

        return types.float32(types.int32), codegen

    @intrinsic
    def _bits_f64(typingctx: Any, x: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            return builder.bitcast(args[0], ir.DoubleType())

        return types.float64(types.int64), codegen

    @intrinsic
    def _int_of_f32(typingctx: Any, x: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            return builder.bitcast(args[0], ir.IntType(32))

        return types.int32(types.float32), codegen

    @intrinsic
    def _int_of_f64(typingctx: Any, x: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            return builder.bitcast(args[0], ir.IntType(64))

        return types.int64(types.float64), codegen

    # Reassociation lets LLVM vectorise the row sum; no 'nnan'/'ninf', so
    # inf and NaN keep their meaning (overflow detection relies on them).
    fm = {"nsz", "arcp", "contract", "afn", "reassoc"}
    # The exp itself must not be reassociated (Cody-Waite needs its order).
    fe = {"contract"}
    f32, f64, i32, i64 = np.float32, np.float64, np.int32, np.int64
    nan32, nan64 = f32(np.nan), f64(np.nan)

    @njit(inline="always", fastmath=fe)
    def exp32(x: float) -> float:
        # exp(x) = 2^k exp(f), |f| <= ln2/2; Cephes expf polynomial (~1 ulp).
        # k = round(x / ln2) by the 1.5 * 2^23 trick: k sits in t's low bits
        # (no float -> int conversion). Out-of-range x give garbage here,
        # replaced by the selects below.
        t = x * f32(1.44269504088896341) + f32(12582912.0)
        kf = t - f32(12582912.0)
        f = x - kf * f32(0.693359375)
        f = f - kf * f32(-2.12194440e-4)
        p = f32(1.9875691500e-4)
        p = p * f + f32(1.3981999507e-3)
        p = p * f + f32(8.3334519073e-3)
        p = p * f + f32(4.1665795894e-2)
        p = p * f + f32(1.6666665459e-1)
        p = p * f + f32(5.0000001201e-1)
        p = p * (f * f) + f + f32(1.0)
        scale = _bits_f32((_int_of_f32(t) - i32(0x4B400000 - 126)) << i32(23))
        r = p * scale * f32(2.0)
        r = f32(np.inf) if x > f32(88.72283905206835) else r
        r = f32(0.0) if x < f32(-86.0) else r
        return nan32 if x != x else r

    @njit(inline="always", fastmath=fe)
    def exp64(x: float) -> float:
        # exp(x) = 2^k exp(f), |f| <= ln2/2; degree-12 Taylor (error < 2e-16).
        t = x * f64(1.4426950408889634) + f64(6755399441055744.0)  # 1.5 * 2^52
        kf = t - f64(6755399441055744.0)
        f = x - kf * f64(6.93147180369123816490e-01)
        f = f - kf * f64(1.90821492927058770002e-10)
        p = f64(1.0 / 479001600.0)
        p = p * f + f64(1.0 / 39916800.0)
        p = p * f + f64(1.0 / 3628800.0)
        p = p * f + f64(1.0 / 362880.0)
        p = p * f + f64(1.0 / 40320.0)
        p = p * f + f64(1.0 / 5040.0)
        p = p * f + f64(1.0 / 720.0)
        p = p * f + f64(1.0 / 120.0)
        p = p * f + f64(1.0 / 24.0)
        p = p * f + f64(1.0 / 6.0)
        p = p * f + f64(0.5)
        p = p * (f * f) + f + f64(1.0)
        scale = _bits_f64((_int_of_f64(t) - i64(0x4338000000000000 - 1022)) << i64(52))
        r = p * scale * f64(2.0)
        r = f64(np.inf) if x > f64(709.782712893384) else r
        r = f64(0.0) if x < f64(-707.0) else r
        return nan64 if x != x else r

    def make(expf: Callable[[float], float], zero: Any) -> tuple[Callable[..., None], Callable[..., None]]:
        @njit(fastmath=fe)
        def exp_row(z: np.ndarray) -> None:
            for j in range(z.shape[0]):
                z[j] = expf(z[j])

        @njit(fastmath=fm)
        def dot(z: np.ndarray, a: np.ndarray) -> Any:
            s = zero
            for j in range(z.shape[0]):
                s += z[j] * a[j]
            return s

        @njit(nogil=True)
        def exp_matvec(Z: np.ndarray, a: np.ndarray, acc: np.ndarray) -> None:
            for i in range(Z.shape[0]):
                row = Z[i]
                exp_row(row)
                acc[i] += dot(row, a)

        @njit(nogil=True)
        def exp_flat(z: np.ndarray) -> None:
            exp_row(z)

        return exp_matvec, exp_flat

    k32, e32 = make(exp32, f32(0.0))
    k64, e64 = make(exp64, f64(0.0))
    return {"float32": k32, "float64": k64, "exp_float32": e32, "exp_float64": e64}
