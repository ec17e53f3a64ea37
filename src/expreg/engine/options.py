"""The options of a gradient-descent run, declared once (docs/theory.md section 2).

``expreg.train`` and ``expreg.distributed.train_sharded`` take the same
options: either a ``TrainOptions`` object or its fields as keywords
(``train(net, X, y, max_steps=500)``), or both (the keywords replace the
object's fields). Each field is validated here, at construction, with an
error that names it; the descent loop, the checkpoint identity and the
ranks' agreement read the validated object.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from ..core.validation import check_nonnegative, check_positive, check_positive_int, is_number

#: The step-size rules ``lr`` may name (docs/theory.md section 4).
LR_RULES = ("auto", "empirical")


@dataclass(frozen=True)
class TrainOptions:
    """How one full-batch gradient descent runs; every field checked when the object is made.

    Attributes
    ----------
    lr : "auto", "empirical" or float
        Step size. "auto" = 1/lambda_max(m s^2 H^cts) (from the closed form);
        "empirical" = 1/lambda_max(H(W(0))) (one kernel pass at step 0); a
        positive number is used as given.
    epsilon : float
        Stop once ||u - y||_2 <= epsilon (>= 0).
    max_steps : int
        Step budget (>= 0).
    record_every : int, optional
        Record ||H^dis(W(t)) - H^cts||_op and lambda_min(H^dis(W(t))) every
        this many steps (each record costs 2 n^2 m flops and two n x n
        eigenvalue problems); None records at the first and the last step
        only, 0 never.
    track_movement : bool
        Record the weight movement max_r ||w_r(t) - w_r(0)|| and
        ||W(t) - W(0)||_F at each step (d m reads per step).
    checkpoint_every : int
        Steps between checkpoints, when the run writes them (>= 1).

    Examples
    --------
    >>> TrainOptions(max_steps=200).max_steps
    200
    >>> TrainOptions.merge(TrainOptions(lr=0.1), {"epsilon": 1e-6}, "train").lr
    0.1
    """

    lr: float | str = "auto"
    epsilon: float = 1e-3
    max_steps: int = 10_000
    record_every: int | None = None
    track_movement: bool = True
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        put = object.__setattr__  # frozen: the checked values replace the given ones once, here
        put(self, "lr", _check_lr(self.lr))
        put(self, "epsilon", float(check_nonnegative(self.epsilon, "epsilon")))
        put(self, "max_steps", check_positive_int(self.max_steps, "max_steps", minimum=0))
        if self.record_every is not None:
            put(self, "record_every", check_positive_int(self.record_every, "record_every", minimum=0))
        if not isinstance(self.track_movement, (bool, np.bool_)):
            raise TypeError(f"track_movement must be True or False, got {self.track_movement!r}")
        put(self, "track_movement", bool(self.track_movement))
        put(self, "checkpoint_every", check_positive_int(self.checkpoint_every, "checkpoint_every"))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The field names, in declaration order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def merge(cls, options: TrainOptions | None, overrides: dict[str, Any], caller: str) -> TrainOptions:
        """``options`` (default: all defaults) with the keyword ``overrides`` of ``caller`` applied.

        Raises TypeError naming an unknown keyword (as Python does for a
        misspelt argument) or an ``options`` that is not a ``TrainOptions``.
        """
        unknown = [k for k in overrides if k not in cls.names()]
        if unknown:
            raise TypeError(
                f"{caller}() got an unexpected keyword argument {unknown[0]!r}; its run options are "
                + ", ".join(cls.names())
            )
        if options is None:
            return cls(**overrides)
        if not isinstance(options, cls):
            raise TypeError(f"options must be a TrainOptions, got {type(options).__name__}")
        return replace(options, **overrides) if overrides else options

    def as_fields(self) -> dict[str, Any]:
        """The fields as a plain dict (what the ranks of a distributed run compare)."""
        return asdict(self)


def _check_lr(lr: Any) -> float | str:
    """'auto', 'empirical' or a positive finite number (as float)."""
    rules = ", ".join(map(repr, LR_RULES))
    if isinstance(lr, str):
        if lr not in LR_RULES:
            raise ValueError(f"lr={lr!r} is not known; use {rules} or a positive number")
        return lr
    if not is_number(lr):
        raise TypeError(f"lr must be {rules} or a number, got {type(lr).__name__}")
    return check_positive(lr, "lr", hint="; use lr='auto' for 1/lambda_max(m s^2 H^cts)")
