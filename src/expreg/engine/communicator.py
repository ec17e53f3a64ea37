"""The collectives a training loop calls, and their single-process version.

``descent.descend`` reduces its partial sums through a ``Communicator``. This
base class is the one-process run: every collective is the identity, so
single-process training needs nothing from ``expreg.distributed``. The
width-sharded run passes ``distributed.comm.TorchCommunicator`` instead.
"""

from __future__ import annotations

import numpy as np

from ..core.backends import Array


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
