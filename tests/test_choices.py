"""Each choice is declared once (expreg.core.choices) and every place accepts exactly its values.

For each choice, every entry point (library function, estimator, command-line
option, experiment configuration) is run over the declared values, which it
must accept, and over one unknown value, whose message must list them all.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import typer.main
from typer.testing import CliRunner

import expreg
from expreg import data, kernels
from expreg.cli import build_app
from expreg.cli._options import BackendName
from expreg.core import choices, initialisation
from expreg.core.activations import ACTIVATIONS, get_activation
from expreg.core.backends import BACKENDS, NumpyBackend, canonical_dtype, get_backend
from expreg.core.choices import DType, Init, LabelKind, Scaling
from expreg.core.reuse import KEPT
from expreg.experiments import get_config
from expreg.sklearn.estimator import ExpRegressor
from expreg.sklearn.kernels import NNGPKernel, NTKKernel

X = np.array([[0.6, 0.0], [0.0, 0.6], [0.3, 0.3], [-0.4, 0.1]])
Y = np.array([0.5, -0.5, 0.1, 0.2])


def listed(option: str, value: str, allowed: tuple[str, ...]) -> str:
    """The one message format, as a regex."""
    return re.escape(f"{option}={value!r} is not known; choose one of {', '.join(map(repr, allowed))}")


def cli_choices(option: str) -> Iterator[list[str]]:
    """The values the option ``--option`` of ``expreg train`` and of ``expreg distributed`` offers."""
    group = typer.main.get_command(build_app())
    for command in ("train", "distributed"):
        params = {p.name: p for p in group.commands[command].params}  # type: ignore[attr-defined]
        opt = params[option]
        descriptor = getattr(opt, "type_descriptor", None)  # typer >= 0.29 keeps the annotation here
        yield [m.value for m in descriptor.annotation] if descriptor is not None else list(opt.type.choices)


def train_cli(*args: str) -> Any:
    return CliRunner().invoke(
        build_app(), ["train", "--n", "4", "--d", "2", "--m", "4", "--max-steps", "1", "--json", *args]
    )


CLI_OPTIONS = {
    "activation": ACTIVATIONS.names(),
    "init": Init.values(),
    "scaling": Scaling.values(),
    "labels": LabelKind.values(),
    "dtype": DType.values(),
    "backend": BackendName.values(),
}


@pytest.mark.parametrize("option, value", [(o, v) for o, values in CLI_OPTIONS.items() for v in values])
def test_the_command_line_accepts_each_value(option: str, value: str) -> None:
    if option == "backend":
        pytest.importorskip(value)
    res = train_cli(f"--{option}", value)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    if option in ("activation", "init", "scaling", "dtype", "backend"):
        assert summary[option] == value


@pytest.mark.parametrize("option", CLI_OPTIONS)
def test_the_command_line_rejects_an_unknown_value_listing_the_known(option: str) -> None:
    res = train_cli(f"--{option}", "bogus")
    assert res.exit_code == 2
    assert f"'bogus' is not one of {', '.join(map(repr, CLI_OPTIONS[option]))}" in " ".join(
        res.output.replace("│", " ").split()
    )


def fit_quietly(**params: object) -> ExpRegressor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ExpRegressor(width=4, max_steps=2, random_state=0, **params).fit(X, Y)


# ----------------------------------------------------------------- the module
def test_members_are_their_strings() -> None:
    assert Init.coupled == "coupled" and str(Scaling.ntk) == "ntk" and f"{DType.float32}" == "float32"
    assert json.dumps([LabelKind.sign, BackendName.torch]) == '["sign", "torch"]'
    assert Init.parse("gaussian") is Init.gaussian and Init.parse(Init.coupled) is Init.coupled
    assert repr(Scaling.none) == "'none'"


@pytest.mark.parametrize("choice", [Init, Scaling, BackendName, DType, LabelKind])
def test_parse_accepts_exactly_the_values(choice: type[choices.Choice]) -> None:
    assert [choice.check(v) for v in choice.values()] == list(choice.values())
    for bad in ("bogus", 3, None, choice.values()[0].upper()):
        with pytest.raises(ValueError, match=listed(choice.option, bad, choice.values())):
            choice.parse(bad)


def test_registry_names_and_rejects() -> None:
    reg: choices.Registry[int] = choices.Registry("thing")
    reg.register("a", 1)
    reg.register("b", 2)
    assert (reg["a"], reg.names(), "b" in reg, "c" in reg, len(reg)) == (1, ("a", "b"), True, False, 2)
    with pytest.raises(ValueError, match=listed("thing", "c", ("a", "b"))):
        reg["c"]
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 3)
    enum = reg.as_choice("Thing")
    assert enum.values() == ("a", "b") and enum.a == "a"


# ----------------------------------------------------------------- activation
@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_every_place_accepts_each_activation(name: str) -> None:
    assert get_activation(name).name == name
    assert kernels.ntk(X, activation=name).shape == (4, 4)
    assert expreg.ExpNet.init(2, 4, activation=name).predict(X).shape == (4,)
    assert NTKKernel(name)(X).shape == NNGPKernel(name)(X).shape == (4, 4)
    assert fit_quietly(activation=name).predict(X).shape == (4,)
    assert get_config("convergence", "tiny", activations=[name]).activations == [name]


def test_every_place_rejects_an_unknown_activation_listing_the_known() -> None:
    msg = listed("activation", "tanh", ACTIVATIONS.names())
    for call in (
        lambda: get_activation("tanh"),
        lambda: kernels.ntk(X, activation="tanh"),
        lambda: expreg.ExpNet.init(2, 4, activation="tanh"),
        lambda: NTKKernel("tanh")(X),
        lambda: fit_quietly(activation="tanh"),
    ):
        with pytest.raises(ValueError, match=msg):
            call()
    with pytest.raises(ValueError, match=r"activations\.0.*'exp' or 'relu'.*'tanh'"):
        get_config("convergence", "tiny", activations=["tanh"])
    for listed_choices in cli_choices("activation"):
        assert listed_choices == list(ACTIVATIONS.names())


# --------------------------------------------------------------- init, scaling
@pytest.mark.parametrize("init", Init.values())
def test_every_place_accepts_each_init(init: str) -> None:
    W, a = initialisation.init_weights(2, 0, 4, seed=0, init=init)
    assert W.shape == (2, 4) and set(np.unique(a)) <= {-1.0, 1.0}
    assert expreg.ExpNet.init(2, 4, init=init).init == init
    assert fit_quietly(init=init).net_.init == init
    assert get_config("lazy", "tiny", init=init).init == init


@pytest.mark.parametrize("scaling", Scaling.values())
def test_every_place_accepts_each_scaling(scaling: str) -> None:
    assert expreg.ExpNet.init(2, 4, scaling=scaling).scaling == scaling
    assert fit_quietly(scaling=scaling).net_.scaling == scaling
    assert get_config("lazy", "tiny", scalings=[scaling]).scalings == [scaling]


@pytest.mark.parametrize("choice, field", [(Init, "init"), (Scaling, "scaling")])
def test_every_place_rejects_an_unknown_init_or_scaling(choice: type[choices.Choice], field: str) -> None:
    msg = listed(field, "bogus", choice.values())
    calls = [lambda: expreg.ExpNet.init(2, 4, **{field: "bogus"}), lambda: fit_quietly(**{field: "bogus"})]
    if field == "init":
        calls.append(lambda: initialisation.init_weights(2, 0, 4, seed=0, init="bogus"))
    for call in calls:
        with pytest.raises(ValueError, match=msg):
            call()
    with pytest.raises(ValueError, match=f"{field}.*{' or '.join(map(repr, choice.values()))}.*'bogus'"):
        get_config("realdata", "tiny", **{field: "bogus"})
    for listed_choices in cli_choices(field):
        assert listed_choices == list(choice.values())


# ------------------------------------------------------------ backend, dtype
@pytest.mark.parametrize("name", BackendName.values())
def test_every_place_accepts_each_backend(name: str) -> None:
    pytest.importorskip(name)
    assert get_backend(name).name == name
    assert expreg.ExpNet.init(2, 4, backend=name).backend_name == name


def test_a_backend_registered_in_one_place_is_served_everywhere() -> None:
    """One ``BACKENDS.register`` call: get_backend, the network and its training take the new name."""
    X, y = data.make_dataset(5, 2, seed=0)
    reference = expreg.train(expreg.ExpNet.init(2, 6, seed=1), X, y, max_steps=3, record_every=0)
    BACKENDS.register("numpy-serial", lambda device, threads: NumpyBackend(1))
    try:
        backend = get_backend("numpy-serial")
        assert isinstance(backend, NumpyBackend) and backend.threads == 1
        net = expreg.ExpNet.init(2, 6, seed=1, backend="numpy-serial")
        assert net.backend_name == "numpy"  # the object it made names its library
        assert net.spec.backend == "numpy-serial" and net.backend.threads == 1  # computes on what the name makes
        run = expreg.train(net, X, y, max_steps=3, record_every=0)
        np.testing.assert_allclose(run.history.residual, reference.history.residual, rtol=1e-12)
        with pytest.raises(ValueError, match="'numpy-serial'"):  # listed among the choices of a bad name
            get_backend("jax")
    finally:
        BACKENDS.unregister("numpy-serial")
        KEPT.made.backends.clear()


def test_every_place_rejects_an_unknown_backend() -> None:
    with pytest.raises(ValueError, match=listed("backend", "jax", BackendName.values())):
        get_backend("jax")
    with pytest.raises(ValueError, match=listed("backend", "jax", BackendName.values())):
        expreg.ExpNet.init(2, 4, backend="jax")
    for listed_choices in cli_choices("backend"):
        assert listed_choices == list(BackendName.values())


@pytest.mark.parametrize("name", DType.values())
def test_every_place_accepts_each_dtype(name: str) -> None:
    assert canonical_dtype(name) == np.dtype(name) == canonical_dtype(getattr(np, name))
    assert expreg.ExpNet.init(2, 4, dtype=name).dtype == np.dtype(name)
    assert fit_quietly(dtype=name).net_.dtype == np.dtype(name)
    assert get_config("width", "tiny", scan_dtype=name).scan_dtype == name


def test_every_place_rejects_an_unknown_dtype() -> None:
    with pytest.raises(TypeError, match=listed("dtype", "float16", DType.values())):
        canonical_dtype(np.float16)
    with pytest.raises(ValueError, match=listed("dtype", "float16", DType.values())):
        fit_quietly(dtype="float16")
    with pytest.raises(ValueError, match=r"scan_dtype.*'float64' or 'float32'.*'float16'"):
        get_config("width", "tiny", scan_dtype="float16")
    for listed_choices in cli_choices("dtype"):
        assert listed_choices == list(DType.values())


# ------------------------------------------------------------------ labels
@pytest.mark.parametrize("kind", LabelKind.values())
def test_every_place_accepts_each_label_kind(kind: str) -> None:
    y = data.labels(50, kind, seed=0)
    assert y.shape == (50,) and np.all(np.abs(y) <= 1)
    assert (np.unique(y).tolist() == [-1.0, 1.0]) == (kind == "sign")
    assert get_config("lazy", "tiny", label_kind=kind).label_kind == kind


def test_every_place_rejects_an_unknown_label_kind() -> None:
    with pytest.raises(ValueError, match=listed("label_kind", "gauss", LabelKind.values())):
        data.labels(3, "gauss")
    with pytest.raises(ValueError, match=r"label_kind.*'uniform' or 'sign'.*'gauss'"):
        get_config("lazy", "tiny", label_kind="gauss")
    for listed_choices in cli_choices("labels"):
        assert listed_choices == list(LabelKind.values())


def test_a_configuration_hashes_the_same_given_members_or_strings() -> None:
    by_string = get_config(
        "width", "tiny", inits=["gaussian"], scalings=["ntk"], scan_dtype="float64", label_kind="sign"
    )
    by_member = get_config(
        "width",
        "tiny",
        inits=[Init.gaussian],
        scalings=[Scaling.ntk],
        scan_dtype=DType.float64,
        label_kind=LabelKind.sign,
    )
    assert by_member.config_hash == by_string.config_hash
    assert json.loads(by_member.canonical_json())["inits"] == ["gaussian"]
    assert type(by_member.inits[0]) is str


def test_the_eigenvalue_method_uses_the_same_message() -> None:
    from expreg import eigen

    H = np.diag([1.0, 2.0, 3.0])
    for method in eigen.METHODS:
        assert eigen.lambda_min(H, method=method) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=listed("method", "qr", eigen.METHODS)):
        eigen.lambda_min(H, method="qr")
