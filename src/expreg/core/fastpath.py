"""Fused, vectorised exp + partial predictions for one block (docs/theory.md section 2).

The hot loop of a step, for one block of neurons held in cache:

    E = exp(Z)          in place, Z (n, b) = X W_block
    acc += E a_block    (n,)

NumPy's ``exp`` is a separate pass over the block, several times slower
per core than the compiled loop (figures: benchmarks/RESULTS.md, from
``make bench``). With numba installed (the ``fast`` extra),
``_fastkernels`` holds one loop that computes a Cody-Waite range-reduced
polynomial exp (vectorised by LLVM: 8 float32 or 4 float64 lanes) and each
row's sum while the row is in L1, releasing the GIL so that ``ops`` can run
blocks on all cores. It compiles on first use per dtype (seconds) and is
cached on disk by numba for later processes: in ``__pycache__`` beside
``_fastkernels.py``, or, where the installed package is read-only, in
numba's user-wide cache (``~/.cache/numba``; ``NUMBA_CACHE_DIR``
overrides both). A process that finds the cache still pays the import of
numba and the loading of the kernels on their first call; ``warm_up`` pays
it up front (the sweep's worker server calls it once, so that pool workers
forked from it start warm). Without numba, or with ``EXPREG_FASTPATH=0``
in the environment (read once, state in ``reuse.KEPT.compiled``), it falls
back to ``np.exp`` followed by a matrix-vector product; results agree to
rounding.

Accuracy (measured against float64 ``np.exp`` in tests/test_ops.py):
relative error below 2^-22 in float32 and 2^-50 in float64 on the normal
range; exp(x) = inf above the dtype's overflow threshold (88.72 / 709.78)
and NaN in gives NaN out, so overflow detection downstream is unchanged.
Results below about 1e-37 (float32) / 1e-307 (float64) flush to zero.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .reuse import KEPT


def enabled() -> bool:
    """True when the compiled kernels are in use (numba importable, not disabled)."""
    return _get() is not None


def exp_matvec_(Z: np.ndarray, a: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Overwrite Z (n, b) with exp(Z) and add exp(Z) @ a to acc (n,); returns Z.

    All three arrays share one floating dtype; Z is C-contiguous.
    """
    kernels = _get()
    if kernels is not None and Z.dtype.char in "fd" and Z.flags.c_contiguous:
        kernels["exp_matvec"](Z, a, acc)
        return Z
    return numpy_exp_matvec_(Z, a, acc)


def exp_(Z: np.ndarray) -> np.ndarray:
    """exp in place with the compiled kernel (np.exp when unavailable); returns Z."""
    kernels = _get()
    if kernels is not None and Z.dtype.char in "fd" and Z.flags.c_contiguous:
        kernels["exp"](Z.reshape(-1))
        return Z
    return numpy_exp_(Z)


