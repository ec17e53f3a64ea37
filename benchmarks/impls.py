"""One gradient-descent step of the exponential network, written the ways users write it.

Every implementation does the same work per call (docs/theory.md section 2):

    u = s * exp(X W) a,  G = dL/dW for L = 1/2 ||u - y||^2,  W <- W - lr * G

and returns nothing; ``make(name, ...)`` returns ``(step, sync, state)``
where ``step()`` runs one step in place and ``sync()`` waits for queued
work (CUDA), and ``state["runs_on"]`` names the device the step really
runs on (``device_label``). Each implementation imports its library
lazily, so a benchmark subprocess only loads what it measures.

Names
-----
expreg-train     ``expreg.train`` itself, default backend and settings (record_every=0): one call of
                 ``step`` lets the running descent take one more step (its progress callback hands over)
expreg-numpy     expreg.core.ops on the NumPy backend (threads, fused exp, kept blocks)
expreg-torch     expreg.core.ops on the PyTorch backend (same code path)
torch-autograd   plain PyTorch: loss.backward()
torch-compile    torch.compile of the same autograd step
torch-manual     PyTorch with the hand-derived gradient
jax-jit          jax.jit of W - lr * jax.grad(loss)(W), on jax's CPU or GPU device as asked
numpy-plain      plain NumPy with the hand-derived gradient (full n x m temporaries)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

NAMES = (
    "expreg-train",
    "expreg-numpy",
    "expreg-torch",
    "torch-autograd",
    "torch-compile",
    "torch-manual",
    "jax-jit",
    "numpy-plain",
)
LR = 1e-9  # below 1/lambda_max(H(W(0))) at every shape (1.7e-8 at the largest): stable, and the weights barely move


def data(n: int, d: int, m: int, dtype: Any, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X unit rows (n, d), y (n,), W0 (d, m) ~ N(0, 1), a (m,) = +-1) in ``dtype``."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = rng.uniform(-1.0, 1.0, n)
    W = rng.standard_normal((d, m), dtype=np.float32 if np.dtype(dtype) == np.float32 else np.float64)
    a = np.where(rng.random(m) < 0.5, -1.0, 1.0)
    dt = np.dtype(dtype)
    return X.astype(dt), y.astype(dt), W.astype(dt, copy=False), a.astype(dt)


def make(
    name: str, X: np.ndarray, y: np.ndarray, W: np.ndarray, a: np.ndarray, *, device: str = "cpu"
) -> tuple[Callable[[], None], Callable[[], None], dict[str, Any]]:
    """Build the step ``name`` on copies of the data; see the module docstring."""
    builders = {
        "expreg-train": _expreg_train,
        "expreg-numpy": _expreg_numpy,
        "expreg-torch": _expreg_torch,
        "torch-autograd": _torch_autograd,
        "torch-compile": _torch_compile,
        "torch-manual": _torch_manual,
        "jax-jit": _jax_jit,
        "numpy-plain": _numpy_plain,
    }
    if name not in builders:
        raise ValueError(f"unknown implementation {name!r}; choose one of {', '.join(NAMES)}")
    if device != "cpu" and name in ("expreg-numpy", "numpy-plain"):
        raise ValueError(f"{name} runs on the CPU only, got device={device!r}")
    step, sync, state = builders[name](X, y, W, a, device)
    state.setdefault(
        "runs_on", device_label("torch" if name.startswith(("torch", "expreg-torch")) else "numpy", device)
    )
    return step, sync, state


def device_label(library: str, device: str) -> str:
    """What runs a step: ``"cpu"``, or a torch CUDA device with its name (``"cuda:0 (NVIDIA H100 80GB HBM3)"``)."""
    if library == "torch" and device.startswith("cuda"):
        import torch

        return f"{torch.device(device)} ({torch.cuda.get_device_name(torch.device(device))})"
    return "cpu"


def _expreg_train(X: np.ndarray, y: np.ndarray, W: np.ndarray, a: np.ndarray, device: str) -> Any:
    """The path a user calls: ``expreg.train`` (default backend, movement tracked, no kernel records) runs in a
    thread of its own; its progress callback, called once per step, waits for ``step()`` to let it go on, so a
    timed ``step()`` is exactly one iteration of the real loop: W <- W - lr G, then forward, backward and the
    step's records and tests."""
    import threading

    import expreg

    net = expreg.ExpNet.from_weights(W, a)
    go, done = threading.Semaphore(0), threading.Semaphore(0)
    failed: list[BaseException] = []

    def progress(t: int, residual: float) -> None:
        done.release()
        go.acquire()

    def loop() -> None:
        try:
            expreg.train(net, X, y, lr=LR, epsilon=0.0, max_steps=10**9, record_every=0, progress=progress)
        except BaseException as exc:  # pragma: no cover - reported by the next step()
            failed.append(exc)
            done.release()

    threading.Thread(target=loop, daemon=True, name="expreg-train").start()
    done.acquire()  # set-up (H^cts, lambda) and step 0's forward and backward: not timed

    def step() -> None:
        go.release()
        done.acquire()
        if failed:
            raise RuntimeError(f"expreg.train stopped: {failed[0]!r}")

    return step, lambda: None, {}


