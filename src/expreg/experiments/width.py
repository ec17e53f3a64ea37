"""Experiment ``width``: how wide must the network be, and on what does it depend? (docs/theory.md section 6)

One task per (activation, init, data set, n, seed). Its data and its network
draw from the seed ``streams.derive(seed, n, d)``, so every task is
independent of every other (and data of weights, ``expreg.streams``). Data:
``sphere`` (n points uniform on S^{d-1}, for each d of ``ds``) or
``equicorrelated`` (n unit vectors in d = n + 1 with pairwise inner product
rho, for each rho of ``rhos``: lambda does not change with n).

1. **Lazy scan** (one pass over neurons, ``scan.nested_gram``): H^dis(W(0))
   of the width-m network for every m of a geometric grid (ratio
   ``grid_ratio``, 2^(1/4) by default, from ``m_min``), and at each m
   ||H^dis - H^cts||_op / lambda and lambda_min(H^dis) / lambda, from which
   every criterion of ``width_rules.CRITERIA`` (op at lambda/4 -- the
   proof's --, lambda/2, 3 lambda/4; eig at lambda/2, 3 lambda/4) gets its
   threshold interval (``thresholds.threshold``). The scan stops by
   ``width_rules.StopRule``: every criterion confirmed over ``confirm_factor``,
   the give-up rule (``give_up`` > 0, from ``give_up_from`` on), or the cap;
   each right-censored threshold records which (``<crit>_censored_by``).
2. **Convergence** (``conv_*`` columns, one entry per scaling), for n <=
   ``conv_n_max`` and d in ``conv_ds``: GD at each grid width, bottom up, with
   step 1/lambda_max(H(W(0))) and a step budget of ``budget_factor`` times the
   kernel-predicted number of steps to epsilon (within ``min_steps`` ..
   ``max_steps``). Outcomes per width: converged, diverged, out of budget.
3. **Along training** (``train_*`` columns), for n <= ``train_n_max``, d in
   ``train_ds`` and the first ``train_seeds`` seeds: GD at the seed's stable
   ``op1_2`` and ``eig1_2`` widths, recording both quantities every
   ceil(T/``record_points``) steps.

Each row also keeps what the candidate laws read (``width_laws``):
lambda, ||H^cts||_op and the variance proxy v. The analysis
(``width_analysis``) fits the censored lognormal regression of ``censored``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..core import kernels, streams, theory
from ..core.activations import get_activation
from ..core.backends import backend_for_device
from ..core.data import equicorrelated, labels, make_dataset
from ..core.eigen import lazy_criteria
from ..core.model import ExpNet
from ..engine.scan import nested_gram
from . import width_analysis, width_figures, width_predict
from ._common import train_safely
from .config import Activation, DType, ExperimentConfig, Init, Scaling
from .thresholds import confirmed, threshold
from .width_laws import law_covariates
from .width_rules import CRITERIA, StopRule, censored_by, geometric_grid, values_of

name = "width"
description = (
    "Width thresholds per seed from nested scans (five criteria at init, GD convergence, along training) on "
    "sphere data or a fixed-lambda family; censored lognormal fits and candidate laws scored by prediction."
)


class Config(ExperimentConfig):
    """The width experiment's fields (``d`` of the base class is not used: see ``ds``)."""

    name = "width"
    version = 3

    d: int | None = Field(None, description="not used by this experiment: it takes a list, `ds`")  # type: ignore[assignment]  # None here: the base class's one d is this class's list `ds`
    ns: list[int] = Field(default_factory=lambda: [8, 16, 32, 64, 128], min_length=1)
    ds: list[int] = Field(default_factory=lambda: [16], min_length=1, description="sphere data: the dimensions")
    data: Literal["sphere", "equicorrelated"] = Field(
        "sphere", description="sphere: uniform on S^{d-1}; equicorrelated: d = n + 1, <x_i, x_j> = rho (fixed lambda)"
    )
    rhos: list[float] = Field(default_factory=lambda: [0.0], min_length=1, description="equicorrelated data: the rhos")
    activations: list[Activation] = Field(default_factory=lambda: ["exp"], min_length=1)
    inits: list[Init] = Field(default_factory=lambda: ["coupled"], min_length=1)
    scalings: list[Scaling] = Field(default_factory=lambda: ["none"], min_length=1)
    m_min: int = Field(2, ge=2, description="first grid width (below every passing width)")
    m_cap: int = Field(
        2**20, ge=2, description="largest width the lazy scan reaches; beyond it thresholds are right-censored"
    )
    grid_ratio: float = Field(2**0.25, gt=1, le=4)
    confirm_factor: float = Field(2.0, ge=1, description="a scan stops once passes held over this factor of width")
    give_up: float = Field(4.0, ge=0, description="stop a hopeless op scan (width_rules.StopRule); 0 never stops early")
    give_up_from: int = Field(2**16, ge=2, description="the earliest width at which a scan may give up")
    scan_dtype: DType = Field("float32", description="dtype of the features exp(X W) in the scan")
    scan_device: str = Field(
        "cpu",
        pattern="^(cpu|cuda(:[0-9]+)?)$",
        description="cpu: NumPy; cuda or cuda:K: the PyTorch backend on that GPU (needs expreg[torch] with CUDA)",
    )
    epsilon: float = Field(1e-2, gt=0)
    lazy: bool = Field(
        True,
        description="the nested scan at init (False: GD's convergence scan only, for rows that "
        "width_rows.collect files beside a lazy run's under one preset)",
    )
    conv: bool = True
    conv_n_max: int = Field(64, ge=2)
    conv_ds: list[int] | None = Field(None, description="d values with the convergence scan (None: all of ds)")
    m_max_conv: int = Field(2**12, ge=2)
    budget_factor: float = Field(4.0, ge=1)
    min_steps: int = Field(200, ge=1)
    max_steps: int = Field(20_000, ge=1)
    train_n_max: int = Field(64, ge=0)
    train_ds: list[int] | None = Field(None, description="d values with the along-training runs (None: all of ds)")
    train_seeds: int = Field(5, ge=0, description="along-training runs for the first this many seeds")
    record_points: int = Field(40, ge=2)
    level: float = Field(0.9, gt=0, lt=1, description="coverage of every interval")
    quantile: float = Field(0.9, gt=0, lt=1, description="the reported width m*_q(n): the fitted q-quantile over seeds")
    window: float = Field(4.0, gt=1, description="local exponents: fits over windows [n0, window n0]")

    @field_validator("ns", "ds")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if min(v) < 1 or sorted(set(v)) != list(v):
            raise ValueError(f"must be distinct increasing positive integers, got {v}")
        return v

    @field_validator("rhos")
    @classmethod
    def _rhos(cls, v: list[float]) -> list[float]:
        if any(not 0.0 <= r < 1.0 for r in v) or len(set(v)) != len(v):
            raise ValueError(f"rhos must be distinct values in [0, 1), got {v}")
        return v

    @model_validator(mode="after")
    def _checks(self) -> Config:
        geometric_grid(self.m_min, self.m_cap, self.grid_ratio)
        if min(self.ns) < 2:
            raise ValueError(f"ns must be >= 2, got {self.ns}")
        if self.d is not None:
            raise ValueError("the width experiment takes a list `ds`, not `d`")
        if not self.lazy and (self.train_n_max > 0 or not self.conv):
            raise ValueError(
                "lazy = false keeps only GD's convergence scan: set conv = true and train_n_max = 0 "
                "(the along-training runs start from the lazy scan's widths)"
            )
        return self

    @property
    def grid(self) -> list[int]:
        """The scan's widths m_min * grid_ratio^k (even), up to m_cap."""
        return geometric_grid(self.m_min, self.m_cap, self.grid_ratio)

    @property
    def stop_rule(self) -> StopRule:
        """When a scan stops (``width_rules.StopRule``), with this configuration's factors and grid."""
        return StopRule(self.confirm_factor, self.give_up, self.give_up_from, self.grid[-1])

    def conv_runs(self, n: int, d: int) -> bool:
        ds = self.conv_ds if self.conv_ds is not None else self.ds
        return self.conv and n <= self.conv_n_max and (self.data != "sphere" or d in ds)

    def train_runs(self, n: int, d: int, seed: int) -> bool:
        ds = self.train_ds if self.train_ds is not None else self.ds
        return n <= self.train_n_max and (self.data != "sphere" or d in ds) and seed in self.seeds[: self.train_seeds]


