"""Array backends: the one place that knows NumPy from PyTorch.

The maths (``ops``, ``kernels``) is written once against the small
``Backend`` interface below; a backend differs only in the array library,
never in the formulas (STYLE.md, habit 3).

Public specification of dtypes is always a NumPy dtype (``numpy.float32``
or ``numpy.float64``); each backend maps it to its own.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from functools import cache
from typing import Any

import numpy as np

from .choices import DType, Registry, unknown_choice
from .errors import overflow_checked
from .reuse import KeptForReuse

Array = Any  # numpy.ndarray or torch.Tensor

SUPPORTED_DTYPES = tuple(np.dtype(name) for name in DType.values())


def canonical_dtype(dtype: Any) -> np.dtype:
    """Return ``dtype`` as a supported NumPy floating dtype or raise TypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise unknown_choice("dtype", dtype, DType.values(), TypeError) from None
    if dt not in SUPPORTED_DTYPES:
        raise unknown_choice("dtype", str(dt), DType.values(), TypeError)
    return dt


class Backend:
    """Operations the numerical core needs, over one array library.

    Attributes
    ----------
    name : str
        ``"numpy"`` or ``"torch"``.
    device : str
        ``"cpu"`` for NumPy; any torch device string for PyTorch.
    """

    name: str = "abstract"
    device: str = "cpu"
    #: Worker threads ``parallel`` may use (1: the calling thread only).
    threads: int = 1
    #: Default bytes of one block of activations (see ``ops.plan_blocks``).
    block_bytes: int = 4 * 2**20

    # construction and conversion
    def asarray(self, x: Any, dtype: np.dtype) -> Array:  # pragma: no cover - interface
        raise NotImplementedError

    def to_numpy(self, x: Array) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> Array:  # pragma: no cover
        raise NotImplementedError

    def zeros(self, shape: tuple[int, ...], dtype: np.dtype) -> Array:  # pragma: no cover
        raise NotImplementedError

    # arithmetic
    def matmul(self, a: Array, b: Array, out: Array | None = None) -> Array:  # pragma: no cover
        raise NotImplementedError

    def exp_(self, x: Array) -> Array:  # pragma: no cover
        """exp in place; returns ``x``."""
        raise NotImplementedError

    def relu_(self, x: Array) -> Array:  # pragma: no cover
        """max(x, 0) in place; returns ``x``."""
        raise NotImplementedError

    def positive(self, x: Array) -> Array:  # pragma: no cover
        """1[x > 0] in the dtype of ``x`` (a new array)."""
        raise NotImplementedError

    def all_finite(self, x: Array) -> bool:  # pragma: no cover
        """Whether every entry of ``x`` is finite (reads one flag back to the host)."""
        raise NotImplementedError

    def isfinite_all(self, x: Array) -> Array:  # pragma: no cover
        """A 0-d boolean array on the device: every entry of ``x`` is finite (no host read)."""
        raise NotImplementedError

    def to_bools(self, flags: list[Array]) -> list[bool]:  # pragma: no cover
        """The 0-d flags of ``isfinite_all`` as Python bools, in one read from the device."""
        raise NotImplementedError

    def device_memory(self) -> int | None:
        """Bytes of device memory this process may use (free plus what it holds), None for host memory."""
        return None

    def column_norms(self, x: Array) -> Array:  # pragma: no cover
        """Euclidean norm of each column of a 2-D array."""
        raise NotImplementedError

    def copy(self, x: Array) -> Array:  # pragma: no cover
        raise NotImplementedError

    def dtype_of(self, x: Array) -> np.dtype:  # pragma: no cover
        """The dtype of an array of this backend, as a NumPy dtype."""
        raise NotImplementedError

    def matmul_out_ok(self, out: Array) -> bool:
        """Whether ``matmul(..., out=out)`` writes the 2-D view ``out`` in place (else: compute, then copy)."""
        return False

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on CPU)."""

    # blocked passes (``ops``): generic versions, overridden where faster
    def exp_matvec_(self, Z: Array, a: Array, acc: Array) -> Array:
        """Z <- exp(Z) in place and acc += Z @ a; returns Z. Z (n, b), a (b,), acc (n,)."""
        self.exp_(Z)
        acc += self.matmul(Z, a)
        return Z

    # Gram accumulation (``ops.GramAccumulator``): S = sum of D D^T over blocks D (n, k)
    def row_panels(self, n: int) -> list[tuple[int, int]]:
        """Row ranges that split the features sigma'(X W_block) of one Gram block into tasks for ``parallel``."""
        return [(0, n)]

    def gram_state(self, n: int, dtype: np.dtype) -> Any:
        """A zero accumulator for S (n x n); only ``rank_update_``, ``gram_parts`` and ``gram_lower`` read it."""
        return self.zeros((n, n), dtype)

    def gram_parts(self, state: Any) -> int:
        """How many separate sums ``state`` keeps (``ops.GramAccumulator``).

        1: every block goes into one sum, its features computed by row panels
        on the backend's threads and its rank update on BLAS's threads. P > 1:
        the neurons of each ``add`` are split into P fixed contiguous parts,
        each accumulated into its own sum by one thread with one-thread BLAS,
        the sums added in part order when the kernel is read (so the thread
        count never changes the result).
        """
        return 1

    def rank_update_(self, state: Any, D: Array, part: int = 0) -> None:
        """Sum ``part`` of state += D D^T (at least on and below the diagonal). D (n, k)."""
        state += self.matmul(D, D.T)

    def gram_lower(self, state: Any) -> np.ndarray:
        """The lower triangle of S (diagonal included, zeros above) as a NumPy float64 (n, n) array."""
        return np.tril(self.to_numpy(state)).astype(np.float64, copy=False)

    def gram_release(self, state: Any) -> None:
        """``state`` will not be read again (``GramAccumulator.close``): a backend may keep it for the next one."""

    def eigvalsh(self, A: Array) -> np.ndarray:
        """Every eigenvalue of the symmetric matrix A (n, n), ascending, as a NumPy float64 array.

        Computed where A lives, in A's dtype: LAPACK (``scipy.linalg.eigvalsh``)
        on the host; a device backend uses its own solver (cuSOLVER on a GPU),
        so that only n numbers cross to the host.
        """
        import scipy.linalg

        return np.asarray(scipy.linalg.eigvalsh(self.to_numpy(A), check_finite=False), dtype=np.float64)

    def gram_outer(self, X: Array) -> Any:
        """X X^T in float64 (n, n), exactly symmetric, where ``gram_kernel`` assembles the kernel.

        This version computes it on the host (NumPy's ``A @ A.T`` is a syrk:
        exactly symmetric); a device backend keeps it on its device.
        """
        Xf = self.to_numpy(X).astype(np.float64)
        limiter = _blas_single_thread()  # 2 n^2 d flops: one thread, and no BLAS pool left spinning afterwards
        with limiter if limiter is not None else nullcontext():
            return Xf @ Xf.T

    def gram_kernel(self, state: Any, xxt: Any, factor: float) -> Any:
        """factor * (X X^T) o S in float64 (n, n), exactly symmetric (S read from its lower triangle).

        ``xxt`` comes from ``gram_outer``. Returns an array of this backend
        (``to_numpy`` brings it to the host). This version assembles it on the
        host from ``gram_lower``; a device backend assembles it on its device
        and moves n^2 float64 once.
        """
        H = self.gram_lower(state)  # float64, zeros above the diagonal
        _mirror_lower(H)
        np.multiply(H, xxt.T if H.flags.f_contiguous else xxt, out=H)  # X X^T is symmetric: same layout as H
        H *= factor
        return H

    def sum_rows(self, x: Array) -> Array:
        """Sum of a 2-D array over its first axis (a new array), the same for a given shape and device.

        This generic version adds the rows in order; backends override it
        with one vectorised reduction.
        """
        out = self.copy(x[0])
        for row in x[1:]:
            out += row
        return out

    def parallel(self, tasks: int, fn: Callable[[int, int], None]) -> None:
        """Call ``fn(worker, task)`` for task = 0 .. tasks-1; worker < ``threads``.

        Tasks may run concurrently and in any order; a worker index is held
        by one thread at a time, so per-worker buffers need no lock. This
        default runs them in order in the calling thread.
        """
        for t in range(tasks):
            fn(0, t)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r})"


