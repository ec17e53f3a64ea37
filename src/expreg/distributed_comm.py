"""Collectives of a width-sharded run over torch.distributed (docs/theory.md section 2).

``Communicator`` is the single-process version (every collective the
identity); ``TorchCommunicator`` wraps an initialised process group, gloo on
CPU or NCCL on CUDA. torch is imported only when a process group is used.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from typing import Any

import numpy as np

from .backends import Array


class Communicator:
    """The collectives of a sharded run. This base class is the single-process one (no-ops).

    Attributes
    ----------
    rank, world_size : int
    """

    rank: int = 0
    world_size: int = 1

    def sum_(self, x: Array) -> Array:
        """All-reduce (sum) a backend array in place; returns it."""
        return x

    def sum(self, v: np.ndarray) -> np.ndarray:
        """All-reduce (sum) a float64 NumPy vector; returns a new array."""
        return np.array(v, dtype=np.float64)

    def max(self, v: np.ndarray) -> np.ndarray:
        """All-reduce (max) a float64 NumPy vector; returns a new array."""
        return np.array(v, dtype=np.float64)

    def barrier(self) -> None:
        """Wait for every rank."""


class TorchCommunicator(Communicator):
    """Collectives over an initialised ``torch.distributed`` process group (gloo or NCCL)."""

    def __init__(self, group: Any = None) -> None:
        import torch
        import torch.distributed as dist

        self._torch, self._dist, self._group = torch, dist, group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        nccl = dist.get_backend(group) == "nccl"
        self._device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")

    def sum_(self, x: Array) -> Array:
        if isinstance(x, np.ndarray):
            t = self._torch.from_numpy(x)  # shares memory with x
            if self._device.type == "cpu":
                self._dist.all_reduce(t, group=self._group)
            else:
                on_device = t.to(self._device)
                self._dist.all_reduce(on_device, group=self._group)
                t.copy_(on_device.cpu())
            return x
        self._dist.all_reduce(x, group=self._group)
        return x

    def _reduce(self, v: np.ndarray, op: Any) -> np.ndarray:
        t = self._torch.tensor(np.asarray(v, dtype=np.float64), device=self._device)
        self._dist.all_reduce(t, op=op, group=self._group)
        return t.cpu().numpy()

    def sum(self, v: np.ndarray) -> np.ndarray:
        return self._reduce(v, self._dist.ReduceOp.SUM)

    def max(self, v: np.ndarray) -> np.ndarray:
        return self._reduce(v, self._dist.ReduceOp.MAX)

    def barrier(self) -> None:
        self.sum(np.zeros(1))  # an all-reduce: works on gloo and NCCL alike


def communicator(group: Any = None) -> Communicator:
    """The communicator of ``group`` if torch.distributed is initialised, else the single-process one."""
    if "torch.distributed" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return TorchCommunicator(group)
    return Communicator()


def init_from_environment(device: str | None = None, init_method: str | None = None, timeout_s: float = 1800.0) -> tuple[Communicator, str | None]:
    """Join the process group described by RANK and WORLD_SIZE (as torchrun sets them).

    Parameters
    ----------
    device : str, optional
        None or "cpu": gloo. CUDA: NCCL, and "cuda" becomes ``cuda:LOCAL_RANK``.
    init_method : str, optional
        torch.distributed rendezvous URL; default "env://" (MASTER_ADDR and
        MASTER_PORT, set by torchrun). "file:///shared/path" needs no
        listening socket.
    timeout_s : float
        How long a collective waits for a rank before failing.

    Without WORLD_SIZE in the environment, returns the single-process
    communicator. Returns (communicator, device).
    """
    if "WORLD_SIZE" not in os.environ:
        return communicator(), device
    import torch
    import torch.distributed as dist

    rank, world_size = _env_int("RANK"), _env_int("WORLD_SIZE")
    cuda = device is not None and device.startswith("cuda")
    if cuda:
        if device == "cuda":
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", init_method=init_method or "env://", rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout_s))
    return TorchCommunicator(), device


def _env_int(name: str) -> int:
    text = os.environ.get(name, "")
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} must be an integer; launch with torchrun, which sets it") from None


def shutdown(comm: Communicator) -> None:
    """Leave the process group ``comm`` belongs to (no-op for a single process)."""
    if isinstance(comm, TorchCommunicator) and comm._dist.is_initialized():
        comm._dist.destroy_process_group()
