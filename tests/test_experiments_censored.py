"""Censored lognormal regression of thresholds, against closed forms, simulation truth and scipy's censored fit."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from scipy import optimize, stats

from expreg.experiments.censored import (
    _loglik,
    _prepare,
    bootstrap_intervals,
    fit_censored,
    grid_censor,
    local_exponents,
    log_ndtr_diff,
    profile_interval,
    quantile_interval,
)

# truth of the simulations: log m* = 1 + 1.7 log n + 0.6 eps, n = 8 .. 512, 20 seeds per n
B0, B1, SIGMA = 1.0, 1.7, 0.6
N_LEVELS = 2.0 ** np.arange(3, 10)
Z85 = stats.norm.ppf(0.85)
CAP = math.exp(B0 + B1 * math.log(512) + SIGMA * Z85)  # censors ~15% of the seeds at n = 512


def scan(m: np.ndarray, cap: float = CAP, ratio_log2: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """What a scan over the grid 2^(j/4), j >= 0, capped at ``cap`` records: (previous grid point, first pass]."""
    j = np.ceil(np.log2(m) / ratio_log2)
    lower, upper = 2.0 ** ((j - 1) * ratio_log2), 2.0 ** (j * ratio_log2)
    lower = np.where(j <= 0, 0.0, lower)
    upper = np.where(j <= 0, 1.0, upper)
    never = m > cap
    return np.where(never, cap, lower), np.where(never, np.inf, upper)


def simulate(rng: np.random.Generator, seeds: int = 20, levels: np.ndarray = N_LEVELS):
    n = np.repeat(levels, seeds)
    m = np.exp(B0 + B1 * np.log(n) + SIGMA * rng.standard_normal(n.size))
    return n, m


# ---------------------------------------------------------------------------------------------
# no censoring: closed forms
# ---------------------------------------------------------------------------------------------


def test_uncensored_fit_is_ols_with_ml_variance_and_closed_form_profile_interval():
    rng = np.random.default_rng(0)
    N = 60
    X = np.column_stack([np.log(rng.uniform(8, 512, N)), rng.normal(size=N)])
    y = 0.5 + X @ np.array([1.3, -0.4]) + 0.3 * rng.standard_normal(N)
    fit = fit_censored(np.exp(y), np.exp(y), X, names=("intercept", "log n", "z"), level=0.9)
    A = np.column_stack([np.ones(N), X])
    beta, rss, *_ = np.linalg.lstsq(A, y, rcond=None)
    assert np.allclose(fit.coef, beta, atol=1e-9)
    assert fit.sigma**2 == pytest.approx(rss[0] / N, rel=1e-9)
    # density of m* = exp(y): normal log-likelihood of y minus the Jacobian sum(y)
    assert fit.loglik == pytest.approx(-N / 2 * (math.log(2 * math.pi * rss[0] / N) + 1) - y.sum(), rel=1e-10)
    # profile over sigma: 2 (l_max - l_p(t)) = N log(RSS(t)/RSS), RSS(t) = RSS + (t - b_j)^2 / [(A'A)^-1]_jj
    crit = stats.chi2.ppf(0.9, 1)
    half = np.sqrt(rss[0] * np.expm1(crit / N) * np.diag(np.linalg.inv(A.T @ A)))
    assert np.allclose(fit.intervals, np.column_stack([beta - half, beta + half]), atol=1e-6)
    assert fit.counts == {"exact": N, "interval": 0, "right": 0, "left": 0}
    assert profile_interval(fit, "z", 0.5) == pytest.approx(
        (
            beta[2] - np.sqrt(rss[0] * np.expm1(stats.chi2.ppf(0.5, 1) / N) * np.linalg.inv(A.T @ A)[2, 2]),
            beta[2] + np.sqrt(rss[0] * np.expm1(stats.chi2.ppf(0.5, 1) / N) * np.linalg.inv(A.T @ A)[2, 2]),
        ),
        abs=1e-6,
    )
    x0 = np.array([[math.log(100), 0.2]])
    q90 = math.exp(np.array([1, *x0[0]]) @ beta + math.sqrt(rss[0] / N) * stats.norm.ppf(0.9))
    assert fit.quantile(0.9, x0) == pytest.approx([q90], rel=1e-9)


# ---------------------------------------------------------------------------------------------
# the likelihood itself: stable tails, derivatives
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a,b",
    [
        (-1.0, 0.5),
        (30.0, 30.2),
        (-40.0, -39.9),
        (5.0, math.inf),
        (-math.inf, -38.0),
        (-math.inf, 2.0),
        (37.0, 37.0 + 1e-6),
        (-0.3, 40.0),
        (0.0, 1e-3),
        (-2.0, -2.0 + 1e-3),
    ],
)
def test_log_ndtr_diff_matches_high_precision(a, b):
    with mpmath.workdps(800):  # enough digits for Phi(b) - Phi(a) near 1 - 1e-300
        exact = mpmath.log(mpmath.ncdf(b) - mpmath.ncdf(a))
    got = float(log_ndtr_diff(np.array([a]), np.array([b]))[0])
    assert got == pytest.approx(float(exact), rel=1e-9, abs=1e-12)


def test_gradient_and_hessian_match_finite_differences():
    rng = np.random.default_rng(2)
    n, m = simulate(rng, seeds=5)
    lo, hi = scan(m)
    lo[:3], hi[:3] = m[:3], m[:3]  # some exact points
    lo[3], hi[3] = 0.0, 4.0  # a left-censored one
    d = _prepare(lo, hi, np.log(n))
    v = np.array([1.1, 2.6, 1.4])  # (gamma_0, gamma_1, theta)
    _ll, g, h = _loglik(v, d)
    eps = 1e-6
    g_fd = np.array([(_loglik(v + eps * e, d)[0] - _loglik(v - eps * e, d)[0]) / (2 * eps) for e in np.eye(3)])
    h_fd = np.array([(_loglik(v + eps * e, d)[1] - _loglik(v - eps * e, d)[1]) / (2 * eps) for e in np.eye(3)])
    assert np.allclose(g, g_fd, rtol=1e-6, atol=1e-5)
    assert np.allclose(h, h_fd, rtol=1e-5, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# second implementations: scipy's censored normal fit, and a brute-force maximiser
# ---------------------------------------------------------------------------------------------


def _censored_data(lo: np.ndarray, hi: np.ndarray) -> stats.CensoredData:
    """scipy's representation of log-scale bounds (exact where equal)."""
    ex = lo == hi
    return stats.CensoredData(uncensored=lo[ex], interval=np.column_stack([lo[~ex], hi[~ex]]))


