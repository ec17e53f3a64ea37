"""Synthetic data of the experiments: points on the unit sphere, bounded labels.

No downloads: the only real data set used elsewhere is scikit-learn's
bundled diabetes data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import streams
from .choices import LabelKind
from .storage import load_npz
from .validation import check_positive_int, check_X_y

LABELS = LabelKind.values()


def sphere(n: int, d: int, *, seed: int = 0) -> np.ndarray:
    """n points uniform on the unit sphere S^{d-1}, shape (n, d), float64.

    Drawn from the ``streams.DATA_POINTS`` stream of ``seed``: independent of the
    labels and of every network of any seed.

    Distinct with probability one (d >= 2), so lambda > 0 (docs/theory.md section 3).
    """
    n = check_positive_int(n, "n")
    d = check_positive_int(d, "d")
    rng = streams.generator(int(seed), streams.DATA_POINTS)
    Z = rng.standard_normal((n, d))
    if d == 1:
        return np.sign(Z) + 0.0
    return Z / np.linalg.norm(Z, axis=1, keepdims=True)


def equicorrelated(n: int, rho: float, *, seed: int = 0) -> np.ndarray:
    """n unit vectors in d = n + 1 with every pairwise inner product ``rho``, shape (n, n + 1), float64.

    x_i = Q (sqrt(1 - rho) e_i + sqrt(rho) e_{n+1}), Q a Haar-random rotation drawn
    from the ``streams.DATA_POINTS`` stream of ``seed``. The Gram matrix is
    X X^T = (1 - rho) I + rho 1 1^T for every seed, so (docs/theory.md section 6)

        H^cts = (e^2 - rho e^{1+rho}) I + rho e^{1+rho} 1 1^T,   lambda = e^2 - rho e^{1+rho}

    for every n: a family of data sets whose lambda stays fixed while n grows
    (``rho = 0``: orthonormal points, H^cts = e^2 I), while ||H^cts||_op =
    lambda + n rho e^{1+rho} grows with n when rho > 0. ``rho`` in [0, 1).
    """
    n = check_positive_int(n, "n")
    if not (0.0 <= float(rho) < 1.0):
        raise ValueError(f"rho must be in [0, 1) (the pairwise inner product of distinct unit vectors), got {rho!r}")
    rng = streams.generator(int(seed), streams.DATA_POINTS)
    base = np.zeros((n, n + 1))
    base[np.arange(n), np.arange(n)] = np.sqrt(1.0 - rho)
    base[:, n] = np.sqrt(rho)
    Q, R = np.linalg.qr(rng.standard_normal((n + 1, n + 1)))
    Q *= np.sign(np.diag(R))  # Haar: fix the signs of the QR factor
    X: np.ndarray = base @ Q.T
    return X


def labels(n: int, kind: str = "uniform", *, seed: int = 0) -> np.ndarray:
    """n labels: uniform on [-1, 1] ("uniform") or random signs ("sign"), shape (n,).

    Drawn from the ``streams.DATA_LABELS`` stream of ``seed``.
    """
    n = check_positive_int(n, "n")
    kind = LabelKind.parse(kind, "label_kind")
    rng = streams.generator(int(seed), streams.DATA_LABELS)
    if kind is LabelKind.uniform:
        return rng.uniform(-1.0, 1.0, size=n)
    return rng.integers(0, 2, size=n) * 2.0 - 1.0  # LabelKind.sign


def make_dataset(n: int, d: int, *, seed: int = 0, label_kind: str = "uniform") -> tuple[np.ndarray, np.ndarray]:
    """(X, y): ``sphere(n, d)`` and ``labels(n, label_kind)`` of one seed."""
    return sphere(n, d, seed=seed), labels(n, label_kind, seed=seed)


def load_dataset(path: str | Path, *, warn_ball: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Read arrays ``X`` (n, d) and ``y`` (n,) from an ``.npz`` file, validated.

    Only ``X`` and ``y`` are read, each after its header's size was checked
    against the bytes stored and the memory available (``storage.load_npz``).
    ``warn_ball``: warn when some ||x_i|| > 1 (off when the caller's training
    warns anyway).
    """
    data = load_npz(path, required=("X", "y"), only=("X", "y"))
    return check_X_y(data["X"], data["y"], dtype=np.float64, warn_ball=warn_ball)
