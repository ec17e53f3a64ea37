"""The options ``expreg train`` and ``expreg distributed`` share: data, network and descent.

A command decorated with ``run_options(...)`` takes a ``RunOptions`` as its
first parameter instead of the sixteen shared ones; the decorator gives the
command line those options (first, in this order) followed by the command's
own. Only the help of ``--m``, ``--backend`` and ``--device`` may differ
between commands.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import typer

from ..core.activations import ACTIVATIONS
from ..core.backends import BACKENDS
from ..core.choices import DType, Init, LabelKind, Scaling
from ..engine.options import LR_RULES, TrainOptions

#: Size of the synthetic data when --n / --d are not given.
DEFAULT_N, DEFAULT_D = 64, 16

#: The option types: the choices of ``expreg.core.choices`` (activations: those registered at import).
# (built at run time from the registry: the type checker sees the base class)
if TYPE_CHECKING:
    from ..core.choices import Choice as Activation
    from ..core.choices import Choice as BackendName
else:
    Activation = ACTIVATIONS.as_choice("Activation")
    BackendName = BACKENDS.as_choice("BackendName")
Labels = LabelKind

__all__ = ["Activation", "BackendName", "DType", "Init", "Labels", "RunOptions", "Scaling", "parse_lr", "run_options"]


def plain(value: Any) -> Any:
    """An option's value as the user typed it: choices (enums) by value, paths as strings."""
    return value.value if isinstance(value, Enum) else str(value) if isinstance(value, Path) else value


def parse_lr(lr: str) -> float | str:
    """``--lr`` as ``TrainOptions.lr``: a rule of ``LR_RULES`` ('auto', 'empirical') or a number."""
    if lr in LR_RULES:
        return lr
    try:
        return float(lr)
    except ValueError:
        rules = ", ".join(map(repr, LR_RULES))
        raise ValueError(f"--lr must be {rules} or a number, got {lr!r}") from None


