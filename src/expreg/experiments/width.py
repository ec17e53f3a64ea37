"""Experiment ``width``: how wide must the network be as n grows? (docs/theory.md, section 6)

One task per (activation, init, d, n, seed). Its data and its network draw
from the seed ``streams.derive(seed, n, d)``, so every task is independent of
every other (and data of weights, ``expreg.streams``).

1. **Lazy scan** (one pass over neurons, ``scan.nested_gram``): H^dis(W(0))
   of the width-m network for every m of a geometric grid (ratio
   ``grid_ratio``, 2^(1/4) by default, from ``m_min``), and at each m the two
   criteria of the proof

   - ``op``:  ||H^dis(W(0)) - H^cts||_op <= lambda / 2   (the proof's concentration step)
   - ``eig``: lambda_min(H^dis(W(0))) >= lambda / 2        (what the linear rate needs)

   The scan stops once both criteria have passed at every grid width over a
   factor ``confirm_factor`` (or at ``m_cap``), or, from width ``give_up_from``
   on, once the ``op`` criterion is hopeless: ``eig`` confirmed and
   ||H^dis - H^cts|| / lambda * sqrt(m / m_cap) > ``give_up`` / 2, i.e. even a
   decay like m^-1/2 would leave the deviation ``give_up`` times above
   lambda/2 at the cap (the seed is then right-censored at that width: a
   stopping rule that depends only on what was observed keeps the censored
   likelihood valid). Each criterion gives the seed's
   threshold as an interval (lower, upper] (``thresholds.threshold``: the
   earliest pass and the stable pass), right-censored when the cap is reached
   without a stable pass.
2. **Convergence** (``conv_*`` columns, one entry per scaling), for n <=
   ``conv_n_max`` and d in ``conv_ds``: GD at each grid width, bottom up, with
   step 1/lambda_max(H(W(0))) (the empirical kernel: small widths do not
   diverge merely because H(W(0)) is larger than m s^2 H^cts) and a step budget
   of ``budget_factor`` times the kernel-predicted number of steps to epsilon
   (at least ``min_steps``, at most ``max_steps``). Outcomes per width:
   converged, diverged (recorded as such), out of budget. Threshold interval of
   "converged" as above.
3. **Along training** (``train_*`` columns), for n <= ``train_n_max``, d in
   ``train_ds`` and the first ``train_seeds`` seeds: GD (lr "auto") at the
   seed's stable ``op`` and ``eig`` widths until ||u - y|| <= epsilon, recording
   both criteria every ceil(T/``record_points``) steps (T the step budget, as in
   2.); the sup over the run says whether training moves the threshold.

The analysis (``width_analysis``) fits the censored lognormal regression of
``censored`` to the intervals.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..core import kernels, streams, theory
from ..core.activations import get_activation
from ..core.backends import get_backend
from ..core.data import make_dataset
from ..core.eigen import lazy_criteria
from ..core.model import ExpNet
from ..engine.scan import nested_gram
from ._common import train_safely
from .config import Activation, DType, ExperimentConfig, Init, Scaling
from .search import geometric_grid
from .thresholds import confirmed, threshold

name = "width"
description = (
    "Width thresholds per seed from nested scans (proof's criteria at init, GD convergence, along training); "
    "censored lognormal fits of m* against n and lambda(n)."
)


def op_passes(deviation_over_lambda: float) -> bool:
    """The proof's criterion, ||H^dis - H^cts||_op <= lambda/2, on the scan's value divided by lambda."""
    return deviation_over_lambda <= 0.5


def eig_passes(lambda_min_over_lambda: float) -> bool:
    """The linear rate's criterion, lambda_min(H^dis) >= lambda/2, on the scan's value divided by lambda."""
    return lambda_min_over_lambda >= 0.5


#: The two kernel criteria of the scan: name -> what passes.
CRITERIA = {"op": "||H^dis(W(0)) - H^cts||_op <= lambda/2", "eig": "lambda_min(H^dis(W(0))) >= lambda/2"}


class Config(ExperimentConfig):
    """The width experiment's fields (``d`` of the base class is not used: see ``ds``)."""

    name = "width"
    version = 2

    d: int | None = Field(None, description="not used by this experiment: it takes a list, `ds`")  # type: ignore[assignment]  # None here: the base class's one d is this class's list `ds`
    ns: list[int] = Field(default_factory=lambda: [8, 16, 32, 64, 128], min_length=2)
    ds: list[int] = Field(default_factory=lambda: [16], min_length=1)
    activations: list[Activation] = Field(default_factory=lambda: ["exp"], min_length=1)
    inits: list[Init] = Field(default_factory=lambda: ["coupled"], min_length=1)
    scalings: list[Scaling] = Field(default_factory=lambda: ["none"], min_length=1)
    m_min: int = Field(2, ge=2, description="first grid width (below every passing width)")
    m_cap: int = Field(
        2**20, ge=2, description="largest width the lazy scan reaches; beyond it thresholds are right-censored"
    )
    grid_ratio: float = Field(2**0.25, gt=1, le=4)
    confirm_factor: float = Field(2.0, ge=1, description="a scan stops once passes held over this factor of width")
    give_up: float = Field(4.0, ge=0, description="stop a hopeless op scan (see lazy_scan); 0 never stops early")
    give_up_from: int = Field(2**16, ge=2, description="the earliest width at which a scan may give up")
    scan_dtype: DType = Field("float32", description="dtype of the features exp(X W) in the scan")
    scan_device: str = Field(
        "cpu",
        pattern="^(cpu|cuda(:[0-9]+)?)$",
        description="cpu: NumPy; cuda or cuda:K: the PyTorch backend on that GPU (needs expreg[torch] with CUDA)",
    )
    epsilon: float = Field(1e-2, gt=0)
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

    @model_validator(mode="after")
    def _checks(self) -> Config:
        geometric_grid(self.m_min, self.m_cap, self.grid_ratio)
        if min(self.ns) < 2:
            raise ValueError(f"ns must be >= 2, got {self.ns}")
        if self.d is not None:
            raise ValueError("the width experiment takes a list `ds`, not `d`")
        return self

    @property
    def grid(self) -> list[int]:
        """The scan's widths m_min * grid_ratio^k (even), up to m_cap."""
        return geometric_grid(self.m_min, self.m_cap, self.grid_ratio)

    def conv_runs(self, n: int, d: int) -> bool:
        return self.conv and n <= self.conv_n_max and d in (self.conv_ds if self.conv_ds is not None else self.ds)

    def train_runs(self, n: int, d: int, seed: int) -> bool:
        ds = self.train_ds if self.train_ds is not None else self.ds
        return n <= self.train_n_max and d in ds and seed in self.seeds[: self.train_seeds]