class NumpyBackend(Backend):
    """The default backend: NumPy arrays on the CPU.

    ``parallel`` runs tasks on ``threads`` threads (default: the CPUs this
    process may use, or ``EXPREG_NUM_THREADS``) with BLAS limited to one
    thread meanwhile, so each core works on its own block of neurons. The
    exponential uses ``fastpath`` (vectorised, fused with the row sums)
    when numba is installed. Threads do not change results: ``ops`` sums
    partial results in a fixed order whatever thread computed them.
    """

    name = "numpy"
    device = "cpu"
    block_bytes = 2**20

    def __init__(self, threads: int | None = None) -> None:
        self.threads = default_threads() if threads is None else int(threads)
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads!r}")
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()

    def asarray(self, x: Any, dtype: np.dtype) -> np.ndarray:
        return np.ascontiguousarray(host_array(x), dtype=dtype)

    def to_numpy(self, x: Array) -> np.ndarray:
        return np.asarray(x)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.empty(shape, dtype=dtype)

    def zeros(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.zeros(shape, dtype=dtype)

    def matmul(self, a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return np.matmul(a, b, out=out)

    def exp_(self, x: np.ndarray) -> np.ndarray:
        from . import fastpath

        return fastpath.exp_(x)

    def exp_matvec_(self, Z: np.ndarray, a: np.ndarray, acc: np.ndarray) -> np.ndarray:
        from . import fastpath

        return fastpath.exp_matvec_(Z, a, acc)

    def parallel(self, tasks: int, fn: Callable[[int, int], None]) -> None:
        # Overflow is detected explicitly by ``ops`` (inf/NaN checks), so
        # NumPy's overflow warnings are silenced in every thread (errstate is
        # per thread: workers do not inherit the caller's).
        workers = min(self.threads, tasks)
        limiter = _blas_single_thread() if workers > 1 else None
        if limiter is None:
            with overflow_checked():
                return Backend.parallel(self, tasks, fn)
        todo = iter(range(tasks))  # shared; next() is atomic under the GIL
        errors: list[BaseException] = []

        def run(worker: int) -> None:
            try:
                with overflow_checked():
                    for t in todo:
                        fn(worker, t)
            except BaseException as exc:  # re-raised in the caller below
                errors.append(exc)

        with limiter:
            futures = [self._executor().submit(run, w) for w in range(1, workers)]
            run(0)  # the caller works too, so every task is done even if no pool thread starts
            for f in futures:
                if not f.cancel():  # started: wait for its last task
                    f.result()
        if errors:
            raise errors[0]

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid():  # a forked child gets no threads: new pool
                self._pool = ThreadPoolExecutor(max_workers=max(1, self.threads - 1), thread_name_prefix="expreg")
                self._pool_pid = os.getpid()
            return self._pool

    def __repr__(self) -> str:
        return f"NumpyBackend(threads={self.threads})"

    def row_panels(self, n: int) -> list[tuple[int, int]]:
        return _row_panels(n)

    def gram_state(self, n: int, dtype: np.dtype) -> _SyrkGram | _PartsGram:
        if n <= PARTS_GRAM_MAX_N:
            return _PartsGram.take(n, dtype, PARTS_GRAM_PARTS)
        return _SyrkGram(self, n, dtype)

    def gram_release(self, state: _SyrkGram | _PartsGram) -> None:
        if isinstance(state, _PartsGram):
            state.give_back()

    def gram_parts(self, state: _SyrkGram | _PartsGram) -> int:
        return state.parts

    def rank_update_(self, state: _SyrkGram | _PartsGram, D: np.ndarray, part: int = 0) -> None:
        state.update(np.ascontiguousarray(D), part)

    def gram_lower(self, state: _SyrkGram | _PartsGram) -> np.ndarray:
        return state.lower()

    def relu_(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0, out=x)

    def positive(self, x: np.ndarray) -> np.ndarray:
        return (x > 0).astype(x.dtype)

    def all_finite(self, x: np.ndarray) -> bool:
        return bool(np.isfinite(x).all())

    def isfinite_all(self, x: np.ndarray) -> Any:
        return np.isfinite(x).all()

    def to_bools(self, flags: list[Any]) -> list[bool]:
        return [bool(f) for f in flags]

    def sum_rows(self, x: np.ndarray) -> np.ndarray:
        # A reduction over the first axis of a C-contiguous array adds whole rows in order.
        return x.sum(axis=0)

    def column_norms(self, x: np.ndarray) -> np.ndarray:
        return np.sqrt(np.einsum("ij,ij->j", x, x))

    def copy(self, x: np.ndarray) -> np.ndarray:
        return x.copy()

    def dtype_of(self, x: np.ndarray) -> np.dtype:
        return x.dtype

    def matmul_out_ok(self, out: np.ndarray) -> bool:
        """Always: NumPy's matmul takes any strided view."""
        return True


def _row_panels(n: int) -> list[tuple[int, int]]:
    """Row ranges [r_p, r_{p+1}) (multiples of 8, r_p ~ n sqrt(p / P)) over which a Gram block's
    features are computed on the backend's threads; P (1 to 8) depends on n only, never on threads."""
    panels = 1 if n < 256 else min(8, n // 128)
    bounds = sorted({0, n, *(min(n, round(n * np.sqrt(p / panels) / 8) * 8) for p in range(1, panels))})
    return list(itertools.pairwise(bounds))


def _mirror_lower(H: np.ndarray, tile: int = 256) -> None:
    """Copy the strict lower triangle of H (n, n; zeros above) onto the upper, tile by tile (cache-sized transposes)."""
    n = H.shape[0]
    for i0 in range(0, n, tile):
        i1 = min(i0 + tile, n)
        for j0 in range(0, i0, tile):
            H[j0 : j0 + tile, i0:i1] = H[i0:i1, j0 : j0 + tile].T
        T = H[i0:i1, i0:i1]
        T += np.tril(T, -1).T


#: Up to this n, the NumPy backend accumulates the Gram matrix in ``PARTS_GRAM_PARTS`` neuron parts run on its
#: threads with one-thread BLAS (``_PartsGram``); above it, one BLAS syrk per block on BLAS's threads (``_SyrkGram``).
#: Measured on 2 cores (``kernels.empirical_ntk``, m = 8192, d = 32, medians of 12 interleaved calls): parts / syrk
#: 0.71 and 0.69 at n = 256, 0.68 and 0.77 at n = 512 (float32, float64), where OpenBLAS's two-thread syrk is far
#: from its GEMM rate; 1.13 and 0.98 at n = 1024, so syrk from there on.
PARTS_GRAM_MAX_N = 512
#: The fixed number of parts (results depend on it, never on the thread count).
PARTS_GRAM_PARTS = 4


def _parts_key(n: int, dtype: Any, parts: int) -> tuple[int, str, int]:
    return (int(n), np.dtype(dtype).str, int(parts))


#: ``_PartsGram`` accumulators given back, for the next of the same size: the 4 most recent sizes
#: (``ops.release_workspaces`` drops them).
gram_parts_kept: KeptForReuse[tuple[int, str, int], _PartsGram] = KeptForReuse(4)


class _PartsGram:
    """S = S_0 + ... + S_{P-1}, each part updated by ``D @ D.T`` (NumPy's own syrk) in the calling thread.

    Memory: 2 P n^2 (each part and its product buffer), for n <= ``PARTS_GRAM_MAX_N``; numbers differ from
    ``_SyrkGram``'s in the last bits (another order of the sum), never with the thread count.
    """

    def __init__(self, n: int, dtype: np.dtype, parts: int) -> None:
        self.parts = parts
        self.S = [np.zeros((n, n), dtype=dtype) for _ in range(parts)]
        self._T = [np.empty((n, n), dtype=dtype) for _ in range(parts)]

    @classmethod
    def take(cls, n: int, dtype: np.dtype, parts: int) -> _PartsGram:
        """A zeroed accumulator: one given back (``give_back``) for this (n, dtype, parts) if kept, else a new one.

        Fresh arrays cost their page faults on first touch: measured 0.6 to 0.7 ms of a 7 to 10 ms
        ``empirical_ntk`` at n = 256 (float32, m = 8192) called after an idle moment.
        """
        kept = gram_parts_kept.take(_parts_key(n, dtype, parts))
        if kept is None:
            return cls(n, dtype, parts)
        for S in kept.S:
            S.fill(0)
        return kept

    def give_back(self) -> None:
        """Keep this accumulator for the next ``take`` of its size (its sums are not read again)."""
        gram_parts_kept.give(_parts_key(self.S[0].shape[0], self.S[0].dtype, self.parts), self)

    def update(self, D: np.ndarray, part: int) -> None:
        """Add D D^T (D (n, k) C-contiguous) to part ``part``; one thread per part at a time."""
        T = self._T[part]
        np.matmul(D, D.T, out=T)  # A @ A.T: NumPy calls syrk and fills the other triangle (exactly symmetric)
        self.S[part] += T

    def lower(self) -> np.ndarray:
        """The lower triangle of the sum of the parts, added in part order, as float64 (zeros above)."""
        total = self.S[0].astype(np.float64)
        for S in self.S[1:]:
            total += S
        return np.tril(total)


class _SyrkGram:
    """The lower triangle of S = sum D D^T (n x n), updated by BLAS ``syrk`` in place.

    One Fortran-ordered accumulator: a C-contiguous D (n, k) is D^T
    Fortran-contiguous, so ``syrk(trans=1)`` adds D D^T (n^2 k flops, half a
    GEMM's) to its lower triangle without a copy, on BLAS's own threads.
    Measured on 2 cores (idle): 0.5x the time of the GEMM E @ E.T; splitting S
    into row panels run on the backend's threads was slower (scipy's BLAS
    wrappers hold the GIL, so the panels ran one at a time).
    """

    def __init__(self, backend: NumpyBackend, n: int, dtype: np.dtype) -> None:
        import scipy.linalg.blas

        self.n = n
        self.S = np.zeros((n, n), dtype=dtype, order="F")
        self._syrk = scipy.linalg.blas.ssyrk if np.dtype(dtype) == np.float32 else scipy.linalg.blas.dsyrk

    #: One sum (``Backend.gram_parts``).
    parts = 1

    def update(self, D: np.ndarray, part: int = 0) -> None:
        """Add D D^T, D (n, k) C-contiguous."""
        self._syrk(1.0, D.T, beta=1.0, c=self.S, trans=1, lower=1, overwrite_c=1)

    def lower(self) -> np.ndarray:
        """The lower triangle of S (zeros above) as a float64 (n, n) array, Fortran-ordered like S."""
        return self.S.astype(np.float64, order="F")  # syrk never writes above the diagonal: zeros there


class TorchBackend(Backend):
    """PyTorch tensors on any device (``"cpu"``, ``"cuda"``, ``"cuda:1"``...)."""

    name = "torch"

    def __init__(self, device: str = "cpu") -> None:
        torch = _import_torch()
        self._torch = torch
        self.device = str(torch.device(device))
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was asked for but torch.cuda.is_available() is False; "
                "use device='cpu' or install a CUDA build of PyTorch"
            )
        # torch parallelises inside each operation (its intra-op threads on
        # CPU, the whole device on CUDA): blocks run in order, and are large
        # on a GPU so that each kernel launch does real work.
        self.threads = 1
        self.block_bytes = 256 * 2**20 if self.device != "cpu" else 16 * 2**20

    def _dtype(self, dtype: np.dtype) -> Any:
        return {np.dtype(np.float32): self._torch.float32, np.dtype(np.float64): self._torch.float64}[np.dtype(dtype)]

    def asarray(self, x: Any, dtype: np.dtype) -> Any:
        torch = self._torch
        if isinstance(x, torch.Tensor):
            return x.to(device=self.device, dtype=self._dtype(dtype)).contiguous()
        return torch.as_tensor(np.ascontiguousarray(x), dtype=self._dtype(dtype), device=self.device)

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.detach().cpu().numpy()

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        return self._torch.empty(shape, dtype=self._dtype(dtype), device=self.device)

    def zeros(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        return self._torch.zeros(shape, dtype=self._dtype(dtype), device=self.device)

    def matmul(self, a: Any, b: Any, out: Any | None = None) -> Any:
        if out is None:
            return self._torch.matmul(a, b)
        return self._torch.matmul(a, b, out=out)

    def exp_(self, x: Any) -> Any:
        return x.exp_()

    def relu_(self, x: Any) -> Any:
        return x.clamp_(min=0)

    def positive(self, x: Any) -> Any:
        return (x > 0).to(x.dtype)

    def all_finite(self, x: Any) -> bool:
        return bool(self._torch.isfinite(x).all().item())

    def isfinite_all(self, x: Any) -> Any:
        return self._torch.isfinite(x).all()

    def to_bools(self, flags: list[Any]) -> list[bool]:
        return [bool(f) for f in self._torch.stack(flags).tolist()]  # one device-to-host copy

    def sum_rows(self, x: Any) -> Any:
        return x.sum(dim=0)  # one kernel (not one per row)

    def device_memory(self) -> int | None:
        if not self.device.startswith("cuda"):
            return None
        cuda = self._torch.cuda
        free, _ = cuda.mem_get_info(self.device)
        return int(free + cuda.memory_reserved(self.device))  # what torch's allocator holds is ours to reuse

    def column_norms(self, x: Any) -> Any:
        return self._torch.linalg.vector_norm(x, dim=0)

    def copy(self, x: Any) -> Any:
        return x.clone()

    def dtype_of(self, x: Any) -> np.dtype:
        return np.dtype(str(x.dtype).replace("torch.", ""))

    def matmul_out_ok(self, out: Any) -> bool:
        """torch (BLAS and cuBLAS alike) writes in place into a matrix with one
        unit stride and the other at least the extent of that dimension (a
        leading dimension), which the column blocks G[:, lo:hi] of a
        C-contiguous G are; other layouts it computes elsewhere and copies.
        """
        rows, cols = (int(v) for v in out.shape)
        s0, s1 = (int(v) for v in out.stride())
        return (s1 == 1 and s0 >= max(1, cols)) or (s0 == 1 and s1 >= max(1, rows))

    def rank_update_(self, state: Any, D: Any, part: int = 0) -> None:
        """S += D D^T with one ``addmm_`` (queued on the device, no host synchronisation)."""
        state.addmm_(D, D.T)

    def _symmetric_from_lower(self, A: Any) -> Any:
        """tril(A) + tril(A, -1)^T in float64: exactly symmetric (a GEMM's A A^T need not be)."""
        torch = self._torch
        L = torch.tril(A).to(torch.float64)
        return L.add_(torch.tril(L, -1).T)

    def eigvalsh(self, A: Any) -> np.ndarray:
        return self.to_numpy(self._torch.linalg.eigvalsh(A)).astype(np.float64)

    def gram_outer(self, X: Any) -> Any:
        X64 = X.to(self._torch.float64)
        return self._symmetric_from_lower(X64 @ X64.T)  # on the device

    def gram_kernel(self, state: Any, xxt: Any, factor: float) -> Any:
        # On the device: one n^2 float64 copy to the host afterwards (measured on an H100, n = 4096:
        # assembling on the host instead took 2 to 3 times as long as the whole accumulation).
        return self._symmetric_from_lower(state).mul_(xxt).mul_(factor)

    def exp_matvec_(self, Z: Any, a: Any, acc: Any) -> Any:
        Z.exp_()
        acc.addmv_(Z, a)
        return Z

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            self._torch.cuda.synchronize(self.device)


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("backend='torch' needs PyTorch; install it with `pip install 'expreg[torch]'`") from exc
    return torch


def default_threads() -> int:
    """Threads for the NumPy backend: ``EXPREG_NUM_THREADS``, else the usable CPUs."""
    env = os.environ.get("EXPREG_NUM_THREADS")
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(
                f"EXPREG_NUM_THREADS={env!r} is not an integer; set it to a thread count such as 2"
            ) from None
        if value < 1:
            raise ValueError(f"EXPREG_NUM_THREADS={env!r} must be >= 1")
        return value
    return usable_cpus()


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask; ``os.cpu_count()`` off Linux), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


_controller: Any = None
_controller_lock = threading.Lock()


def _blas_single_thread() -> AbstractContextManager[Any] | None:
    """Context limiting BLAS to one thread, or None without threadpoolctl.

    Without threadpoolctl, ``parallel`` falls back to one thread (BLAS then
    uses its own threads), which is correct, only slower.
    """
    global _controller
    with _controller_lock:
        if _controller is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:
                _controller = False
            else:
                _controller = ThreadpoolController()
    if _controller is False:
        return None
    if not _controller.select(user_api="blas").lib_controllers:
        return nullcontext()
    return _controller.limit(limits=1, user_api="blas")


def is_torch_tensor(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (checked without importing torch)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def host_array(x: Any) -> Any:
    """A torch tensor as a NumPy array on the host (detached); anything else unchanged."""
    return x.detach().cpu().numpy() if is_torch_tensor(x) else x


def _numpy_backend(device: str | None, threads: int | None) -> Backend:
    if device not in (None, "cpu"):
        raise ValueError(f"the numpy backend runs on the CPU only, got device={device!r}; use backend='torch'")
    return NumpyBackend(threads)


def _torch_backend(device: str | None, threads: int | None) -> Backend:
    return TorchBackend(device or "cpu")  # torch keeps its own intra-op threads


#: The backends by name, in the order the command line lists them: each entry makes a ``Backend``
#: from (device, threads). Adding a backend is a ``Backend`` subclass and one ``register`` call.
BACKENDS: Registry[Callable[[str | None, int | None], Backend]] = Registry("backend")
BACKENDS.register("numpy", _numpy_backend)
BACKENDS.register("torch", _torch_backend)


@cache
def get_backend(name: str = "numpy", device: str | None = None, threads: int | None = None) -> Backend:
    """Return the backend called ``name`` (a name of ``BACKENDS``: ``"numpy"`` or ``"torch"``).

    ``threads`` (NumPy only) sets the worker threads of the blocked passes;
    default: ``EXPREG_NUM_THREADS`` or every usable CPU. Torch uses its own
    intra-op threads (``torch.set_num_threads``).

    >>> get_backend("numpy").name
    'numpy'
    """
    if isinstance(name, Backend):
        return name
    return BACKENDS[name](device, threads)


def backend_for_device(device: str | None) -> Backend:
    """The backend that computes on ``device``: NumPy for None or "cpu", PyTorch on that device otherwise
    (e.g. "cuda", "cuda:1"; needs torch with CUDA).

    >>> backend_for_device("cpu").name
    'numpy'
    """
    if device is None or device == "cpu":
        return get_backend("numpy")
    return get_backend("torch", device=device)
