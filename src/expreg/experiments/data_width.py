"""How wide must the network be for *this* data set? The width experiment's scan on the user's points.

``width_for_data(X, y)`` runs, on one data set, what the ``width`` experiment
runs per task (docs/theory.md section 6): over S network seeds (the data
stay fixed, each network draws from its own stream), the nested scan of
H^dis(W(0)) on a width grid and every criterion's threshold interval
(``width_rules.CRITERIA``), summarised by the median and 90 % quantile of a
censored lognormal fitted to the S intervals, with profile intervals; GD's
m*_conv on the first ``conv_seeds`` seeds; and the best law's prediction
(``width_laws.FITTED``) beside them.

Before any work it checks the data (``check_data``: inputs inside the unit
ball, lambda > 0, naming coinciding points) and states the cost
(``estimate_cost``): the scan costs about S n (n + d) m_cap multiply-adds at
worst (every seed scanned to the cap), measured against this machine's rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..core import display, kernels, streams
from ..core.validation import check_X
from .thresholds import threshold
from .width import Config, conv_scan, lazy_scan
from .width_analysis import per_n_quantile
from .width_laws import FITTED, LAWS, law_covariates
from .width_rules import CRITERIA, censored_by, geometric_grid, values_of

#: ``streams.derive`` key of the user-data networks (independent of every experiment task's).
_USER_KEY = 2
#: lambda / ||H^cts|| below this is not resolved by float64 eigenvalues: refused as lambda <= 0.
RELATIVE_FLOOR = 1e-12


@dataclass(frozen=True)
class Cost:
    """The stated cost, before any work: worst-case seconds of the scan and of GD, and why."""

    scan_seconds: float
    conv_seconds: float
    rate: float
    why: str

    @property
    def seconds(self) -> float:
        return self.scan_seconds + self.conv_seconds


@dataclass
class WidthAnswer:
    """The answer for one data set (``width_for_data``)."""

    n: int
    d: int
    lam: float
    opnorm: float
    variance: float
    seeds: int
    m_cap: int
    cost: Cost
    #: criterion -> {"label", "median", "median_interval", "q90", "q90_interval", "censored", "censored_by", "per_seed"}
    criteria: dict[str, dict[str, Any]] = field(default_factory=dict)
    conv: dict[str, Any] = field(default_factory=dict)
    #: criterion -> {"law", "median", "q90", "constant_interval"}
    law: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    def _figures(self) -> list[tuple[str, Any]]:
        pairs: list[tuple[str, Any]] = [("n", self.n), ("d", self.d), ("lambda", self.lam), ("seeds", self.seeds)]
        pairs += [(f"m*[{name}] median", c.get("median", float("nan"))) for name, c in self.criteria.items()]
        return [*pairs, ("seconds", self.seconds)]

    def __repr__(self) -> str:
        """One line: the data's size, lambda and each criterion's median width (``to_dict`` has everything)."""
        return display.line("WidthAnswer", self._figures())

    def _repr_html_(self) -> str:
        return display.html_table("Width answer (to_dict() for every figure)", self._figures())

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data (the cost with its total, ``seconds``)."""
        out = asdict(self)
        out["cost"]["seconds"] = self.cost.seconds
        return out