_BASE = {"activations": ["exp"], "inits": ["coupled"], "scalings": ["none"]}
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
    # the paper's setting (exp, coupled, s = 1), n = 8 .. 512, d = 8, 16, 32, 20 seeds: the README's numbers
    "full": {
        **_BASE,
        "ns": [8, 16, 32, 64, 128, 256, 512],
        "ds": [8, 16, 32],
        "seeds": list(range(20)),
        "m_cap": 2**22,
        "conv_n_max": 64,
        "conv_ds": [16],
        "train_n_max": 128,
        "train_ds": [32],
        "train_seeds": 5,
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
        "seeds": list(range(20)),
        "m_cap": 2**26,
        "scan_device": "cuda",
        "conv": False,
        "train_n_max": 256,
        "train_ds": [64],
        "train_seeds": 5,
    },
}


def tasks(cfg: Config) -> list[tuple[dict[str, Any], int]]:
    """One task per (activation, init, d, n, seed); the scalings are looped inside (the scan does not depend on s)."""
    return [
        ({"activation": a, "init": i, "d": d, "n": n}, seed)
        for a in cfg.activations
        for i in cfg.inits
        for d in cfg.ds
        for n in cfg.ns
        for seed in cfg.seeds
    ]


def cost(cfg: Config, params: dict[str, Any]) -> float:
    """Relative work of a run: n^2 (the nested scan costs n^2 max(widths), the same widths for every n)."""
    return float(params["n"]) ** 2


def task_seed(seed: int, n: int, d: int) -> int:
    """The seed of the data and the network of task (n, d, seed): ``streams.derive``, independent across tasks."""
    return streams.derive(seed, n, d)


