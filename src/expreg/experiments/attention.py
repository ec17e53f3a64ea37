"""Experiment ``attention``: how many positive random features does an attention matrix need? (docs/theory.md section 7)

Queries and keys (``tokens``): n of each in d dimensions, drawn from their own
streams (``streams.TOKENS``, role 0 queries, role 1 keys) of the task seed
``streams.derive(seed, dist, n, d, 1000 temperature)``, from one of two
distributions with a temperature tau:

- ``"sphere"``: q = u / sqrt(tau), u uniform on the unit sphere S^{d-1}
  (||q||^2 = 1/tau; tau = 1 is unit norm);
- ``"gaussian"``: q ~ N(0, I_d / (d tau)) (E||q||^2 = 1/tau, the norms spread
  as a chi_d / sqrt(d tau)).

In both the logits <q, k> have standard deviation 1/(sqrt(d) tau): the
attention of a transformer, softmax(q . k / sqrt(d)) with q, k ~ N(0, I_d),
is ``"gaussian"`` at tau = 1/sqrt(d). The temperature sets the norms, and the
features' variance grows like exp(||q + k||^2).

Two kinds of task:

1. **cross** (one per distribution, n, d, tau, feature variant and seed, on
   three lines through a centre point: n varies at (d, tau) = the centre, d
   varies at (n, tau), tau at (n, d)): one pass over features
   (``feature_scan.nested_softmax``) gives, at every width m of a geometric
   grid, the estimate A_hat_m = Phi_m(Q) Phi_m(K)^T of A = exp(Q K^T) and its
   two errors (``softmax_features.attention_errors``): ``rel``, the relative
   operator-norm error ||A_hat - A||_2 / ||A||_2, and ``tv``, the mean total
   variation between the rows of the row-normalised matrices. For each level
   of ``rel_levels`` and ``tv_levels`` the seed's smallest passing m is an
   interval (earliest pass, stable pass] (``thresholds.threshold``, as in the
   width experiment), right-censored when the cap comes first. The i.i.d. and
   orthogonal variants of a seed see the same queries and keys and draw their
   features from independent sub-streams.
2. **self** (the side-by-side of the two questions, for n in ``side_ns`` at
   d = ``side_d``): the points X of the width experiment's task (n, d, seed)
   (``width.task_seed``, unit sphere), Q = K = X, and from the same pass over
   features both the attention errors of exp(X X^T) and the width
   experiment's criteria on H^dis = (X X^T) o (D A_hat D), D = diag(e^{||x_i||^2/2})
   (``op``: ||H^dis - H^cts||_op <= c lambda; ``eig``: lambda_min(H^dis) >=
   c lambda; c in ``side_fractions``). These w's are the neurons of a Gaussian-
   initialised network; a coupled network of width 2m has the same H^dis.

   The relation (tested per width): for G = X X^T positive semi-definite,
   ||G o E||_op <= max_i G_ii ||E||_op (Schur), so
   ||H^dis - H^cts||_op <= B ||A_hat - A||_op with B = max_i ||x_i||^2 e^{max_i ||x_i||^2}
   (B = e on the unit sphere). The op criterion at fraction c therefore
   passes wherever the relative attention error is at most
   eps_c = c lambda / (B ||A||_op): the ``implied`` threshold, an upper bound
   on the op threshold of the same draw.

A scan stops once every criterion passed at every grid width over a factor
``confirm_factor`` (or at its cap). The analysis is ``attention_analysis``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..core import kernels, streams
from ..core.data import sphere
from ..core.eigen import lazy_criteria
from ..core.softmax_features import VARIANTS, attention_errors
from ..core.validation import check_sphere_sample
from ..engine.feature_scan import nested_softmax
from .config import ExperimentConfig
from .thresholds import confirmed, threshold
from .width import task_seed as width_task_seed
from .width_rules import geometric_grid

name = "attention"
description = (
    "Positive random features of the softmax kernel (exp neurons): per seed the smallest feature count m* at which "
    "the attention matrix reaches each error level (relative operator norm; mean row total variation), as censored "
    "intervals; exponents against n, d and the temperature; i.i.d. vs orthogonal features; beside the width "
    "experiment's H^dis criteria on the same points."
)

Dist = Literal["sphere", "gaussian"]
Variant = Literal["iid", "orthogonal"]
DISTS: tuple[Dist, ...] = ("sphere", "gaussian")
VARIANT_NAMES: tuple[Variant, ...] = ("iid", "orthogonal")


class Config(ExperimentConfig):
    """The attention experiment's fields (``d`` of the base class is not used: see ``ds``)."""

    name = "attention"
    version = 1

    d: int | None = Field(None, description="not used by this experiment: it takes a list, `ds`")  # type: ignore[assignment]  # the base class's one d is this class's list `ds`
    dists: list[Dist] = Field(default_factory=lambda: list(DISTS), min_length=1)
    ns: list[int] = Field(default_factory=lambda: [16, 32, 64, 128], min_length=1, description="the n line")
    ds: list[int] = Field(default_factory=lambda: [16], min_length=1, description="the d line")
    temperatures: list[float] = Field(default_factory=lambda: [1.0], min_length=1, description="the tau line")
    n_centre: int = Field(64, ge=2)
    d_centre: int = Field(16, ge=1)
    temperature_centre: float = Field(1.0, gt=0)
    variants: list[Variant] = Field(default_factory=lambda: list(VARIANT_NAMES), min_length=1)
    rel_levels: list[float] = Field(default_factory=lambda: [0.2, 0.1, 0.05], min_length=1)
    tv_levels: list[float] = Field(default_factory=lambda: [0.05, 0.02, 0.01], min_length=1)
    m_min: int = Field(2, ge=2, description="first grid width")
    m_cap: int = Field(2**16, ge=2, description="largest feature count of a cross scan (beyond: right-censored)")
    grid_ratio: float = Field(2**0.25, gt=1, le=4)
    confirm_factor: float = Field(2.0, ge=1, description="a scan stops once every criterion held over this factor")
    side: bool = Field(True, description="run the side-by-side (self) tasks")
    side_ns: list[int] = Field(default_factory=lambda: [8, 16, 32], min_length=1)
    side_d: int = Field(16, ge=2)
    side_m_cap: int = Field(2**18, ge=2, description="largest feature count of a side-by-side scan")
    side_fractions: list[float] = Field(default_factory=lambda: [0.25, 0.5], min_length=1)
    level: float = Field(0.9, gt=0, lt=1, description="coverage of every interval")
    quantile: float = Field(0.9, gt=0, lt=1, description="the reported m*_q: the fitted q-quantile over seeds")

    @field_validator("ns", "ds", "side_ns")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if min(v) < 1 or sorted(set(v)) != list(v):
            raise ValueError(f"must be distinct increasing positive integers, got {v}")
        return v

    @field_validator("temperatures", "rel_levels", "tv_levels", "side_fractions")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if min(v) <= 0 or not all(math.isfinite(x) for x in v) or len(set(v)) != len(v):
            raise ValueError(f"must be distinct positive finite numbers, got {v}")
        return v

    @model_validator(mode="after")
    def _checks(self) -> Config:
        geometric_grid(self.m_min, self.m_cap, self.grid_ratio)
        geometric_grid(self.m_min, self.side_m_cap, self.grid_ratio)
        if self.d is not None:
            raise ValueError("the attention experiment takes a list `ds`, not `d`")
        for centre, line, what in (
            (self.n_centre, self.ns, "n_centre in ns"),
            (self.d_centre, self.ds, "d_centre in ds"),
            (self.temperature_centre, self.temperatures, "temperature_centre in temperatures"),
        ):
            if centre not in line:
                raise ValueError(f"the lines must cross at the centre: need {what}, got {centre} and {line}")
        return self

    def criteria(self) -> dict[str, tuple[str, float]]:
        """Cross criteria: column prefix -> (metric, level); ``rel0`` is rel <= rel_levels[0], ..."""
        out = {f"rel{k}": ("rel", v) for k, v in enumerate(self.rel_levels)}
        out.update({f"tv{k}": ("tv", v) for k, v in enumerate(self.tv_levels)})
        return out


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "dists": ["sphere"],
        "ns": [8, 16],
        "ds": [4],
        "n_centre": 16,
        "d_centre": 4,
        "seeds": [0, 1],
        "m_cap": 2**12,
        "grid_ratio": 2**0.5,
        "side_ns": [8],
        "side_d": 4,
        "side_m_cap": 2**12,
    },
    "quick": {
        "ns": [16, 32, 64, 128],
        "ds": [8, 16, 32],
        "temperatures": [0.5, 1.0, 2.0],
        "seeds": list(range(6)),
        "m_cap": 2**14,
        "side_ns": [8, 16],
        "side_m_cap": 2**16,
    },
    # the docs' and README's numbers
    "full": {
        "ns": [16, 32, 64, 128, 256],
        "ds": [4, 8, 16, 32, 64],
        "temperatures": [0.25, 0.5, 1.0, 2.0],
        "seeds": list(range(16)),
        "m_cap": 2**17,
        "side_ns": [8, 16, 32, 64],
        "side_m_cap": 2**20,
    },
}


