"""The neural-tangents side of ``benchmarks/parity.py``: run by the Python of a venv with neural-tangents 0.6.5.

    python parity_nt.py QUANTITY IN.npz OUT.npz
    python parity_nt.py --many Q1 IN1.npz OUT1.npz Q2 IN2.npz OUT2.npz ...   (one interpreter: the tests)

Computes one quantity (see ``parity.QUANTITIES``) from the arrays of IN.npz
in float64 (jax x64), times the best of ``rounds`` calls after one warm-up
call (jit compilation), and writes the result arrays to OUT.npz; prints one
JSON line {"seconds": best, "peak_mib": growth of the peak RSS over the
process's RSS before the first call}. Kept free of expreg: it runs under
neural-tangents' own (older) jax and numpy.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np


def status_mib(key: str) -> float:
    """``VmRSS`` or ``VmHWM`` (peak RSS) of this process from /proc/self/status, in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def main() -> None:
    """``QUANTITY IN OUT`` once, or ``--many Q1 IN1 OUT1 Q2 IN2 OUT2 ...`` in one interpreter (one import)."""
    args = sys.argv[2:] if sys.argv[1] == "--many" else sys.argv[1:4]
    for i in range(0, len(args), 3):
        compute(*args[i : i + 3])


def compute(quantity: str, src: str, dst: str) -> None:
    """One quantity from ``src`` into ``dst``; prints its JSON line."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import neural_tangents as nt
    from neural_tangents import stax

    data = dict(np.load(src))
    rounds = int(data["rounds"])

    def closed_form(act: str, get: str) -> Any:
        d = data["X"].shape[1]
        layer = stax.Exp() if act == "exp" else stax.Relu()
        # one hidden layer of width -> inf, w ~ N(0, I_d): W_std / sqrt(d) with W_std = sqrt(d); no bias, no readout
        _, _, kernel_fn = stax.serial(stax.Dense(1, W_std=float(np.sqrt(d)), b_std=None), layer)
        # the same with a trained readout Dense(1) (s = 1/sqrt(m), a ~ N(0, 1)): its NTK is H^cts + K
        _, _, readout_fn = stax.serial(
            stax.Dense(1, W_std=float(np.sqrt(d)), b_std=None), layer, stax.Dense(1, b_std=None)
        )
        X = jnp.asarray(data["X"])
        f = jax.jit(lambda x: kernel_fn(x, None, get))
        extra = (lambda: {"readout_ntk": np.asarray(readout_fn(X, None, "ntk"))}) if get == "ntk" else dict
        return (lambda: f(X)), extra

    def empirical(cross: bool) -> Any:
        W, a, s = jnp.asarray(data["W"]), jnp.asarray(data["a"]), float(data["s"])
        act = jnp.exp if str(data["activation"]) == "exp" else jax.nn.relu

        def fn(params: Any, x: Any) -> Any:
            return (s * act(x @ params) @ a)[:, None]

        k = jax.jit(nt.empirical_ntk_fn(fn, vmap_axes=0))
        X1 = jnp.asarray(data["X1"])
        X2 = jnp.asarray(data["X2"]) if cross else None
        return (lambda: k(X1, X2, W)), dict

    def prediction() -> Any:
        H, K, y = (jnp.asarray(data[k]) for k in ("H", "K", "y"))
        f0, g0, ts = data["f0"][:, None], data["g0"][:, None], jnp.asarray(data["ts"])
        lr, reg = float(data["lr"]), float(data["diag_reg"]) if "diag_reg" in data else 0.0

        def run() -> Any:
            p = nt.predict.gradient_descent_mse(H, y[:, None], learning_rate=lr, diag_reg=reg)
            train, test = p(ts, f0, g0, K)
            train_inf, test_inf = p(None, f0, g0, K)
            return jnp.concatenate([train[..., 0], train_inf[None, :, 0]]), jnp.concatenate(
                [test[..., 0], test_inf[None, :, 0]]
            )

        return run, dict

    makers = {
        "ntk_exp": lambda: closed_form("exp", "ntk"),
        "nngp_exp": lambda: closed_form("exp", "nngp"),
        "ntk_relu": lambda: closed_form("relu", "ntk"),
        "nngp_relu": lambda: closed_form("relu", "nngp"),
        "empirical_ntk": lambda: empirical(False),
        "empirical_ntk_cross": lambda: empirical(True),
        "predict": prediction,
    }
    reset_peak()
    before = status_mib("VmRSS")
    fn, extra = makers[quantity]()
    out = jax.block_until_ready(fn())  # warm-up: jit compilation
    first = status_mib("VmHWM") - before
    reset_peak()
    steady = status_mib("VmRSS")
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        out = jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t)
    peak = status_mib("VmHWM") - steady
    arrays = (
        {"out": np.asarray(out)}
        if not isinstance(out, tuple)
        else {"train": np.asarray(out[0]), "test": np.asarray(out[1])}
    )
    np.savez(dst, **arrays, **extra())  # computed after the measurements
    print(
        json.dumps(
            {
                "seconds": best,
                "peak_mib": peak,
                "first_call_mib": first,
                "version": nt.__version__ if hasattr(nt, "__version__") else "?",
                "jax": jax.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