_BASE = {"activations": ["exp"], "inits": ["coupled"], "scalings": ["none"]}
_SEEDS20 = list(range(20))
#: The presets the docs use (``full``, ``dsweep``, ``fixedlambda``, ``beyondcap``) and heavier ones.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        **_BASE,
        "ns": [4, 8],
        "ds": [4],
        "seeds": [0, 1],
        "m_cap": 2**13,
        "grid_ratio": 2**0.5,
        "conv_n_max": 8,
        "m_max_conv": 256,
        "max_steps": 3000,
        "train_n_max": 8,
        "train_seeds": 1,
        "record_points": 5,
    },
    "quick": {
        **_BASE,
        "ns": [8, 16, 32, 64],
        "ds": [16],
        "seeds": list(range(8)),
        "m_cap": 2**19,
        "conv_n_max": 32,
        "train_n_max": 32,
        "train_seeds": 2,
    },
    # sphere data, n = 8 .. 256, d = 8, 16, 32, 20 seeds; GD for n <= 64 at every d
    "full": {
        **_BASE,
        "ns": [8, 16, 32, 64, 128, 256],
        "ds": [8, 16, 32],
        "seeds": _SEEDS20,
        "m_cap": 2**22,
        "conv_n_max": 64,
        "train_n_max": 64,
        "train_ds": [32],
        "train_seeds": 3,
    },
    # GD's convergence scan on the tasks of `full` at n = 128, 256, seeds 0-9 (the same data; no lazy scan:
    # filed as `full`). About 75 CPU-minutes, most of it d = 8 at n = 256 (slow GD: lambda ~ 0.05)
    "full-gd": {
        **_BASE,
        "ns": [128, 256],
        "ds": [8, 16, 32],
        "seeds": list(range(10)),
        "m_cap": 2**22,
        "lazy": False,
        "conv_n_max": 256,
        "train_n_max": 0,
    },
    # the lazy scans of `full` at n <= 32 without GD (the same tasks: same data and networks, cheaper)
    "full-lazy": {
        **_BASE,
        "ns": [8, 16, 32],
        "ds": [8, 16, 32],
        "seeds": _SEEDS20,
        "m_cap": 2**22,
        "conv": False,
        "train_n_max": 0,
    },
    # d at fixed n: does d act only through lambda and ||H^cts||?
    "dsweep": {
        **_BASE,
        "ns": [16, 64],
        "ds": [4, 6, 8, 12, 16, 24, 32, 64],
        "seeds": _SEEDS20,
        "m_cap": 2**22,
        "conv": False,
        "train_n_max": 0,
    },
    # n grown at fixed lambda: equicorrelated unit vectors (lambda = e^2 - rho e^{1+rho} for every n)
    "fixedlambda": {
        **_BASE,
        "data": "equicorrelated",
        "rhos": [0.0, 0.25],
        "ns": [8, 16, 32, 64, 128, 256],
        "seeds": _SEEDS20,
        "m_cap": 2**22,
        "conv_n_max": 64,
        "train_n_max": 0,
    },
    # GD's convergence scan on the tasks of `fixedlambda` at n = 128, 256, seeds 0-9 (no lazy scan: filed as
    # `fixedlambda`)
    "fixedlambda-gd": {
        **_BASE,
        "data": "equicorrelated",
        "rhos": [0.0, 0.25],
        "ns": [128, 256],
        "seeds": list(range(10)),
        "m_cap": 2**22,
        "lazy": False,
        "conv_n_max": 256,
        "train_n_max": 0,
    },
    # the censored cell of `grid` rescanned: d = 8, n = 128, no give-up rule, cap 2^26
    "beyondcap": {
        **_BASE,
        "ns": [128],
        "ds": [8],
        "seeds": list(range(10)),
        "m_cap": 2**26,
        "give_up": 0.0,
        "conv": False,
        "train_n_max": 0,
    },
    # robustness: the same tasks as `full` at d = 16, n = 16, 64 (same data and networks), features in float64 ...
    "check-float64": {
        **_BASE,
        "ns": [16, 64],
        "ds": [16],
        "seeds": list(range(10)),
        "m_cap": 2**22,
        "scan_dtype": "float64",
        "conv": False,
        "train_n_max": 0,
    },
    # ... and on a finer grid (ratio 2^(1/8))
    "check-grid": {
        **_BASE,
        "ns": [16, 64],
        "ds": [16],
        "seeds": list(range(10)),
        "m_cap": 2**22,
        "grid_ratio": 2**0.125,
        "conv": False,
        "train_n_max": 0,
    },
    # heavier cells, own preset (resumable): n = 512 on the sphere, the d sweep at n = 256, the family at n = 512
    "heavy": {
        **_BASE,
        "ns": [256, 512],
        "ds": [4, 8, 16, 32, 64],
        "seeds": _SEEDS20,
        "m_cap": 2**22,
        "conv": False,
        "train_n_max": 0,
    },
    # every variant at d = 16, n <= 128: initialisation, scaling and activation compared
    "compare": {
        "ns": [8, 16, 32, 64, 128],
        "ds": [16],
        "seeds": list(range(12)),
        "activations": ["exp", "relu"],
        "inits": ["coupled", "gaussian"],
        "scalings": ["none", "ntk"],
        "m_cap": 2**21,
        "conv_n_max": 64,
        "train_n_max": 32,
        "train_seeds": 3,
    },
    # n to 2048: for a GPU (scan_device = "cuda", the default here) or, with scan_device = "cpu", a Dask cluster
    "large": {
        **_BASE,
        "ns": [64, 128, 256, 512, 1024, 2048],
        "ds": [16, 32, 64],
        "seeds": _SEEDS20,
        "m_cap": 2**26,
        "scan_device": "cuda",
        "conv": False,
        "train_n_max": 256,
        "train_ds": [64],
        "train_seeds": 5,
    },
}


