"""Array backends: the one place that knows NumPy from PyTorch.

The maths (``ops``, ``kernels``) is written once against the small
``Backend`` interface below; a backend differs only in the array library,
never in the formulas (STYLE.md, habit 3).

Public specification of dtypes is always a NumPy dtype (``numpy.float32``
or ``numpy.float64``); each backend maps it to its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, nullcontext
from typing import Any

import numpy as np

from . import fastpath
from .choices import DType, Registry, unknown_choice
from .errors import overflow_checked
from .reuse import KEPT
from .threads import blas_single_thread, default_threads, torch_single_thread, usable_cpus
from .tuning import TUNED_DTYPES, Tuning

__all__ = [
    "Array",
    "Backend",
    "NumpyBackend",
    "TorchBackend",
    "blas_single_thread",
    "canonical_dtype",
    "default_threads",
    "get_backend",
    "usable_cpus",
]

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
    #: Default bytes of one block of activations (see ``ops.plan_blocks`` and ``block_bytes_for``).
    block_bytes: int = 4 * 2**20
    #: Bytes of one block of activations in the Gram passes (``gram.gram_block``): larger than a step's,
    #: since the rank-k update reads and writes the n x n accumulator once per block, so a block must hold
    #: a few hundred neurons for it to run at the machine's GEMM rate.
    gram_block_bytes: int = 16 * 2**20
    #: The most neurons of one Gram block (None: no cap).
    gram_block_max: int | None = 4096
    #: Whether the arrays are NumPy arrays in host memory, which SciPy's BLAS (syrk) updates in place:
    #: ``gram.sum_for`` then sums the Gram matrix on the host (``PartsSum``, ``SyrkSum``).
    host_blas: bool = False

    @property
    def on_device(self) -> bool:
        """Whether the arrays live on an accelerator (a device other than the CPU)."""
        return self.device != "cpu"

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

    def add_matmul_(self, C: Array, A: Array, B: Array) -> None:
        """C += A @ B in place (C (n, n), A (n, k), B (k, n))."""
        C += self.matmul(A, B)

    def symmetric_from_lower(self, A: Array) -> Array:
        """tril(A) + tril(A, -1)^T in float64 (n, n): exactly symmetric, where A lives (a GEMM's A A^T need not be).

        This version computes it on the host and returns a NumPy array; a
        device backend keeps it on its device.
        """
        L = np.tril(self.to_numpy(A)).astype(np.float64)
        L += np.tril(L, -1).T
        return L

    def eigvalsh(self, A: Array) -> np.ndarray:
        """Every eigenvalue of the symmetric matrix A (n, n), ascending, as a NumPy float64 array.

        Computed where A lives, in A's dtype: LAPACK (``scipy.linalg.eigvalsh``)
        on the host; a device backend uses its own solver (cuSOLVER on a GPU),
        so that only n numbers cross to the host.
        """
        import scipy.linalg

        return np.asarray(scipy.linalg.eigvalsh(self.to_numpy(A), check_finite=False), dtype=np.float64)

    def sum_rows(self, x: Array) -> Array:
        """Sum of a 2-D array over its first axis (a new array), the same for a given shape and device.

        This generic version adds the rows in order; backends override it
        with one vectorised reduction.
        """
        out = self.copy(x[0])
        for row in x[1:]:
            out += row
        return out

    def block_bytes_for(self, d: int | None, keep: bool = True) -> int:
        """Bytes of one block of activations for inputs of d dimensions (None: unknown), kept or recomputed:
        ``block_bytes`` here."""
        return self.block_bytes

    def keeps(self, nbytes: int, d: int | None) -> bool:
        """Whether a step keeps ``nbytes`` of activations that fit its memory budget (here: always)."""
        return True

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

    ``tuning`` (a ``tuning.Tuning``; default: ``calibrate.current()``, the
    choices measured on this machine, or the fixed defaults with
    ``EXPREG_CALIBRATE=0``) picks the exp kernel per dtype, the GEMM library
    (NumPy's BLAS or PyTorch's, on the same memory), the block size and,
    when ``threads`` and ``EXPREG_NUM_THREADS`` are not given, the thread
    layout. Every choice computes the same formulas: results agree to rounding.
    """

    name = "numpy"
    device = "cpu"
    block_bytes = 2**20
    host_blas = True

    def __init__(self, threads: int | None = None, tuning: Tuning | None = None) -> None:
        if tuning is None:
            from . import calibrate

            tuning = calibrate.current()
        self.tuning = tuning
        self.threads = default_threads(tuning.threads) if threads is None else int(threads)
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads!r}")
        self.block_bytes = tuning.block_bytes
        self._exp = {np.dtype(dt).char: fastpath.exp_kernels(tuning.exp_for(dt)) for dt in TUNED_DTYPES}
        self._torch_gemm = tuning.gemm == "torch"
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()

    def block_bytes_for(self, d: int | None, keep: bool = True) -> int:
        """The tuning's block for d (``Tuning.block_bytes_for``: one size up to ``tuning.WIDE_D``, another above,
        a third for steps that recompute their activations)."""
        return self.tuning.block_bytes_for(d, keep)

    def keeps(self, nbytes: int, d: int | None) -> bool:
        """The tuning's word (``Tuning.keeps``): beyond the last-level cache, small d may recompute instead."""
        return self.tuning.keeps(nbytes, d)

    def asarray(self, x: Any, dtype: np.dtype) -> np.ndarray:
        return np.ascontiguousarray(host_array(x), dtype=dtype)

    def to_numpy(self, x: Array) -> np.ndarray:
        return np.asarray(x)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.empty(shape, dtype=dtype)

    def zeros(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.zeros(shape, dtype=dtype)

    def matmul(self, a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if self._torch_gemm and a.ndim == b.ndim == 2 and a.dtype == b.dtype and a.dtype.char in "fd":
            return fastpath.torch_matmul(a, b, out)
        return np.matmul(a, b, out=out)

    def exp_(self, x: np.ndarray) -> np.ndarray:
        kernels = self._exp.get(x.dtype.char)
        return fastpath.exp_(x) if kernels is None else kernels[0](x)

    def exp_matvec_(self, Z: np.ndarray, a: np.ndarray, acc: np.ndarray) -> np.ndarray:
        kernels = self._exp.get(Z.dtype.char)
        return fastpath.exp_matvec_(Z, a, acc) if kernels is None else kernels[1](Z, a, acc)

    def parallel(self, tasks: int, fn: Callable[[int, int], None]) -> None:
        # Overflow is detected explicitly by ``ops`` (inf/NaN checks), so
        # NumPy's overflow warnings are silenced in every thread (errstate is
        # per thread: workers do not inherit the caller's).
        workers = min(self.threads, tasks)
        if workers <= 1:
            with ExitStack() as stack:
                stack.enter_context(overflow_checked())
                stack.enter_context(self._one_threaded_library())
                return Backend.parallel(self, tasks, fn)
        limiter = blas_single_thread()
        if limiter is None:
            with overflow_checked():
                return Backend.parallel(self, tasks, fn)
        with ExitStack() as stack:
            stack.enter_context(limiter)
            if self.tuning.uses_torch():
                stack.enter_context(torch_single_thread())
            self._run_on_workers(workers, tasks, fn)
        return None

    def _one_threaded_library(self) -> AbstractContextManager[Any]:
        """On one worker, the libraries' own threads: those of the GEMM's library only.

        With PyTorch's GEMM, NumPy's BLAS (the partial predictions' matrix-vector products) is kept to one
        thread; with NumPy's GEMM beside PyTorch's exp, PyTorch is. Two thread pools taking turns on the same
        cores, each spinning while the other works, made a step at (2048, 16, 131072) 9.8 times slower than on
        two workers (2,750 ms against 281 ms, Intel Xeon, 2 cores; benchmarks/step_ab.py, benchmarks/RESULTS.md).
        """
        if not self.tuning.uses_torch():
            return nullcontext()
        if self._torch_gemm:
            return blas_single_thread() or nullcontext()
        return torch_single_thread()

    def _run_on_workers(self, workers: int, tasks: int, fn: Callable[[int, int], None]) -> None:
        """``parallel``'s tasks on ``workers`` threads (the caller among them), BLAS already limited."""
        todo = iter(range(tasks))  # shared; next() is atomic under the GIL
        errors: list[BaseException] = []

        def run(worker: int) -> None:
            try:
                with overflow_checked():
                    for t in todo:
                        fn(worker, t)
            except BaseException as exc:  # re-raised in the caller below
                errors.append(exc)

        futures = [self._executor().submit(run, w) for w in range(1, workers)]
        run(0)  # the caller works too, so every task is done even if no pool thread starts
        for f in futures:
            if not f.cancel():  # started: wait for its last task
                f.result()
        if errors:
            raise errors[0]

    def close(self) -> None:
        """End this backend's worker threads now (a later ``parallel`` starts new ones)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid():  # a forked child gets no threads: new pool
                self._pool = ThreadPoolExecutor(max_workers=max(1, self.threads - 1), thread_name_prefix="expreg")
                self._pool_pid = os.getpid()
            return self._pool

    def __repr__(self) -> str:
        return f"NumpyBackend(threads={self.threads}, tuning={self.tuning.describe()!r})"

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
        self.block_bytes = 256 * 2**20 if self.on_device else 16 * 2**20
        if self.on_device:  # a device's Gram blocks fill its (larger) block, uncapped
            self.gram_block_bytes = max(Backend.gram_block_bytes, self.block_bytes)
            self.gram_block_max = None

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

    def add_matmul_(self, C: Any, A: Any, B: Any) -> None:
        """C += A @ B with one ``addmm_`` (queued on the device, no host synchronisation)."""
        C.addmm_(A, B)

    def symmetric_from_lower(self, A: Any) -> Any:
        """tril(A) + tril(A, -1)^T in float64, on A's device: exactly symmetric (a GEMM's A A^T need not be)."""
        torch = self._torch
        L = torch.tril(A).to(torch.float64)
        return L.add_(torch.tril(L, -1).T)

    def eigvalsh(self, A: Any) -> np.ndarray:
        return self.to_numpy(self._torch.linalg.eigvalsh(A)).astype(np.float64)

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


def is_torch_tensor(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (checked without importing torch)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def host_array(x: Any) -> Any:
    """A torch tensor as a NumPy array on the host (detached); anything else unchanged."""
    return x.detach().cpu().numpy() if is_torch_tensor(x) else x


#: The backends that run on a device other than the CPU.
DEVICE_BACKENDS = ("torch",)


def check_device(backend: str, device: str | None) -> None:
    """The one rule of devices: a device other than the CPU (e.g. "cuda") needs a backend of ``DEVICE_BACKENDS``.

    >>> check_device("numpy", "cuda")
    Traceback (most recent call last):
    ...
    ValueError: device='cuda' needs backend='torch': the numpy backend runs on the CPU only
    """
    if device not in (None, "cpu") and backend not in DEVICE_BACKENDS:
        raise ValueError(f"device={device!r} needs backend='torch': the {backend} backend runs on the CPU only")


def _numpy_backend(device: str | None, threads: int | None) -> Backend:
    check_device("numpy", device)
    return NumpyBackend(threads)


def _torch_backend(device: str | None, threads: int | None) -> Backend:
    return TorchBackend(device or "cpu")  # torch keeps its own intra-op threads


#: The backends by name, in the order the command line lists them: each entry makes a ``Backend``
#: from (device, threads). Adding a backend is a ``Backend`` subclass and one ``register`` call.
BACKENDS: Registry[Callable[[str | None, int | None], Backend]] = Registry("backend")
BACKENDS.register("numpy", _numpy_backend)
BACKENDS.register("torch", _torch_backend)


def get_backend(name: str = "numpy", device: str | None = None, threads: int | None = None) -> Backend:
    """Return the backend called ``name`` (a name of ``BACKENDS``: ``"numpy"`` or ``"torch"``).

    ``threads`` (NumPy only) sets the worker threads of the blocked passes;
    default: ``EXPREG_NUM_THREADS`` or every usable CPU. Torch uses its own
    intra-op threads (``torch.set_num_threads``).

    Each (name, device, threads) makes one backend object, kept in
    ``reuse.KEPT.made`` (its thread pool and the buffers keyed by it are reused).

    >>> get_backend("numpy").name
    'numpy'
    """
    if isinstance(name, Backend):
        return name
    made, key = KEPT.made, (name, device, threads)
    with made.lock:
        backend = made.backends.get(key)
        if backend is None:
            backend = made.backends[key] = BACKENDS[name](device, threads)
    return backend


def backend_for_device(device: str | None) -> Backend:
    """The backend that computes on ``device``: NumPy for None or "cpu", PyTorch on that device otherwise
    (e.g. "cuda", "cuda:1"; needs torch with CUDA).

    >>> backend_for_device("cpu").name
    'numpy'
    """
    if device is None or device == "cpu":
        return get_backend("numpy")
    return get_backend("torch", device=device)
