"""Censored lognormal regression of per-seed thresholds (docs/theory.md section 6): a Gaussian AFT / Tobit model on log scale.

Model, for observation i with covariates x_i (k of them, e.g. log n, log lambda(n))::

    log m*_i = beta_0 + sum_k beta_k x_ik + sigma eps_i,      eps_i ~ N(0, 1) iid.

Each m*_i is observed as an interval (lower_i, upper_i] on the original scale:

=================  ===========================  =============================================
kind               bounds                       likelihood term l_i
=================  ===========================  =============================================
exact              lower = upper = y            log phi(z) - log sigma - log y,  z = (log y - mu)/sigma
interval-censored  0 < lower < upper < inf      log(Phi(b) - Phi(a)),  a, b = (log lower|upper - mu)/sigma
right-censored     upper = inf                  log(1 - Phi(a))  (never passed within the cap ``lower``)
left-censored      lower = 0                    log Phi(b)       (passed at the first grid point ``upper``)
=================  ===========================  =============================================

with mu_i = beta_0 + x_i . beta. The log-likelihood is sum_i l_i; it is maximised in Olsen's
parametrisation gamma = beta / sigma, theta = 1 / sigma, in which it is concave (Pratt 1981:
log(Phi(b) - Phi(a)) is concave in (a, b), and a, b, z are linear in (gamma, theta)), so
damped Newton steps with the analytic gradient and Hessian find the unique maximum. Log Phi differences are taken in log space with ``scipy.special.log_ndtr``,
from the lower tail when a <= 0 and from the upper tail (Phi(-a) - Phi(-b)) when a > 0.

Intervals are profile-likelihood intervals: for a quantity psi (a coefficient, or the log of
a fitted quantile log m*_q(x) = mu(x) + sigma z_q), the set of values t with

    2 (loglik_max - max{loglik : psi = t}) <= chi2_1 quantile at ``level``,

whose ends are found with ``scipy.optimize.brentq``. Both kinds of psi are (a . gamma + b) / theta,
so psi = t is the linear constraint a . gamma - t theta = -b and each profile is again a concave
problem. An end that the likelihood does not bound (heavy censoring) is reported as -inf / inf.
``bootstrap_intervals`` gives parametric-bootstrap percentile intervals as an alternative.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg, optimize, special, stats

__all__ = [
    "CensoredFit",
    "LocalExponent",
    "bootstrap_intervals",
    "fit_censored",
    "grid_censor",
    "local_exponents",
    "profile_interval",
    "quantile_interval",
    "turnbull_quantile",
]

_LOG_2PI = math.log(2 * math.pi)
Censor = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray]"]


# ---------------------------------------------------------------------------------------------
# data and the log-likelihood in Olsen's parametrisation v = (gamma_0 .. gamma_k, theta)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Data:
    """Validated observations: design (N, p) with intercept column, log bounds with -inf / inf for censoring.

    Also the derivatives of z (exact points) and of a, b (censored points) with respect to
    v = (gamma, theta), which do not depend on v: dz/dv = (-x, log y), da/dv = (-x, log lower),
    db/dv = (-x, log upper) (0 in the last column where the bound is infinite).
    """

    X: np.ndarray
    log_lower: np.ndarray  # -inf where left-censored
    log_upper: np.ndarray  # +inf where right-censored
    exact: np.ndarray  # bool mask
    dz: np.ndarray = field(init=False, repr=False)
    da: np.ndarray = field(init=False, repr=False)
    db: np.ndarray = field(init=False, repr=False)
    left: np.ndarray = field(init=False, repr=False)  # among censored points: lower = 0
    right: np.ndarray = field(init=False, repr=False)  # among censored points: upper = inf

    def __post_init__(self) -> None:
        ce = ~self.exact
        la, lb = self.log_lower[ce], self.log_upper[ce]
        object.__setattr__(self, "dz", np.hstack([-self.X[self.exact], self.log_exact[:, None]]))
        object.__setattr__(self, "da", np.hstack([-self.X[ce], np.where(np.isfinite(la), la, 0.0)[:, None]]))
        object.__setattr__(self, "db", np.hstack([-self.X[ce], np.where(np.isfinite(lb), lb, 0.0)[:, None]]))
        object.__setattr__(self, "left", np.isneginf(la))
        object.__setattr__(self, "right", np.isposinf(lb))

    @property
    def log_exact(self) -> np.ndarray:
        return self.log_lower[self.exact]


def _log1mexp(x: np.ndarray) -> np.ndarray:
    """log(1 - exp(x)) for x <= 0, accurate at both ends (Maechler 2012)."""
    with np.errstate(divide="ignore"):
        return np.where(x > -math.log(2), np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


def log_ndtr_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log(Phi(b) - Phi(a)) for a < b (a may be -inf, b may be +inf), stable in both tails.

    a <= 0: log Phi(b) + log(1 - Phi(a)/Phi(b)); a > 0: the symmetric form with Phi(-a) - Phi(-b).
    Relative accuracy about 1e-16 / (b - a) for narrow intervals (the two log Phi cancel);
    scan grids give b - a of order 0.1 in z.
    """
    upper_tail = a > 0
    hi = np.where(upper_tail, special.log_ndtr(-a), special.log_ndtr(b))
    lo = np.where(upper_tail, special.log_ndtr(-b), special.log_ndtr(a))
    return hi + _log1mexp(lo - hi)


