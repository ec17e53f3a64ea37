"""Collectives of a width-sharded run over torch.distributed (docs/theory.md section 2).

``engine.communicator.Communicator`` is the single-process version (every
collective the identity); ``TorchCommunicator`` wraps an initialised process group, gloo on
CPU or NCCL on CUDA. torch is imported only when a process group is used.

A collective that fails because another rank is gone (killed, crashed, or
stopped by an error of its own) or did not answer within the timeout raises
``PeerLostError``, one line saying so, instead of torch's traceback.
"""

from __future__ import annotations

import os
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from ..core.backends import Array
from ..core.errors import ExpregError
from ..engine.communicator import Communicator

#: Seconds a collective (or the start-up rendezvous) waits for the other ranks: long enough for the
#: slowest rank to load its data and draw its neurons, short enough that a lost rank is noticed.
DEFAULT_TIMEOUT_S = 300.0


class PeerLostError(ExpregError, RuntimeError):
    """A collective failed: another rank is gone or did not answer within the timeout."""


class TorchCommunicator(Communicator):
    """Collectives over an initialised ``torch.distributed`` process group (gloo or NCCL)."""

    def __init__(self, group: Any = None, timeout_s: float | None = None) -> None:
        import torch
        import torch.distributed as dist

        self._torch, self._dist, self._group, self.timeout_s = torch, dist, group, timeout_s
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        nccl = dist.get_backend(group) == "nccl"
        self._device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")

    def _all_reduce(self, t: Any, op: Any = None) -> None:
        """``dist.all_reduce`` in place; a failure (a rank gone, a timeout) becomes ``PeerLostError``."""
        try:
            if op is None:
                self._dist.all_reduce(t, group=self._group)
            else:
                self._dist.all_reduce(t, op=op, group=self._group)
        except RuntimeError as exc:  # torch's DistBackendError and gloo's errors are RuntimeErrors
            raise peer_lost(self.rank, self.world_size, exc, self.timeout_s) from exc

    def sum_(self, x: Array) -> Array:
        if isinstance(x, np.ndarray):
            t = self._torch.from_numpy(x)  # shares memory with x
            if self._device.type == "cpu":
                self._all_reduce(t)
            else:
                on_device = t.to(self._device)
                self._all_reduce(on_device)
                t.copy_(on_device.cpu())
            return x
        self._all_reduce(x)
        return x

    def _reduce(self, v: np.ndarray, op: Any) -> np.ndarray:
        t = self._torch.tensor(np.asarray(v, dtype=np.float64), device=self._device)
        self._all_reduce(t, op)
        return t.cpu().numpy()

    def sum(self, v: np.ndarray) -> np.ndarray:
        return self._reduce(v, self._dist.ReduceOp.SUM)

    def max(self, v: np.ndarray) -> np.ndarray:
        return self._reduce(v, self._dist.ReduceOp.MAX)

    def barrier(self) -> None:
        self.sum(np.zeros(1))  # an all-reduce: works on gloo and NCCL alike


