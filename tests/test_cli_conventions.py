"""The command line behaves as click/typer tools do: --version, completion, python -m, plain --json flags,
every preset listed, exit codes 1 (runtime) / 2 (usage) / 3 (not converged), inputs checked before work.

Truth: the installed package metadata and pyproject.toml for the version, the
experiment modules' own PRESETS and task lists, NumPy formulas written here
for the unit-ball map, the library's ``train`` for the trained result.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from expreg import ExpNet, kernels, make_dataset, train
from expreg.cli import build_app
from expreg.core.progress import StepsToEpsilon

typer_testing = pytest.importorskip("typer.testing")
SRC = str(Path(__file__).resolve().parents[1] / "src")


def invoke(*args: object):
    return typer_testing.CliRunner().invoke(build_app(), [str(a) for a in args])


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, env=env)


def test_version_and_python_dash_m() -> None:
    import expreg

    res = invoke("--version")
    assert res.exit_code == 0 and res.stdout == f"expreg {expreg.__version__}\n"
    proc = _python("-m", "expreg", "--version")
    assert proc.returncode == 0 and proc.stdout == f"expreg {expreg.__version__}\n"
    proc = _python("-m", "expreg", "theory", "--n", "10", "--lambda", "0.5", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["n"] == 10


def test_shell_completion_is_offered() -> None:
    res = invoke("--help")
    assert "--install-completion" in res.stdout and "--show-completion" in res.stdout
    res = invoke("--show-completion", "bash")
    assert res.exit_code == 0 and "_EXPREG_COMPLETE=complete_bash" in res.stdout


@pytest.mark.parametrize("command", ["train", "theory", "run", "report", "list", "distributed"])
def test_json_is_a_plain_flag_in_every_help(command: str) -> None:
    res = invoke(command, "--help")
    assert res.exit_code == 0
    line = next(line for line in res.stdout.splitlines() if line.strip().startswith("--json"))
    assert re.match(r"^\s*--json\s{2,}\S", line), line  # no metavar such as <bool> between flag and help
    assert "<bool>" not in res.stdout


def test_usage_errors_exit_2_runtime_errors_exit_1() -> None:
    res = invoke("train", "--json", "true")  # a flag takes no value: click's usage error
    assert res.exit_code == 2
    res = invoke("train", "--n", 6, "--d", 3, "--m", 64, "--lr", "1e4", "--json")
    assert res.exit_code == 1
    assert " ".join(res.stderr.split()).startswith("error: gradient descent diverged with --lr 1e+04")
    assert "error.result" not in res.stderr


def test_every_preset_is_listed_with_its_size() -> None:
    from expreg.experiments import EXPERIMENTS, get_config, get_experiment, make_tasks

    res = invoke("list", "--json")
    assert res.exit_code == 0, res.output
    listing = json.loads(res.stdout)
    assert list(listing) == list(EXPERIMENTS)
    run_help = " ".join(invoke("run", "--help").stdout.split())
    for name in EXPERIMENTS:
        presets = get_experiment(name).PRESETS
        assert listing[name]["presets"] == {p: len(make_tasks(name, get_config(name, p))) for p in presets}
        for p in ("tiny", "quick", "full"):  # every experiment's; `expreg list` (checked above) names the rest
            assert p in presets and f"'{p}'" in run_help, p
    assert "`expreg list` names every preset" in run_help
    text = invoke("list").stdout
    assert "compare: 240 runs" in text and "large: 360 runs" in text


def test_run_and_report_print_json(tmp_path: Path) -> None:
    res = invoke("run", "convergence", "--preset", "tiny", "--jobs", 1, "--out", tmp_path, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["executed"] == 4 and out["skipped"] == 0 and Path(out["results"]).is_file()
    assert Path(out["report"]).is_file() and out["experiments"][0]["experiment"] == "convergence"
    res = invoke("report", tmp_path, "--reuse", "--json")
    assert res.exit_code == 0, res.output
    again = json.loads(res.stdout)
    assert again["experiments"] == out["experiments"] and again["report"] == out["report"]


def _ball(X: np.ndarray) -> np.ndarray:
    Z = X - X.mean(axis=0)
    return Z / np.sqrt((Z * Z).sum(axis=1)).max()


def test_train_refuses_unscaled_inputs_and_scale_inputs_trains(tmp_path: Path) -> None:
    X, y = make_dataset(12, 4, seed=3)
    raw = 300.0 * X + 50.0
    np.savez(tmp_path / "raw.npz", X=raw, y=y)
    res = invoke("train", "--data", tmp_path / "raw.npz", "--m", 64, "--json")
    assert res.exit_code == 2 and res.stdout == ""
    message = " ".join(res.stderr.split())
    assert message.startswith("error: ") and "--scale-inputs" in message and message.count("error") == 1
    res = invoke("train", "--data", tmp_path / "raw.npz", "--m", 256, "--epsilon", 1e-2, "--scale-inputs", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    lib = train(ExpNet.init(4, 256, seed=0), _ball(raw), y, epsilon=1e-2, max_steps=20000)
    assert out["converged"] and out["steps"] == lib.steps
    assert out["final_residual"] == pytest.approx(lib.final_residual, rel=1e-9)


def test_theory_explains_a_lambda_it_cannot_use(tmp_path: Path) -> None:
    X, y = make_dataset(12, 4, seed=3)
    np.savez(tmp_path / "raw.npz", X=300.0 * X + 50.0, y=y)
    res = invoke("theory", "--data", tmp_path / "raw.npz")
    assert res.exit_code == 2 and "--scale-inputs" in res.stderr and "Traceback" not in res.output
    res = invoke("theory", "--data", tmp_path / "raw.npz", "--scale-inputs", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["lam"] == pytest.approx(kernels.ntk_lambda(_ball(300.0 * X + 50.0)), rel=1e-9)
    dup = np.vstack([X, X[:1]])
    np.savez(tmp_path / "dup.npz", X=dup, y=np.zeros(len(dup)))
    for command in ("train", "theory"):
        res = invoke(command, "--data", tmp_path / "dup.npz")
        assert res.exit_code == 2 and "lambda_min(H^cts) is 0" in res.stderr and "numpy.unique" in res.stderr


def test_steps_to_epsilon_follows_a_geometric_residual() -> None:
    """r_t = r0 q^t meets epsilon at t* = log(eps / r0) / log q; each step took 0.01 s."""
    r0, q, eps = 2.0, 0.97, 1e-4
    est = StepsToEpsilon(epsilon=eps, max_steps=100_000)
    for t in range(0, 60):
        est.observe(t, r0 * q**t, now=0.01 * t)
    t_star = math.log(eps / r0) / math.log(q)
    assert est.final_step() == pytest.approx(t_star, rel=1e-9)
    assert est.seconds_left() == pytest.approx(0.01 * (t_star - 59), rel=1e-9)
    assert "epsilon" in est.describe()
    capped = StepsToEpsilon(epsilon=eps, max_steps=100)
    for t in range(0, 60):
        capped.observe(t, r0 * q**t, now=0.01 * t)
    assert capped.final_step() == 100 and "max_steps" in capped.describe()
    assert StepsToEpsilon(epsilon=eps, max_steps=100).describe() == "ETA -"


def test_a_file_written_by_a_run_has_the_umask_mode(tmp_path: Path) -> None:
    import stat

    old = os.umask(0o022)
    try:
        res = invoke(
            "train",
            "--n",
            6,
            "--d",
            3,
            "--m",
            16,
            "--max-steps",
            3,
            "--allow-unconverged",
            "--checkpoint",
            tmp_path / "ck.npz",
            "--json",
        )
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE((tmp_path / "ck.npz").stat().st_mode) == 0o644


def test_the_progress_bar_eta_aims_at_epsilon_not_max_steps(monkeypatch) -> None:
    """The bar's total and ETA follow the residual's decay: near the step the run really stops, not --max-steps."""
    import expreg.cli.train_cmd as train_cmd

    updates: list[dict] = []

    class Bar:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def add_task(self, *args, **fields):
            return 0

        def update(self, task, **fields):
            updates.append(fields)

    monkeypatch.setattr(train_cmd, "rich_bar", lambda *a, **k: Bar())
    res = invoke("train", "--n", 16, "--d", 4, "--m", 256, "--epsilon", 1e-3, "--max-steps", 20000)
    assert res.exit_code == 0, res.output
    final = updates[-1]["completed"]
    late = [u for u in updates[:-1] if u["completed"] >= final // 2 and u.get("total")]
    assert late and all(abs(u["total"] - final) <= 0.2 * final for u in late)  # the estimate, not 20000
    assert final < 5000 and any(re.search(r"stops near step [\d,]+: epsilon", u["eta"]) for u in late)
