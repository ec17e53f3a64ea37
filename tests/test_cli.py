"""The ``expreg`` command: ``train`` and ``theory`` (issue 2, items 6-8).

The issue's headline command runs once through the installed console script
(a subprocess); the other cases go through typer's CliRunner in-process.
Results are checked against the library (same seed, same numbers).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from expreg import ExpNet, kernels, make_dataset, theory, train
from expreg.cli import build_app, main

EXPREG = Path(sys.executable).parent / "expreg"
REQUIRED_KEYS = {
    "n",
    "d",
    "m",
    "seed",
    "lr",
    "converged",
    "steps",
    "final_residual",
    "lambda_min",
    "max_movement",
    "seconds",
}


@pytest.fixture(scope="module")
def app():
    return build_app()


def invoke(app, args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_headline_command_converges_and_prints_one_json_object() -> None:
    proc = subprocess.run(
        [str(EXPREG), "train", "--n", "64", "--d", "16", "--m", "16384", "--seed", "0", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert set(out) >= REQUIRED_KEYS
    assert (out["n"], out["d"], out["m"], out["seed"]) == (64, 16, 16384, 0)
    assert out["converged"] is True and out["final_residual"] <= 1e-3 and out["steps"] > 0
    X, _ = make_dataset(64, 16, seed=0)
    assert out["lambda_min"] == pytest.approx(kernels.ntk_lambda(X), rel=1e-9)
    assert out["lr"] == pytest.approx(1 / (16384 * np.linalg.eigvalsh(kernels.ntk(X))[-1]), rel=1e-9)
    assert out["max_movement"] > 0


def test_bad_input_through_the_console_script_has_no_traceback() -> None:
    proc = subprocess.run([str(EXPREG), "train", "--m", "0", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: m must be >= 1, got 0")
    assert "Traceback" not in proc.stderr + proc.stdout and proc.stdout == ""


def test_train_json_matches_the_library(app) -> None:
    res = invoke(app, ["train", "--n", 8, "--d", 5, "--m", 256, "--seed", 2, "--epsilon", 1e-2, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    X, y = make_dataset(8, 5, seed=2)
    lib = train(ExpNet.init(5, 256, seed=2), X, y, epsilon=1e-2, max_steps=20000)
    assert lib.converged and out["converged"] is True
    assert out["steps"] == lib.steps and out["final_residual"] == pytest.approx(lib.final_residual, rel=1e-12)


def test_train_on_a_data_file(app, tmp_path: Path) -> None:
    X, y = make_dataset(10, 3, seed=7)
    np.savez(tmp_path / "data.npz", X=X, y=y)
    res = invoke(app, ["train", "--data", tmp_path / "data.npz", "--m", 512, "--epsilon", 1e-2, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["n"], out["d"]) == (10, 3) and out["converged"] is True
    assert out["lambda_min"] == pytest.approx(kernels.ntk_lambda(X), rel=1e-9)


def test_train_table_output_and_checkpoint_resume(app, tmp_path: Path) -> None:
    """A run cut short by its budget resumes from --checkpoint and ends as the uninterrupted run; a smaller budget is refused."""
    ck = tmp_path / "ck.npz"
    base = ["train", "--n", 6, "--d", 3, "--m", 128, "--epsilon", 1e-2, "--checkpoint", ck]
    res = invoke(app, [*base, "--max-steps", 7, "--quiet"])
    assert res.exit_code == 0, res.output
    assert "converged" in res.stdout and "final_residual" in res.stdout
    res = invoke(app, [*base, "--max-steps", 40, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    X, y = make_dataset(6, 3, seed=0)
    full = train(ExpNet.init(3, 128, seed=0), X, y, epsilon=1e-2, max_steps=40)
    assert (out["steps"], out["converged"]) == (full.steps, full.converged) and full.steps > 7
    assert out["final_residual"] == full.final_residual and out["max_movement"] == full.max_movement
    res = invoke(app, [*base, "--max-steps", 5, "--json"])
    assert res.exit_code == 2 and f"holds step {full.steps}, past max_steps = 5" in " ".join(res.stderr.split())


def test_too_wide_a_run_is_refused_before_allocating(app, monkeypatch) -> None:
    import expreg.core.model
    import expreg.core.resources

    monkeypatch.setattr(expreg.core.resources, "available_memory", lambda: 2**30)
    monkeypatch.setattr(expreg.core.model.ExpNet, "init", lambda *a, **k: pytest.fail("W was drawn"))
    res = invoke(app, ["train", "--m", "10000000000", "--json"])
    assert res.exit_code == 2 and res.stdout == "" and "Traceback" not in res.output
    # n = 64, d = 16 float64: (4 d + 1) m + n m items (activations kept) + 8 n^2 + 2 n d + 2 n float64 <= 1 GiB, m even
    largest = (2**30 - 8 * (8 * 64 * 64 + 2 * 64 * 16 + 2 * 64)) // ((4 * 16 + 1 + 64) * 8) // 2 * 2
    message = " ".join(res.stderr.split())
    assert message.startswith("error: a run with n = 64, d = 16, m = 10000000000 needs at least")
    assert f"but 1 GiB is available; the largest width that fits is m = {largest} " in message


def test_data_file_with_a_lying_header_is_refused_from_the_header(app, tmp_path: Path) -> None:
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**11, 3)})
    path = tmp_path / "lying.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("X.npy", header.getvalue() + b"\0" * 800)  # a 1 KB file claiming 2.4 TB
        y = io.BytesIO()
        np.save(y, np.zeros(3))
        zf.writestr("y.npy", y.getvalue())
    res = invoke(app, ["train", "--data", path, "--m", 8, "--json"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "claims shape (100000000000, 3) of float64 (2400000000000 bytes) but 800 bytes are stored" in " ".join(
        res.stderr.split()
    )


@pytest.mark.parametrize(
    "where, message",
    [
        ("UNDER_FILE", "is a file, not a directory"),
        ("READ_ONLY", "cannot be written"),
    ],
)
def test_unwritable_checkpoint_is_refused_before_training(app, tmp_path: Path, monkeypatch, where, message) -> None:
    (tmp_path / "file").write_text("x")
    path = {"UNDER_FILE": tmp_path / "file" / "ck.npz", "READ_ONLY": Path("/proc/ck.npz")}[
        where
    ]  # /proc refuses new files even to root
    monkeypatch.setattr(sys.modules["expreg.engine.train"], "train", lambda *a, **k: pytest.fail("training started"))
    res = invoke(app, ["train", "--n", 6, "--d", 3, "--m", 16, "--checkpoint", path, "--json"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.stderr.startswith(f"error: --checkpoint {str(path)!r}") and message in res.stderr


def test_out_with_missing_folders_is_created(app, tmp_path: Path) -> None:
    res = invoke(app, ["run", "lazy", "--preset", "tiny", "--out", tmp_path / "new" / "results", "--quiet"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "new" / "results" / "lazy" / "results.parquet").is_file()


def test_unwritable_out_directory_is_refused_before_running(app, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    res = invoke(app, ["run", "lazy", "--out", tmp_path / "file" / "results", "--quiet"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "error: --out" in res.stderr and "is a file, not a directory" in res.stderr


def test_a_failed_final_save_prints_the_result_before_the_error(app, tmp_path: Path, monkeypatch) -> None:
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sys.modules["expreg.engine.checkpoints"], "save_npz_atomic", disk_full)
    res = invoke(
        app, ["train", "--n", 6, "--d", 3, "--m", 16, "--max-steps", 3, "--checkpoint", tmp_path / "ck.npz", "--json"]
    )
    assert res.exit_code == 2 and "Traceback" not in res.output
    out = json.loads(res.stdout)  # the finished result, printed first
    X, y = make_dataset(6, 3, seed=0)
    assert (
        out["steps"] == 3
        and out["final_residual"] == train(ExpNet.init(3, 16, seed=0), X, y, max_steps=3).final_residual
    )
    message = " ".join(res.stderr.split())
    assert message.startswith("error: the run finished (step 3") and "No space left on device" in message


def test_n_and_d_are_checked_against_a_data_file(app, tmp_path: Path) -> None:
    X, y = make_dataset(10, 3, seed=7)
    np.savez(tmp_path / "data.npz", X=X, y=y)
    res = invoke(app, ["train", "--data", tmp_path / "data.npz", "--d", 5, "--m", 16, "--json"])
    assert res.exit_code == 2 and "--d 5 does not match the data" in " ".join(res.stderr.split())
    res = invoke(
        app, ["train", "--data", tmp_path / "data.npz", "--d", 3, "--n", 10, "--m", 16, "--max-steps", 2, "--json"]
    )
    assert res.exit_code == 0, res.output
    assert (json.loads(res.stdout)["n"], json.loads(res.stdout)["d"]) == (10, 3)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--m", "0"], "m must be >= 1, got 0"),
        (["--m", "7"], "m must be even; got m = 7"),
        (["--n", "0"], "n must be >= 1, got 0"),
        (["--lr", "-1"], "lr must be a positive finite number"),
        (["--lr", "fast"], "--lr must be 'auto', 'empirical' or a number, got 'fast'"),
        (["--epsilon", "-1"], "epsilon must be a finite number >= 0"),
        (["--data", "MISSING"], "no file at"),
        (["--data", "NOY"], "has no array named 'y' (found: ['X'])"),
        (["--data", "CORRUPT"], "not a readable .npz file"),
        (["--data", "NAN"], "X contains NaN or inf"),
        (["--data", "SHAPE"], "y has 2 entries but X has n = 3 rows"),
        (["--data", "TEXT"], "X must hold numbers"),
        (["--lr", "1e4"], "diverged with lr = 1e+04"),
    ],
)
def test_bad_input_gives_error_line_and_exit_code_2(app, tmp_path: Path, args, message) -> None:
    files = {
        "MISSING": tmp_path / "missing.npz",
        "NOY": tmp_path / "noy.npz",
        "CORRUPT": tmp_path / "corrupt.npz",
        "NAN": tmp_path / "nan.npz",
        "SHAPE": tmp_path / "shape.npz",
        "TEXT": tmp_path / "text.npz",
    }
    np.savez(files["NOY"], X=np.eye(3))
    files["CORRUPT"].write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    np.savez(files["NAN"], X=np.array([[np.nan, 0.0], [0.0, 1.0]]), y=np.ones(2))
    np.savez(files["SHAPE"], X=np.eye(3), y=np.ones(2))
    np.savez(files["TEXT"], X=np.array([["a", "b"]]), y=np.ones(1))
    args = [str(files.get(a, a)) for a in args]
    res = invoke(app, ["train", "--n", "6", "--d", "3", "--m", "64", "--max-steps", "50", "--json", *args])
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and message in " ".join(res.stderr.split())
    assert "Traceback" not in res.output and res.stdout == ""


def test_inputs_outside_the_unit_ball_give_a_warning_line(app, tmp_path: Path) -> None:
    X, y = make_dataset(6, 3, seed=0)
    np.savez(tmp_path / "big.npz", X=1.2 * X, y=y)
    res = invoke(app, ["train", "--data", tmp_path / "big.npz", "--m", 256, "--epsilon", 1e-2, "--json"])
    assert res.exit_code == 0, res.output
    assert res.stderr.startswith("warning: X has 6 rows with ||x|| > 1")
    assert res.stderr.count("warning:") == 1  # once, not from both the loading and the training
    assert json.loads(res.stdout)["n"] == 6


def test_main_returns_the_exit_code() -> None:
    assert main(["theory", "--n", "10", "--lambda", "0.5", "--json"]) == 0
    assert main(["train", "--m", "0"]) == 2


def test_theory_prints_every_quantity_with_provenance(app) -> None:
    res = invoke(app, ["theory", "--n", 20, "--lambda", 0.5, "--delta", 0.1])
    assert res.exit_code == 0, res.output
    for name in (
        "B",
        "R",
        "m (theorem width)",
        "eta (step size)",
        "T (iterations)",
        "movement bound",
        "[derived]",
        "[paper]",
    ):
        assert name in res.stdout, name
    q = theory.theorem_quantities(20, 0.5, 0.1)
    assert f"{q.B:.6g}" in res.stdout


def test_theory_json_matches_the_library(app) -> None:
    res = invoke(app, ["theory", "--n", 64, "--lambda", 1.68, "--delta", 0.05, "--epsilon", 1e-2, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    q = theory.theorem_quantities(64, 1.68, 0.05, 1e-2)
    assert out["width"] == pytest.approx(q.width, rel=1e-12) and out["B"] == pytest.approx(q.B, rel=1e-12)
    assert out["step_size"] == pytest.approx(q.step_size, rel=1e-12) and out["iterations"] == pytest.approx(
        q.iterations, rel=1e-12
    )


def test_theory_computes_lambda_from_data(app, tmp_path: Path) -> None:
    X, y = make_dataset(12, 4, seed=3)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    res = invoke(app, ["theory", "--data", tmp_path / "d.npz", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n"] == 12 and out["lam"] == pytest.approx(kernels.ntk_lambda(X), rel=1e-12)
    res = invoke(app, ["theory", "--n", 9, "--d", 3, "--seed", 1, "--json"])  # synthetic data
    assert json.loads(res.stdout)["lam"] == pytest.approx(kernels.ntk_lambda(make_dataset(9, 3, seed=1)[0]), rel=1e-12)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n", "10", "--lambda", "0.5", "--delta", "2"], "delta must lie in (0, 1), got 2.0"),
        (["--n", "10", "--lambda", "-1"], "lambda must be a positive finite number, got -1.0"),
        (["--data", "DUP"], "lambda = lambda_min(H^cts) is 0: rows 0, 5 of X in --data"),
        (["--n", "10", "--data", "DUP"], "--n 10 does not match the data: X in"),
        (["--d", "2", "--data", "DUP"], "--d 2 does not match the data"),
        (["--lambda", "0.5", "--data", "DUP"], "--lambda and --data both given"),
        (["--lambda", "0.5"], "--n is needed"),
        (
            ["--n", "10000000"],
            "lambda of n = 10000000 points (the n x n kernel H^cts and its eigenvalues) needs at least 2.13 PiB",
        ),
    ],
)
def test_theory_bad_input(app, tmp_path: Path, args, message) -> None:
    X = make_dataset(5, 3, seed=0)[0]
    np.savez(tmp_path / "dup.npz", X=np.vstack([X, X[0]]), y=np.zeros(6))
    args = [str(tmp_path / "dup.npz") if a == "DUP" else a for a in args]
    res = invoke(app, ["theory", *args])
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and message in " ".join(res.stderr.split())
    assert "Traceback" not in res.output


def test_interrupt_is_one_line_and_exit_code_130(app, monkeypatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.modules["expreg.engine.train"], "train", interrupted)
    res = invoke(app, ["train", "--n", 4, "--d", 2, "--m", 8, "--json"])
    assert res.exit_code == 130
    assert res.stderr.startswith("error: interrupted") and "Traceback" not in res.output