def _cause(exc: BaseException) -> str:
    """The first sentence of a torch / gloo error, without its source-file prefix."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", (str(exc).strip().splitlines() or [""])[0])
    return (text.split(". ")[0] or type(exc).__name__)[:160]


def peer_lost(rank: int, world_size: int, exc: BaseException, timeout_s: float | None) -> PeerLostError:
    """The one-line error of rank ``rank`` whose collective failed with ``exc``."""
    cause = _cause(exc)
    wait = f" within the timeout ({timeout_s:g} s, --timeout)" if timeout_s else ""
    return PeerLostError(
        f"rank {rank} of {world_size} lost contact with the other ranks ({cause}): a rank was killed, crashed or stopped with "
        f"an error of its own (see its output), or did not answer{wait}. Relaunch the same command on every rank; with "
        "--checkpoint-dir it resumes from the last checkpoint"
    )


def communicator(group: Any = None) -> Communicator:
    """The communicator of ``group`` if torch.distributed is initialised, else the single-process one."""
    if "torch.distributed" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return TorchCommunicator(group)
    return Communicator()


def init_from_environment(
    device: str | None = None, init_method: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> tuple[Communicator, str | None]:
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
        How long the rendezvous and each collective wait for the other ranks
        before failing with ``PeerLostError`` (default ``DEFAULT_TIMEOUT_S``).

    Without WORLD_SIZE in the environment, returns the single-process
    communicator. Returns (communicator, device).
    """
    if isinstance(timeout_s, bool) or not (isinstance(timeout_s, (int, float)) and 0 < timeout_s < float("inf")):
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    if "WORLD_SIZE" not in os.environ:
        return communicator(), device
    import torch
    import torch.distributed as dist

    rank, world_size = _env_int("RANK"), _env_int("WORLD_SIZE")
    check_rank(rank, world_size)
    check_init_method(init_method)
    cuda = device is not None and device.startswith("cuda")
    if device is not None and cuda:
        if device == "cuda":
            device = f"cuda:{_env_int('LOCAL_RANK') if 'LOCAL_RANK' in os.environ else 0}"
        check_cuda_device(torch, device)
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        try:
            dist.init_process_group(
                "nccl" if cuda else "gloo",
                init_method=init_method or "env://",
                rank=rank,
                world_size=world_size,
                timeout=timedelta(seconds=timeout_s),
            )
        except RuntimeError as exc:  # DistStoreError, DistNetworkError: the other ranks never came
            raise PeerLostError(
                f"rank {rank} of {world_size} could not form the process group within {timeout_s:g} s "
                f"({_cause(exc)}): start all {world_size} ranks with the "
                "same rendezvous (MASTER_ADDR/MASTER_PORT or --init-method), or raise --timeout"
            ) from exc
    return TorchCommunicator(timeout_s=timeout_s), device


def check_cuda_device(torch: Any, device: str) -> None:
    """Raise a one-line ValueError unless ``device`` ("cuda:k") is a GPU this process can use."""
    if not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} needs CUDA, but torch.cuda.is_available() is False here (a CPU build of PyTorch, "
            "or no GPU visible); run with device='cpu' (gloo) or install a CUDA build of PyTorch"
        )
    index, count = torch.device(device).index or 0, torch.cuda.device_count()
    if index >= count:
        raise ValueError(
            f"device {device} does not exist: {count} GPU(s) are visible here (LOCAL_RANK={os.environ.get('LOCAL_RANK')}); "
            f"start at most {count} ranks per node (torchrun --nproc-per-node {count}) or widen CUDA_VISIBLE_DEVICES"
        )


def check_rank(rank: int, world_size: int) -> None:
    """Refuse, before any rendezvous, a rank outside [0, WORLD_SIZE) or a WORLD_SIZE below 1 (or a bad LOCAL_RANK)."""
    if world_size < 1:
        raise ValueError(f"WORLD_SIZE={world_size} must be at least 1; launch with torchrun, which sets it")
    if not 0 <= rank < world_size:
        raise ValueError(
            f"RANK={rank} is outside 0..{world_size - 1} (WORLD_SIZE={world_size}); give each process its own rank "
            "below WORLD_SIZE (torchrun sets both)"
        )
    if "LOCAL_RANK" in os.environ and not 0 <= _env_int("LOCAL_RANK") < world_size:
        raise ValueError(
            f"LOCAL_RANK={os.environ['LOCAL_RANK']} is outside 0..{world_size - 1} (WORLD_SIZE={world_size})"
        )


def check_init_method(init_method: str | None) -> None:
    """Refuse, before any rendezvous, a ``file://`` rendezvous whose directory is missing or not writable.

    torch.distributed would wait for the file without end (past the timeout)
    instead of saying so.
    """
    if not init_method or not init_method.startswith("file://"):
        return
    from urllib.parse import unquote, urlsplit

    path = Path(unquote(urlsplit(init_method).path))
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(
            f"--init-method {init_method!r}: the directory {str(folder)!r} does not exist; create it (on a file "
            "system every rank sees) or give another path"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(
            f"--init-method {init_method!r}: the directory {str(folder)!r} is not writable; give another path"
        )


def _env_int(name: str) -> int:
    text = os.environ.get(name, "")
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"environment variable {name}={text!r} must be an integer; launch with torchrun, which sets it"
        ) from None


def shutdown(comm: Communicator) -> None:
    """Leave the process group ``comm`` belongs to (no-op for a single process)."""
    if isinstance(comm, TorchCommunicator) and comm._dist.is_initialized():
        comm._dist.destroy_process_group()