def check_data(X: Any) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(X, H^cts, lambda, ||H^cts||) of points the theorem covers; ValueError naming what to fix otherwise."""
    Xa = check_X(X, dtype=np.float64, warn_ball=False)
    norms = np.linalg.norm(Xa, axis=1)
    if (norms > 1 + 1e-12).any():
        i = int(np.argmax(norms))
        raise ValueError(
            f"{int((norms > 1 + 1e-12).sum())} inputs lie outside the unit ball (largest ||x|| = {norms[i]:.4g}, row {i}); "
            f"the theorem assumes ||x_i|| <= 1: divide X by {norms[i]:.4g} (or rescale your features) and ask again"
        )
    if (norms == 0).any():
        raise ValueError(f"row {int(np.argmin(norms))} of X is zero: H^cts is singular (lambda = 0); drop zero inputs")
    H = kernels.ntk(Xa, activation="exp")
    lam, top = kernels.extreme_eigenvalues(H, method="dense")
    if not lam > RELATIVE_FLOOR * top:
        raise ValueError(_singular_message(Xa, lam))
    return Xa, H, float(lam), float(top)


def _singular_message(X: np.ndarray, lam: float) -> str:
    """Which points make lambda (numerically) zero: the closest pair (exact nearest-neighbour distances), and what to do."""
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(X).query(X, k=2)
    i = int(np.argmin(dist[:, 1]))
    j = int(idx[i, 1] if idx[i, 1] != i else idx[i, 0])  # ties at distance 0 may list the point second
    i, j = min(i, j), max(i, j)
    same = int((dist[:, 1] == 0).sum())
    what = "coincide" if dist[i, 1] == 0 else f"nearly coincide (distance {dist[i, 1]:.3g})"
    more = f" ({same} rows have an exact duplicate)" if same > 2 else ""
    return (
        f"lambda = lambda_min(H^cts) = {lam:.3g} is not positive at float64 precision: rows {i} and {j} {what}{more}; "
        "no finite width passes any criterion. Remove duplicate points (average their labels) and ask again"
    )


def _rate(n: int, d: int) -> float:
    """Measured multiply-adds per second of the nested scan on this machine (a sample of about 1e9, a few tenths
    of a second on a quiet core; slower on a loaded machine, which the estimate then reflects)."""
    from ..engine.scan import nested_gram

    Xs = np.random.default_rng(0).standard_normal((n, d)) / math.sqrt(max(d, 1)) * 0.5
    m = int(min(2**16, max(4096, 1e9 // max(n * (n + d), 1))))
    started = time.perf_counter()
    for _ in nested_gram(Xs, [m], seed=0, dtype=np.float32):
        pass
    return n * (n + d) * m / max(time.perf_counter() - started, 1e-6)


#: GD's width grid on user data: ratio 2 (each width is a full GD run; the scan's 2^(1/4) grid would cost 4x).
CONV_RATIO = 2.0


def conv_grid(cfg: Config) -> list[int]:
    """The widths GD is tried at (ratio ``CONV_RATIO``, up to ``m_max_conv``)."""
    return geometric_grid(cfg.m_min, cfg.m_max_conv, CONV_RATIO)


def estimate_cost(n: int, d: int, cfg: Config, conv_seeds: int, rate: float | None = None) -> Cost:
    """Worst-case seconds: S seeds scanned to the cap, and GD at every grid width to ``m_max_conv`` for ``max_steps``."""
    rate = _rate(n, d) if rate is None else rate
    scan = len(cfg.seeds) * n * (n + d) * cfg.grid[-1] / rate
    widths = sum(m for m in conv_grid(cfg))
    conv = conv_seeds * 4 * n * d * widths * cfg.max_steps / (rate / 4) if cfg.conv else 0.0
    why = (
        f"{len(cfg.seeds)} seeds x n (n + d) = {n * (n + d)} x cap {cfg.grid[-1]} multiply-adds at worst "
        f"(every seed scanned to the cap) at {rate:.3g}/s measured here"
    )
    if cfg.give_up and cfg.give_up_from < cfg.grid[-1]:
        early = scan * cfg.give_up_from / cfg.grid[-1]
        why += f"; about {early:.0f} s for the scan when the give-up rule stops it at {cfg.give_up_from} (small lambda)"
    if cfg.conv:
        why += f"; GD on {conv_seeds} seeds at widths up to {cfg.m_max_conv}, up to {cfg.max_steps} steps each"
    return Cost(scan, conv, rate, why)


def _summary(
    name: str, widths_per_seed: list[tuple[list[int], list[float], list[float], str]], n: int
) -> dict[str, Any]:
    """One criterion over the seeds: the per-seed intervals and the fitted median and 90 % quantile."""
    c = CRITERIA[name]
    per_seed, causes = [], []
    for widths, dev, eig, stop in widths_per_seed:
        t = threshold(widths, c.passed(values_of(c.kind, dev, eig)))
        per_seed.append((t.lower, t.upper))
        causes.append(censored_by(t.censored, stop))
    obs = {
        "n": np.full(len(per_seed), float(n)),
        "lower": np.array([p[0] for p in per_seed]),
        "upper": np.array([p[1] for p in per_seed]),
    }
    keep = ~((obs["lower"] == 0) & np.isinf(obs["upper"]))
    p = per_n_quantile({k: v[keep] for k, v in obs.items()}, n, 0.9, 0.9)
    return {
        "label": c.label,
        "median": p.median,
        "median_interval": [p.median_low, p.median_high],
        "q90": p.point,
        "q90_interval": [p.low, p.high],
        "censored": int(np.isinf(obs["upper"]).sum()),
        "censored_by": sorted({k for k in causes if k}),
        "per_seed": [[float(lo), float(hi)] for lo, hi in per_seed],
    }


def _law_predictions(cov: dict[str, float]) -> dict[str, dict[str, Any]]:
    """The stored best law's median and 90 % quantile prediction for each criterion it was fitted on."""
    out = {}
    c = {k: np.array([v]) for k, v in cov.items()}
    for crit, f in FITTED.items():
        law = LAWS[f["law"]]
        log_m = (
            f["log_C"] + float(law.offset(c)[0]) + float((law.covariates(c) @ np.asarray(f["coef"], dtype=float))[0])
        )
        out[crit] = {
            "law": f"{law.name}: {law.formula}",
            "median": math.exp(log_m),
            "q90": math.exp(log_m + 1.2816 * f["sigma"]),
            "constant_interval": [math.exp(f["log_C_low"]), math.exp(f["log_C_high"])],
            "fitted_on": f["fitted_on"],
            "held_out_rms_log2": f["held_out_rms_log2"],
            "extrapolated": _outside(cov, f),
        }
    return out


