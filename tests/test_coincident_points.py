"""lambda = lambda_min(H^cts) = 0 (coincident, zero or, for relu, parallel points) named before work (issue 19).

The truth is the kernel itself: the points the check names make the closed-form
H^cts singular (its smallest eigenvalue at rounding level), and points it
passes give a clearly positive one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from expreg.core import kernels
from expreg.core.errors import CoincidentPointsError
from expreg.core.validation import CoincidentPointsWarning, check_points_distinct, coincident_points

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__import__("expreg").__file__)))


def _unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    X = np.random.default_rng(seed).normal(size=(n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _lam(X: np.ndarray, activation: str = "exp") -> float:
    return float(np.linalg.eigvalsh(kernels.ntk(X, activation=activation))[0])


@pytest.mark.parametrize("activation", ["exp", "relu"])
def test_the_points_named_are_those_that_make_the_kernel_singular(activation: str) -> None:
    X = _unit(9, 3)
    assert coincident_points(X, scale_free=activation == "relu") == [] and _lam(X, activation) > 1e-3
    dup = X.copy()
    dup[6] = dup[2]
    assert coincident_points(dup) == [[2, 6]] and abs(_lam(dup, activation)) < 1e-12
    zero = X * 0.9
    zero[4] = 0.0
    assert coincident_points(zero) == [[4]] and abs(_lam(zero, activation)) < 1e-12
    ray = X * 0.9
    ray[5] = 0.5 * ray[1]  # same direction, other length: singular for relu only
    if activation == "relu":
        assert coincident_points(ray, scale_free=True) == [[1, 5]] and abs(_lam(ray, activation)) < 1e-12
    else:
        assert coincident_points(ray) == [] and _lam(ray, activation) > 1e-4


def test_d_equal_1_on_the_sphere_coincides_as_the_kernel_says() -> None:
    X = np.array([[1.0], [-1.0], [1.0], [-1.0]])
    assert coincident_points(X) == [[0, 2], [1, 3]] and abs(_lam(X)) < 1e-12
    with pytest.raises(
        CoincidentPointsError, match=r"rows 0, 2 of X coincide \(1 more group of coincident points\)"
    ) as info:
        check_points_distinct(X)
    assert info.value.groups == [[0, 2], [1, 3]]


def test_library_train_and_the_estimator_warn_before_training() -> None:
    from expreg import ExpNet, train
    from expreg.sklearn import ExpRegressor

    X = _unit(8, 3) * 0.9
    X[5] = X[0]
    y = np.linspace(-0.5, 0.5, 8)
    with pytest.warns(CoincidentPointsWarning, match="rows 0, 5 of X coincide"):
        train(ExpNet.init(3, 32, seed=0), X, y, max_steps=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ExpRegressor(width=32, max_steps=2).fit(X, y)
    assert any(issubclass(w.category, CoincidentPointsWarning) for w in caught)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = "import sys; from expreg.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=280)


@pytest.fixture
def duplicated(tmp_path: Path) -> Path:
    X = _unit(10, 3) * 0.95
    X[7] = X[2]
    path = tmp_path / "dup.npz"
    np.savez(path, X=X, y=np.linspace(-1, 1, 10))
    return path


@pytest.mark.parametrize("command", [["train", "--m", "64", "--max-steps", "5"], ["theory"]])
def test_train_and_theory_refuse_duplicate_rows_in_one_line(duplicated: Path, command: list[str]) -> None:
    proc = _cli(*command, "--data", str(duplicated))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stdout == ""
    message = " ".join(proc.stderr.split())
    assert "lambda = lambda_min(H^cts) is 0: rows 2, 7 of X in --data" in message and "numpy.unique" in message


@pytest.mark.parametrize(
    "experiment, fields", [("width", "ds = [1]"), ("kernel", "d = 1"), ("convergence", "d = 1"), ("lazy", "d = 1")]
)
def test_every_experiment_refuses_d_1_before_any_run(tmp_path: Path, experiment: str, fields: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'experiment = "{experiment}"\npreset = "tiny"\n{fields}\n')
    out = tmp_path / "out"
    proc = _cli("run", experiment, "--config", str(config), "--out", str(out), "--quiet")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"is 0 for the {experiment} experiment's n = " in proc.stderr and "d = 1" in proc.stderr
    assert not (out / experiment).exists()  # before any work: nothing written


def test_attention_cross_tasks_in_d_1_are_not_refused() -> None:
    """Its cross pairing draws queries and keys that need no lambda > 0 (its own check replaces the sphere rule)."""
    from expreg.experiments import get_config, make_tasks
    from expreg.experiments.base import check_inputs

    cfg = get_config("attention", "tiny").model_copy(update={"ds": [1]})
    check_inputs("attention", cfg, make_tasks("attention", cfg))  # no error
