"""One rank's neurons and the collective computations of a step: ``Shard`` (docs/theory.md sections 2-3).

The descent loop (``descent``) sees the network only through a ``Shard``:
the forward and backward pass over its neurons with the all-reduce of the
partial predictions, the global Gram matrix, and the global movement and
overflow flag. With the single-process ``Communicator`` every collective is
the identity and the shard is the whole network (``train``); a width-sharded
run (``distributed.train_sharded``) passes its torch communicator and the
rank's slice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core import gram, ops
from ..core.activations import Activation
from ..core.backends import Array, Backend
from ..core.errors import ExpOverflowError, overflow_checked
from ..core.model import NetSpec
from .communicator import Communicator

__all__ = ["Shard"]


@dataclass
class Shard:
    """One rank's neurons ``lo .. hi-1`` of a width-m network and the collectives of a step.

    With the single-process ``Communicator`` (lo, hi) = (0, m) and every
    collective is the identity: the shard is the whole network.

    Attributes
    ----------
    spec : model.NetSpec
        The whole network (global width m, s of the whole network).
    Xn : ndarray (n, d) float64, yn : ndarray (n,) float64
        The training data (the same on every rank).
    W0 : array (d, hi - lo)
        This rank's initial weights (backend array, the run's dtype).
    a : array (hi - lo,)
    comm : Communicator
    weights : ndarray (n,) or None
        Per-point weights c_i of the loss (``train(sample_weight=...)``); None: all 1.
    plan : ops.BlockPlan
        Blocking of this rank's passes (``spec.plan`` of n and hi - lo).
    be, act, s, m, dtype
        The spec's backend, activation, output scale, global width and dtype.
    """

    spec: NetSpec
    Xn: np.ndarray
    yn: np.ndarray
    W0: Array
    a: Array
    comm: Communicator
    weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        spec = self.spec
        self.be: Backend = spec.get_backend()
        self.act: Activation = spec.act
        self.s, self.m, self.dtype = spec.s, spec.m, spec.dtype
        self.plan: ops.BlockPlan = spec.plan(int(self.Xn.shape[0]), int(self.W0.shape[1]))
        self.Xb, self.yb = self.be.asarray(self.Xn, self.dtype), self.be.asarray(self.yn, self.dtype)
        self.wb = None if self.weights is None else self.be.asarray(self.weights, self.dtype)

    def residual(self, u: Array) -> np.ndarray:
        """c^(1/2) (u - y) in float64 (n,): the residual of the (weighted) loss 1/2 sum_i c_i (u_i - y_i)^2."""
        r = self.be.to_numpy(u).astype(np.float64) - self.yn
        return r if self.weights is None else r * np.sqrt(self.weights)

    def kernel_scale(self, H: np.ndarray) -> np.ndarray:
        """C^(1/2) H C^(1/2), the kernel that drives the weighted residual (H itself without weights)."""
        if self.weights is None:
            return H
        root = np.sqrt(self.weights)
        return root[:, None] * H * root[None, :]

    @property
    def shape(self) -> tuple[int, int]:
        """(d, hi - lo): the shape of this rank's W."""
        return tuple(self.W0.shape)

    def gram(self, W: Array) -> np.ndarray:
        """H(W) of the whole network (n, n) float64, the same on every rank (docs/theory.md section 3)."""
        n = self.Xn.shape[0]
        buf = np.zeros(n * n + 1)
        try:
            with overflow_checked():  # overflow is detected by ops
                buf[:-1] = gram.gram(self.be, self.act, self.Xb, W, self.s).ravel()
        except ExpOverflowError:
            buf[-1] = 1.0  # tell the other ranks rather than leave them waiting
        buf = self.comm.sum(buf)
        if buf[-1] > 0:
            raise ExpOverflowError(
                "exp overflowed while computing the empirical kernel H(W) on some rank; lower the step size or use float64"
            )
        return buf[:-1].reshape(n, n)

    def forward_backward(
        self, W: Array, G: Array, step: ops.Step | None = None, primed: ops.Primed | None = None
    ) -> tuple[Array | None, bool]:
        """(u, backward_overflowed), G written in place (and ``step`` taken, ``ops.Step``; ``primed``: the
        forward pass already run by the previous step's, ``ops.Primed``).

        u is None when the predictions overflowed (on every rank alike).
        """
        reduce = _AllReduce(self.comm)
        try:
            with overflow_checked():  # overflow is detected by ops
                u, _ = ops.forward_backward(
                    self.be,
                    self.act,
                    self.Xb,
                    W,
                    self.a,
                    self.yb,
                    self.s,
                    self.plan,
                    G,
                    reduce=reduce,
                    weights=self.wb,
                    step=step,
                    primed=primed,
                )
        except ExpOverflowError:
            if reduce.u is None or not self.be.all_finite(reduce.u):
                return None, False  # forward overflow: u is global, every rank sees it
            return reduce.u, True  # only this rank's gradient overflowed
        return u, False

    def step_scalars(
        self, W: Array, *, moved: bool, overflow: bool, local: tuple[float, float] | None = None
    ) -> tuple[float, float, bool]:
        """(max_r ||w_r - w_r(0)||, ||W - W(0)||_F, any rank overflowed) over all ranks.

        ``local`` is this rank's movement of W when already measured (``ops.advance`` takes it with the
        step); else it is measured here (``ops.movement``) when ``moved``, and is 0 otherwise.
        One sum all-reduce of [||W_k - W_k(0)||_F^2, flag], and one max all-reduce when ``moved``.
        """
        if not moved:
            worst, frob = 0.0, 0.0
        else:
            worst, frob = local if local is not None else ops.movement(self.be, W, self.W0, self.plan)
        frob_sq, flags = self.comm.sum(np.array([frob * frob, float(overflow)]))
        if moved:
            worst = float(self.comm.max(np.array([worst]))[0])
        return worst, math.sqrt(frob_sq), bool(flags > 0)


class _AllReduce:
    """The ``reduce`` of ``ops.forward_backward`` on a shard: the sum of the partial predictions over the ranks.

    It keeps the reduced vector (``u``), so that after an overflow the shard
    can tell a forward overflow (u not finite, alike on every rank) from one
    of this rank's gradient alone.
    """

    def __init__(self, comm: Communicator) -> None:
        self.comm = comm
        self.u: Array | None = None

    def __call__(self, u_partial: Array) -> Array:
        self.u = self.comm.sum_(u_partial)
        return self.u