def numpy_exp_matvec_(Z: np.ndarray, a: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """``exp_matvec_`` with NumPy's ``np.exp`` then a matrix-vector product (no numba); returns Z."""
    with np.errstate(over="ignore", invalid="ignore"):
        np.exp(Z, out=Z)
        acc += Z @ a
    return Z


def numpy_exp_(Z: np.ndarray) -> np.ndarray:
    """exp in place with NumPy's ``np.exp``; returns Z."""
    with np.errstate(over="ignore"):
        return np.exp(Z, out=Z)


def torch_exp_matvec_(Z: np.ndarray, a: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """``exp_matvec_`` with ``torch.exp`` on Z's memory (``torch.from_numpy``), then NumPy's product; returns Z."""
    torch_exp_(Z)
    acc += Z @ a
    return Z


def torch_exp_(Z: np.ndarray) -> np.ndarray:
    """exp in place with ``torch.exp`` on Z's own memory (no copy); returns Z."""
    import torch

    torch.from_numpy(Z).exp_()
    return Z


def torch_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """a @ b (2-D, one floating dtype) by PyTorch's GEMM on the arrays' own memory (``torch.from_numpy``: no copy).

    Returns ``out`` (a new array if None). ``out`` may be a strided view (a
    column block of G): torch writes into it in place, or computes
    elsewhere and copies into it.
    """
    import torch

    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    torch.matmul(torch.from_numpy(a), torch.from_numpy(b), out=torch.from_numpy(out))
    return out


def exp_kernels(kernel: str) -> tuple[Callable[..., np.ndarray], Callable[..., np.ndarray]]:
    """(exp_, exp_matvec_) of the exp kernel named ``kernel`` (one of ``tuning.EXP_KERNELS``).

    "fastpath": this module's compiled kernels (NumPy's exp without numba);
    "numpy": ``np.exp``; "torch": ``torch.exp`` in place on the array's memory.
    """
    if kernel == "fastpath":
        return exp_, exp_matvec_
    if kernel == "numpy":
        return numpy_exp_, numpy_exp_matvec_
    if kernel == "torch":
        return torch_exp_, torch_exp_matvec_
    raise ValueError(f"unknown exp kernel {kernel!r}; expected 'fastpath', 'numpy' or 'torch'")


def step_block_(
    out: np.ndarray,
    W: np.ndarray,
    G: np.ndarray,
    lr: float,
    lo: int,
    hi: int,
    W0: np.ndarray | None,
    sq: np.ndarray | None,
) -> bool:
    """Columns lo..hi-1 of the gradient step out = W - lr G (computed as W + G * (-lr) in the arrays' dtype, as
    NumPy's ``out = G; out *= -lr; out += W`` does) and, with W0, sq = the squared column norms of out - W0, in
    one compiled pass; False (nothing done) when the compiled kernels are not in use or the arrays do not suit
    them (then the caller does it with NumPy)."""
    kernels = _get()
    arrays = (out, W, G) if W0 is None else (out, W, G, W0)
    if (
        kernels is None
        or out.dtype.char not in "fd"
        or not all(x.flags.c_contiguous and x.dtype == out.dtype for x in arrays)
    ):
        return False
    neg_lr = out.dtype.type(-lr)
    if W0 is None or sq is None:
        kernels["step"](out, W, G, neg_lr, lo, hi)
    else:
        kernels["step_movement"](out, W, G, neg_lr, lo, hi, W0, sq)
    return True


def scale_step_block_(
    G: np.ndarray,
    sa: np.ndarray,
    lo: int,
    hi: int,
    out: np.ndarray | None = None,
    W: np.ndarray | None = None,
    lr: float = 0.0,
    W0: np.ndarray | None = None,
    sq: np.ndarray | None = None,
) -> bool | None:
    """The tail of the backward pass for columns lo..hi-1 of G, in one compiled pass while the block is in cache.

    G *= sa (column j by sa[j]); with ``out`` and ``W``, also the gradient step out = W - lr G of those columns
    (as ``step_block_`` computes it); with ``W0`` and ``sq`` too, sq = the squared column norms of out - W0.
    Returns whether every scaled entry of G is finite, or None (nothing done) when the compiled kernels are
    not in use or the arrays do not suit them (then the caller does it with NumPy).
    """
    kernels = _get()
    arrays = [G, sa] + [x for x in (out, W, W0) if x is not None]
    if (
        kernels is None
        or G.dtype.char not in "fd"
        or not all(x.flags.c_contiguous and x.dtype == G.dtype for x in arrays)
        or (sq is not None and sq.dtype != G.dtype)
    ):
        return None
    if out is None or W is None:
        return bool(kernels["scale_check"](G, sa, lo, hi))
    neg_lr = G.dtype.type(-lr)
    if W0 is None or sq is None:
        return bool(kernels["scale_check_step"](G, sa, lo, hi, out, W, neg_lr))
    return bool(kernels["scale_check_step_movement"](G, sa, lo, hi, out, W, neg_lr, W0, sq))


def warm_up() -> bool:
    """Load (or compile) the kernels for float32 and float64 now; True when they are in use.

    Calls each kernel once on a tiny array of each dtype, so that the first
    real call pays nothing; a no-op with numba missing or disabled.
    """
    if _get() is None:
        return False
    for dtype in (np.float32, np.float64):
        Z = np.zeros((2, 8), dtype=dtype)
        exp_matvec_(Z, np.ones(8, dtype=dtype), np.zeros(2, dtype=dtype))
        exp_(Z)
        out, sq, ones = np.empty_like(Z), np.empty(8, dtype=dtype), np.ones(8, dtype=dtype)
        scale_step_block_(Z, ones, 0, 8)
        scale_step_block_(Z, ones, 0, 8, out, Z, 0.1)
        scale_step_block_(Z, ones, 0, 8, out, Z, 0.1, Z, sq)
        step_block_(out, Z, Z, 0.1, 0, 8, None, None)
        step_block_(out, Z, Z, 0.1, 0, 8, Z, sq)
    return True


def _get() -> dict[str, Callable[..., Any]] | None:
    """The compiled kernels, or None (numba missing, or EXPREG_FASTPATH=0); state in ``reuse.KEPT.compiled``."""
    state = KEPT.compiled
    if state.kernels is not None and state.disabled is False:  # the hot path: two comparisons
        return state.kernels
    if state.disabled is None:
        state.disabled = os.environ.get("EXPREG_FASTPATH", "1").lower() in ("0", "false", "no", "off")
    if state.disabled:
        return None
    if state.kernels is not None or state.failed is not None:
        return state.kernels
    with state.lock:
        if state.kernels is None and state.failed is None:
            try:
                state.kernels = _compile()
            except ImportError as exc:  # numba missing: the NumPy fallback is used
                state.failed = str(exc)
    return state.kernels


def _compile() -> dict[str, Callable[..., Any]]:
    """Import the numba kernels (compiled on first call per dtype, cached on disk)."""
    from . import _fastkernels as k  # ImportError without numba -> fallback

    return {
        "exp_matvec": k.exp_matvec,
        "exp": k.exp_flat,
        "step_movement": k.step_movement,
        "step": k.step_only,
        "scale_check": k.scale_check,
        "scale_check_step": k.scale_check_step,
        "scale_check_step_movement": k.scale_check_step_movement,
    }
