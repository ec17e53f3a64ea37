"""Parity with neural-tangents: every quantity the two libraries share, side by side (issue 21, item 5).

    make parity                  # makes benchmarks/.nt-venv (neural-tangents 0.6.5, jax 0.4.23), runs this
    python benchmarks/parity.py --nt-python benchmarks/.nt-venv/bin/python --out docs/parity.md

For each quantity, both libraries compute it from the same float64 arrays,
each in a fresh process of its own (neural-tangents under its own jax and
numpy, ``parity_nt.py``; expreg under this interpreter, ``--worker``), so the
peak memory of one computation is the growth of that process's peak RSS over
its RSS before the first call. Time is the best of ``--rounds`` calls after one
warm-up call (neural-tangents' jit compilation happens there).

Quantities (docs/theory.md sections 3-4):

- ``ntk_exp``, ``nngp_exp``, ``ntk_relu``, ``nngp_relu``: the closed forms
  H^cts and K (``kernels.ntk``, ``kernels.nngp``) against the kernel of
  ``stax.serial(stax.Dense(1, W_std=sqrt(d), b_std=None), stax.Exp() or stax.Relu())``;
  also NT's NTK with a trained readout ``Dense(1)``, which is H^cts + K;
- ``empirical_ntk``, ``empirical_ntk_cross``: H(W) of one width-m exp network
  (``kernels.empirical_ntk(net, X1[, X2])``) against ``nt.empirical_ntk_fn`` of
  f(W, x) = s exp(x W) a;
- ``predict``: the outputs on train and test points at t = 1, 10, 100, 1000
  and inf of gradient descent with kernel m s^2 H^cts
  (``expreg.predict.gradient_descent_mse(..., loss="mean")``) against
  ``nt.predict.gradient_descent_mse``, from the same kernels.

Agreement is max |expreg - NT| / max |NT| (and on the diagonal alone for the
closed forms). The page it writes (``--out``) records the machine's load
caveat: on a shared machine the times are indicative, the memory and the
agreement are not affected.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
QUANTITIES = (
    "ntk_exp",
    "nngp_exp",
    "ntk_relu",
    "nngp_relu",
    "empirical_ntk",
    "empirical_ntk_cross",
    "predict",
)
TIMES = (1.0, 10.0, 100.0, 1000.0)


# ------------------------------------------------------------------ the problems
def problems(n: int, d: int, n_emp: int, n_test: int, m: int, seed: int = 0) -> dict[str, dict[str, Any]]:
    """The input arrays of every quantity (float64), drawn from ``seed``: points with norms in [0.5, 1]."""
    rng = np.random.default_rng(seed)

    def points(k: int) -> np.ndarray:
        Z = rng.standard_normal((k, d))
        return Z / np.linalg.norm(Z, axis=1, keepdims=True) * rng.uniform(0.5, 1.0, size=(k, 1))

    X = points(n)
    X1, X2 = points(n_emp), points(n_test)
    W, a = rng.standard_normal((d, m)), np.where(rng.random(m) < 0.5, -1.0, 1.0)
    out: dict[str, dict[str, Any]] = {q: {"X": X} for q in ("ntk_exp", "nngp_exp", "ntk_relu", "nngp_relu")}
    emp = {"X1": X1, "X2": X2, "W": W, "a": a, "s": 1.0 / np.sqrt(m), "activation": "exp"}
    out["empirical_ntk"] = dict(emp)
    out["empirical_ntk_cross"] = dict(emp)
    from expreg import kernels

    c = 1.0  # m s^2 with s = 1/sqrt(m)
    H, K = c * kernels.ntk(X1), c * kernels.ntk(X2, X1)
    y = np.sin(3 * X1[:, 0])
    out["predict"] = {
        "H": H,
        "K": K,
        "y": y,
        "f0": np.zeros(n_emp),
        "g0": np.zeros(n_test),
        "ts": np.array(TIMES),
        "lr": 1.0 / np.linalg.eigvalsh(H)[-1] * n_emp,  # neural-tangents divides by n: a stable step of the mean loss
    }
    return out


# ------------------------------------------------------------------ the expreg side (one process per quantity)
def _status_mib(key: str) -> float:
    """``VmRSS`` or ``VmHWM`` (peak RSS) of this process from /proc/self/status, in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0: ``echo 5 > /proc/self/clear_refs``)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def worker(quantity: str, src: str, dst: str) -> None:
    """Compute ``quantity`` with expreg from ``src``; write ``dst``; print {"seconds", "peak_mib"}."""
    from expreg import ExpNet, kernels, predict

    data = dict(np.load(src))
    rounds = int(data["rounds"])

    def closed(fn: Any, act: str) -> Any:
        X = data["X"]
        return lambda: fn(X, activation=act)

    def empirical(cross: bool) -> Any:
        net = ExpNet.from_weights(data["W"], data["a"], scaling="ntk", init="gaussian")
        X1, X2 = data["X1"], data["X2"] if cross else None
        return lambda: kernels.empirical_ntk(net, X1, X2)

    def prediction() -> Any:
        H, K, y, f0, g0, ts, lr = (data[k] for k in ("H", "K", "y", "f0", "g0", "ts", "lr"))

        def run() -> tuple[np.ndarray, np.ndarray]:
            p = predict.gradient_descent_mse(H, y, float(lr), loss="mean")
            train, test = p(np.append(ts, np.inf), f0, g0, K)
            return train, test

        return run

    makers = {
        "ntk_exp": lambda: closed(kernels.ntk, "exp"),
        "nngp_exp": lambda: closed(kernels.nngp, "exp"),
        "ntk_relu": lambda: closed(kernels.ntk, "relu"),
        "nngp_relu": lambda: closed(kernels.nngp, "relu"),
        "empirical_ntk": lambda: empirical(False),
        "empirical_ntk_cross": lambda: empirical(True),
        "predict": prediction,
    }
    _reset_peak()
    before = _status_mib("VmRSS")
    fn = makers[quantity]()
    out = fn()  # first call: compilation and kept buffers included
    first = _status_mib("VmHWM") - before
    _reset_peak()
    steady = _status_mib("VmRSS")
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    peak = _status_mib("VmHWM") - steady
    arrays = {"train": out[0], "test": out[1]} if isinstance(out, tuple) else {"out": out}
    if quantity in ("ntk_exp", "ntk_relu"):  # NT's NTK with a trained readout is H^cts + K
        act = quantity.split("_")[1]
        arrays["readout_ntk"] = out + kernels.nngp(data["X"], activation=act)
    np.savez(dst, **arrays)
    print(json.dumps({"seconds": best, "peak_mib": peak, "first_call_mib": first}))


