"""The nested-feature scan: the softmax estimate of every width of a grid in one pass over features (docs/theory.md section 7).

Features are nested (``softmax_features.feature_weights``): the width-m
estimate uses the first m features of any longer draw. The estimate

    A_hat_m = Phi_m(Q) Phi_m(K)^T = (1/m) sum_{r<m} phi_{w_r}(Q) phi_{w_r}(K)^T      (n_q x n_k)

is therefore a running sum, handed out at each grid width: the whole grid
costs what the widest estimate costs (n_q n_k max(widths) multiply-adds),
and memory stays O(n_q n_k + (n_q + n_k) block). It is the attention
counterpart of ``scan.nested_gram`` (the network's NTK-type Gram over
neurons): a cross product of two feature sets, not a symmetric Gram, so it
is its own short loop.

Example
-------
>>> import numpy as np
>>> X = np.eye(3)[:2] * 0.5
>>> [(m, A.shape) for m, A in nested_softmax(X, X, [2, 6], seed=0)]
[(2, (2, 2)), (6, (2, 2))]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..core.errors import ExpOverflowError
from ..core.softmax_features import CHUNK, check_variant, feature_weights, log_features
from ..core.validation import check_X
from .scan import check_widths

#: Features per block of the running sum (the n x block feature matrices).
BLOCK = 512


def nested_softmax(
    Q: Any, K: Any, widths: Sequence[int], *, seed: int, variant: str = "iid", block: int = BLOCK
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(m, A_hat_m)`` for each width m of ``widths`` (increasing), in one pass over features.

    A_hat_m = Phi_m(Q) Phi_m(K)^T with the first m features of
    ``feature_weights(d, 0, m, seed=seed, variant=variant)``; it equals
    ``positive_features(Q, W) @ positive_features(K, W).T`` for that W.
    Pass the same array as Q and K for self-attention (the features are
    then computed once per block).

    Parameters
    ----------
    Q : array (n_q, d)
    K : array (n_k, d)
    widths : sequence of int
        Strictly increasing feature counts >= 1.
    seed : int
        The features' seed (>= 0).
    variant : {"iid", "orthogonal"}
    block : int
        Features per matrix product.

    Yields
    ------
    m : int
    A_hat : ndarray (n_q, n_k), float64, a fresh array.

    Raises
    ------
    ExpOverflowError
        When a feature overflows float64 (queries or keys of very large norm).
    """
    Qa = check_X(Q, name="Q", dtype=np.float64, warn_ball=False)
    Ka = Qa if K is Q else check_X(K, name="K", dtype=np.float64, warn_ball=False, d=Qa.shape[1])
    ws = check_widths(widths)
    check_variant(variant)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if int(block) < 1:
        raise ValueError(f"block must be a positive integer, got {block!r}")
    return _scan(Qa, Ka, ws, int(seed), variant, int(block))


def _scan(
    Q: np.ndarray, K: np.ndarray, widths: list[int], seed: int, variant: str, block: int
) -> Iterator[tuple[int, np.ndarray]]:
    d = Q.shape[1]
    S = np.zeros((Q.shape[0], K.shape[0]))
    count = w_lo = w_hi = 0  # features summed so far; drawn features [w_lo, w_hi) held in W
    W = np.empty((d, 0))
    for m in widths:
        while count < m:
            if count >= w_hi:
                w_lo, w_hi = count, min(count + max(block, CHUNK), widths[-1])  # at least one generator chunk per draw
                W = feature_weights(d, w_lo, w_hi, seed=seed, variant=variant)
            hi = min(m, w_hi, count + block)
            Wb = W[:, count - w_lo : hi - w_lo]
            with np.errstate(over="ignore"):
                FQ = np.exp(log_features(Q, Wb))
                FK = FQ if K is Q else np.exp(log_features(K, Wb))
            S += FQ @ FK.T
            count = hi
        if not np.isfinite(S).all():
            raise ExpOverflowError(
                f"a positive feature exp(<w, x> - ||x||^2/2) overflowed float64 within the first {m} features; "
                "scale queries and keys down (a higher temperature)"
            )
        yield m, S / m
