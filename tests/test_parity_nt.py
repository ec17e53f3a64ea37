"""Agreement with neural-tangents 0.6.5, run in its own venv (issue 21, items 1, 2, 5).

The venv is made by ``make parity`` (``benchmarks/.nt-venv``) or named by
``EXPREG_NT_PYTHON``; without it these tests are skipped (neural-tangents
needs jax 0.4.23 and numpy < 2, which cannot share expreg's environment).
All cases run in one ``benchmarks/parity_nt.py`` interpreter (about 15 s on
an idle machine, most of it importing neural-tangents and tensorflow).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
NT_PYTHON = os.environ.get("EXPREG_NT_PYTHON", str(ROOT / "benchmarks" / ".nt-venv" / "bin" / "python"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(NT_PYTHON).exists(), reason=f"no neural-tangents venv at {NT_PYTHON} (make parity)"),
]

sys.path.insert(0, str(ROOT / "benchmarks"))
import parity  # noqa: E402

#: key -> the quantity parity_nt.py computes for it (predict_reg: the predictions with diag_reg = 0.1)
CASES = {q: q for q in ("ntk_relu", "ntk_exp", "empirical_ntk_cross", "predict")} | {"predict_reg": "predict"}


@pytest.fixture(scope="module")
def problems():
    return parity.problems(n=64, d=5, n_emp=24, n_test=7, m=256, seed=3)


@pytest.fixture(scope="module")
def theirs(problems, tmp_path_factory) -> dict:
    """neural-tangents' result of every case, from one interpreter."""
    tmp = tmp_path_factory.mktemp("nt")
    args = []
    for key, q in CASES.items():
        extra = {"diag_reg": 0.1} if key == "predict_reg" else {}
        np.savez(tmp / f"{key}-in.npz", rounds=1, **problems[q], **extra)
        args += [q, str(tmp / f"{key}-in.npz"), str(tmp / f"{key}-out.npz")]
    proc = subprocess.run(
        [NT_PYTHON, str(ROOT / "benchmarks" / "parity_nt.py"), "--many", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {key: dict(np.load(tmp / f"{key}-out.npz")) for key in CASES}


def test_relu_closed_forms_and_the_readout_mapping(problems, theirs) -> None:
    from expreg import kernels

    X, nt = problems["ntk_relu"]["X"], theirs["ntk_relu"]
    H, K = kernels.ntk(X, activation="relu"), kernels.nngp(X, activation="relu")
    off = ~np.eye(len(X), dtype=bool)
    assert parity.relative(H[off], nt["out"][off]) < 1e-13
    # neural-tangents' arccos loses digits where the angle is 0: only ~1e-8 on the diagonal
    assert parity.relative(np.diag(H), np.diag(nt["out"])) < 1e-6
    assert parity.relative(H + K, nt["readout_ntk"]) < 1e-6  # trained readout: H^cts + K


def test_exp_closed_form_ntk_to_rounding(problems, theirs) -> None:
    from expreg import kernels

    X, nt = problems["ntk_exp"]["X"], theirs["ntk_exp"]
    assert parity.relative(kernels.ntk(X), nt["out"]) < 1e-14
    assert parity.relative(kernels.ntk(X) + kernels.nngp(X), nt["readout_ntk"]) < 1e-14


def test_rectangular_empirical_ntk_matches_jacobian_contraction(problems, theirs) -> None:
    from expreg import ExpNet, kernels

    p, nt = problems["empirical_ntk_cross"], theirs["empirical_ntk_cross"]
    net = ExpNet.from_weights(p["W"], p["a"], scaling="ntk", init="gaussian")
    H = kernels.empirical_ntk(net, p["X1"], p["X2"])
    assert H.shape == (24, 7)
    assert parity.relative(H, nt["out"].reshape(H.shape)) < 1e-13


@pytest.mark.parametrize("key, reg", [("predict", 0.0), ("predict_reg", 0.1)])
def test_predictions_match_gradient_descent_mse(problems, theirs, key, reg) -> None:
    from expreg import predict

    p, nt = problems["predict"], theirs[key]
    fn = predict.gradient_descent_mse(p["H"], p["y"], float(p["lr"]), reg, loss="mean")
    train, test = fn(np.append(p["ts"], np.inf), p["f0"], p["g0"], p["K"])
    assert parity.relative(train, nt["train"]) < 1e-10
    assert parity.relative(test, nt["test"]) < 1e-10
