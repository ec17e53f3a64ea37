"""The theorem's quantities (docs/theory.md sections 4-5), each with its formula and provenance.

Provenance tags, as in docs/theory.md:

- [paper]   stated in the abstract of Gao, Mahadevan & Song (2023);
- [derived] rebuilt from the abstract and the analyses it names (Song & Yang
  2019; Munteanu et al. 2022) and checked numerically, not read in the paper.

The [derived] constants are for ``||x_i|| <= 1``, ``|y_i| <= 1``, s = 1 and the
coupled initialisation. Everything is float64 and works in log space where
the numbers are astronomically large (they are: the bound is loose).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from . import display
from .validation import check_positive, check_probability

PAPER = "[paper]"
DERIVED = "[derived]"


#: Largest lambda = lambda_min(H^cts) for ||x_i|| <= 1: lambda_min <= H^cts_ii = ||x_i||^2 e^{2 ||x_i||^2} <= e^2.
LAMBDA_MAX = math.e**2


def weight_bound(m: float, n: float, delta: float) -> float:
    """B = sqrt(2 log(6 m n / delta)) [derived], docs/theory.md section 4.

    With probability 1 - delta/3, ``|<w_r(0), x_i>| <= B`` for all r, i when
    ||x_i|| <= 1 (Gaussian tail plus a union bound over m n pairs).
    """
    return _weight_bound_log(
        math.log(check_positive(m, "m")), check_positive(n, "n"), check_probability(delta, "delta")
    )


def _weight_bound_log(log_m: float, n: float, delta: float) -> float:
    """``weight_bound`` from log m, in log space (no overflow for astronomically wide m or tiny delta)."""
    return math.sqrt(2.0 * (math.log(6.0) + log_m + math.log(n) - math.log(delta)))


def check_lambda(lam: Any, name: str = "lambda") -> float:
    """lambda in (0, e^2] (``LAMBDA_MAX``: no larger lambda exists for ||x_i|| <= 1); ValueError naming ``name`` otherwise."""
    lam = check_positive(lam, name)
    if lam > LAMBDA_MAX:
        raise ValueError(
            f"{name} = {lam:g} is above e^2 = {LAMBDA_MAX:.4f}, the largest lambda_min(H^cts) of points with ||x_i|| <= 1 "
            "(lambda_min <= H^cts_ii = ||x_i||^2 e^{2 ||x_i||^2}); give lambda_min(H^cts) of your data"
        )
    return lam


def radius(lam: float, n: float, B: float) -> float:
    """R = lambda / (8 e n e^{2B}) [derived], docs/theory.md section 5: the radius no neuron leaves."""
    return check_positive(lam, "lambda") / (8.0 * math.e * check_positive(n, "n") * math.exp(2.0 * B))


def _log_width_terms(log_m: float, n: float, lam: float, delta: float) -> tuple[float, float, float, float]:
    B = _weight_bound_log(log_m, n, delta)
    R = radius(lam, n, B)
    t1 = math.log(64.0) + 2 * math.log(n) + 4 * B + math.log(math.log(6.0 * n * n / delta)) - 2 * math.log(lam)
    t2 = math.log(32.0) + 1 + R + 2 * math.log(n) + 3 * B - 2 * math.log(lam)
    return t1, t2, B, R


@dataclass(frozen=True)
class WidthBound:
    """Smallest m with m >= max(term1, term2) [derived], docs/theory.md section 5.

    term1 = 64 n^2 e^{4B} log(6 n^2/delta) / lambda^2   (kernel concentration)
    term2 = 32 e^{1+R} n^2 e^{3B} / lambda^2            (movement <= R)

    B depends on m, so m is the fixed point found by bisection in log m.
    """

    m: float
    log10_m: float
    B: float
    R: float
    binding_term: str
    provenance: str = DERIVED


def required_width(n: float, lam: float, delta: float) -> WidthBound:
    """The theorem's sufficient width for n points with lambda = lambda_min(H^cts) [derived], docs/theory.md section 5.

    The smallest m with

        m >= max( 64 n^2 e^{4B} log(6 n^2/delta) / lambda^2,  32 e^{1+R} n^2 e^{3B} / lambda^2 ),
        B = sqrt(2 log(6 m n / delta)),  R = lambda / (8 e n e^{2B}),

    found by bisection in log m (``m`` is returned as a float; ``log10_m``
    stays exact when m overflows float64). The [paper] states only the order
    m = Omega(n^{2+o(1)} log(n/delta)); these constants are [derived].

    >>> round(required_width(10, 0.5, 0.1).log10_m, 2)
    24.99
    """
    n = check_positive(n, "n")
    lam = check_lambda(lam)
    delta = check_probability(delta, "delta")
    # In x = log m, log term1 - x = c + 4 sqrt(2 (log(6n/delta) + x)) - x is concave, and term1
    # dominates term2 (their log ratio is B + log 2 - 1 + log log(6n^2/delta) - R > 0 unless lambda
    # is absurdly large), so once m = 1 violates the bound the widths that satisfy it are [m*, inf)
    # and bisection in x finds m*, the minimal one.
    if max(_log_width_terms(0.0, n, lam, delta)[:2]) <= 0.0:
        t1, t2, B, R = _log_width_terms(0.0, n, lam, delta)
        return WidthBound(m=1.0, log10_m=0.0, B=B, R=R, binding_term="concentration" if t1 >= t2 else "movement")
    lo, hi = 0.0, 1.0
    while max(_log_width_terms(hi, n, lam, delta)[:2]) > hi:
        hi *= 2
        if hi > 1e6:  # pragma: no cover - cannot happen for finite inputs
            raise OverflowError("the width bound does not converge")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if max(_log_width_terms(mid, n, lam, delta)[:2]) > mid:
            lo = mid
        else:
            hi = mid
    t1, t2, B, R = _log_width_terms(hi, n, lam, delta)
    return WidthBound(
        m=math.exp(hi) if hi < 709 else math.inf,
        log10_m=hi / math.log(10),
        B=B,
        R=R,
        binding_term="concentration" if t1 >= t2 else "movement",
    )


def step_size(m: float, n: float, lam: float, B: float, R: float) -> float:
    """eta = 0.1 lambda / (m n^2 e^{4(B+R)}) [derived], docs/theory.md section 5."""
    return (
        0.1
        * check_positive(lam, "lambda")
        / (check_positive(m, "m") * check_positive(n, "n") ** 2 * math.exp(4 * (B + R)))
    )


def iterations(n: float, lam: float, B: float, R: float, epsilon: float) -> float:
    """T = 20 n^2 e^{4(B+R)} lambda^-2 log(n/epsilon) [derived], docs/theory.md section 5."""
    n = check_positive(n, "n")
    lam, epsilon = check_positive(lam, "lambda"), check_positive(epsilon, "epsilon")
    if epsilon >= n:  # log(n / epsilon) <= 0: ||u(0) - y|| <= sqrt(n) <= epsilon already (|y_i| <= 1, u(0) = 0)
        return 0.0
    log_t = math.log(20.0) + 2 * math.log(n) + 4 * (B + R) - 2 * math.log(lam) + math.log(math.log(n / epsilon))
    return math.exp(log_t) if log_t < 709 else math.inf  # in log space: lambda = 1e-120 gives inf, not an overflow


def movement_bound(n: float, B: float, R: float, initial_residual: float, m: float, lam: float) -> float:
    """max_r ||w_r(t) - w_r(0)|| <= 4 sqrt(n) e^{B+R} ||u(0) - y|| / (m lambda) [derived], docs/theory.md section 5."""
    return (
        4.0
        * math.sqrt(check_positive(n, "n"))
        * math.exp(B + R)
        * float(initial_residual)
        / (check_positive(m, "m") * check_positive(lam, "lambda"))
    )


def linear_rate_curve(t: Any, lr: float, m: float, s: float, lam: float, initial_residual: float) -> np.ndarray:
    """Bound on ||u(t) - y||_2: (1 - lr m s^2 lambda / 2)^{t/2} ||u(0) - y||_2 [derived], docs/theory.md section 4.

    Valid while lambda_min(H(W(t))) >= m s^2 lambda / 2.
    """
    rate = 1.0 - lr * m * s * s * lam / 2.0
    if not 0 <= rate < 1:
        raise ValueError(
            f"1 - lr m s^2 lambda / 2 = {rate:.4g} is outside [0, 1); the bound needs lr <= 2 / (m s^2 lambda)"
        )
    t = np.asarray(t, dtype=np.float64)
    return np.sqrt(rate**t) * float(initial_residual)


def paper_width(n: float, delta: float) -> float:
    """n^2 log(n / delta): the order of the [paper]'s width, m = Omega(n^{2+o(1)} log(n/delta)).

    The paper's constant and o(1) are not stated in its abstract; this is the
    shape of the bound, not a number to compare against widths directly.
    """
    n = check_positive(n, "n")
    return n * n * math.log(n / check_probability(delta, "delta"))


@dataclass(frozen=True)
class TheoremQuantities:
    """Every number of docs/theory.md section 5 for one (n, lambda, delta, epsilon)."""

    n: int
    lam: float
    delta: float
    epsilon: float
    width: float
    log10_width: float
    binding_term: str
    B: float
    R: float
    step_size: float
    iterations: float
    movement_bound: float
    paper_width_order: float

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(name, value, formula, provenance) for printing."""
        return [
            ("B", f"{self.B:.6g}", "sqrt(2 log(6 m n / delta))", DERIVED),
            ("R", f"{self.R:.6g}", "lambda / (8 e n e^{2B})", DERIVED),
            (
                "m (theorem width)",
                f"{self.width:.6g} (10^{self.log10_width:.2f})",
                f"max(64 n^2 e^4B log(6n^2/delta), 32 e^(1+R) n^2 e^3B) / lambda^2; binding: {self.binding_term}",
                DERIVED,
            ),
            ("eta (step size)", f"{self.step_size:.6g}", "0.1 lambda / (m n^2 e^{4(B+R)})", DERIVED),
            ("T (iterations)", f"{self.iterations:.6g}", "20 n^2 e^{4(B+R)} lambda^-2 log(n/epsilon)", DERIVED),
            (
                "movement bound",
                f"{self.movement_bound:.6g}",
                "4 sqrt(n) e^{B+R} ||u(0)-y|| / (m lambda), ||u(0)-y|| <= sqrt(n)",
                DERIVED,
            ),
            ("width order", f"{self.paper_width_order:.6g}", "n^{2+o(1)} log(n/delta), constant unknown", PAPER),
        ]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __repr__(self) -> str:
        """One line: the inputs and the headline numbers (``rows()`` has all, with formulas)."""
        return display.line(
            "TheoremQuantities",
            [
                ("n", self.n),
                ("lambda", self.lam),
                ("delta", self.delta),
                ("width", self.width),
                ("step_size", self.step_size),
                ("iterations", self.iterations),
                ("binding", self.binding_term),
            ],
        )

    def _repr_html_(self) -> str:
        return display.html_table(
            f"Theorem quantities: n = {self.n}, lambda = {display.number(self.lam)}, delta = {self.delta}, "
            f"epsilon = {self.epsilon}",
            self.rows(),
            header=("quantity", "value", "formula", "provenance"),
        )