@dataclass(frozen=True)
class RunOptions:
    """The shared options as given on the command line (n, d describe synthetic data; with --data they are checked)."""

    n: int | None
    d: int | None
    m: int
    seed: int
    activation: Activation
    scaling: Scaling
    init: Init
    labels: Labels
    data: Path | None
    lr: str
    epsilon: float
    max_steps: int
    record_every: int | None
    dtype: DType
    backend: BackendName
    device: str | None

    @property
    def shape(self) -> tuple[int, int]:
        """(n, d) of synthetic data: ``--n``, ``--d`` or their defaults."""
        return (DEFAULT_N if self.n is None else self.n), (DEFAULT_D if self.d is None else self.d)

    def dataset(self) -> tuple[np.ndarray, np.ndarray]:
        """(X (n, d), y (n,)): the arrays of ``--data``, else synthetic data of ``--n``, ``--d``, ``--seed``, ``--labels``.

        With ``--data``, a ``--n`` or ``--d`` given too must match the file
        (else ValueError). The out-of-ball warning is left to the training.
        """
        from ..core import data as data_mod
        from ..core.validation import check_points_distinct, check_sphere_sample

        if self.data is None:
            n, d = self.shape
            check_sphere_sample(n, d, where=f" for --n {n} --d {d}")
            return data_mod.make_dataset(n, d, seed=self.seed, label_kind=LabelKind.check(self.labels))
        X, y = data_mod.load_dataset(self.data, warn_ball=False)
        check_points_distinct(X, activation=ACTIVATIONS.check(self.activation), name=f"X in --data {str(self.data)!r}")
        for flag, given, found in (("--n", self.n, X.shape[0]), ("--d", self.d, X.shape[1])):
            if given is not None and given != found:
                raise ValueError(
                    f"{flag} {given} does not match the data: X in {str(self.data)!r} has shape {X.shape}; "
                    f"omit {flag} with --data (it sets the size of synthetic data)"
                )
        return X, y

    def checked_dataset(self, *, ranks: int = 1, ranks_here: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``dataset()``, after checking that the run fits in memory (before drawing synthetic data, after reading a file).

        Raises MemoryError with the estimate and the largest m that fits
        (``resources.check_train_fits``; ``ranks`` split m, ``ranks_here``
        of them share this machine).
        """
        from ..core.resources import check_train_fits

        def check(n: int, d: int) -> None:
            on_host = self.device is None or self.device.startswith("cpu")
            check_train_fits(
                n,
                d,
                self.m,
                np.dtype(DType.check(self.dtype)).itemsize,
                on_host=on_host,
                ranks=ranks,
                ranks_here=ranks_here,
                pairs=self.init == Init.coupled,
            )

        if self.data is None:
            check(*self.shape)
            return self.dataset()
        X, y = self.dataset()
        check(*X.shape)
        return X, y

    def network(self) -> dict[str, Any]:
        """The settings of ``NetSpec`` besides d and m that the command line sets (those of
        ``NetSpec.settings_names`` that are options here), as plain values (the dtype a NumPy dtype, as the
        public API gives dtypes): keywords of ``ExpNet.init``."""
        from ..core.model import NetSpec

        settings = {name: plain(getattr(self, name)) for name in NetSpec.settings_names() if hasattr(self, name)}
        return {**settings, "dtype": np.dtype(settings["dtype"])}

    def descent(self, **more: Any) -> TrainOptions:
        """The ``TrainOptions`` of ``train`` and ``train_sharded``: lr, epsilon, max_steps, record_every (and ``more``)."""
        return TrainOptions(
            lr=parse_lr(self.lr), epsilon=self.epsilon, max_steps=self.max_steps, record_every=self.record_every, **more
        )

    def describe(self) -> dict[str, Any]:
        """The settings a summary reports: seed .. backend."""
        net = self.network()
        return {
            "seed": self.seed,
            "activation": net["activation"],
            "scaling": net["scaling"],
            "init": net["init"],
            "dtype": DType.check(self.dtype),
            "backend": net["backend"],
        }


def _shared(m_help: str, backend_help: str, device_help: str) -> dict[str, Any]:
    """name -> typer.Option of every ``RunOptions`` field, in field order."""
    return {
        "n": typer.Option(
            None,
            help=f"Number of data points of synthetic data [default: {DEFAULT_N}]; with --data, checked against the file.",
        ),
        "d": typer.Option(
            None,
            help=f"Input dimension of synthetic data [default: {DEFAULT_D}]; with --data, checked against the file.",
        ),
        "m": typer.Option(16384, help=m_help),
        "seed": typer.Option(0, help="Seed of the data and of the initialisation."),
        "activation": typer.Option(Activation("exp"), help="Activation function."),
        "scaling": typer.Option(
            Scaling.none, help="'none': the paper's F = sum a_r exp(<w_r,x>); 'ntk': times 1/sqrt(m)."
        ),
        "init": typer.Option(Init.coupled, help="'coupled': paired neurons, F(W(0),x) = 0; 'gaussian': independent."),
        "labels": typer.Option(Labels.uniform, help="Synthetic labels: uniform on [-1,1] or random signs."),
        "data": typer.Option(None, "--data", help="Train on arrays X (n x d) and y (n) from this .npz file instead."),
        "lr": typer.Option(
            "auto",
            help="Step size: 'auto' (1/lambda_max(m s^2 H^cts)), 'empirical' (1/lambda_max(H(W(0)))) or a number.",
        ),
        "epsilon": typer.Option(1e-3, help="Stop when ||u - y||_2 <= epsilon."),
        "max_steps": typer.Option(20000, help="Step budget."),
        "record_every": typer.Option(
            None, help="Record the kernel deviation every this many steps (default: first and last step)."
        ),
        "dtype": typer.Option(DType.float64, help="Floating-point precision."),
        "backend": typer.Option(BackendName("numpy"), help=backend_help),
        "device": typer.Option(None, help=device_help),
    }


def run_options(
    *, m_help: str, backend_help: str, device_help: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: ``command(opts: RunOptions, **own)`` becomes a typer command with the shared options, then its own.

    The help of ``--m``, ``--backend`` and ``--device`` is the command's; the
    rest is shared. The returned function's signature is what typer reads.
    """
    hints = typing.get_type_hints(RunOptions)
    options = _shared(m_help, backend_help, device_help)
    shared = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=options[f.name], annotation=hints[f.name])
        for f in fields(RunOptions)
    ]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own_hints = typing.get_type_hints(command)
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=own_hints[p.name])
            for p in list(inspect.signature(command).parameters.values())[1:]
        ]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            opts = RunOptions(**{p.name: kwargs.pop(p.name) for p in shared})
            return command(opts, **kwargs)

        del wrapper.__wrapped__  # typer must read the signature below, not the command's
        wrapper.__signature__ = inspect.Signature(shared + own)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in shared + own}
        return wrapper

    return decorate
