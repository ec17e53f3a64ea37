"""The softmax kernel and its positive random features (docs/theory.md section 7).

For w ~ N(0, I_d) and any x, y in R^d,

    E[exp(<w,x>) exp(<w,y>)] = exp(||x + y||^2 / 2) = e^{<x,y>} e^{||x||^2/2} e^{||y||^2/2},

so expreg's NNGP kernel K(x, y) = exp(||x + y||^2 / 2) is the softmax kernel
e^{<x,y>} between diagonal factors, and

    phi_w(x) = exp(<w,x> - ||x||^2 / 2)

is an unbiased positive random feature of it: E[phi_w(q) phi_w(k)] = e^{<q,k>}.
With m features w_1 .. w_m, the feature map Phi(x) = (phi_{w_r}(x))_r / sqrt(m)
gives the estimate Phi(Q) Phi(K)^T of the attention matrix A = exp(Q K^T) that
linear attention (Performer's FAVOR+) uses. The neurons of an exp network at
initialisation are these w's.

Two ways to draw the w's (``VARIANTS``), each from its own random stream
(``streams.FEATURES``, sub-stream ``(variant, chunk)``), nested like the
network's neurons: feature r depends only on (seed, r, d, variant), so the
first m' features of a draw of m are the draw of m'.

- ``"iid"``: w_r ~ N(0, I_d) independent.
- ``"orthogonal"``: blocks of d features, features b d .. b d + d - 1 the
  columns of a Haar-random orthogonal matrix (QR of a Gaussian matrix, signs
  fixed by diag R), column j scaled by an independent chi_d-distributed
  length. Each w_r is still N(0, I_d) (a uniform direction times an
  independent chi_d length), so the estimate stays unbiased; within a block
  the directions are exactly orthogonal (Yu et al. 2016; Choromanski et al.
  2021, FAVOR+).

Examples
--------
>>> import numpy as np
>>> Q = np.array([[0.3, 0.1], [0.0, -0.2]]); K = np.array([[0.1, 0.4]])
>>> A = softmax(Q, K)
>>> A.shape, bool(np.allclose(A, np.exp(Q @ K.T)))
((2, 1), True)
>>> W = feature_weights(2, 0, 200_000, seed=0)
>>> est = positive_features(Q, W) @ positive_features(K, W).T
>>> bool(np.allclose(est, A, rtol=0.02))
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import streams
from .errors import ExpOverflowError
from .validation import check_X

#: The ways to draw features, and their sub-stream keys in ``streams.FEATURES``.
VARIANTS: dict[str, int] = {"iid": 0, "orthogonal": 1}
#: Features per generator chunk (i.i.d.); orthogonal chunks hold whole blocks of d.
CHUNK = 4096


def _finite(E: np.ndarray, what: str, *arrays: np.ndarray) -> np.ndarray:
    """``E`` if every entry is finite, else ``ExpOverflowError`` naming ``what`` and the largest input norm."""
    if not (np.isfinite(E.max()) and np.isfinite(E.min())):  # NaN propagates through max and min
        largest = max(float(np.sqrt((a * a).sum(axis=1)).max()) for a in arrays)
        raise ExpOverflowError(
            f"{what} is not finite in float64 (largest ||x|| {largest:.3g}): exp overflowed; "
            "scale queries and keys down (a higher temperature)"
        )
    return E


def check_variant(variant: str) -> str:
    """``variant`` if it is one of ``VARIANTS``; a ValueError naming them otherwise."""
    if variant not in VARIANTS:
        raise ValueError(f"feature variant {variant!r} is not known; use one of {', '.join(VARIANTS)}")
    return variant


def softmax(Q: Any, K: Any) -> np.ndarray:
    """The softmax kernel A_ij = exp(<q_i, k_j>) (n_q x n_k), float64 (docs/theory.md section 7).

    Unnormalised; ``attention_rows(softmax(Q, K))`` is the row-stochastic
    attention matrix softmax(Q K^T).

    Parameters
    ----------
    Q : array (n_q, d)
        Queries.
    K : array (n_k, d)
        Keys, same d.

    Raises
    ------
    ExpOverflowError
        When some <q_i, k_j> exceeds float64's exp range (about 709).
    """
    Qa = check_X(Q, name="Q", dtype=np.float64, warn_ball=False)
    Ka = check_X(K, name="K", dtype=np.float64, warn_ball=False, d=Qa.shape[1])
    with np.errstate(over="ignore"):
        return _finite(np.exp(Qa @ Ka.T), "the softmax kernel exp(<q, k>)", Qa, Ka)


def _chunk_size(d: int, variant: str) -> int:
    return CHUNK if variant == "iid" else d * max(1, CHUNK // d)


def _chunk(seed: int, k: int, d: int, variant: str) -> np.ndarray:
    """Chunk k of the features of this seed and variant: (d, chunk size)."""
    rng = streams.generator(int(seed), streams.FEATURES, VARIANTS[variant], int(k))
    if variant == "iid":
        return rng.standard_normal((d, CHUNK))
    blocks = max(1, CHUNK // d)
    G = rng.standard_normal((blocks, d, d))
    lengths = np.sqrt(rng.chisquare(d, size=(blocks, 1, d)))
    Qm, R = np.linalg.qr(G)  # batched; Q Haar once the signs of diag R are fixed
    signs = np.sign(np.diagonal(R, axis1=1, axis2=2))
    signs[signs == 0] = 1.0
    W = Qm * signs[:, None, :] * lengths  # column j of block b: a uniform direction times a chi_d length
    return np.ascontiguousarray(W.transpose(1, 0, 2).reshape(d, blocks * d))


def feature_weights(d: int, lo: int, hi: int, *, seed: int, variant: str = "iid") -> np.ndarray:
    """Features ``lo`` .. ``hi - 1`` of this seed and variant as the columns of a (d, hi - lo) float64 array.

    Each column is N(0, I_d); ``"orthogonal"`` makes the columns of each
    block of d (features b d .. b d + d - 1) exactly orthogonal (module
    docstring). Drawn from ``streams.generator(seed, streams.FEATURES,
    VARIANTS[variant], chunk)``: nested (any slice is drawn without the
    rest) and independent of the data and of every network.

    >>> W = feature_weights(4, 0, 8, seed=1, variant="orthogonal")
    >>> G = W[:, :4].T @ W[:, :4]
    >>> bool(np.allclose(G - np.diag(np.diag(G)), 0))
    True
    """
    check_variant(variant)
    if isinstance(d, bool) or int(d) != d or d < 1:
        raise ValueError(f"d must be a positive integer, got {d!r}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0 <= lo <= hi:
        raise ValueError(f"need 0 <= lo <= hi, got lo={lo}, hi={hi}")
    d, size = int(d), _chunk_size(int(d), variant)
    W = np.empty((d, hi - lo))
    for k in range(lo // size, -(-hi // size)):
        c_lo = k * size
        s_lo, s_hi = max(lo, c_lo), min(hi, c_lo + size)
        W[:, s_lo - lo : s_hi - lo] = _chunk(seed, k, d, variant)[:, s_lo - c_lo : s_hi - c_lo]
    return W


def log_features(X: np.ndarray, W: np.ndarray) -> np.ndarray:
    """log phi_w(x) = <w, x> - ||x||^2 / 2 for every row x of X (n, d) and column w of W (d, m): (n, m)."""
    return X @ W - 0.5 * (X * X).sum(axis=1)[:, None]


def positive_features(X: Any, W: Any) -> np.ndarray:
    """The feature map Phi(X) = exp(X W - ||x||^2 / 2) / sqrt(m), shape (n, m), float64.

    Phi(Q) Phi(K)^T is an unbiased estimate of ``softmax(Q, K)`` when the
    columns of W (d, m) are N(0, I_d) (``feature_weights``).
    """
    Xa = check_X(X, dtype=np.float64, warn_ball=False)
    Wa = check_X(
        np.asarray(W).T, name="W (transposed: one row per feature)", dtype=np.float64, d=Xa.shape[1], warn_ball=False
    ).T
    with np.errstate(over="ignore"):
        F = np.exp(log_features(Xa, Wa)) / np.sqrt(Wa.shape[1])
    return _finite(F, "the positive features exp(<w, x> - ||x||^2/2)", Xa)


def attention_rows(A: np.ndarray) -> np.ndarray:
    """Row-normalised attention P_ij = A_ij / sum_j A_ij of a positive matrix A (n_q, n_k)."""
    return A / A.sum(axis=1, keepdims=True)


def attention_errors(A_hat: np.ndarray, A: np.ndarray) -> tuple[float, float]:
    """(relative operator-norm error, mean total-variation error of the rows) of A_hat against A.

    ``||A_hat - A||_2 / ||A||_2`` (largest singular values), and
    ``mean_i (1/2) sum_j |P_hat_ij - P_ij|`` with P = ``attention_rows``.
    A_hat is entrywise non-negative (positive features make it so); a row of
    A_hat that underflowed to zero counts as total variation 1.

    >>> A = np.array([[2.0, 1.0], [1.0, 2.0]])
    >>> attention_errors(A, A)
    (0.0, 0.0)
    """
    rel = float(np.linalg.norm(A_hat - A, 2) / np.linalg.norm(A, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        tv_rows = 0.5 * np.abs(attention_rows(A_hat) - attention_rows(A)).sum(axis=1)
    # a row whose estimate underflowed to 0 (queries or keys of large norm) has no distribution: count it as TV 1
    return rel, float(np.where(np.isfinite(tv_rows), tv_rows, 1.0).mean())


__all__ = [
    "VARIANTS",
    "attention_errors",
    "attention_rows",
    "check_variant",
    "feature_weights",
    "log_features",
    "positive_features",
    "softmax",
]
