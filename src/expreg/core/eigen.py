"""Extreme eigenvalues of symmetric n x n matrices, by the cheapest accurate method (docs/theory.md sections 3-4).

The criteria of the theory need three numbers of a symmetric matrix: its
largest and smallest eigenvalues and its spectral norm. Each is computed by

- ``"dense"``: LAPACK (``scipy.linalg.eigvalsh``): a tridiagonal reduction,
  4/3 n^3 flops, half of them in memory-bound BLAS-2; exact to rounding;
- ``"iterative"``: Lanczos (ARPACK, ``scipy.sparse.linalg.eigsh``) on
  matrix-vector products, O(n^2) each: the spectral norm as the eigenvalue
  of largest magnitude (one run), lambda_max as the largest algebraic one,
  and lambda_min in shift-invert mode about a shift certified below the
  spectrum by a Cholesky factorisation (n^3 / 3 flops once, at BLAS-3 speed;
  each Lanczos step is one solve with the factor), so it converges in a few
  steps even when the small eigenvalues cluster (a singular kernel), where
  plain Lanczos from the bottom takes thousands and can settle on a wrong one
  (lambda_min of an indefinite matrix, whose shifted factorisation fails all
  the way down, comes from the dense solver);
- ``"auto"``: dense up to ``DENSE_LIMIT`` rows, iterative above
  (thresholds measured, see benchmarks/RESULTS.md).

Iterative results agree with the dense ones to a relative 1e-10 of the
spectral norm (``tol``); when ARPACK does not converge, or the shifted matrix
has no Cholesky factor, the dense method answers instead.

Up to ``SINGLE_THREAD_LIMIT`` rows the solvers run with BLAS on one thread
(threadpoolctl, when installed): their many small BLAS calls gain nothing
from threads, and on a machine whose cores are busy OpenBLAS's threads wait
on each other (several times slower on two shared cores: benchmarks/RESULTS.md).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse.linalg

from .backends import Backend
from .choices import unknown_choice
from .validation import check_square

#: Up to this many rows, "auto" uses the dense LAPACK solver.
DENSE_LIMIT = 256
#: Up to this many rows, the solvers run with BLAS on one thread.
SINGLE_THREAD_LIMIT = 8192
#: Relative tolerance of the Lanczos runs (ARPACK's ``tol``).
TOL = 1e-10
METHODS = ("auto", "dense", "iterative")


def _threads(n: int) -> AbstractContextManager[Any]:
    """BLAS on one thread for n <= ``SINGLE_THREAD_LIMIT`` (a no-op above, or without threadpoolctl)."""
    from .backends import blas_single_thread

    limiter = blas_single_thread() if n <= SINGLE_THREAD_LIMIT else None
    return limiter if limiter is not None else nullcontext()


def _method(method: str, n: int) -> str:
    if method not in METHODS:
        raise unknown_choice("method", method, METHODS)
    if method == "auto":
        method = "dense" if n <= DENSE_LIMIT else "iterative"
    return "dense" if n < 3 else method  # ARPACK needs k < n - 1


def _eigsh(A: np.ndarray, **kw: Any) -> float | None:
    """One eigenvalue from ARPACK, or None when it does not converge."""
    try:
        return float(
            scipy.sparse.linalg.eigsh(A, k=1, return_eigenvectors=False, tol=TOL, maxiter=20 * A.shape[0], **kw)[0]
        )
    except scipy.sparse.linalg.ArpackNoConvergence:
        return None


def _lambda_min_shift_invert(A: np.ndarray) -> float | None:
    """lambda_min by Lanczos on (A - sigma I)^{-1}, sigma below the spectrum (Cholesky solves).

    A Cholesky factor of A - sigma I exists (in floating point) only when every
    eigenvalue of A lies above sigma, up to n eps ||A||: its success certifies
    the shift, and the largest eigenvalue mu of the inverse gives
    lambda_min = sigma + 1 / mu. The shift starts at -1e-9 ||A||_F (a positive
    semi-definite kernel) and moves down tenfold while the factorisation
    fails (a kernel accumulated in float32 is indefinite at the level of its
    rounding, about 1e-7 ||A||); below -1e-2 ||A||_F, or when ARPACK does not
    converge, returns None (the caller then uses the dense solver). Never
    Lanczos from the bottom: on the cluster of zero eigenvalues of a singular
    kernel it takes thousands of steps and can settle on a wrong one.
    """
    n = A.shape[0]
    scale = float(np.linalg.norm(A))
    if scale == 0:
        return 0.0
    for k in range(8):
        sigma = -(10.0**k) * 1e-9 * scale
        try:
            factor = scipy.linalg.cho_factor(A - sigma * np.eye(n), lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            continue
        op = scipy.sparse.linalg.LinearOperator(
            (n, n), matvec=lambda v, f=factor: scipy.linalg.cho_solve(f, v, check_finite=False), dtype=np.float64
        )
        # ARPACK's tol is relative to mu, so lambda - sigma = 1/mu is known to (lambda - sigma) * tol:
        # a loose tol suffices when lambda_min is near the shift (where the small eigenvalues
        # cluster and a tight one costs hundreds of steps); tightened only when it is not.
        tol, target = 1e-3, TOL * scale
        while True:
            try:
                mu = scipy.sparse.linalg.eigsh(op, k=1, which="LA", return_eigenvectors=False, tol=tol, maxiter=20 * n)[
                    0
                ]
            except scipy.sparse.linalg.ArpackNoConvergence:
                return None
            gap = 1.0 / float(mu)
            if gap * tol <= target or tol <= 1e-14:
                return sigma + gap
            tol = max(1e-14, target / gap / 10)
    return None


def _dense(A: np.ndarray) -> tuple[float, float]:
    w = scipy.linalg.eigvalsh(A, check_finite=False)
    return float(w[0]), float(w[-1])


# The solvers proper: A is a checked float64 square matrix (``validation.check_square``).
def _extreme_eigenvalues(A: np.ndarray, *, method: str) -> tuple[float, float]:
    if _method(method, A.shape[0]) == "dense":
        return _dense(A)
    lo = _lambda_min_shift_invert(A)
    hi = _eigsh(A, which="LA")
    if lo is None or hi is None:
        return _dense(A)
    return lo, hi


def _lambda_min(A: np.ndarray, *, method: str) -> float:
    if _method(method, A.shape[0]) == "dense":
        return _dense(A)[0]
    lo = _lambda_min_shift_invert(A)
    return lo if lo is not None else _dense(A)[0]


def _lambda_max(A: np.ndarray, *, method: str) -> float:
    if _method(method, A.shape[0]) == "dense":
        return _dense(A)[1]
    hi = _eigsh(A, which="LA")
    return hi if hi is not None else _dense(A)[1]


def _operator_norm(A: np.ndarray, *, method: str) -> float:
    if _method(method, A.shape[0]) != "dense":
        v = _eigsh(A, which="LM")
        if v is not None:
            return abs(v)
    lo, hi = _dense(A)
    return max(abs(lo), abs(hi))


def extreme_eigenvalues(H: Any, *, method: str = "auto") -> tuple[float, float]:
    """(lambda_min, lambda_max) of a symmetric matrix H (n x n).

    ``method``: "dense", "iterative" (Lanczos; lambda_min by shift-invert when
    H is positive semi-definite) or "auto" (dense up to ``DENSE_LIMIT`` rows).
    """
    A = check_square(H)
    with _threads(A.shape[0]):
        return _extreme_eigenvalues(A, method=method)


def lambda_min(H: Any, *, method: str = "auto") -> float:
    """Smallest eigenvalue of a symmetric matrix (lambda of docs/theory.md section 3 when H = H^cts)."""
    A = check_square(H)
    with _threads(A.shape[0]):
        return _lambda_min(A, method=method)


def lambda_max(H: Any, *, method: str = "auto") -> float:
    """Largest eigenvalue of a symmetric matrix."""
    A = check_square(H)
    with _threads(A.shape[0]):
        return _lambda_max(A, method=method)


def operator_norm(A: Any, *, method: str = "auto") -> float:
    """Spectral norm ||A||_2 = the largest absolute eigenvalue of a symmetric matrix (one Lanczos run from the top)."""
    M = check_square(A, "A")
    with _threads(M.shape[0]):
        return _operator_norm(M, method=method)


def lazy_criteria(
    Hdis: Any, H_cts: Any, lam: float, *, method: str = "auto", backend: Backend | None = None
) -> tuple[float, float]:
    """The two numbers of the lazy regime (docs/theory.md section 4): (||H^dis - H^cts||_2, lambda_min(H^dis)).

    Parameters
    ----------
    Hdis, H_cts : arrays (n, n)
        The finite-width kernel H^dis (e.g. from ``scan.nested_gram``) and the
        closed form H^cts (``kernels.ntk``).
    lam : float
        lambda = lambda_min(H^cts) (> 0): the scale the criteria compare with
        (deviation <= lam / 2, lambda_min(H^dis) >= lam / 2); refused if not
        positive and finite.
    method : {"auto", "dense", "iterative"}
        For NumPy inputs (``backend`` None).
    backend : Backend, optional
        Hdis and H_cts are float64 arrays of this backend (``nested_gram(...,
        on_device=True)``): both numbers come from dense eigenvalues computed
        where the arrays live (``Backend.eigvalsh``: cuSOLVER on a GPU), and
        only 2n numbers reach the host.

    Returns
    -------
    deviation_op : float
        Spectral norm of H^dis - H^cts.
    lambda_min_Hdis : float
        Smallest eigenvalue of H^dis.
    """
    if not (np.isfinite(lam) and lam > 0):
        raise ValueError(f"lam = lambda_min(H^cts) must be positive and finite, got {lam!r}")
    if backend is not None:
        return _lazy_criteria_on(backend, Hdis, H_cts)
    A = check_square(Hdis, "Hdis")
    B = check_square(H_cts, "H_cts")
    if A.shape != B.shape:
        raise ValueError(
            f"Hdis has shape {A.shape} but H_cts has shape {B.shape}; they must be kernels of the same points"
        )
    with _threads(A.shape[0]):
        return _operator_norm(A - B, method=method), _lambda_min(A, method=method)


def _lazy_criteria_on(backend: Backend, Hdis: Any, H_cts: Any) -> tuple[float, float]:
    """``lazy_criteria`` of two float64 arrays of ``backend``, by its dense eigensolver."""
    shape, other = tuple(Hdis.shape), tuple(H_cts.shape)
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] == 0 or shape != other:
        raise ValueError(f"Hdis {shape} and H_cts {other} must be non-empty square kernels of the same points")
    if not (backend.all_finite(Hdis) and backend.all_finite(H_cts)):
        raise ValueError("Hdis or H_cts contains NaN or inf; its eigenvalues are undefined")
    w = backend.eigvalsh(Hdis - H_cts)
    return max(abs(float(w[0])), abs(float(w[-1]))), float(backend.eigvalsh(Hdis)[0])