def test_intercept_only_fit_equals_scipy_censored_normal_fit():
    rng = np.random.default_rng(3)
    m = np.exp(4.0 + 0.7 * rng.standard_normal(80))
    lo, hi = scan(m, cap=float(np.quantile(m, 0.8)))
    lo[:5], hi[:5] = m[:5], m[:5]
    fit = fit_censored(lo, hi, np.empty((80, 0)), names=("intercept",))
    with np.errstate(divide="ignore"):
        loc, scale = stats.norm.fit(_censored_data(np.log(lo), np.log(hi)))
    assert fit.coef[0] == pytest.approx(loc, abs=1e-4)
    assert fit.sigma == pytest.approx(scale, rel=1e-4)
    assert fit.counts["right"] > 0 and fit.counts["exact"] == 5


def test_regression_fit_equals_brute_force_maximiser_and_scipy_profile_over_sigma():
    rng = np.random.default_rng(4)
    n, m = simulate(rng, seeds=8)
    lo, hi = scan(m)
    lo[:4], hi[:4] = m[:4], m[:4]
    x = np.log(n)
    fit = fit_censored(lo, hi, x, level=None)
    llo, lhi = np.log(lo), np.log(np.where(np.isinf(hi), np.inf, hi))

    def negloglik(p):  # written independently: scipy.stats.norm with naive Phi differences
        mu, s = p[0] + p[1] * x, math.exp(p[2])
        ex = lo == hi
        dens = stats.norm.logpdf(llo[ex], mu[ex], s) - llo[ex]
        prob = stats.norm.cdf(lhi[~ex], mu[~ex], s) - stats.norm.cdf(np.log(np.maximum(lo[~ex], 1e-300)), mu[~ex], s)
        return -(dens.sum() + np.log(prob).sum())

    start = np.array([0.0, 1.0, 0.0])
    best = optimize.minimize(
        negloglik,
        start,
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-11, "maxiter": 20000, "maxfev": 40000},
    )
    assert fit.loglik == pytest.approx(-best.fun, abs=1e-6)
    assert np.allclose(fit.coef, best.x[:2], atol=1e-4)
    assert fit.sigma == pytest.approx(math.exp(best.x[2]), rel=1e-4)
    # at the MLE, scipy's censored normal fit of the residual bounds gives location 0 and the same sigma
    mu = fit.coef[0] + fit.coef[1] * x
    with np.errstate(divide="ignore"):
        loc, scale = stats.norm.fit(_censored_data(np.log(lo) - mu, np.log(hi) - mu))
    assert abs(loc) < 1e-4 and scale == pytest.approx(fit.sigma, rel=1e-4)


# ---------------------------------------------------------------------------------------------
# simulation truth: coverage, quantile, censored points kept
# ---------------------------------------------------------------------------------------------


