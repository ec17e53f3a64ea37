"""What a descent records and returns: the per-step ``History`` and the run record ``Run``.

``descent.descend`` fills a ``History`` step by step and returns a ``Run``
(the weights it reached, the history, the step size and the kernel's
extreme eigenvalues). ``train.TrainResult`` and
``distributed.ShardedTrainResult`` wrap a ``Run`` (``RunResult``) instead of
restating its fields: they add only what their caller knows (the network
or the rank's slice, the wall time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core import display
from ..core.backends import Array

__all__ = ["History", "Run", "RunResult"]


#: The records of ``History`` kept at every step (the kernel's only every ``record_every`` steps).
_PER_STEP = ("loss", "residual", "max_movement", "frobenius_movement")


@dataclass(repr=False)  # the one-line repr below
class History:
    """Per-step records of a run; arrays indexed by step t = 0, 1, ..., steps.

    Attributes
    ----------
    loss : (T+1,) 1/2 ||u(t) - y||^2
    residual : (T+1,) ||u(t) - y||_2
    max_movement : (T+1,) max_r ||w_r(t) - w_r(0)||_2
    frobenius_movement : (T+1,) ||W(t) - W(0)||_F
    kernel_step : (K,) steps at which the kernel was recorded
    kernel_deviation : (K,) ||H^dis(W(t)) - H^cts||_op
    kernel_lambda_min : (K,) lambda_min(H^dis(W(t)))
    """

    loss: list[float] = field(default_factory=list)
    residual: list[float] = field(default_factory=list)
    max_movement: list[float] = field(default_factory=list)
    frobenius_movement: list[float] = field(default_factory=list)
    kernel_step: list[int] = field(default_factory=list)
    kernel_deviation: list[float] = field(default_factory=list)
    kernel_lambda_min: list[float] = field(default_factory=list)

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Every record as a NumPy array, keyed by field name."""
        return {k: np.asarray(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> History:
        h = cls()
        for k in h.__dict__:
            setattr(h, k, np.asarray(arrays[k]).tolist())
        return h

    def npz_fields(self) -> dict[str, np.ndarray]:
        """The records as ``.npz`` entries ``h_<field>``: the key format of every checkpoint."""
        return {f"h_{k}": v for k, v in self.as_arrays().items()}

    @classmethod
    def from_npz_fields(cls, data: dict[str, np.ndarray]) -> History:
        """The history stored in ``data`` (a loaded ``.npz``) by ``npz_fields``; other entries are ignored."""
        return cls.from_arrays({k[2:]: v for k, v in data.items() if k.startswith("h_")})

    def append_step(self, loss: float, residual: float, max_movement: float, frobenius_movement: float) -> None:
        """Record step t = len(self.loss): its loss, residual and movement."""
        self.loss.append(loss)
        self.residual.append(residual)
        self.max_movement.append(max_movement)
        self.frobenius_movement.append(frobenius_movement)

    def append_kernel(self, step: int, deviation: float, lambda_min: float) -> None:
        """Record the kernel figures of step ``step``."""
        self.kernel_step.append(step)
        self.kernel_deviation.append(deviation)
        self.kernel_lambda_min.append(lambda_min)

    def to_pandas(self) -> Any:
        """The records as a pandas DataFrame indexed by step t = 0 .. T.

        Columns ``loss``, ``residual``, ``max_movement``, ``frobenius_movement``
        (every step) and ``kernel_deviation``, ``kernel_lambda_min`` (NaN at the
        steps where the kernel was not recorded).
        """
        steps = len(self.residual)
        cols: dict[str, Any] = {k: np.asarray(getattr(self, k), dtype=float) for k in _PER_STEP}
        for k in ("kernel_deviation", "kernel_lambda_min"):
            col = np.full(steps, np.nan)
            for t, v in zip(self.kernel_step, getattr(self, k), strict=True):
                if t < steps:
                    col[t] = v
            cols[k] = col
        return display.frame(cols, index=np.arange(steps), index_name="step")

    def _figures(self) -> list[tuple[str, Any]]:
        if not self.residual:
            return [("steps", 0)]
        pairs: list[tuple[str, Any]] = [
            ("steps", len(self.residual) - 1),
            ("residual", f"{display.number(self.residual[0])} -> {display.number(self.residual[-1])}"),
        ]
        if self.max_movement:
            pairs.append(("max_movement", max(self.max_movement)))
        if self.kernel_step:
            pairs += [("kernel_records", len(self.kernel_step)), ("min_lambda_min", min(self.kernel_lambda_min))]
        return pairs

    def __repr__(self) -> str:
        return display.line("History", self._figures())

    def _repr_html_(self) -> str:
        return display.html_table("History (to_pandas() for every step)", self._figures())

    def truncate(self, steps: int) -> None:
        """Drop records after step ``steps``."""
        for k in ("loss", "residual", "max_movement", "frobenius_movement"):
            del getattr(self, k)[steps + 1 :]
        keep = [i for i, t in enumerate(self.kernel_step) if t <= steps]
        for k in ("kernel_step", "kernel_deviation", "kernel_lambda_min"):
            setattr(self, k, [getattr(self, k)[i] for i in keep])


@dataclass
class Run:
    """One finished (or diverged) descent: what ``descent.descend`` returns.

    Attributes
    ----------
    W : array (d, k)
        The weights after ``steps`` steps (this rank's k columns; backend array, the run's dtype).
    converged : bool
        ||u - y||_2 <= epsilon was reached.
    steps : int
        Gradient steps taken.
    lr : float
        The step size used.
    lr_rule : str
        How it was chosen, e.g. "auto: 1/lambda_max(m s^2 H^cts)".
    epsilon : float
    history : History
        Identical on every rank.
    lambda_cts, lambda_max_cts : float
        lambda_min and lambda_max of H^cts of the training inputs (docs/theory.md section 3).
    """

    W: Array
    converged: bool
    steps: int
    lr: float
    lr_rule: str
    epsilon: float
    history: History
    lambda_cts: float
    lambda_max_cts: float


class RunResult:
    """A result that wraps a ``Run``: its fields read through, and the headline figures.

    The base of ``TrainResult`` and ``ShardedTrainResult``; a subclass holds
    ``run`` and ``seconds`` (wall time of the descent, kernel set-up included).
    """

    run: Run
    seconds: float

    @property
    def converged(self) -> bool:
        return self.run.converged

    @property
    def steps(self) -> int:
        return self.run.steps

    @property
    def lr(self) -> float:
        return self.run.lr

    @property
    def lr_rule(self) -> str:
        return self.run.lr_rule

    @property
    def epsilon(self) -> float:
        return self.run.epsilon

    @property
    def history(self) -> History:
        return self.run.history

    @property
    def lambda_cts(self) -> float:
        return self.run.lambda_cts

    @property
    def lambda_max_cts(self) -> float:
        return self.run.lambda_max_cts

    @property
    def final_residual(self) -> float:
        return float(self.history.residual[-1])

    @property
    def initial_residual(self) -> float:
        return float(self.history.residual[0])

    @property
    def max_movement(self) -> float:
        return float(self.history.max_movement[-1])

    def summary(self) -> dict[str, Any]:
        """JSON-ready headline figures."""
        return {
            "converged": bool(self.converged),
            "steps": int(self.steps),
            "lr": float(self.lr),
            "lr_rule": self.lr_rule,
            "epsilon": float(self.epsilon),
            "initial_residual": self.initial_residual,
            "final_residual": self.final_residual,
            "lambda_min": float(self.lambda_cts),
            "lambda_max": float(self.lambda_max_cts),
            "max_movement": self.max_movement,
            "frobenius_movement": float(self.history.frobenius_movement[-1]),
            "seconds": float(self.seconds),
        }

    def _figures(self) -> list[tuple[str, Any]]:
        width = self.net.m if hasattr(self, "net") else getattr(self, "m", None)
        return [
            ("converged", bool(self.converged)),
            ("steps", int(self.steps)),
            ("residual", f"{display.number(self.initial_residual)} -> {display.number(self.final_residual)}"),
            ("epsilon", float(self.epsilon)),
            ("lr", float(self.lr)),
            ("max_movement", self.max_movement),
            *([("m", int(width))] if width is not None else []),
            ("seconds", float(self.seconds)),
        ]

    def __repr__(self) -> str:
        """One line with the figures that matter; ``history``, ``run`` and the weights are attributes, not printed."""
        return display.line(type(self).__name__, self._figures())

    def _repr_html_(self) -> str:
        rows = [*self._figures(), ("lr rule", self.lr_rule), ("lambda_min(H^cts)", float(self.lambda_cts))]
        return display.html_table(type(self).__name__, rows)