def _outside(cov: dict[str, float], f: dict[str, Any]) -> str:
    """Why a prediction is an extrapolation (lambda or n outside the fitted rows), or ""."""
    (lam_lo, lam_hi), (n_lo, n_hi) = f["lambda_range"], f["n_range"]
    out = []
    if not lam_lo <= cov["lambda"] <= lam_hi:
        out.append(f"lambda = {cov['lambda']:.3g} outside the fitted {lam_lo:.3g} .. {lam_hi:.3g}")
    if not n_lo <= cov["n"] <= n_hi:
        out.append(f"n = {int(cov['n'])} outside the fitted {n_lo} .. {n_hi}")
    return "; ".join(out)


def width_for_data(
    X: Any,
    y: Any | None = None,
    *,
    seeds: int = 10,
    m_cap: int = 2**22,
    give_up: float = 4.0,
    conv_seeds: int = 2,
    m_max_conv: int = 1024,
    max_steps: int = 2000,
    epsilon: float = 1e-2,
    progress: Callable[[str, int, int], None] | None = None,
    announce: Callable[[Cost], None] | None = None,
) -> WidthAnswer:
    """The width thresholds of the exp network (coupled, s = 1) on data X (n, d), labels y for GD (module docstring).

    ``announce(cost)`` is called once, after the checks and before any scan;
    ``progress(stage, done, total)`` after each seed ("scan") and GD seed ("conv").
    """
    started = time.perf_counter()
    Xa, H, lam, top = check_data(X)
    n, d = Xa.shape
    conv_seeds = conv_seeds if y is not None else 0
    cfg = Config(
        ns=[max(n, 2)],
        ds=[d],
        seeds=list(range(seeds)),
        m_cap=m_cap,
        give_up=give_up,
        conv=conv_seeds > 0,
        conv_n_max=max(n, 2),
        m_max_conv=m_max_conv,
        max_steps=max_steps,
        epsilon=epsilon,
        train_n_max=0,
    )
    cost = estimate_cost(n, d, cfg, conv_seeds)
    if announce is not None:
        announce(cost)
    cov = law_covariates(n, Xa, lam, top)
    answer = WidthAnswer(n, d, lam, top, cov["variance"], seeds, cfg.grid[-1], cost)
    scans = []
    for s in range(seeds):
        scans.append(lazy_scan(cfg, Xa, H, lam, streams.derive(s, n, d, _USER_KEY), "exp", "coupled"))
        if progress is not None:
            progress("scan", s + 1, seeds)
    answer.criteria = {name: _summary(name, scans, n) for name in CRITERIA}
    if conv_seeds:
        answer.conv = _conv(cfg, Xa, np.asarray(y, dtype=float), n, conv_seeds, progress)
    answer.law = _law_predictions(cov)
    answer.seconds = time.perf_counter() - started
    return answer


def _conv(
    cfg: Config, X: np.ndarray, y: np.ndarray, n: int, seeds: int, progress: Callable[[str, int, int], None] | None
) -> dict[str, Any]:
    """GD's threshold on the first ``seeds`` networks: per-seed intervals and outcomes per width."""
    per_seed, outcomes = [], []
    for s in range(seeds):
        widths, out = conv_scan(
            cfg.model_copy(update={"grid_ratio": CONV_RATIO}),
            X,
            y,
            streams.derive(s, n, X.shape[1], _USER_KEY),
            "exp",
            "coupled",
            "none",
        )
        t = threshold(widths, [o == "converged" for o in out])
        per_seed.append([t.lower, t.upper])
        outcomes.append({"diverged": out.count("diverged"), "budget": out.count("budget")})
        if progress is not None:
            progress("conv", s + 1, seeds)
    return {
        "per_seed": per_seed,
        "outcomes": outcomes,
        "rule": f"widths on a ratio-{CONV_RATIO:g} grid, lr = 1/lambda_max(H(W(0))), budget {cfg.budget_factor:g} x kernel-predicted steps within "
        f"{cfg.min_steps}..{cfg.max_steps}, widths up to {cfg.m_max_conv}, epsilon {cfg.epsilon:g}",
    }