def theorem_quantities(
    n: int, lam: float, delta: float = 0.1, epsilon: float = 1e-3, initial_residual: float | None = None
) -> TheoremQuantities:
    """All of docs/theory.md section 5 for n points, lambda = lambda_min(H^cts), failure probability delta.

    ``initial_residual`` defaults to sqrt(n), the worst case for ``|y_i| <= 1``
    and coupled initialisation (u(0) = 0).
    """
    epsilon = check_positive(epsilon, "epsilon")
    wb = required_width(n, lam, delta)
    r0 = math.sqrt(n) if initial_residual is None else check_positive(initial_residual, "initial_residual")
    if epsilon >= r0:
        raise ValueError(
            f"epsilon = {epsilon:g} is not below the initial residual ||u(0) - y||_2 = {r0:.4g} (sqrt(n) for |y_i| <= 1): "
            "no step is needed; give a smaller epsilon"
        )
    return TheoremQuantities(
        n=int(n),
        lam=float(lam),
        delta=float(delta),
        epsilon=float(epsilon),
        width=wb.m,
        log10_width=wb.log10_m,
        binding_term=wb.binding_term,
        B=wb.B,
        R=wb.R,
        step_size=step_size(wb.m, n, lam, wb.B, wb.R) if math.isfinite(wb.m) else 0.0,
        iterations=iterations(n, lam, wb.B, wb.R, epsilon),
        movement_bound=movement_bound(n, wb.B, wb.R, r0, wb.m, lam) if math.isfinite(wb.m) else 0.0,
        paper_width_order=paper_width(n, delta),
    )