def _cells(cfg: Config) -> list[tuple[int, int, float]]:
    """(n, d, tau) of the three lines through the centre, without repeats, in sweep order."""
    cells = [(n, cfg.d_centre, cfg.temperature_centre) for n in cfg.ns]
    cells += [(cfg.n_centre, d, cfg.temperature_centre) for d in cfg.ds]
    cells += [(cfg.n_centre, cfg.d_centre, t) for t in cfg.temperatures]
    return list(dict.fromkeys(cells))


def check_inputs(cfg: Config) -> None:
    """Before the sweep (``base.check_inputs``): the self tasks' n points on S^{side_d - 1} must be distinct.

    Only the self pairing (Q = K = X on the unit sphere) uses lambda = lambda_min(H^cts);
    the cross pairing's queries and keys need no such condition.
    """
    if cfg.side:
        for n in cfg.side_ns:
            check_sphere_sample(
                n, cfg.side_d, where=f" for the attention experiment's self tasks, n = {n}, d = {cfg.side_d}"
            )


def tasks(cfg: Config) -> list[tuple[dict[str, Any], int]]:
    """Cross tasks on the three lines (per distribution and variant), then the side-by-side (self) tasks."""
    out = [
        ({"pairing": "cross", "dist": dist, "n": n, "d": d, "temperature": t, "variant": v}, seed)
        for dist in cfg.dists
        for n, d, t in _cells(cfg)
        for v in cfg.variants
        for seed in cfg.seeds
    ]
    if cfg.side:
        out += [
            ({"pairing": "self", "dist": "sphere", "n": n, "d": cfg.side_d, "temperature": 1.0, "variant": v}, seed)
            for n in cfg.side_ns
            for v in cfg.variants
            for seed in cfg.seeds
        ]
    return out