def _loglik(v: np.ndarray, d: _Data) -> tuple[float, np.ndarray, np.ndarray]:
    """Log-likelihood (without the constant -sum log y over exact points), gradient and Hessian in v.

    z = theta log y - x.gamma (exact), a, b = theta log lower|upper - x.gamma (censored).
    Exact: l = -z^2/2 - log(2 pi)/2 + log theta. Censored: l = log(Phi(b) - Phi(a)), with
    p_a = phi(a)/P, p_b = phi(b)/P: dl/da = -p_a, dl/db = p_b, d2l/da2 = a p_a - p_a^2,
    d2l/db2 = -b p_b - p_b^2, d2l/dadb = p_a p_b; da/dv = (-x, log lower), db/dv = (-x, log upper).
    """
    theta, p = v[-1], v.size
    ll, grad, hess = 0.0, np.zeros(p), np.zeros((p, p))
    dz, da, db = d.dz, d.da, d.db
    if dz.shape[0]:
        z = dz @ v
        n_ex = dz.shape[0]
        ll += float(-0.5 * z @ z - 0.5 * n_ex * _LOG_2PI + n_ex * math.log(theta))
        grad += -z @ dz
        grad[-1] += n_ex / theta
        hess -= dz.T @ dz
        hess[-1, -1] -= n_ex / theta**2
    if da.shape[0]:
        a0, b0 = da @ v, db @ v  # a, b where the bound is finite
        a, b = np.where(d.left, -np.inf, a0), np.where(d.right, np.inf, b0)
        log_p = log_ndtr_diff(a, b)
        ll += float(log_p.sum())
        pa = np.exp(-0.5 * a**2 - 0.5 * _LOG_2PI - log_p)  # 0 where a = -inf
        pb = np.exp(-0.5 * b**2 - 0.5 * _LOG_2PI - log_p)  # 0 where b = +inf
        grad += -pa @ da + pb @ db
        laa, lbb, lab = a0 * pa - pa**2, -b0 * pb - pb**2, pa * pb
        cross = (da.T * lab) @ db
        hess += (da.T * laa) @ da + (db.T * lbb) @ db + cross + cross.T
    return ll, grad, hess