def _data_sets(cfg: Config, n: int) -> list[dict[str, Any]]:
    """The data-set parameters at n: one per d (sphere) or per rho (equicorrelated, d = n + 1)."""
    if cfg.data == "sphere":
        return [{"data": "sphere", "d": d} for d in cfg.ds]
    return [{"data": "equicorrelated", "rho": float(r), "d": n + 1} for r in cfg.rhos]


def tasks(cfg: Config) -> list[tuple[dict[str, Any], int]]:
    """One task per (activation, init, data set, n, seed); the scalings are looped inside (the scan does not depend on s)."""
    return [
        ({"activation": a, "init": i, **ds, "n": n}, seed)
        for a in cfg.activations
        for i in cfg.inits
        for n in cfg.ns
        for ds in _data_sets(cfg, n)
        for seed in cfg.seeds
    ]


def cost(cfg: Config, params: dict[str, Any]) -> float:
    """Relative work of a run: n (n + d) (the nested scan costs n (n + d) max(widths), the same widths for every n)."""
    return float(params["n"]) * (float(params["n"]) + float(params["d"]))


#: ``streams.derive`` key of the equicorrelated family (sphere tasks derive from (n, d) alone, as before).
_FAMILY_KEY = 1


def task_seed(seed: int, n: int, d: int, rho: float | None = None) -> int:
    """The seed of the data and the network of task (n, d[, rho], seed): ``streams.derive``, independent across
    tasks (an equicorrelated task adds a family key and rho in millionths, so its rhos never share a network)."""
    if rho is None:
        return streams.derive(seed, n, d)
    return streams.derive(seed, n, d, _FAMILY_KEY, round(rho * 1e6))


