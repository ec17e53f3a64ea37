"""BLAS calls that release the GIL: the symmetric rank-k update of the Gram sums (``gram``).

SciPy's Python wrappers of BLAS (``scipy.linalg.blas``) hold the GIL for
the whole call, so two threads updating two Gram parts with them run one
after the other; NumPy's ``D @ D.T`` releases it but fills both triangles
into a fresh product (a copy and an n^2 add per update). This module calls
the same BLAS routine SciPy ships, through the C entry points of
``scipy.linalg.cython_blas`` and ``ctypes`` (which drops the GIL during a
foreign call), so that every worker thread runs its own one-thread syrk
into its own accumulator at the same time:

    S <- S + D D^T   on and below the diagonal of S (``?syrk``, uplo = L)

S is (n, n) Fortran-ordered; D (n, k) C-contiguous, read as the Fortran
(k, n) matrix D^T without a copy (trans = T). n^2 k flops, half a GEMM's.

Importing this module loads SciPy's BLAS library, so a thread-pool limit
set up afterwards (``threads.blas_single_thread``) sees it and keeps it to
one thread inside the workers.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
import scipy.linalg.cython_blas as _cython_blas

__all__ = ["syrk_lower_"]

_INT = ctypes.POINTER(ctypes.c_int)


def _entry(name: str, real: Any) -> Any:
    """The C function ``name`` of scipy.linalg.cython_blas as a ctypes function (Fortran convention: all by pointer)."""
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype = ctypes.c_char_p
    api.PyCapsule_GetName.argtypes = [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    capsule = _cython_blas.__pyx_capi__[name]
    address = api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule))
    ptr = ctypes.POINTER(real)
    # uplo, trans, n, k, alpha, A, lda, beta, C, ldc
    signature = ctypes.CFUNCTYPE(
        None, ctypes.c_char_p, ctypes.c_char_p, _INT, _INT, ptr, ctypes.c_void_p, _INT, ptr, ctypes.c_void_p, _INT
    )
    return signature(address), real


_SYRK = {
    np.dtype(np.float32): _entry("ssyrk", ctypes.c_float),
    np.dtype(np.float64): _entry("dsyrk", ctypes.c_double),
}


def syrk_lower_(S: np.ndarray, D: np.ndarray) -> None:
    """S += D D^T on and below the diagonal, in place, without holding the GIL (above the diagonal: untouched).

    Parameters
    ----------
    S : ndarray (n, n), Fortran-ordered, float32 or float64
    D : ndarray (n, k), C-contiguous, S's dtype

    Raises
    ------
    ValueError
        If the dtypes, shapes or memory orders do not match (BLAS would read
        or write outside the arrays).
    """
    n, k = D.shape
    if S.shape != (n, n) or S.dtype != D.dtype or D.dtype not in _SYRK:
        raise ValueError(
            f"syrk_lower_ needs S (n, n) and D (n, k) of one dtype, float32 or float64; "
            f"got S {S.shape} {S.dtype}, D {D.shape} {D.dtype}"
        )
    if not (S.flags.f_contiguous and S.flags.writeable and D.flags.c_contiguous):
        raise ValueError("syrk_lower_ needs a writeable Fortran-ordered S and a C-contiguous D")
    if n == 0 or k == 0:
        return
    syrk, real = _SYRK[D.dtype]
    nn, kk, one = ctypes.c_int(n), ctypes.c_int(k), real(1.0)
    syrk(b"L", b"T", nn, kk, one, D.ctypes.data, kk, one, S.ctypes.data, nn)