def _maximise(d: _Data, start: np.ndarray, basis: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Maximise the log-likelihood over v = start + basis @ w (all of R^p when basis is None).

    Damped Newton ascent: the log-likelihood is concave in v, so the Newton direction
    (-basis' H basis)^-1 basis' g is an ascent direction; steps are halved until the log-likelihood
    rises and theta stays > 0; stop when the Newton decrement g' dir / 2 < 1e-10.

    Returns (loglik, v, Hessian in v). Raises ValueError when the maximum is not attained
    (theta -> infinity: the intervals admit a noise-free fit) or not found in 100 steps.
    """
    basis = np.eye(start.size) if basis is None else basis
    v = start
    ll, g, h = _loglik(v, d)
    if not np.isfinite(ll):
        raise ValueError("the starting point has zero likelihood; this is a bug, please report it")
    for _ in range(100):
        gw, hw = basis.T @ g, basis.T @ h @ basis
        try:
            step = np.linalg.solve(-hw, gw)
        except np.linalg.LinAlgError:
            break
        decrement = float(gw @ step)
        if not decrement >= 0:  # Hessian not negative definite: a degenerate direction
            break
        if decrement < 2e-10:
            return ll, v, h
        t = 1.0
        while t > 1e-10:
            v_new = v + t * (basis @ step)
            if v_new[-1] > 0:
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    ll_new, g_new, h_new = _loglik(v_new, d)
                if ll_new >= ll - 1e-12 * abs(ll) and np.isfinite(ll_new):
                    break
            t /= 2
        else:
            break
        v, ll, g, h = v_new, ll_new, g_new, h_new
    raise ValueError(
        "the censored-likelihood maximum was not found (the intervals may admit a noise-free fit, "
        f"sigma -> 0; last sigma = {1 / v[-1]:.3g}): add seeds or use a finer grid"
    )


# ---------------------------------------------------------------------------------------------
# validation (the public boundary)
# ---------------------------------------------------------------------------------------------


def _prepare(lower: np.ndarray, upper: np.ndarray, X: np.ndarray) -> _Data:
    """Check bounds and covariates; return the design with an intercept column and the log bounds."""
    lower = np.asarray(lower, dtype=float)
    upper = np.asarray(upper, dtype=float)
    if lower.ndim != 1 or upper.shape != lower.shape:
        raise ValueError(f"lower and upper must be 1-D of equal length, got shapes {lower.shape} and {upper.shape}")
    X = np.asarray(X, dtype=float)
    X = X[:, None] if X.ndim == 1 else X
    if X.ndim != 2 or X.shape[0] != lower.size:
        raise ValueError(f"X must have shape ({lower.size},) or ({lower.size}, k), got {np.shape(X)}")
    _check_bounds(lower, upper)
    design = _checked_design(X)
    with np.errstate(divide="ignore"):
        return _Data(design, np.log(lower), np.log(upper), lower == upper)


def _check_bounds(lower: np.ndarray, upper: np.ndarray) -> None:
    """Interval bounds (lower, upper] (n,): no NaN, 0 <= lower <= upper, some information, not all censored alike."""
    if np.isnan(lower).any() or np.isnan(upper).any():
        raise ValueError("lower/upper contain NaN: give a never-passing seed as (cap, inf), not NaN")
    if (lower < 0).any() or np.isinf(lower).any():
        raise ValueError("lower must be finite and >= 0 (0 marks a left-censored seed)")
    if (upper <= 0).any():
        raise ValueError("upper must be > 0 (inf marks a right-censored seed)")
    if (lower > upper).any():
        i = int(np.argmax(lower > upper))
        raise ValueError(f"lower > upper at index {i} ({lower[i]} > {upper[i]}): bounds are (lower, upper]")
    if ((lower == 0) & np.isinf(upper)).any():
        raise ValueError("an observation (0, inf) carries no information: drop it")
    if lower.size == 0 or np.isinf(upper).all():
        raise ValueError(
            "every observation is right-censored (or there are none): the level is not identified; raise the scan's cap"
        )
    if (lower == 0).all():
        raise ValueError("every observation is left-censored: lower the scan's first grid point")


def _checked_design(X: np.ndarray) -> np.ndarray:
    """[1, X] (n, k + 1), refused when a covariate is constant or the columns are collinear."""
    if not np.isfinite(X).all():
        raise ValueError("X contains non-finite values: covariates must be finite (take logs of positive n, lambda)")
    for j in range(X.shape[1]):
        if np.unique(X[:, j]).size < 2:
            raise ValueError(f"covariate {j} takes fewer than 2 distinct values: its coefficient is not identified")
    design = np.hstack([np.ones((X.shape[0], 1)), X])
    if np.linalg.matrix_rank(design) < design.shape[1]:
        raise ValueError("the covariates are collinear (with each other or the intercept): drop one")
    return design


def _counts(d: _Data) -> dict[str, int]:
    left, right = np.isneginf(d.log_lower), np.isposinf(d.log_upper)
    return {
        "exact": int(d.exact.sum()),
        "interval": int((~d.exact & ~left & ~right).sum()),
        "right": int(right.sum()),
        "left": int(left.sum()),
    }


def _start(d: _Data) -> np.ndarray:
    """Olsen-parameter start from OLS on a representative log value per point (midpoint, or the finite bound)."""
    la, lb = d.log_lower, d.log_upper
    y = np.where(np.isneginf(la), lb, np.where(np.isposinf(lb), la, 0.5 * (la + lb)))
    beta, *_ = np.linalg.lstsq(d.X, y, rcond=None)
    s = float(np.sqrt(np.mean((y - d.X @ beta) ** 2)))
    s = s if s > 1e-6 else 1.0
    return np.append(beta / s, 1 / s)


# ---------------------------------------------------------------------------------------------
# the fit
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CensoredFit:
    """A fitted censored lognormal regression (see the module docstring for the model).

    Attributes
    ----------
    coef : (k+1,) beta, intercept first, on log m* scale
    sigma : float, the residual scale of log m*
    loglik : float, maximised log-likelihood of the observed intervals (densities of m* for exact points)
    names : (k+1,) names of the coefficients
    intervals : (k+1, 2) profile-likelihood intervals at ``level`` (nan when not computed)
    level : float
    counts : {"exact", "interval", "right", "left"} -> number of observations
    cov : (k+2, k+2) inverse observed information in (beta, log sigma) (Wald; for reference)
    """

    coef: np.ndarray
    sigma: float
    loglik: float
    names: tuple[str, ...]
    intervals: np.ndarray
    level: float
    counts: dict[str, int]
    cov: np.ndarray
    _data: _Data = field(repr=False)
    _v: np.ndarray = field(repr=False)
    _hess: np.ndarray = field(repr=False)

    @property
    def n_obs(self) -> int:
        return int(self._data.X.shape[0])

    def _rows(self, x: np.ndarray) -> np.ndarray:
        """Covariate rows (m, k) -> design rows (m, k+1); for k = 1 a vector of scalars is m rows."""
        k = self.coef.size - 1
        x = np.asarray(x, dtype=float)
        x = x.reshape(-1, 1) if k == 1 and x.ndim <= 1 else np.atleast_2d(x)
        if x.shape[1] != k:
            raise ValueError(f"x must have {k} covariate column(s) ({', '.join(self.names[1:])}), got shape {x.shape}")
        return np.hstack([np.ones((x.shape[0], 1)), x])

    def quantile(self, q: float, x: np.ndarray) -> np.ndarray:
        """Fitted q-quantile of m* at covariate rows x: exp(beta_0 + x.beta + sigma Phi^-1(q)), shape (m,)."""
        if not 0 < q < 1:
            raise ValueError(f"q must lie in (0, 1), got {q}")
        return np.exp(self._rows(x) @ self.coef + self.sigma * special.ndtri(q))

    def __str__(self) -> str:
        parts = [
            f"{n} {c:.3f} [{lo:.3f}, {hi:.3f}]"
            for n, c, (lo, hi) in zip(self.names, self.coef, self.intervals, strict=True)
        ]
        c = self.counts
        return (
            f"{'; '.join(parts)}; sigma {self.sigma:.3f} ({self.level:.0%} profile intervals; "
            f"{c['exact']} exact, {c['interval']} interval, {c['right']} right-, {c['left']} left-censored)"
        )


def _fit_data(d: _Data, names: Sequence[str] | None, level: float | None) -> CensoredFit:
    ll, v, h = _maximise(d, _start(d))
    if not d.exact.any() and ll > -1e-6:
        # every interval holds (nearly) all the fitted probability: the supremum is sigma -> 0, not attained
        raise ValueError(
            f"the intervals admit a noise-free fit (sigma -> 0; stopped at sigma = {1 / v[-1]:.3g}): "
            "sigma is not identified; add seeds or use a finer grid"
        )
    p = d.X.shape[1]
    names = tuple(names) if names is not None else ("intercept", *(f"x{j}" for j in range(1, p)))
    if len(names) != p:
        raise ValueError(f"names must have {p} entries (intercept first), got {len(names)}")
    gamma, theta = v[:-1], v[-1]
    # (beta, log sigma) = (gamma / theta, -log theta): Jacobian of the map, for the Wald covariance
    jac = np.zeros((p + 1, p + 1))
    jac[:p, :p] = np.eye(p) / theta
    jac[:p, -1] = -gamma / theta**2
    jac[-1, -1] = -1 / theta
    cov = jac @ np.linalg.pinv(-h) @ jac.T
    const = float(d.log_exact.sum())
    fit = CensoredFit(
        gamma / theta,
        float(1 / theta),
        ll - const,
        names,
        np.full((p, 2), np.nan),
        float("nan") if level is None else float(level),
        _counts(d),
        cov,
        d,
        v,
        h,
    )
    if level is None:
        return fit
    ivs = np.array([profile_interval(fit, j, level) for j in range(p)])
    object.__setattr__(fit, "intervals", ivs)
    return fit


def fit_censored(
    lower: np.ndarray,
    upper: np.ndarray,
    X: np.ndarray,
    *,
    names: Sequence[str] | None = None,
    level: float | None = 0.9,
) -> CensoredFit:
    """Maximum-likelihood fit of log m* = beta_0 + X beta + sigma eps to interval-, right- and left-censored m*.

    Parameters
    ----------
    lower, upper : (N,) bounds on the original scale, m*_i in (lower_i, upper_i]; lower = upper exact,
        upper = inf right-censored, lower = 0 left-censored
    X : (N,) or (N, k) covariates (e.g. log n; log n and log lambda); the intercept is added
    names : k+1 names, intercept first (default "intercept", "x1", ...)
    level : coverage of the profile-likelihood intervals (None: skip them; ``intervals`` is nan)

    Returns
    -------
    CensoredFit

    Examples
    --------
    >>> n = np.repeat([8., 16., 32., 64.], 3)
    >>> m = 2 * n**1.5 * np.exp(np.tile([-0.1, 0., 0.1], 4))
    >>> f = fit_censored(m, m, np.log(n), names=("intercept", "log n"))
    >>> round(float(f.coef[1]), 6), round(f.sigma, 4)
    (1.5, 0.0816)
    """
    if level is not None and not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    return _fit_data(_prepare(lower, upper, X), names, level)


# ---------------------------------------------------------------------------------------------
# profile likelihood for psi = (a.gamma + b) / theta
# ---------------------------------------------------------------------------------------------


def _profile(fit: CensoredFit, a: np.ndarray, b: float, level: float) -> tuple[float, float, float]:
    """(psi_hat, low, high): profile-likelihood interval of psi = (a.gamma + b)/theta at ``level``."""
    d, v_hat = fit._data, fit._v
    gamma, theta = v_hat[:-1], v_hat[-1]
    psi = float((a @ gamma + b) / theta)
    grad = np.append(a / theta, -psi / theta)
    se = float(np.sqrt(max(grad @ np.linalg.pinv(-fit._hess) @ grad, 1e-300)))
    crit = float(stats.chi2.ppf(level, 1))
    ll_max = fit.loglik + float(d.log_exact.sum())

    def excess(t: float) -> float:
        c = np.append(a, -t)  # constraint c.v = -b
        start = v_hat.copy()
        start[:-1] += (-b - c @ v_hat) * a / (a @ a)  # feasible, theta unchanged
        basis = linalg.null_space(c[None, :])
        return 2 * (ll_max - _maximise(d, start, basis)[0]) - crit

    ends = []
    for side in (-1.0, 1.0):
        inner, end = psi, math.inf * side
        for mult in (1.1 * math.sqrt(crit), 2.0, 4.0, 8.0, 16.0, 32.0, 64.0):  # first try: just past Wald's end
            t = psi + side * mult * se
            try:
                if excess(t) > 0:
                    end = optimize.brentq(excess, inner, t, xtol=1e-6 * se, rtol=1e-10)
                    break
            except ValueError:
                break  # profile not attained that far out: unbounded there
            inner = t
        ends.append(float(end))
    return psi, ends[0], ends[1]


def profile_interval(fit: CensoredFit, coef: int | str, level: float = 0.9) -> tuple[float, float]:
    """Profile-likelihood interval (low, high) of one coefficient, by index or name, at ``level``.

    The set {t : 2 (loglik_max - max{loglik : beta_coef = t}) <= chi2_1.ppf(level)}; an end the
    likelihood does not bound is -inf / inf. ``fit_censored`` fills ``intervals`` with these.
    """
    j = fit.names.index(coef) if isinstance(coef, str) else int(coef)
    if not 0 <= j < fit.coef.size:
        raise ValueError(f"coef must be one of {fit.names} or an index below {fit.coef.size}, got {coef!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    return _profile(fit, np.eye(fit.coef.size)[j], 0.0, level)[1:]


def quantile_interval(
    fit: CensoredFit,
    q: float,
    x: np.ndarray,
    *,
    level: float = 0.9,
    method: str = "profile",
    censor: Censor | None = None,
    n_boot: int = 400,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interval for the fitted q-quantile of m* at covariate rows x (e.g. the 90%-quantile width at n).

    log m*_q(x) = beta_0 + x.beta + sigma Phi^-1(q). ``method="profile"``: profile-likelihood
    interval of that quantity; ``"bootstrap"``: parametric-bootstrap percentile interval (needs
    ``censor``, see ``bootstrap_intervals``).

    Returns
    -------
    (point, low, high), each (m,) on the original scale.
    """
    if not 0 < q < 1 or not 0 < level < 1:
        raise ValueError(f"q and level must lie in (0, 1), got q={q}, level={level}")
    rows = fit._rows(x)
    point = fit.quantile(q, x)
    if method == "profile":
        z = float(special.ndtri(q))
        ivs = np.array([_profile(fit, r, z, level)[1:] for r in rows])
        return point, np.exp(ivs[:, 0]), np.exp(ivs[:, 1])
    if method == "bootstrap":
        if censor is None:
            raise ValueError('method="bootstrap" needs censor= (for example grid_censor(grid)) to censor simulated m*')
        refits = _refits(fit, censor, n_boot, seed)
        logq = np.array([r[0] @ rows.T + r[1] * special.ndtri(q) for r in refits])
        tail = (1 - level) / 2
        lo, hi = np.quantile(logq, [tail, 1 - tail], axis=0)
        return point, np.exp(lo), np.exp(hi)
    raise ValueError(f'method must be "profile" or "bootstrap", got {method!r}')


# ---------------------------------------------------------------------------------------------
# parametric bootstrap
# ---------------------------------------------------------------------------------------------


def grid_censor(grid: np.ndarray) -> Censor:
    """Censoring of a scan over an increasing grid: m* -> (grid[i-1], grid[i]] for the first grid[i] >= m*.

    m* <= grid[0] -> (0, grid[0]] (left-censored); m* > grid[-1] -> (grid[-1], inf) (right-censored, the cap).
    """
    g = np.asarray(grid, dtype=float)
    if g.ndim != 1 or g.size < 1 or not (np.all(np.diff(g) > 0) and g[0] > 0):
        raise ValueError("grid must be a 1-D, strictly increasing array of positive widths")
    edges = np.concatenate([[0.0], g, [np.inf]])

    def censor(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i = np.searchsorted(g, m, side="left")  # first grid point >= m
        return edges[i], edges[i + 1]

    return censor


def _refits(fit: CensoredFit, censor: Censor, n_boot: int, seed: int) -> list[tuple[np.ndarray, float]]:
    """(coef, sigma) refitted on ``n_boot`` data sets simulated from ``fit`` and censored by ``censor``.

    Stream: ``np.random.default_rng(seed)``, one standard-normal draw of size N per data set, in order.
    Data sets whose fit fails (for example every point right-censored) are dropped; more than 5% raises.
    """
    rng = np.random.default_rng(seed)
    d = fit._data
    mu = d.X @ fit.coef
    out = []
    for _ in range(n_boot):
        lo, hi = censor(np.exp(mu + fit.sigma * rng.standard_normal(mu.size)))
        try:
            f = _fit_data(_prepare(lo, hi, d.X[:, 1:]), fit.names, None)
        except ValueError:
            continue
        out.append((f.coef, f.sigma))
    if len(out) < 0.95 * n_boot:
        raise ValueError(f"{n_boot - len(out)} of {n_boot} bootstrap fits failed: the censoring leaves too little data")
    return out


def bootstrap_intervals(
    fit: CensoredFit, censor: Censor, *, level: float = 0.9, n_boot: int = 400, seed: int = 0
) -> np.ndarray:
    """Parametric-bootstrap percentile intervals (k+1, 2) for the coefficients.

    Simulates log m* = X coef + sigma eps from the fit at the observed covariates, censors with
    ``censor`` (m* (N,) -> lower, upper; e.g. ``grid_censor(grid)``), refits, and takes the
    (1-level)/2 and (1+level)/2 percentiles of each coefficient.
    """
    coefs = np.array([c for c, _ in _refits(fit, censor, n_boot, seed)])
    tail = (1 - level) / 2
    return np.quantile(coefs, [tail, 1 - tail], axis=0).T


# ---------------------------------------------------------------------------------------------
# local exponents
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalExponent:
    """Slope of log m* on log n fitted on n in [n_low, n_high], with its profile interval (nan + reason if none)."""

    n_low: float
    n_high: float
    slope: float
    low: float
    high: float
    counts: dict[str, int]
    reason: str = ""

    @property
    def n_centre(self) -> float:
        return math.sqrt(self.n_low * self.n_high)


def local_exponents(
    n: np.ndarray, lower: np.ndarray, upper: np.ndarray, *, window: float = 4.0, level: float = 0.9
) -> list[LocalExponent]:
    """Local exponents: the censored fit of log m* on log n over each window [n0, window n0].

    One window starts at each n level n0 present with window * n0 <= max n (consecutive windows
    overlap: for n = 8 .. 512 and window 4, [8, 32], [16, 64], ..., [128, 512]). A window whose
    fit is not identified (for example every seed right-censored) is returned with nan slope and
    the reason.

    Parameters
    ----------
    n : (N,) positive n of each observation; lower, upper : (N,) bounds as in ``fit_censored``
    """
    n = np.asarray(n, dtype=float)
    if n.ndim != 1 or n.size != np.size(lower) or not (np.isfinite(n).all() and (n > 0).all()):
        raise ValueError("n must be a 1-D array of positive finite values, one per observation")
    if not window > 1:
        raise ValueError(f"window must be > 1 (a factor in n), got {window}")
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    levels = np.unique(n)
    out = []
    for n0 in levels[levels * window <= levels[-1] * (1 + 1e-12)]:
        sel = (n >= n0) & (n <= n0 * window * (1 + 1e-12))
        n1 = float(n[sel].max())
        try:
            f = fit_censored(lower[sel], upper[sel], np.log(n[sel]), names=("intercept", "log n"), level=level)
            lo, hi = f.intervals[1]
            out.append(LocalExponent(float(n0), n1, float(f.coef[1]), float(lo), float(hi), f.counts))
        except ValueError as e:
            out.append(LocalExponent(float(n0), n1, math.nan, math.nan, math.nan, {}, str(e)))
    return out


# ---------------------------------------------------------------------------------------------
# a check that assumes no distribution: Turnbull's nonparametric MLE
# ---------------------------------------------------------------------------------------------


def turnbull_quantile(lower: np.ndarray, upper: np.ndarray, q: float, *, iterations: int = 2000) -> float:
    """The q-quantile of the nonparametric MLE (Turnbull 1976) of the distribution of interval-censored m*.

    Observations are (lower, upper] as in ``fit_censored`` (lower = 0: left-, upper = inf:
    right-censored). Mass lives on the grid points where some interval ends (its upper bound,
    or the left end of a right-censored interval, mass "beyond" it); the self-consistency
    (EM) iteration p_j <- mean_i [alpha_ij p_j / sum_k alpha_ik p_k] converges to the NPMLE.
    Returns inf when more than 1 - q of the mass lies beyond every finite bound (the quantile
    is beyond the data), nan when there are no observations.
    """
    lo, up = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    if lo.size == 0:
        return math.nan
    if not 0 < q < 1:
        raise ValueError(f"q must lie in (0, 1), got {q}")
    support = np.unique(np.concatenate([up[np.isfinite(up)], [math.inf]]))
    alpha = (support[None, :] > lo[:, None]) & (support[None, :] <= up[:, None])  # support point j inside interval i
    p = np.full(support.size, 1.0 / support.size)
    for _ in range(iterations):
        w = alpha * p
        new = (w / w.sum(axis=1, keepdims=True)).mean(axis=0)
        done = np.max(np.abs(new - p)) < 1e-10
        p = new
        if done:
            break
    cdf = np.cumsum(p)
    j = int(np.searchsorted(cdf, q - 1e-9))
    return float(support[min(j, support.size - 1)])
