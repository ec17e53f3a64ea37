"""Candidate laws for the width threshold m*, and the covariates they read (docs/theory.md section 6).

Each law predicts log m* of a seed from its data alone (n, lambda,
||H^cts||_op, the variance proxy v), up to fitted constants:

===================  ===================================  ===================
law                  m* =                                 fitted
===================  ===================================  ===================
``pooled``           C n^a lambda^b                       log C, a, b
``concentration``    C ||H^cts||_op ln(n) / lambda^2      log C
``variance``         C v ln(n) / lambda^2                 log C
``concentration-n``  C ||H^cts||_op n^a / lambda^2        log C, a
===================  ===================================  ===================

v = ||E[(h - H^cts)^2]||_op is the matrix-Bernstein variance of one neuron's
kernel h = (X X^T) o (phi phi^T), phi = exp(X w), w ~ N(0, I): the sum
(1/m) sum_r h_r deviates from H^cts by about sqrt(2 v ln(2n) / m), so the
op criterion at c lambda needs m of order v ln(n) / (c lambda)^2. exp
features have no almost-sure bound, so Bernstein's L term is left out and
the law is a proxy, tested by prediction, not a bound.

E[h^2] has a closed form: with s_i = ||x_i||^2, G = X X^T and
E[phi_i phi_j^2 phi_k] = exp(||x_i + 2 x_j + x_k||^2 / 2),

    E[h^2]_ik = exp(s_i/2 + s_k/2 + G_ik) (A D A)_ik,   A_ij = G_ij e^{2 G_ij},  D = diag(e^{2 s_j}).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import kernels
from ..core.validation import check_X


def bernstein_variance(X: np.ndarray) -> float:
    """v = ||E[h^2] - (H^cts)^2||_op for the exp network's one-neuron kernel h (module docstring), X (n, d)."""
    Xa = check_X(X, dtype=np.float64, warn_ball=False)
    G = Xa @ Xa.T
    s = np.diag(G)
    A = G * np.exp(2.0 * G)
    Eh2 = np.exp(0.5 * s[:, None] + 0.5 * s[None, :] + G) * ((A * np.exp(2.0 * s)[None, :]) @ A)
    H = kernels.ntk(Xa, activation="exp")
    V = Eh2 - H @ H
    return float(kernels.operator_norm(0.5 * (V + V.T), method="dense"))


@dataclass(frozen=True)
class Law:
    """A candidate law: the fixed part of log m* (its 'offset') and the covariates whose coefficients are fitted."""

    name: str
    formula: str
    #: log of the fixed factor, from arrays n, lambda, opnorm, variance (natural log).
    offset: Callable[[dict[str, np.ndarray]], np.ndarray]
    #: covariate columns (beside the intercept) whose coefficients are fitted.
    covariates: Callable[[dict[str, np.ndarray]], np.ndarray]
    names: tuple[str, ...]


def _zero(c: dict[str, np.ndarray]) -> np.ndarray:
    return np.zeros_like(c["n"], dtype=float)


def _none(c: dict[str, np.ndarray]) -> np.ndarray:
    return np.zeros((c["n"].size, 0))


def _pooled_cov(c: dict[str, np.ndarray]) -> np.ndarray:
    return np.column_stack([np.log(c["n"]), np.log(c["lambda"])])


def _concentration(c: dict[str, np.ndarray]) -> np.ndarray:
    return np.log(c["opnorm"]) + np.log(np.log(c["n"])) - 2 * np.log(c["lambda"])


def _opnorm_over_lambda2(c: dict[str, np.ndarray]) -> np.ndarray:
    return np.log(c["opnorm"]) - 2 * np.log(c["lambda"])


def _log_n(c: dict[str, np.ndarray]) -> np.ndarray:
    return np.log(c["n"])[:, None]


def _variance(c: dict[str, np.ndarray]) -> np.ndarray:
    return np.log(c["variance"]) + np.log(np.log(c["n"])) - 2 * np.log(c["lambda"])


#: The candidate laws, name -> Law.
LAWS: dict[str, Law] = {
    law.name: law
    for law in (
        Law("pooled", "C n^a lambda^b", _zero, _pooled_cov, ("intercept", "log n", "log lambda")),
        Law("concentration", "C ||H^cts||_op ln(n) / lambda^2", _concentration, _none, ("intercept",)),
        Law("variance", "C v ln(n) / lambda^2", _variance, _none, ("intercept",)),
        Law("concentration-n", "C ||H^cts||_op n^a / lambda^2", _opnorm_over_lambda2, _log_n, ("intercept", "log n")),
    )
}


#: The best law per criterion, fitted on every stored row (docs/results/width/rows.csv; refreshed by
#: ``python docs/gen_results.py``, checked by tests/test_width_laws.py): natural-log constant with its
#: 90 % profile interval, fitted coefficients beyond the constant, sigma of log m*, the held-out error.
#: lambda over the stored rows the laws were fitted on (a prediction outside it is an extrapolation).
LAMBDA_RANGE = [0.0002190580138, 7.389056099]
FITTED: dict[str, dict[str, Any]] = {
    "op1_4": {
        "law": "concentration",
        "log_C": 9.199515573011782,
        "log_C_low": 9.16001133537316,
        "log_C_high": 9.239185338064264,
        "coef": [],
        "sigma": 0.6525378233685231,
        "fitted_on": "beyondcap, dsweep, fixedlambda, full",
        "lambda_range": LAMBDA_RANGE,
        "n_range": [8, 256],
        "held_out_rms_log2": "0.82",
    },
    "op1_2": {
        "law": "concentration",
        "log_C": 7.8012843863417025,
        "log_C_low": 7.759294070082519,
        "log_C_high": 7.8433840131873955,
        "coef": [],
        "sigma": 0.6953276516747218,
        "fitted_on": "beyondcap, dsweep, fixedlambda, full",
        "lambda_range": LAMBDA_RANGE,
        "n_range": [8, 256],
        "held_out_rms_log2": "0.86",
    },
    "eig1_2": {
        "law": "pooled",
        "log_C": 3.592811781194225,
        "log_C_low": 3.467632228127136,
        "log_C_high": 3.717876061913373,
        "coef": [0.5302069879493235, -0.0661947169630774],
        "sigma": 0.5740252017081465,
        "fitted_on": "beyondcap, dsweep, fixedlambda, full",
        "lambda_range": LAMBDA_RANGE,
        "n_range": [8, 256],
        "held_out_rms_log2": "0.70",
    },
}


def law_covariates(n: int, X: np.ndarray, lam: float, opnorm: float) -> dict[str, float]:
    """The numbers every law reads for one data set: n, lambda, ||H^cts||_op and the variance proxy v."""
    return {"n": float(n), "lambda": float(lam), "opnorm": float(opnorm), "variance": bernstein_variance(X)}