def _expreg_numpy(X: np.ndarray, y: np.ndarray, W: np.ndarray, a: np.ndarray, device: str) -> Any:
    from expreg.core import fastpath, ops
    from expreg.core.activations import EXP
    from expreg.core.backends import get_backend

    be = get_backend("numpy")
    G = np.empty_like(W)  # W is this process's own copy: updated in place
    fastpath.exp_matvec_(
        np.zeros((1, 8), W.dtype), np.zeros(8, W.dtype), np.zeros(1, W.dtype)
    )  # compile now, not in the first step
    plan = ops.plan_blocks(X.shape[0], W.shape[1], W.dtype.itemsize, backend=be, d=X.shape[1])

    def step() -> None:
        ops.forward_backward(be, EXP, X, W, a, y, 1.0, plan, G)
        W[...] -= LR * G

    return step, lambda: None, {"W": W, "plan": plan}


def _expreg_torch(X: np.ndarray, y: np.ndarray, W: np.ndarray, a: np.ndarray, device: str) -> Any:
    from expreg.core import ops
    from expreg.core.activations import EXP
    from expreg.core.backends import get_backend

    be = get_backend("torch", device)
    Xt, yt, Wt, at = (be.asarray(v, v.dtype) for v in (X, y, W, a))
    G = be.empty(tuple(Wt.shape), W.dtype)
    plan = ops.plan_blocks(X.shape[0], W.shape[1], W.dtype.itemsize, backend=be, d=X.shape[1])

    def step() -> None:
        ops.forward_backward(be, EXP, Xt, Wt, at, yt, 1.0, plan, G)
        Wt.sub_(G, alpha=LR)

    return step, be.synchronize, {"W": Wt, "plan": plan}


def _torch_tensors(X: np.ndarray, y: np.ndarray, W: np.ndarray, a: np.ndarray, device: str) -> Any:
    import torch

    return tuple(torch.as_tensor(v.copy(), device=device) for v in (X, y, W, a))


def _sync_for(device: str) -> Callable[[], None]:
    import torch

    if device.startswith("cuda"):
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _torch_loss(X: Any, y: Any, W: Any, a: Any) -> Any:
    import torch

    u = torch.exp(X @ W) @ a
    return 0.5 * ((u - y) ** 2).sum()


def _torch_autograd(X: np.ndarray, y: np.ndarray, W: np.ndarray, a: np.ndarray, device: str) -> Any:
    import torch

    Xt, yt, Wt, at = _torch_tensors(X, y, W, a, device)
    Wt.requires_grad_(True)

    def step() -> None:
        loss = _torch_loss(Xt, yt, Wt, at)
        loss.backward()
        with torch.no_grad():
            Wt.sub_(Wt.grad, alpha=LR)
        Wt.grad = None

    return step, _sync_for(device), {"W": Wt}


def _torch_compile(X: np.ndarray, y: np.ndarray, W: np.ndarray, a: np.ndarray, device: str) -> Any:
    import torch

    Xt, yt, Wt, at = _torch_tensors(X, y, W, a, device)

    def grad_step(W: Any) -> Any:
        W = W.detach().requires_grad_(True)
        loss = _torch_loss(Xt, yt, W, at)
        (g,) = torch.autograd.grad(loss, W)
        return g

    compiled = torch.compile(grad_step)

    def step() -> None:
        g = compiled(Wt)
        with torch.no_grad():
            Wt.sub_(g, alpha=LR)

    return step, _sync_for(device), {"W": Wt}


def _torch_manual(X: np.ndarray, y: np.ndarray, W: np.ndarray, a: np.ndarray, device: str) -> Any:
    import torch

    Xt, yt, Wt, at = _torch_tensors(X, y, W, a, device)

    @torch.no_grad()
    def step() -> None:
        E = torch.exp(Xt @ Wt)
        r = E @ at - yt
        E.mul_(r[:, None]).mul_(at)
        Wt.sub_(Xt.T @ E, alpha=LR)

    return step, _sync_for(device), {"W": Wt}


def _jax_jit(X: np.ndarray, y: np.ndarray, W: np.ndarray, a: np.ndarray, device: str) -> Any:
    import jax
    import jax.numpy as jnp

    if W.dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    platform = "cpu" if device == "cpu" else "gpu"
    try:
        dev = jax.devices(platform)[0]  # asked for by name: JAX's default device may be another one
    except RuntimeError as exc:
        raise RuntimeError(f"jax has no {platform} device here ({exc}); install jax[cuda12] for a GPU") from None
    Xj, yj, aj = (jax.device_put(v, dev) for v in (X, y, a))

    def loss(W: Any) -> Any:
        u = jnp.exp(Xj @ W) @ aj
        return 0.5 * jnp.sum((u - yj) ** 2)

    @jax.jit
    def update(W: Any) -> Any:
        return W - LR * jax.grad(loss)(W)

    state = {"W": jax.device_put(W, dev), "runs_on": f"{dev.platform}:{dev.id} ({dev.device_kind}), jax"}

    def step() -> None:
        state["W"] = update(state["W"])

    return step, lambda: state["W"].block_until_ready(), state


def _numpy_plain(X: np.ndarray, y: np.ndarray, W: np.ndarray, a: np.ndarray, device: str) -> Any:
    W = W.copy()

    def step() -> None:
        E = np.exp(X @ W)
        r = E @ a - y
        E *= r[:, None]
        E *= a
        W[...] -= LR * (X.T @ E)

    return step, lambda: None, {"W": W}