def test_profile_interval_covers_true_exponent_at_nominal_rate_and_quantile_is_unbiased():
    rng = np.random.default_rng(5)
    reps, covered, q_covered, log_q_err, right = 200, 0, 0, [], 0
    true_q = B0 + B1 * math.log(512) + SIGMA * stats.norm.ppf(0.9)
    for r in range(reps):
        n, m = simulate(rng)
        lo, hi = scan(m)
        fit = fit_censored(lo, hi, np.log(n), level=None)
        low, high = profile_interval(fit, 1, 0.9)
        covered += low <= B1 <= high
        log_q_err.append(math.log(fit.quantile(0.9, math.log(512))[0]) - true_q)
        right += fit.counts["right"]
        if r < 60:
            _, ql, qh = quantile_interval(fit, 0.9, math.log(512), level=0.9)
            q_covered += ql[0] <= math.exp(true_q) <= qh[0]
    assert 0.1 < right / (reps * 20) < 0.2  # the cap censors ~15% at n = 512
    tol = 3 * math.sqrt(0.9 * 0.1 / reps)
    assert abs(covered / reps - 0.9) < tol, covered / reps
    assert abs(q_covered / 60 - 0.9) < 3 * math.sqrt(0.9 * 0.1 / 60), q_covered / 60
    # the fitted 90% quantile at n = 512 is on target: mean log error within 3 standard errors of 0
    err = np.array(log_q_err)
    assert abs(err.mean()) < 3 * err.std() / math.sqrt(reps) and err.std() < 0.15


def test_right_censored_points_are_kept_dropping_them_biases_the_slope_down():
    rng = np.random.default_rng(6)
    kept, dropped = [], []
    for _ in range(40):
        n, m = simulate(rng)
        cap = math.exp(B0 + B1 * math.log(512) - SIGMA * 0.5)  # censors ~70% at n = 512, ~40% at 256
        lo, hi = scan(m, cap=cap)
        kept.append(fit_censored(lo, hi, np.log(n), level=None).coef[1])
        ok = np.isfinite(hi)
        dropped.append(fit_censored(lo[ok], hi[ok], np.log(n[ok]), level=None).coef[1])
    kept, dropped = np.array(kept), np.array(dropped)
    assert abs(kept.mean() - B1) < 3 * kept.std() / math.sqrt(kept.size)
    assert dropped.mean() < B1 - 0.05 and np.mean(dropped < kept) > 0.9


# ---------------------------------------------------------------------------------------------
# local exponents, bootstrap, quantile intervals
# ---------------------------------------------------------------------------------------------


def test_local_exponents_follow_a_broken_power_law_and_report_unidentified_windows():
    rng = np.random.default_rng(7)
    n = np.repeat(2.0 ** np.arange(3, 11), 30)
    logm = np.where(n <= 64, 1 + 1.0 * np.log(n), 1 + 1.0 * math.log(64) + 2.0 * np.log(n / 64))
    m = np.exp(logm + 0.3 * rng.standard_normal(n.size))
    lo, hi = scan(m, cap=math.exp(1 + math.log(64) + 2 * math.log(512 / 64) + 2.0))  # n = 1024 all censored
    lo[n == 1024], hi[n == 1024] = lo[n == 1024].min(), np.inf
    local = local_exponents(n, lo, hi, window=4.0, level=0.99)
    assert [(e.n_low, e.n_high) for e in local] == [(8, 32), (16, 64), (32, 128), (64, 256), (128, 512), (256, 1024)]
    assert local[0].low < 1.0 < local[0].high and local[0].high < 1.6
    assert local[4].low < 2.0 < local[4].high and local[4].low > 1.4
    assert local[5].slope > 1.9 and local[5].counts["right"] == 30  # censoring at 1024 pushes up, kept
    only_censored = local_exponents(np.array([8.0, 16, 8, 16]), np.ones(4), np.full(4, np.inf), window=2)
    assert (
        len(only_censored) == 1 and math.isnan(only_censored[0].slope) and "right-censored" in only_censored[0].reason
    )


def test_parametric_bootstrap_agrees_with_profile_intervals():
    rng = np.random.default_rng(8)
    n, m = simulate(rng)
    lo, hi = scan(m)
    fit = fit_censored(lo, hi, np.log(n))
    grid = 2.0 ** (np.arange(0, 200) / 4)
    censor = grid_censor(np.append(grid[grid < CAP], CAP))
    boot = bootstrap_intervals(fit, censor, n_boot=150, seed=1)
    assert np.allclose(boot, fit.intervals, atol=0.25 * np.diff(fit.intervals).max())
    point, ql, qh = quantile_interval(fit, 0.9, [math.log(128), math.log(512)])
    _, bl, bh = quantile_interval(
        fit, 0.9, [math.log(128), math.log(512)], method="bootstrap", censor=censor, n_boot=150, seed=1
    )
    assert np.all(ql < point) and np.all(point < qh)
    assert np.allclose(np.log(bl), np.log(ql), atol=0.05) and np.allclose(np.log(bh), np.log(qh), atol=0.05)


