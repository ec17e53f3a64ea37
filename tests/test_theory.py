"""The theorem's quantities (docs/theory.md sections 4-5) against direct evaluation of their formulas.

theory.py works in log space; here each formula is evaluated plainly from
docs/theory.md, and the width is checked to be the minimal fixed point of
m >= max(term1(m), term2(m)) (B depends on m).
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

from expreg import ExpNet, kernels, make_dataset, theory, train


def B_direct(m, n, delta):
    return math.sqrt(2 * math.log(6 * m * n / delta))


def terms_direct(m, n, lam, delta):
    """(term1, term2) of docs/theory.md section 5 evaluated at width m."""
    B = B_direct(m, n, delta)
    R = lam / (8 * math.e * n * math.exp(2 * B))
    t1 = 64 * n**2 * math.exp(4 * B) * math.log(6 * n**2 / delta) / lam**2
    t2 = 32 * math.exp(1 + R) * n**2 * math.exp(3 * B) / lam**2
    return t1, t2


def test_simple_formulas_match_direct_evaluation() -> None:
    m, n, delta, lam, eps = 1e7, 50, 0.1, 0.3, 1e-3
    B = theory.weight_bound(m, n, delta)
    assert pytest.approx(B_direct(m, n, delta), rel=1e-14) == B
    R = theory.radius(lam, n, B)
    assert pytest.approx(lam / (8 * math.e * n * math.exp(2 * B)), rel=1e-14) == R
    assert theory.step_size(m, n, lam, B, R) == pytest.approx(0.1 * lam / (m * n**2 * math.exp(4 * (B + R))), rel=1e-13)
    assert theory.iterations(n, lam, B, R, eps) == pytest.approx(
        20 * n**2 * math.exp(4 * (B + R)) / lam**2 * math.log(n / eps), rel=1e-13
    )
    assert theory.movement_bound(n, B, R, 2.0, m, lam) == pytest.approx(
        4 * math.sqrt(n) * math.exp(B + R) * 2.0 / (m * lam), rel=1e-13
    )
    assert theory.paper_width(n, delta) == pytest.approx(n**2 * math.log(n / delta), rel=1e-14)
    t = np.arange(5)
    lr, width, s, r0 = 1e-3, 100, 0.1, 3.0
    curve = theory.linear_rate_curve(t, lr, width, s, lam, r0)
    np.testing.assert_allclose(curve, np.sqrt((1 - lr * width * s**2 * lam / 2) ** t) * r0, rtol=1e-14)


def test_weight_bound_holds_with_the_stated_probability() -> None:
    # P(max_{r,i} |<w_r(0), x_i>| > B) <= delta / 3 for ||x_i|| <= 1 (Gaussian tail + union bound)
    m, n, d, delta = 200, 10, 5, 0.6
    B = theory.weight_bound(m, n, delta)
    X = make_dataset(n, d, seed=0)[0]
    rng = np.random.default_rng(0)
    trials = 400
    exceed = sum(np.abs(X @ rng.standard_normal((d, m))).max() > B for _ in range(trials))
    assert exceed / trials <= delta / 3


@pytest.mark.parametrize("n, lam, delta", [(10, 0.5, 0.1), (64, 1.68, 0.1), (1000, 1e-3, 0.01), (3, 5.0, 0.5)])
def test_width_is_the_minimal_fixed_point(n: int, lam: float, delta: float) -> None:
    wb = theory.required_width(n, lam, delta)
    m = wb.m
    assert math.isfinite(m) and wb.log10_m == pytest.approx(math.log10(m), rel=1e-12)
    t1, t2 = terms_direct(m, n, lam, delta)
    assert m >= max(t1, t2) * (1 - 1e-9)  # satisfies its inequality (to rounding)
    smaller = m * (1 - 1e-6)
    assert smaller < max(terms_direct(smaller, n, lam, delta))  # a slightly smaller width does not
    assert pytest.approx(B_direct(m, n, delta), rel=1e-10) == wb.B
    assert pytest.approx(theory.radius(lam, n, wb.B), rel=1e-10) == wb.R
    assert wb.binding_term == ("concentration" if t1 >= t2 else "movement")
    assert wb.provenance == "[derived]"


def test_width_grows_with_n_and_falls_with_lambda() -> None:
    def w(n, lam):
        return theory.required_width(n, lam, 0.1).m

    assert w(10, 0.5) < w(20, 0.5) < w(40, 0.5)
    assert w(20, 0.1) > w(20, 0.5) > w(20, 2.0)
    # at the fixed point m = term1(m): halving lambda multiplies m by 4 e^{4 (B' - B)}, more than 4
    a, b = theory.required_width(20, 0.5, 0.1), theory.required_width(20, 1.0, 0.1)
    assert a.binding_term == b.binding_term == "concentration"
    assert a.m / b.m == pytest.approx(4 * math.exp(4 * (a.B - b.B)), rel=1e-8)


def test_theorem_quantities_are_consistent() -> None:
    q = theory.theorem_quantities(64, 1.68, 0.1, 1e-3)
    wb = theory.required_width(64, 1.68, 0.1)
    assert q.width == wb.m and q.B == wb.B and q.R == wb.R
    assert q.step_size == pytest.approx(theory.step_size(wb.m, 64, 1.68, wb.B, wb.R))
    assert q.iterations == pytest.approx(theory.iterations(64, 1.68, wb.B, wb.R, 1e-3))
    assert q.movement_bound == pytest.approx(
        theory.movement_bound(64, wb.B, wb.R, 8.0, wb.m, 1.68)
    )  # ||u(0)-y|| <= sqrt(n)
    assert q.movement_bound <= wb.R  # the proof's consistency: no neuron leaves the radius R
    assert set(q.as_dict()) >= {
        "n",
        "lam",
        "delta",
        "epsilon",
        "width",
        "B",
        "R",
        "step_size",
        "iterations",
        "movement_bound",
    }


def test_provenance_is_stated_in_rows_and_docstrings() -> None:
    rows = theory.theorem_quantities(20, 0.6).rows()
    assert all(len(r) == 4 and r[3] in ("[paper]", "[derived]") for r in rows)
    assert {r[3] for r in rows} == {"[paper]", "[derived]"}
    for fn in (
        theory.weight_bound,
        theory.radius,
        theory.required_width,
        theory.step_size,
        theory.iterations,
        theory.movement_bound,
        theory.linear_rate_curve,
        theory.paper_width,
    ):
        doc = inspect.getdoc(fn) or ""
        assert "[derived]" in doc or "[paper]" in doc, fn.__name__
        assert "docs/theory.md" in doc or "paper" in doc, fn.__name__


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: theory.weight_bound(10, 5, 1.5), r"delta must lie in \(0, 1\), got 1.5"),
        (lambda: theory.weight_bound(10, 5, 0.0), r"delta must be a positive finite number, got 0.0"),
        (lambda: theory.required_width(10, -1.0, 0.1), r"lambda must be a positive finite number, got -1.0"),
        (lambda: theory.required_width(10, float("inf"), 0.1), r"lambda must be a positive finite number"),
        (lambda: theory.theorem_quantities(10, 0.5, 0.1, epsilon=0.0), r"epsilon must be a positive finite number"),
        (lambda: theory.linear_rate_curve([0, 1], 10.0, 100, 1.0, 1.0, 1.0), r"outside \[0, 1\)"),
    ],
)
def test_bad_arguments(call, pattern) -> None:
    with pytest.raises(ValueError, match=pattern):
        call()


def test_linear_rate_bound_holds_for_a_lazy_run() -> None:
    # docs/theory.md section 4: ||u(t) - y|| <= (1 - eta m s^2 lambda / 2)^{t/2} ||u(0) - y|| while
    # lambda_min(H(W(t))) >= m s^2 lambda / 2, which this wide run satisfies
    X, y = make_dataset(12, 4, seed=1)
    net = ExpNet.init(4, 4096, seed=0)
    res = train(net, X, y, epsilon=1e-3, max_steps=2000, record_every=20)
    assert min(res.history.kernel_lambda_min) >= res.lambda_cts / 2
    t = np.arange(res.steps + 1)
    bound = theory.linear_rate_curve(t, res.lr, net.m, net.s, kernels.ntk_lambda(X), res.initial_residual)
    assert np.all(np.asarray(res.history.residual) <= bound * (1 + 1e-9))


def test_docstring_examples_run() -> None:
    import doctest

    import expreg.core.theory

    failures, tried = doctest.testmod(expreg.theory, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried > 0 and failures == 0


# --- issue 19: extreme inputs named by their option, never a math range error ------------------------------


@pytest.mark.parametrize("lam, delta", [(1e-120, 0.1), (1e-300, 1e-300), (0.5, 1e-300)])
def test_extreme_lambda_and_delta_give_finite_logs_not_overflow(lam: float, delta: float) -> None:
    import math

    from expreg.core.theory import theorem_quantities

    q = theorem_quantities(10, lam, delta)
    assert math.isfinite(q.log10_width) and q.log10_width > 0 and q.iterations > 0
    # the width's log is the fixed point m = 64 n^2 e^{4B} log(6 n^2/delta) / lambda^2 (concentration binding)
    B = math.sqrt(2 * (math.log(6) + q.log10_width * math.log(10) + math.log(10) - math.log(delta)))
    log_t1 = math.log(64) + 2 * math.log(10) + 4 * B + math.log(math.log(600 / delta)) - 2 * math.log(lam)
    assert abs(log_t1 / math.log(10) - q.log10_width) < 1e-6


def test_lambda_above_e_squared_and_epsilon_above_the_residual_are_named() -> None:
    from expreg.cli import main
    from expreg.core.theory import theorem_quantities

    with pytest.raises(ValueError, match=r"lambda = 1e\+200 is above e\^2"):
        theorem_quantities(10, 1e200)
    with pytest.raises(ValueError, match="not below the initial residual"):
        theorem_quantities(10, 0.5, epsilon=100.0)
    assert main(["theory", "--n", "10", "--lambda", "1e200"]) == 2
    assert main(["theory", "--n", "10", "--lambda", "0.5", "--epsilon", "100"]) == 2
