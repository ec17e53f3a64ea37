"""The options ``expreg train`` and ``expreg distributed`` share (expreg.cli._options)."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main

from expreg.cli import build_app
from expreg.cli._options import RunOptions, parse_lr
from expreg.engine.options import TrainOptions

SHARED = [
    "n",
    "d",
    "m",
    "seed",
    "activation",
    "scaling",
    "init",
    "labels",
    "data",
    "lr",
    "epsilon",
    "max_steps",
    "record_every",
    "dtype",
    "backend",
    "device",
]


def _params(name: str) -> list:
    group = typer.main.get_command(build_app())
    return group.commands[name].params  # type: ignore[attr-defined]


def _signature(p: Any) -> tuple:
    """What a user sees of an option: flags, default, required, flag-ness and type.

    typer >= 0.29 (its own copy of click) keeps the annotation in ``type_descriptor``;
    older typer (click's Option) keeps a click ParamType in ``type``.
    """
    descriptor = getattr(p, "type_descriptor", None)
    if descriptor is not None:
        kind: Any = descriptor.annotation
    else:
        kind = (type(p.type).__name__, p.type.name, tuple(getattr(p.type, "choices", ())))
    return (p.opts, p.secondary_opts, p.default, p.required, p.is_flag, kind)


def test_both_commands_lead_with_the_same_options_then_their_own() -> None:
    train, dist = _params("train"), _params("distributed")
    assert [p.name for p in train[: len(SHARED)]] == [p.name for p in dist[: len(SHARED)]] == SHARED
    assert [p.name for p in train[len(SHARED) :]] == [
        "scale_inputs",
        "checkpoint",
        "checkpoint_every",
        "allow_unconverged",
        "json_out",
        "quiet",
    ]
    assert [p.name for p in dist[len(SHARED) :]] == [
        "checkpoint_dir",
        "checkpoint_every",
        "init_method",
        "log_every",
        "timeout",
        "allow_unconverged",
        "json_out",
    ]
    for a, b in zip(train[: len(SHARED)], dist[: len(SHARED)], strict=True):
        assert _signature(a) == _signature(b), a.name
        assert (a.help == b.help) == (a.name not in ("m", "backend", "device")), a.name
    assert {p.name: p.default for p in train[:3]} == {"n": None, "d": None, "m": 16384}  # n, d: 64, 16 unless --data


def test_parse_lr() -> None:
    assert (parse_lr("auto"), parse_lr("empirical"), parse_lr("1e-3")) == ("auto", "empirical", 1e-3)
    with pytest.raises(ValueError, match="--lr must be 'auto', 'empirical' or a number, got 'fast'"):
        parse_lr("fast")


def test_run_options_make_the_synthetic_data_of_their_seed() -> None:
    import numpy as np

    import expreg
    from expreg.cli._options import Activation, DType, Init, Labels, Scaling

    opts = RunOptions(
        5,
        3,
        8,
        7,
        Activation.exp,
        Scaling.ntk,
        Init.gaussian,
        Labels.sign,
        None,
        "0.5",
        1e-3,
        10,
        None,
        DType.float32,
        "numpy",
        None,
    )
    X, y = opts.dataset()
    X_ref, y_ref = expreg.make_dataset(5, 3, seed=7, label_kind="sign")
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(y, y_ref)
    assert opts.descent() == TrainOptions(lr=0.5, epsilon=1e-3, max_steps=10, record_every=None)
    assert opts.network()["dtype"] == np.float32 and opts.network()["scaling"] == "ntk"