def test_grid_censor_brackets_each_value_by_the_first_grid_point_at_or_above_it():
    lo, hi = grid_censor(np.array([1.0, 2.0, 4.0]))(np.array([0.5, 1.0, 1.5, 4.0, 9.0]))
    assert lo.tolist() == [0.0, 0.0, 1.0, 2.0, 4.0]
    assert hi.tolist() == [1.0, 1.0, 2.0, 4.0, math.inf]


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lo,hi,x,match",
    [
        ([1.0, 2.0, 3.0], [np.inf, np.inf, np.inf], [1.0, 2.0, 3.0], "every observation is right-censored"),
        ([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [1.0, 1.0, 1.0], "fewer than 2 distinct"),
        ([1.0, np.nan, 3.0], [2.0, 3.0, 4.0], [1.0, 2.0, 3.0], "NaN"),
        ([1.0, -2.0, 3.0], [2.0, 3.0, 4.0], [1.0, 2.0, 3.0], ">= 0"),
        ([1.0, 5.0, 3.0], [2.0, 3.0, 4.0], [1.0, 2.0, 3.0], "lower > upper at index 1"),
        ([1.0, 0.0, 3.0], [2.0, np.inf, 4.0], [1.0, 2.0, 3.0], "no information"),
        ([0.0, 0.0, 0.0], [2.0, 3.0, 4.0], [1.0, 2.0, 3.0], "left-censored"),
        ([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [1.0, 2.0], "X must have shape"),
        ([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [1.0, np.inf, 3.0], "non-finite"),
    ],
)
def test_bad_input_raises_a_clear_error(lo, hi, x, match):
    with pytest.raises(ValueError, match=match):
        fit_censored(np.array(lo), np.array(hi), np.array(x))


def test_noise_free_intervals_raise_instead_of_returning_sigma_zero():
    n = np.repeat([8.0, 16.0, 32.0], 3)
    with pytest.raises(ValueError, match="noise-free"):
        fit_censored(n**2 * 0.9, n**2 * 1.1, np.log(n))


def test_per_n_cell_bounds_a_quantile_the_fit_cannot_give():
    """Where the intercept-only fit fails, the "m* per n" cell says what the censored data bound the q-quantile
    by: below the grid floor when at least a fraction q of the seeds passed there, above the cap when seeds were
    right-censored, else nothing."""
    import math

    from expreg.experiments.width_analysis import PerN, fmt_m, per_n_quantile

    obs = {"n": np.full(20, 8.0), "lower": np.zeros(20), "upper": np.full(20, 2.0), "lambda": np.ones(20)}
    m = per_n_quantile(obs, 8, 0.9, 0.9)  # every seed passed at the bottom of the grid: no fit
    assert math.isnan(m.point) and (m.floored, m.floor, m.seeds, m.censored) == (20, 2.0, 20, 0)
    assert fmt_m(m, cap=64.0, q=0.9) == "<= 2 (20/20 at the grid floor)"
    assert fmt_m(PerN(math.nan, math.nan, math.nan, 0, 20, 17, 2.0), 64.0, 0.9) == "-"  # 17/20 < 0.9: not bounded
    assert fmt_m(PerN(math.nan, math.nan, math.nan, 20, 20), 64.0, 0.9) == "> 64 (20/20 censored)"
    assert fmt_m(PerN(5.0, 4.0, math.inf, 1, 20), 64.0, 0.9) == "5 [4, inf] (1/20 censored)"


def test_turnbull_quantile_recovers_lognormal_quantiles_without_assuming_them() -> None:
    """Interval-censored draws of a known lognormal on a 2^(1/4) grid, 20 % right-censored: the NPMLE median
    and 70 % quantile land within a grid step of the true ones; an all-censored sample has no quantile."""
    from expreg.experiments.censored import grid_censor, turnbull_quantile

    rng = np.random.default_rng(5)
    m = np.exp(rng.normal(math.log(1000.0), 1.0, size=4000))
    grid = 2.0 ** np.arange(1, 12.01, 0.25)  # cap 4096: about 8 % of m* beyond it
    lower, upper = grid_censor(grid)(m)
    for q in (0.5, 0.7):
        truth = 1000.0 * math.exp(1.0 * float(stats.norm.ppf(q)))
        assert truth / 2**0.25 <= turnbull_quantile(lower, upper, q) <= truth * 2**0.5
    assert math.isinf(turnbull_quantile(np.array([10.0, 20.0]), np.array([math.inf, math.inf]), 0.5))