# ------------------------------------------------------------------ the driver
def _run(cmd: list[str], timeout: float) -> dict[str, Any]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise RuntimeError(f"{' '.join(cmd[:3])}: {tail[:300]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(b).max(), 1e-300))


def compare(quantity: str, ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> dict[str, float]:
    """Agreement figures of one quantity."""
    if quantity == "predict":
        return {"train": relative(ours["train"], theirs["train"]), "test": relative(ours["test"], theirs["test"])}
    a, b = ours["out"], theirs["out"].reshape(ours["out"].shape)
    row = {"all": relative(a, b)}
    if a.shape[0] == a.shape[1]:
        row["diagonal"] = relative(np.diag(a), np.diag(b))
        off = ~np.eye(a.shape[0], dtype=bool)
        row["off-diagonal"] = relative(a[off], b[off])
    if "readout_ntk" in theirs:
        row["readout: H^cts + K"] = relative(ours["readout_ntk"], theirs["readout_ntk"].reshape(a.shape))
    return row


def run(nt_python: str, sizes: dict[str, int], rounds: int) -> dict[str, Any]:
    probs = problems(**sizes)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for q in QUANTITIES:
            src = os.path.join(tmp, f"{q}.npz")
            np.savez(src, rounds=rounds, **probs[q])
            mine, theirs = os.path.join(tmp, f"{q}-expreg.npz"), os.path.join(tmp, f"{q}-nt.npz")
            env_cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", q, src, mine]
            t_ours = _run(env_cmd, 1200)
            t_nt = _run([nt_python, str(HERE / "parity_nt.py"), q, src, theirs], 1200)
            agree = compare(q, dict(np.load(mine)), dict(np.load(theirs)))
            rows.append({"quantity": q, "agreement": agree, "expreg": t_ours, "neural_tangents": t_nt})
            print(
                f"{q:20s} {json.dumps(agree)}  expreg {t_ours['seconds']:.4f} s {t_ours['peak_mib']:.0f} MiB"
                f"  nt {t_nt['seconds']:.4f} s {t_nt['peak_mib']:.0f} MiB",
                flush=True,
            )
    return {
        "sizes": sizes,
        "rounds": rounds,
        "rows": rows,
        "nt_version": rows[0]["neural_tangents"].get("version", "?"),
        "jax_version": rows[0]["neural_tangents"].get("jax", "?"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(*sys.argv[2:5])
        sys.exit(0)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nt-python", default=str(HERE / ".nt-venv" / "bin" / "python"))
    ap.add_argument("--out", default=str(HERE.parent / "docs" / "parity.md"), help="the page to write")
    ap.add_argument("--json", default=str(HERE / "parity.json"), help="the raw figures")
    ap.add_argument("--n", type=int, default=1024, help="points of the closed forms")
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--n-emp", type=int, default=256, help="training points of the empirical kernel and predictions")
    ap.add_argument("--n-test", type=int, default=64)
    ap.add_argument("--m", type=int, default=4096, help="width of the empirical kernel's network")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not Path(args.nt_python).exists():
        sys.exit(f"no Python at {args.nt_python!r}: run `make parity`, which makes the neural-tangents venv first")
    sizes = {"n": args.n, "d": args.d, "n_emp": args.n_emp, "n_test": args.n_test, "m": args.m}
    result = run(args.nt_python, sizes, args.rounds)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    from parity_page import page

    Path(args.out).write_text(page(result))
    print(f"wrote {args.out} and {args.json}")
