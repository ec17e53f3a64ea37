"""Array backends: the one place that knows NumPy from PyTorch.

The maths (``ops``, ``kernels``) is written once against the small
``Backend`` interface below; a backend differs only in the array library,
never in the formulas (STYLE.md, habit 3).

Public specification of dtypes is always a NumPy dtype (``numpy.float32``
or ``numpy.float64``); each backend maps it to its own.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

Array = Any  # numpy.ndarray or torch.Tensor

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def canonical_dtype(dtype: Any) -> np.dtype:
    """Return ``dtype`` as a supported NumPy floating dtype or raise TypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype {dtype!r} is not a NumPy dtype; use numpy.float32 or numpy.float64") from exc
    if dt not in SUPPORTED_DTYPES:
        raise TypeError(f"dtype {dt} is not supported; use numpy.float32 or numpy.float64")
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
        raise NotImplementedError

    def column_norms(self, x: Array) -> Array:  # pragma: no cover
        """Euclidean norm of each column of a 2-D array."""
        raise NotImplementedError

    def norm(self, x: Array) -> float:  # pragma: no cover
        """Euclidean (Frobenius) norm as a Python float."""
        raise NotImplementedError

    def copy(self, x: Array) -> Array:  # pragma: no cover
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on CPU)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r})"


class NumpyBackend(Backend):
    """The default backend: NumPy arrays on the CPU."""

    name = "numpy"
    device = "cpu"

    def asarray(self, x: Any, dtype: np.dtype) -> np.ndarray:
        if _is_torch_tensor(x):
            x = x.detach().cpu().numpy()
        return np.ascontiguousarray(x, dtype=dtype)

    def to_numpy(self, x: Array) -> np.ndarray:
        return np.asarray(x)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.empty(shape, dtype=dtype)

    def zeros(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.zeros(shape, dtype=dtype)

    def matmul(self, a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return np.matmul(a, b, out=out)

    def exp_(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return np.exp(x, out=x)

    def relu_(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0, out=x)

    def positive(self, x: np.ndarray) -> np.ndarray:
        return (x > 0).astype(x.dtype)

    def all_finite(self, x: np.ndarray) -> bool:
        return bool(np.isfinite(x).all())

    def column_norms(self, x: np.ndarray) -> np.ndarray:
        return np.sqrt(np.einsum("ij,ij->j", x, x))

    def norm(self, x: np.ndarray) -> float:
        return float(np.linalg.norm(x))

    def copy(self, x: np.ndarray) -> np.ndarray:
        return x.copy()


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

    def column_norms(self, x: Any) -> Any:
        return self._torch.linalg.vector_norm(x, dim=0)

    def norm(self, x: Any) -> float:
        return float(self._torch.linalg.vector_norm(x).item())

    def copy(self, x: Any) -> Any:
        return x.clone()

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            self._torch.cuda.synchronize(self.device)


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "backend='torch' needs PyTorch; install it with `pip install 'expreg[torch]'`"
        ) from exc
    return torch


def _is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


@lru_cache(maxsize=None)
def get_backend(name: str = "numpy", device: str | None = None) -> Backend:
    """Return the backend called ``name`` (``"numpy"`` or ``"torch"``).

    >>> get_backend("numpy").name
    'numpy'
    """
    if isinstance(name, Backend):  # type: ignore[unreachable]
        return name
    if name == "numpy":
        if device not in (None, "cpu"):
            raise ValueError(f"the numpy backend runs on the CPU only, got device={device!r}; use backend='torch'")
        return NumpyBackend()
    if name == "torch":
        return TorchBackend(device or "cpu")
    raise ValueError(f"unknown backend {name!r}; choose 'numpy' or 'torch'")