def task_data(params: dict[str, Any], ts: int, label_kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of one task: sphere(n, d) or equicorrelated(n, rho), labels of the same task seed."""
    n, d = int(params["n"]), int(params["d"])
    if params.get("data", "sphere") == "sphere":
        return make_dataset(n, d, seed=ts, label_kind=label_kind)
    return equicorrelated(n, float(params["rho"]), seed=ts), labels(n, label_kind, seed=ts)


def lazy_scan(
    cfg: Config, X: np.ndarray, H_cts: np.ndarray, lam: float, seed: int, activation: str, init: str
) -> tuple[list[int], list[float], list[float], str]:
    """(widths, ||H^dis - H^cts||_op / lambda, lambda_min(H^dis) / lambda, why the scan stopped) over the grid.

    Stops by ``cfg.stop_rule`` (module docstring). Eigenvalues by dense LAPACK: H^dis of a narrow network is
    singular (rank <= d m) and, accumulated in float32, slightly indefinite, where Lanczos in shift-invert
    mode is slow and can be wrong. With a device (``scan_device`` not "cpu") the kernels stay there and
    the dense eigenvalues are the device's.
    """
    widths: list[int] = []
    dev: list[float] = []
    eig: list[float] = []
    backend = backend_for_device(cfg.scan_device)
    on_device = backend.name != "numpy"  # then the criteria's eigenvalues are computed on the device too
    H_ref = backend.asarray(H_cts, np.dtype(np.float64)) if on_device else H_cts
    grams = nested_gram(
        X,
        cfg.grid,
        seed=seed,
        activation=activation,
        init=init,
        dtype=np.dtype(cfg.scan_dtype),
        backend=backend,
        on_device=on_device,
    )
    rule, stop = cfg.stop_rule, None
    for m, Hdis in grams:
        d_op, l_min = lazy_criteria(Hdis, H_ref, lam, method="dense", backend=backend if on_device else None)
        widths.append(m)
        dev.append(d_op / lam)
        eig.append(l_min / lam)
        stop = rule.reason(widths, dev, eig)
        if stop is not None:
            break
    return widths, dev, eig, stop or "cap"


def steps_to_epsilon(H: np.ndarray, r0: np.ndarray, lr: float, epsilon: float, cap: int) -> float:
    """Kernel-predicted steps until ||(I - lr H)^t r0|| <= epsilon (inf when beyond ``cap``)."""
    traj = kernels.predicted_trajectory(H, r0, lr)
    if traj.norms([cap])[0] > epsilon:
        return math.inf
    lo, hi = 0, 1
    while traj.norms([hi])[0] > epsilon:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if traj.norms([mid])[0] > epsilon:
            lo = mid
        else:
            hi = mid
    return float(hi) if traj.norms([0])[0] > epsilon else 0.0


def budget(cfg: Config, predicted: float) -> int:
    """Step budget: budget_factor x the kernel-predicted steps, within [min_steps, max_steps]."""
    if not math.isfinite(predicted):
        return cfg.max_steps
    return int(min(cfg.max_steps, max(cfg.min_steps, math.ceil(cfg.budget_factor * predicted))))


def converges(
    cfg: Config, X: np.ndarray, y: np.ndarray, m: int, seed: int, activation: str, init: str, scaling: str
) -> str:
    """One convergence probe at width m: "converged", "diverged" or "budget" (out of steps)."""
    net = ExpNet.init(X.shape[1], m, seed=seed, activation=activation, init=init, scaling=scaling)
    H0 = kernels.empirical_ntk(net, X)
    lr = 1.0 / kernels.lambda_max(H0)
    r0 = net.predict(X) - y
    steps = budget(cfg, steps_to_epsilon(H0, r0, lr, cfg.epsilon, cfg.max_steps))
    result, diverged = train_safely(
        net, X, y, lr=lr, epsilon=cfg.epsilon, max_steps=steps, record_every=0, track_movement=False
    )
    if diverged:
        return "diverged"
    return "converged" if result.converged else "budget"


def conv_scan(
    cfg: Config, X: np.ndarray, y: np.ndarray, seed: int, activation: str, init: str, scaling: str
) -> tuple[list[int], list[str]]:
    """(widths, outcomes) of convergence probes bottom up over the grid (to m_max_conv), stopping once convergence is confirmed."""
    widths: list[int] = []
    outcomes: list[str] = []
    for m in geometric_grid(cfg.m_min, cfg.m_max_conv, cfg.grid_ratio):
        widths.append(m)
        outcomes.append(converges(cfg, X, y, m, seed, activation, init, scaling))
        if confirmed(widths, [o == "converged" for o in outcomes], cfg.confirm_factor):
            break
    return widths, outcomes


def along_training(
    cfg: Config, X: np.ndarray, y: np.ndarray, lam: float, m: int, seed: int, activation: str, init: str, scaling: str
) -> dict[str, float]:
    """GD (lr "auto") at width m to epsilon; sup_t ||H^dis(W(t)) - H^cts|| / lambda and min_t lambda_min(H^dis(W(t))) / lambda."""
    net = ExpNet.init(X.shape[1], m, seed=seed, activation=activation, init=init, scaling=scaling)
    H = m * net.s**2 * kernels.ntk(X, activation=activation)
    lr = 1.0 / kernels.lambda_max(H)
    steps = budget(cfg, steps_to_epsilon(H, net.predict(X) - y, lr, cfg.epsilon, cfg.max_steps))
    every = max(1, math.ceil(steps / cfg.record_points))
    result, diverged = train_safely(
        net, X, y, lr=lr, epsilon=cfg.epsilon, max_steps=steps, record_every=every, track_movement=True
    )
    h = result.history
    return {
        "m": float(m),
        "steps": float(result.steps),
        "converged": float(result.converged and not diverged),
        "records": float(len(h.kernel_step)),
        "dev0": h.kernel_deviation[0] / lam,
        "sup_dev": float(np.max(h.kernel_deviation)) / lam,
        "eig0": h.kernel_lambda_min[0] / lam,
        "inf_eig": float(np.min(h.kernel_lambda_min)) / lam,
        "max_movement": float(np.max(h.max_movement)),
    }


def _lazy_columns(
    cfg: Config, X: np.ndarray, H_cts: np.ndarray, lam: float, ts: int, act: str, init: str
) -> dict[str, Any]:
    """The scan's trace and every criterion's threshold columns, with the censoring cause (``<crit>_censored_by``)."""
    widths, dev, eig, stop = lazy_scan(cfg, X, H_cts, lam, ts, act, init)
    row: dict[str, Any] = {
        "scan_widths": [float(w) for w in widths],
        "scan_op": dev,
        "scan_eig": eig,
        "scan_stop": stop,
    }
    for crit, c in CRITERIA.items():
        t = threshold(widths, c.passed(values_of(c.kind, dev, eig)))
        row.update(t.columns(crit))
        row[f"{crit}_censored_by"] = censored_by(t.censored, stop)
    return row


def _conv_columns(cfg: Config, X: np.ndarray, y: np.ndarray, ts: int, act: str, init: str) -> dict[str, list[float]]:
    """GD's threshold per scaling (``conv_*`` lists) and its diverged / out-of-budget counts."""
    conv: dict[str, list[float]] = {}
    for scaling in cfg.scalings:
        cw, outcomes = conv_scan(cfg, X, y, ts, act, init, scaling)
        t = threshold(cw, [o == "converged" for o in outcomes])
        counts = {"conv_diverged": float(outcomes.count("diverged")), "conv_budget": float(outcomes.count("budget"))}
        for k, v in {**t.columns("conv"), **counts}.items():
            conv.setdefault(k, []).append(v)
    return conv


def _train_columns(
    cfg: Config, X: np.ndarray, y: np.ndarray, lam: float, row: dict[str, Any], ts: int, act: str, init: str
) -> dict[str, list[float]]:
    """Along training at the stable op1_2 and eig1_2 widths, per scaling (``train_<crit>_*`` lists)."""
    train: dict[str, list[float]] = {}
    for k, scaling in enumerate(cfg.scalings):
        for crit in ("op1_2", "eig1_2"):
            upper = row[f"{crit}_upper"]
            if math.isinf(upper):
                continue
            for key, v in along_training(cfg, X, y, lam, int(upper), ts, act, init, scaling).items():
                train.setdefault(f"train_{crit}_{key}", [math.nan] * len(cfg.scalings))[k] = v
    return train


def run_one(cfg: Config, params: dict[str, Any], seed: int) -> dict[str, Any]:
    act, init, d, n = params["activation"], params["init"], int(params["d"]), int(params["n"])
    ts = task_seed(seed, n, d, params.get("rho"))
    X, y = task_data(params, ts, cfg.label_kind)
    H_cts = kernels.ntk(X, activation=act)
    lam, lam_max = kernels.extreme_eigenvalues(H_cts, method="dense")
    row: dict[str, Any] = {
        "task_seed": str(ts),
        "lambda": float(lam),
        "lambda_max": float(lam_max),
        "variance": law_covariates(n, X, lam, lam_max)["variance"] if act == "exp" else math.nan,
        "theorem_log10_m": float(theory.required_width(n, lam, 0.1).log10_m)
        if get_activation(act).theorem
        else math.nan,
        **(_lazy_columns(cfg, X, H_cts, lam, ts, act, init) if cfg.lazy else {}),
    }
    if cfg.conv_runs(n, d):
        row.update(_conv_columns(cfg, X, y, ts, act, init))
    if cfg.train_runs(n, d, seed):
        row.update(_train_columns(cfg, X, y, lam, row, ts, act, init))
    return row


def summarise(df: Any, cfg: Config) -> dict[str, Any]:
    """Tables of the run (``width_analysis``) and the candidate laws scored by prediction (``width_predict``)."""
    summary = width_analysis.summarise(df, cfg)
    if cfg.lazy:  # the laws predict the lazy criteria; a GD-only run has none
        summary["tables"].update(width_predict.law_tables(width_analysis.with_design(df), cfg))
    return summary


def figures(df: Any, cfg: Config, directory: Any) -> list[str]:
    """The width figures (``width_figures``)."""
    rows = width_analysis.with_design(df)
    return width_figures.all_figures(rows, width_analysis.analysed(rows, cfg), cfg, directory)
