"""Extreme eigenvalues (expreg.eigen) against matrices of known spectrum.

Truth is built in: H = Q diag(mu) Q^T with Q a random orthogonal matrix and
mu chosen, so every method (dense LAPACK, Lanczos, shift-invert Lanczos)
must return the chosen extremes, to a relative 1e-8 of the spectral norm
(what the lazy criteria need).
"""

from __future__ import annotations

import numpy as np
import pytest

from expreg import eigen, kernels


def orthogonal(n: int, seed: int) -> np.ndarray:
    """A random orthogonal matrix (QR of a Gaussian matrix)."""
    Q, R = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return Q * np.sign(np.diag(R))


def with_spectrum(mu: np.ndarray, seed: int) -> np.ndarray:
    Q = orthogonal(len(mu), seed)
    H = (Q * mu) @ Q.T
    return (H + H.T) / 2


def spectra(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    return {
        # a kernel: a few large eigenvalues, then a long tail down to a small lambda_min
        "kernel": np.sort(np.concatenate([[300.0, 40.0, 9.0], np.geomspace(2.0, 1e-3, n - 3)])),
        # clustered at the bottom (plain Lanczos from the bottom needs thousands of steps here)
        "clustered": np.sort(np.concatenate([1e-2 * (1 + 1e-3 * rng.random(n - 1)), [50.0]])),
        # indefinite, the largest magnitude at the bottom (a kernel deviation H^dis - H^cts)
        "indefinite": np.sort(np.concatenate([[-7.0], rng.uniform(-3.0, 5.0, n - 1)])),
        # singular (a kernel of a width m with m d < n)
        "singular": np.sort(np.concatenate([np.zeros(n // 2), rng.uniform(0.5, 4.0, n - n // 2)])),
    }


@pytest.mark.parametrize(
    ("method", "n"), [("dense", 40), ("iterative", 40), ("auto", 40), ("dense", 300), ("iterative", 300)]
)
def test_extremes_and_norm_match_the_chosen_spectrum(method: str, n: int) -> None:
    for name, mu in spectra(n).items():
        H = with_spectrum(mu, seed=n)
        tol = 1e-8 * np.abs(mu).max()
        lo, hi = eigen.extreme_eigenvalues(H, method=method)
        assert abs(lo - mu[0]) <= tol and abs(hi - mu[-1]) <= tol, name
        assert abs(eigen.lambda_min(H, method=method) - mu[0]) <= tol, name
        assert abs(eigen.lambda_max(H, method=method) - mu[-1]) <= tol, name
        assert abs(eigen.operator_norm(H, method=method) - np.abs(mu).max()) <= tol, name


@pytest.mark.parametrize("method", ["dense", "iterative"])
def test_lazy_criteria_match_the_chosen_spectra(method: str) -> None:
    n = 300
    rng = np.random.default_rng(0)
    mu_cts = np.sort(np.concatenate([[200.0], np.geomspace(5.0, 0.05, n - 1)]))
    Q = orthogonal(n, 1)
    H_cts = (Q * mu_cts) @ Q.T
    # a deviation with a known spectrum in the same eigenbasis: H^dis = Q diag(mu_cts + delta) Q^T
    delta = rng.uniform(-0.02, 0.01, n)
    delta[-1] = -0.5  # the largest |delta| sits on the top eigenvector
    Hdis = (Q * (mu_cts + delta)) @ Q.T
    dev, lam_dis = eigen.lazy_criteria((Hdis + Hdis.T) / 2, (H_cts + H_cts.T) / 2, float(mu_cts[0]), method=method)
    assert dev == pytest.approx(0.5, abs=1e-8 * 200)
    assert lam_dis == pytest.approx(np.min(mu_cts + delta), abs=1e-8 * 200)


def test_lazy_criteria_on_a_real_kernel_agree_with_numpy() -> None:
    from expreg import scan

    rng = np.random.default_rng(2)
    X = rng.standard_normal((450, 8))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    H_cts = kernels.ntk(X)
    ((_, Hdis),) = scan.nested_gram(X, [3000], seed=0)
    w_cts, w_dis, w_dev = (np.linalg.eigvalsh(A) for A in (H_cts, Hdis, Hdis - H_cts))
    dev, lam = eigen.lazy_criteria(Hdis, H_cts, float(w_cts[0]), method="iterative")
    norm = w_dis[-1]
    assert abs(dev - np.abs(w_dev).max()) <= 1e-8 * norm
    assert abs(lam - w_dis[0]) <= 1e-8 * norm


def test_kernels_reexports_the_same_functions() -> None:
    assert kernels.lambda_min is eigen.lambda_min and kernels.operator_norm is eigen.operator_norm


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="method"):
        eigen.extreme_eigenvalues(np.eye(2), method="lanczos")
    with pytest.raises(ValueError, match="square"):
        eigen.lambda_min(np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN or inf"):
        eigen.operator_norm(np.array([[1.0, np.nan], [np.nan, 1.0]]))
    with pytest.raises(ValueError, match="lam"):
        eigen.lazy_criteria(np.eye(2), np.eye(2), 0.0)
    with pytest.raises(ValueError, match="same points"):
        eigen.lazy_criteria(np.eye(2), np.eye(3), 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lambda_min_of_a_singular_kernel_accumulated_in_float32(dtype: type) -> None:
    """H^dis of a narrow network is singular (rank <= d m < n) and, in float32, indefinite at rounding level."""
    from expreg import scan

    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 4))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    for m, Hdis in scan.nested_gram(X, [8, 40, 400], seed=1, dtype=dtype):
        w = np.linalg.eigvalsh(Hdis)
        tol = 1e-8 * w[-1]
        assert abs(eigen.lambda_min(Hdis, method="iterative") - w[0]) <= tol, m
        lo, hi = eigen.extreme_eigenvalues(Hdis, method="iterative")
        assert abs(lo - w[0]) <= tol and abs(hi - w[-1]) <= tol, m