def lazy_scan(
    cfg: Config, X: np.ndarray, H_cts: np.ndarray, lam: float, seed: int, activation: str, init: str
) -> tuple[list[int], list[float], list[float]]:
    """(widths, ||H^dis - H^cts||_op / lambda, lambda_min(H^dis) / lambda) over the grid.

    Stops once both criteria are confirmed, or when the op criterion is hopeless (module docstring).
    Eigenvalues by dense LAPACK: H^dis of a narrow network is singular (rank <= d m) and, accumulated in
    float32, slightly indefinite, where Lanczos in shift-invert mode is slow and can be wrong. With a
    device (``scan_device`` not "cpu") the kernels stay there and the dense eigenvalues are the device's
    (measured on an H100 at n = 2048: host LAPACK took 34 of a 37 s scan).
    """
    widths: list[int] = []
    dev: list[float] = []
    eig: list[float] = []
    dtype = np.dtype(cfg.scan_dtype)
    on_device = cfg.scan_device != "cpu"  # then the criteria's eigenvalues are computed on the device too
    backend = get_backend("torch", device=cfg.scan_device) if on_device else get_backend("numpy")
    H_ref = backend.asarray(H_cts, np.dtype(np.float64)) if on_device else H_cts
    grams = nested_gram(
        X, cfg.grid, seed=seed, activation=activation, init=init, dtype=dtype, backend=backend, on_device=on_device
    )
    for m, Hdis in grams:
        d_op, l_min = lazy_criteria(Hdis, H_ref, lam, method="dense", backend=backend if on_device else None)
        widths.append(m)
        dev.append(d_op / lam)
        eig.append(l_min / lam)
        eig_done = confirmed(widths, [eig_passes(v) for v in eig], cfg.confirm_factor)
        if eig_done and confirmed(widths, [op_passes(v) for v in dev], cfg.confirm_factor):
            break
        if (
            cfg.give_up
            and eig_done
            and m >= cfg.give_up_from
            and not op_passes(dev[-1])
            # even give_up times below a decay like m^-1/2 to the cap, it would still fail there
            and not op_passes(dev[-1] * math.sqrt(m / cfg.m_cap) / cfg.give_up)
        ):
            break
    return widths, dev, eig


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


def run_one(cfg: Config, params: dict[str, Any], seed: int) -> dict[str, Any]:
    act, init, d, n = params["activation"], params["init"], int(params["d"]), int(params["n"])
    ts = task_seed(seed, n, d)
    X, y = make_dataset(n, d, seed=ts, label_kind=cfg.label_kind)
    H_cts = kernels.ntk(X, activation=act)
    lam, lam_max = kernels.extreme_eigenvalues(H_cts, method="dense")
    widths, dev, eig = lazy_scan(cfg, X, H_cts, lam, ts, act, init)
    t_op = threshold(widths, [op_passes(v) for v in dev])
    t_eig = threshold(widths, [eig_passes(v) for v in eig])
    row: dict[str, Any] = {
        "task_seed": str(ts),
        "lambda": float(lam),
        "lambda_max": float(lam_max),
        "theorem_log10_m": float(theory.required_width(n, lam, 0.1).log10_m)
        if get_activation(act).theorem
        else math.nan,
        "scan_widths": [float(w) for w in widths],
        "scan_op": dev,
        "scan_eig": eig,
        **t_op.columns("op"),
        **t_eig.columns("eig"),
    }
    conv: dict[str, list[float]] = {}
    train: dict[str, list[float]] = {}
    for scaling in cfg.scalings:
        if cfg.conv_runs(n, d):
            cw, outcomes = conv_scan(cfg, X, y, ts, act, init, scaling)
            t = threshold(cw, [o == "converged" for o in outcomes])
            counts = {
                "conv_diverged": float(outcomes.count("diverged")),
                "conv_budget": float(outcomes.count("budget")),
            }
            for k, v in {**t.columns("conv"), **counts}.items():
                conv.setdefault(k, []).append(v)
        if cfg.train_runs(n, d, seed):
            for crit, t in (("op", t_op), ("eig", t_eig)):
                if t.censored:
                    continue
                for k, v in along_training(cfg, X, y, lam, int(t.upper), ts, act, init, scaling).items():
                    train.setdefault(f"train_{crit}_{k}", [math.nan] * len(cfg.scalings))
                    train[f"train_{crit}_{k}"][cfg.scalings.index(scaling)] = v
    row.update(conv)
    row.update(train)
    return row


def summarise(df: Any, cfg: Config) -> dict[str, Any]:
    from .width_analysis import summarise as _summarise

    return _summarise(df, cfg)


def figures(df: Any, cfg: Config, directory: Any) -> list[str]:
    from .width_analysis import figures as _figures

    return _figures(df, cfg, directory)