def cost(cfg: Config, params: dict[str, Any]) -> float:
    """Relative work: n^2 times the scan's cap (the feature products cost n^2 per feature)."""
    cap = cfg.side_m_cap if params["pairing"] == "self" else cfg.m_cap
    return float(params["n"]) ** 2 * cap


def attention_seed(seed: int, dist: str, n: int, d: int, temperature: float) -> int:
    """The seed of task (dist, n, d, tau, seed): ``streams.derive`` on (dist index, n, d, round(1000 tau))."""
    return streams.derive(seed, DISTS.index(dist), n, d, round(1000 * temperature))


def tokens(dist: str, n: int, d: int, temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(Q, K), each (n, d), of one task seed: see the module docstring for the two distributions.

    >>> Q, K = tokens("sphere", 4, 3, 0.25, seed=0)
    >>> np.round((Q * Q).sum(axis=1), 12).tolist()
    [4.0, 4.0, 4.0, 4.0]
    """
    if dist not in DISTS:
        raise ValueError(f"dist must be one of {DISTS}, got {dist!r}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be positive and finite, got {temperature!r}")
    out = []
    for role in (0, 1):
        G = streams.generator(int(seed), streams.TOKENS, role).standard_normal((n, d))
        G /= np.linalg.norm(G, axis=1, keepdims=True) if dist == "sphere" else math.sqrt(d)
        out.append(G / math.sqrt(temperature))
    return out[0], out[1]


def _scan(
    cfg: Config,
    grid: list[int],
    estimates: Iterable[tuple[int, np.ndarray]],
    measure: Callable[[np.ndarray], dict[str, float]],
    passes: dict[str, Callable[[dict[str, float]], bool]],
) -> tuple[list[int], dict[str, list[float]], dict[str, list[bool]]]:
    """Widths, every measured value per width, and each criterion's pass per width; stops once all are confirmed."""
    widths: list[int] = []
    values: dict[str, list[float]] = {}
    ok: dict[str, list[bool]] = {k: [] for k in passes}
    for m, A_hat in estimates:
        v = measure(A_hat)
        widths.append(m)
        for k, x in v.items():
            values.setdefault(k, []).append(x)
        for k, rule in passes.items():
            ok[k].append(rule(v))
        if all(confirmed(widths, p, cfg.confirm_factor) for p in ok.values()):
            break
    return widths, values, ok


def _cross(cfg: Config, params: dict[str, Any], seed: int) -> dict[str, Any]:
    dist, n, d, t = params["dist"], int(params["n"]), int(params["d"]), float(params["temperature"])
    ts = attention_seed(seed, dist, n, d, t)
    Q, K = tokens(dist, n, d, t, ts)
    A = kernels.softmax(Q, K)
    grid = geometric_grid(cfg.m_min, cfg.m_cap, cfg.grid_ratio)

    def measure(A_hat: np.ndarray) -> dict[str, float]:
        rel, tv = attention_errors(A_hat, A)
        return {"rel": rel, "tv": tv}

    passes = {k: _at_most(metric, level) for k, (metric, level) in cfg.criteria().items()}
    widths, values, ok = _scan(
        cfg, grid, nested_softmax(Q, K, grid, seed=ts, variant=params["variant"]), measure, passes
    )
    logits = Q @ K.T
    row: dict[str, Any] = {
        "task_seed": str(ts),
        "norm_A": float(np.linalg.norm(A, 2)),
        "logit_sd": float(logits.std()),
        "max_sq_norm": float(max((Q * Q).sum(axis=1).max(), (K * K).sum(axis=1).max())),
        "scan_widths": [float(w) for w in widths],
        "scan_rel": values["rel"],
        "scan_tv": values["tv"],
    }
    for k, p in ok.items():
        row.update(threshold(widths, p).columns(k))
    return row


def _at_most(metric: str, level: float) -> Callable[[dict[str, float]], bool]:
    return lambda v: v[metric] <= level


def implied_level(X: np.ndarray, lam: float, norm_A: float, c: float) -> float:
    """eps_c = c lambda / (B ||A||_op), B = max ||x||^2 e^{max ||x||^2}: a relative attention error this small
    makes ||H^dis - H^cts||_op <= c lambda (module docstring)."""
    sq = float((X * X).sum(axis=1).max())
    return c * lam / (sq * math.exp(sq) * norm_A)


def _self(cfg: Config, params: dict[str, Any], seed: int) -> dict[str, Any]:
    n, d = int(params["n"]), int(params["d"])
    ts = width_task_seed(seed, n, d)
    X = sphere(n, d, seed=ts)
    A = kernels.softmax(X, X)
    H_cts = kernels.ntk(X)
    lam = kernels.lambda_min(H_cts, method="dense")
    norm_A = float(np.linalg.norm(A, 2))
    D = np.exp(0.5 * (X * X).sum(axis=1))
    G = X @ X.T
    eps = [implied_level(X, lam, norm_A, c) for c in cfg.side_fractions]
    grid = geometric_grid(cfg.m_min, cfg.side_m_cap, cfg.grid_ratio)

    def measure(A_hat: np.ndarray) -> dict[str, float]:
        rel, tv = attention_errors(A_hat, A)
        dev, lmin = lazy_criteria(G * (D[:, None] * A_hat * D[None, :]), H_cts, lam, method="dense")
        return {"rel": rel, "tv": tv, "op": dev / lam, "eig": lmin / lam}

    passes = {k: _at_most(metric, level) for k, (metric, level) in cfg.criteria().items()}
    for j, c in enumerate(cfg.side_fractions):
        passes[f"op{j}"] = _at_most("op", c)
        passes[f"eig{j}"] = _at_least("eig", c)
        passes[f"implied{j}"] = _at_most("rel", eps[j])
    widths, values, ok = _scan(
        cfg, grid, nested_softmax(X, X, grid, seed=ts, variant=params["variant"]), measure, passes
    )
    row: dict[str, Any] = {
        "task_seed": str(ts),
        "lambda": float(lam),
        "norm_A": norm_A,
        "norm_K": float(np.linalg.norm(kernels.nngp(X), 2)),
        "implied_levels": eps,
        "scan_widths": [float(w) for w in widths],
        **{f"scan_{k}": v for k, v in values.items()},
    }
    for k, p in ok.items():
        row.update(threshold(widths, p).columns(k))
    return row


def _at_least(metric: str, level: float) -> Callable[[dict[str, float]], bool]:
    return lambda v: v[metric] >= level


def run_one(cfg: Config, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """One task: a cross scan or a side-by-side (self) scan (module docstring)."""
    if params["variant"] not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}, got {params['variant']!r}")
    return _self(cfg, params, seed) if params["pairing"] == "self" else _cross(cfg, params, seed)


def summarise(df: Any, cfg: Config) -> dict[str, Any]:
    from .attention_analysis import summarise as _summarise

    return _summarise(df, cfg)


def figures(df: Any, cfg: Config, directory: Any) -> list[str]:
    from .attention_analysis import figures as _figures

    return _figures(df, cfg, directory)


def write_per_seed_rows(directory: Any, path: Any) -> int:
    """The small per-seed table of the docs (``attention_analysis.write_per_seed_rows``)."""
    from .attention_analysis import write_per_seed_rows as _write

    return _write(directory, path)
