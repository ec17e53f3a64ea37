"""Choose the NumPy backend's speed settings by measuring them on this machine, once, and keep the choice.

Which exp kernel, GEMM library, block size and thread layout is fastest
depends on the CPU (AVX-512 or not, the BLAS kernels OpenBLAS picked) and
the library versions: on an AMD EPYC numba's fused exp beat NumPy's in
float64, on an Intel Xeon with AVX-512 NumPy's and torch's exp beat it
(benchmarks/RESULTS.md). ``measure`` times whole steps, ``ops.forward_backward``
as ``expreg.train`` takes it (on every core, the gradient step and the movement
in its backward pass, with the next step's forward pass run ahead there,
``ops.Step.ahead``), at n = 512 with 32 MiB of kept activations (beyond the
cores' own caches, as in a real run), choosing in turn:

1. the exp kernel (``tuning.EXP_KERNELS``) for float32, on steps at d = 32
   and d = 128 (their times summed), and for float64 at d = 32;
2. the GEMM library (``tuning.GEMM_LIBRARIES``), at d = 32 and d = 128;
3. the block size (``tuning.BLOCK_BYTES_CHOICES``) at d = 32, and at d = 128
   for wider inputs (``Tuning.block_bytes_for``): the best block depends on
   the GEMMs' inner dimension; and at d = 16 for steps that recompute their
   activations instead of keeping them (in cache: a smaller block);
4. the thread layout at d = 32: blocks on every core with BLAS on one
   thread each, against one worker with BLAS threading each product;
5. where the last-level cache's size is known (``last_level_cache_bytes``),
   whether activations beyond it are kept or recomputed in the backward
   pass (``Tuning.recompute_d``, ``keep_or_recompute``): steps with
   ``BEYOND_CACHE`` times the cache's size of kept activations, at d = 16
   and, when recomputing wins there, at d = 64
   (``tuning.RECOMPUTE_D_CHOICES``), recomputing being the default of these
   races (a tie goes to the choice that holds less memory); skipped when that
   workload would take more than a quarter of the memory available.

About five seconds on 2 cores, plus importing PyTorch where it is
installed, and more where the last-level cache is large (the fifth choice
streams twice the cache: 520 MiB, and fifteen seconds in all, on an Intel
Xeon with a 260 MiB L3), once per machine: the choice is cached. Timing one block's exp
or GEMM on one thread instead (as expreg did before) did not predict the
step: on an Intel Xeon the exp kernels tied per block, while with torch's
GEMM, steps with torch's exp took about 0.6 of the time of steps with
numba's or NumPy's (benchmarks/exp_gemm_ab.py, benchmarks/RESULTS.md).
The candidates of each choice race: they take turns, round by round, and
each keeps its fastest round (``race``), so that a slow spell of a shared
machine hits them alike.

A choice other than the default must win by ``MARGIN`` (5 %), twice (a
second race against the default alone confirms it, ``decide``), and a
PyTorch choice must beat every other by it (it costs each process the
import of PyTorch, which a step's timing does not see). The load
average during the measurement is kept in the tuning's ``source``: a
choice measured on a busy machine says so (``expreg calibrate`` on a
quiet one measures again).

``current()`` is what the backend reads: the choice kept in
``reuse.KEPT.tuning``, else the one cached for this machine (a JSON file
in the user's cache directory, keyed by ``machine_identity()``: CPU model,
ISA extensions, BLAS kernels, library versions), else a fresh measurement,
cached atomically. A corrupt cache file is ignored with a warning and
rewritten; an unwritable cache directory costs a warning and a
measurement per process. ``EXPREG_CALIBRATE=0`` turns all this off: the
fixed ``Tuning.default()`` (the arithmetic of expreg before calibration).
``expreg calibrate --show`` prints the choice (``--json`` as JSON).

Every choice computes the same formulas, so results agree to rounding
whichever wins (tests/test_calibrate.py forces each one against a float64
reference); the measurement only decides speed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from . import fastpath
from .resources import available_memory
from .reuse import KEPT
from .storage import atomic_open
from .threads import usable_cpus
from .tuning import BLOCK_BYTES_CHOICES, DEFAULT_BLOCK_BYTES, RECOMPUTE_D_CHOICES, Tuning

#: The environment variable that turns calibration off ("0", "false", "no", "off").
ENV = "EXPREG_CALIBRATE"
#: The calibration workload: n data points, d dimensions (and ``CAL_D_WIDE`` for ``Tuning.block_bytes_wide``).
CAL_N, CAL_D, CAL_D_WIDE = 512, 32, 128
#: Neurons of the whole steps that make the choices: n m float32 activations kept (32 MiB), beyond
#: the cores' own caches as in a real run (not always beyond a shared last-level cache: ``BEYOND_CACHE``).
CAL_PASS_M = 16384
#: The workload of the keep-or-recompute race: kept activations of this many times the last-level cache.
BEYOND_CACHE = 2
#: The most of the memory available that race's workload may take (else it is skipped: activations kept).
BEYOND_CACHE_MEMORY_FRACTION = 0.25
#: Rounds of a ``race`` of whole steps (each candidate timed once per round; tens of milliseconds each).
ROUNDS = 3
#: The ISA extensions named in ``machine_identity`` (those present on the CPU).
ISA_FLAGS = (
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "avx2",
    "fma",
    "avx",
    "asimd",
    "sve",
)
#: Another choice must beat the default by this fraction to replace it (timings on a busy machine are
#: noisy), and a PyTorch choice must beat every other one by it: using it costs each process the import
#: of PyTorch (seconds), which a per-block timing does not see.
MARGIN = 0.05
#: Version of the cache file's layout.
CACHE_FORMAT = 4  # 2: block_bytes_wide, by whole steps; 3: keep or recompute beyond the cache; 4: the train step


# ----------------------------------------------------------------- the choice in use
def disabled() -> bool:
    """Whether ``EXPREG_CALIBRATE`` turns calibration off."""
    return os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off")


def current() -> Tuning:
    """The tuning in use: kept in ``reuse.KEPT.tuning``, else cached for this machine, else measured (and cached)."""
    state = KEPT.tuning
    chosen: Tuning | None = state.chosen
    if chosen is not None:
        return chosen
    with state.lock:
        if state.chosen is None:
            state.chosen = _choose()
        chosen = state.chosen
    assert chosen is not None
    return chosen


def use(tuning: Tuning | None) -> None:
    """Use ``tuning`` from now on in this process (None: choose again at the next ``current()``).

    Backends already made by ``get_backend`` keep their tuning, so they are
    dropped (with the buffers kept for them): the next ``get_backend`` makes
    new ones.
    """
    made = KEPT.made
    with made.lock:
        made.backends.clear()
    KEPT.clear()
    with KEPT.tuning.lock:
        KEPT.tuning.chosen = tuning


def forget() -> None:
    """Drop the choice in use: the next ``current()`` reads the cache (or measures) again."""
    use(None)


def recalibrate() -> Tuning:
    """Measure now, cache the result (a warning if it cannot be written) and use it."""
    identity = machine_identity()
    tuning = measure()
    save(cache_path(identity), identity, tuning)
    use(tuning)
    return tuning


def _choose() -> Tuning:
    if disabled():
        return Tuning(source=f"default ({ENV}=0)")
    identity = machine_identity()
    path = cache_path(identity)
    tuning = load(path, identity)
    if tuning is None:
        tuning = measure()
        save(path, identity, tuning)
    return tuning


# ----------------------------------------------------------------- the cache
def cache_dir() -> Path:
    """expreg's directory in the user's cache: $XDG_CACHE_HOME/expreg (default ~/.cache/expreg).

    On macOS ~/Library/Caches/expreg, on Windows %LOCALAPPDATA%/expreg/Cache
    (where XDG_CACHE_HOME is not set).
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "expreg"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "expreg"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "expreg" / "Cache"
    return Path.home() / ".cache" / "expreg"


def cache_path(identity: dict[str, Any]) -> Path:
    """The cache file of one machine identity: ``cache_dir()/calibration-<hash of the identity>.json``."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"calibration-{digest}.json"


def load(path: Path, identity: dict[str, Any]) -> Tuning | None:
    """The tuning cached at ``path`` for ``identity``; None when there is none, with a warning when the file is unusable."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        warnings.warn(f"cannot read the calibration cache {str(path)!r} ({exc}); measuring again", stacklevel=3)
        return None
    try:
        data = json.loads(text)
        if isinstance(data, dict) and type(data.get("format")) is int and 0 < data["format"] < CACHE_FORMAT:
            return None  # written by an older expreg, whose choices this one measures differently: measure again
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or data.get("identity") != identity:
            raise ValueError("written for another format or another machine")
        return Tuning.from_dict(data["tuning"], source=f"cache {path}")
    except (ValueError, KeyError, TypeError) as exc:
        warnings.warn(
            f"ignoring the corrupt calibration cache {str(path)!r} ({exc}); measuring again and rewriting it",
            stacklevel=3,
        )
        return None


def save(path: Path, identity: dict[str, Any], tuning: Tuning) -> bool:
    """Write the cache file atomically; on failure warn (the next process measures again) and return False."""
    data = {"format": CACHE_FORMAT, "identity": identity, "tuning": tuning.as_dict(), "written": time.time()}
    try:
        with atomic_open(path, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
    except OSError as exc:
        warnings.warn(
            f"cannot write the calibration cache {str(path)!r} ({exc}); set XDG_CACHE_HOME to a writable "
            f"directory, or {ENV}=0 to skip calibration",
            stacklevel=3,
        )
        return False
    return True


# ----------------------------------------------------------------- the machine
def machine_identity() -> dict[str, Any]:
    """What a calibration depends on: CPU model, ISA extensions, usable CPUs, BLAS kernels, library versions.

    The BLAS entries come from threadpoolctl (``internal_api``, ``version``,
    ``architecture``: the kernels OpenBLAS picked for this CPU, e.g. SkylakeX,
    Haswell, Zen), for NumPy's BLAS; versions are read from the installed
    distributions (PyTorch is not imported).
    """
    flags = cpu_flags()
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "isa": [f for f in ISA_FLAGS if f in flags],
        "cpus": usable_cpus(),
        "blas": blas_kernels(),
        "python": platform.python_version(),
    }
    for package in ("numpy", "numba", "torch", "expreg"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            info[package] = None
    return info


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else ``platform.processor()``)."""
    for line in _cpuinfo():
        if line.startswith(("model name", "Model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> set[str]:
    """The CPU's feature flags (/proc/cpuinfo "flags" or "Features"; empty elsewhere)."""
    for line in _cpuinfo():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def last_level_cache_bytes(root: str = "/sys/devices/system/cpu/cpu0/cache") -> int | None:
    """The size of CPU 0's last-level cache in bytes (Linux sysfs: the highest ``level`` of ``index*``), or None.

    Sizes read like "266240K" (KiB), "32M" or plain bytes; an unreadable or odd entry is skipped.
    """
    best: tuple[int, int] | None = None
    for entry in sorted(Path(root).glob("index*")):
        try:
            level = int((entry / "level").read_text().strip())
            text = (entry / "size").read_text().strip().upper()
            kind = (entry / "type").read_text().strip() if (entry / "type").exists() else "Unified"
        except (OSError, ValueError):
            continue
        if kind == "Instruction":
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text[:-1] if scale > 1 else text
        if not digits.isdigit():
            continue
        size = int(digits) * scale
        if best is None or level > best[0]:
            best = (level, size)
    return None if best is None or best[1] <= 0 else best[1]


def beyond_cache_neurons(cache: int | None, available: int | None = None) -> int | None:
    """Neurons m of the keep-or-recompute race: ``CAL_N`` m float32 activations = ``BEYOND_CACHE`` caches.

    None (no race) when the cache is unknown or the workload (kept activations, the step's four d x m
    arrays at d = 64 and its scratch) would take more than ``BEYOND_CACHE_MEMORY_FRACTION`` of the memory
    available (``resources.available_memory``).

    >>> beyond_cache_neurons(2**20, available=2**34)
    1024
    >>> beyond_cache_neurons(2**33, available=2**34) is None
    True
    """
    if cache is None:
        return None
    m = max(1, BEYOND_CACHE * cache // (CAL_N * 4))
    need = 4 * m * (CAL_N + 4 * RECOMPUTE_D_CHOICES[-1])
    available = available_memory() if available is None else available
    if available is None or need > BEYOND_CACHE_MEMORY_FRACTION * available:
        return None
    return m


def _cpuinfo() -> list[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            return fh.readlines()[:64]
    except OSError:
        return []


def blas_kernels(only_numpy: bool = True) -> list[dict[str, Any]]:
    """The BLAS libraries loaded (threadpoolctl): API, version, kernel core type; [] without threadpoolctl.

    ``only_numpy``: NumPy's own BLAS only (what the calibration depends on;
    the others, SciPy's, PyTorch's, come and go with what the process imported).
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys: tuple[str, ...] = ("internal_api", "version", "architecture", "filepath")
    libs = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
    if only_numpy:
        libs = [lib for lib in libs if "numpy" in str(lib.get("filepath", ""))]
        keys = keys[:-1]
    return [{k: lib.get(k) for k in keys} for lib in libs]


# ----------------------------------------------------------------- measurement
def torch_available() -> bool:
    """Whether PyTorch is installed (without importing it)."""
    return importlib.util.find_spec("torch") is not None


def candidates() -> dict[str, list[str]]:
    """The exp kernels and GEMM libraries usable here (numba's only when it loads; PyTorch's when installed)."""
    exps = (["fastpath"] if fastpath.enabled() else []) + ["numpy"]
    gemms = ["numpy"]
    if torch_available():
        exps.append("torch")
        gemms.append("torch")
    return {"exp": exps, "gemm": gemms}


def measure() -> Tuning:
    """Time every candidate on this machine by whole steps (see the module docstring); the fastest of each."""
    seconds: dict[str, float] = {}
    options = candidates()
    tuning = Tuning(source="measuring")
    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    narrow, wide = (CAL_D, f32), (CAL_D_WIDE, f32)

    def choose(
        fields: tuple[str, ...], values: list[tuple[Any, ...]], shapes: list[tuple[int, np.dtype]], m: int | None = None
    ) -> None:
        nonlocal tuning
        tuning = decide(tuning, fields, values, shapes, seconds, m=m)

    # exp and GEMM together: on an Intel Xeon, torch's GEMM was fast beside torch's exp and slow beside the others
    pairs = [(e, g) for g in options["gemm"] for e in options["exp"]]
    choose(("exp_float32", "gemm"), pairs, [narrow, wide])
    choose(("exp_float64",), [(e,) for e in options["exp"]], [(CAL_D, f64)])
    blocks = [(DEFAULT_BLOCK_BYTES,)] + [(b,) for b in BLOCK_BYTES_CHOICES if b != DEFAULT_BLOCK_BYTES]
    choose(("block_bytes",), blocks, [narrow])
    choose(("block_bytes_wide",), blocks, [wide])
    if usable_cpus() > 1:
        choose(("threads",), [(None,), (1,)], [narrow])
    # the block of steps that keep nothing (a step at d = 16 that recomputes every block; small: nothing kept)
    tuning = replace(tuning, recompute_d=RECOMPUTE_D_CHOICES[0], recompute_beyond=0)
    choose(("block_bytes_recompute",), blocks, [(RECOMPUTE_D_CHOICES[0], f32)])
    tuning = replace(tuning, recompute_d=0, recompute_beyond=None)
    cache = last_level_cache_bytes()
    m_beyond = beyond_cache_neurons(cache)
    if cache is not None and m_beyond is not None:
        tuning = keep_or_recompute(tuning, cache, m_beyond, seconds)
    source = f"measured at load average {_load():.1f} on {usable_cpus()} CPUs"
    return replace(tuning, source=source, seconds=seconds)


def keep_or_recompute(
    tuning: Tuning,
    cache: int,
    m: int,
    seconds: dict[str, float],
    steps: Callable[..., dict[str, float]] | None = None,
) -> Tuning:
    """``tuning`` with ``recompute_d`` (and ``recompute_beyond``) raced on activations beyond a ``cache``-byte cache.

    At each d of ``tuning.RECOMPUTE_D_CHOICES`` in turn (``m`` neurons, ``decide``), recomputing the activations
    of inputs of up to d dimensions races keeping them (recomputing only up to the d before); the first d where
    keeping wins ends it. Recomputing is the default of each race, so keeping must be ``MARGIN`` faster, twice,
    to be chosen: where the two tie, the choice that holds n m fewer bytes wins (at (2048, 16, 131072) float32,
    1 GiB).
    """
    tuning = replace(tuning, recompute_beyond=cache)
    smaller = 0
    for d in RECOMPUTE_D_CHOICES:
        tuning = decide(
            tuning, ("recompute_d",), [(d,), (smaller,)], [(d, np.dtype(np.float32))], seconds, m=m, steps=steps
        )
        if tuning.recompute_d != d:
            break
        smaller = d
    return replace(tuning, recompute_beyond=None) if tuning.recompute_d == 0 else tuning


def decide(
    tuning: Tuning,
    fields: tuple[str, ...],
    values: list[tuple[Any, ...]],
    shapes: list[tuple[int, np.dtype]],
    seconds: dict[str, float],
    *,
    m: int | None = None,
    rounds: int = ROUNDS,
    steps: Callable[..., dict[str, float]] | None = None,
) -> Tuning:
    """``tuning`` with ``fields`` set to the fastest of ``values`` (the first is the default), raced by whole steps.

    Each value's step times are summed over ``shapes`` ((d, dtype) pairs; ``m`` neurons, default
    ``CAL_PASS_M``'s bytes; ``steps`` is ``_steps``) and ``pick`` names the winner. A winner other than the
    default must win again, in a second race against the default alone: a slow spell of a shared machine
    that favoured it once does not decide for every later run (on an Intel Xeon one calibration in eight chose
    one worker thread, whose step at d = 32 took 28 ms against 13 on every core in another). Every time is
    kept in ``seconds`` ("step ..." for the first race, "confirm step ..." for the second).
    """
    steps = _steps if steps is None else steps
    names = {"/".join(map(str, v)): v for v in values}
    default = next(iter(names))

    def run(candidates: list[str], label: str) -> dict[str, float]:
        total = dict.fromkeys(candidates, 0.0)
        for d, dtype in shapes:
            variants = {n: replace(tuning, **dict(zip(fields, names[n], strict=True))) for n in candidates}
            for name, sec in steps(d, dtype, variants, m, rounds).items():
                seconds[f"{label} {'/'.join(fields)}={name} d={d} {dtype.name}"] = sec
                total[name] += sec
        return total

    winner = pick(run(list(names), "step"), prefer=default)
    if winner != default and pick(run([default, winner], "confirm step"), prefer=default) != winner:
        winner = default
    return replace(tuning, **dict(zip(fields, names[winner], strict=True)))


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # pragma: no cover - not available on this platform
        return float("nan")


def pick(times: dict[str, float], prefer: str = "numpy") -> str:
    """The fastest option, but ``prefer`` (the default choice) unless another beats it by ``MARGIN``.

    An option that uses PyTorch ("torch", or "torch" among the parts of a name such as "fastpath/torch")
    must also beat every other option by ``MARGIN``: using it costs each process the import of PyTorch,
    which a step's timing does not see.

    >>> pick({"numpy": 1.0, "torch": 0.97}), pick({"numpy": 1.0, "torch": 0.9})
    ('numpy', 'torch')
    >>> pick({"fastpath": 1.0, "numpy": 0.98}, prefer="fastpath")
    'fastpath'
    >>> pick({"fastpath/numpy": 1.0, "torch/torch": 0.6, "fastpath/torch": 1.5}, prefer="fastpath/numpy")
    'torch/torch'
    """
    torch = {k for k in times if "torch" in k.split("/")}
    others = {k: v for k, v in times.items() if k not in torch} or dict(times)
    best = min(others, key=lambda k: others[k])
    if prefer in others and others[prefer] <= (1.0 + MARGIN) * others[best]:
        best = prefer
    fastest_torch = min(torch, key=lambda k: times[k], default=None)
    if fastest_torch is not None and times[fastest_torch] < (1.0 - MARGIN) * min(others.values()):
        return fastest_torch
    return best


def race(candidates: dict[str, Callable[[], Any]], rounds: int = ROUNDS) -> dict[str, float]:
    """The shortest of ``rounds`` timed calls of each candidate, the candidates taking turns round by round.

    Each is called once untimed first. Taking turns (rather than timing one candidate's calls, then the
    next's) lets a slow spell of a shared machine hit every candidate alike instead of one.
    """
    for fn in candidates.values():
        fn()
    best = dict.fromkeys(candidates, float("inf"))
    for r in range(rounds):
        order = list(candidates) if r % 2 == 0 else list(reversed(candidates))
        for name in order:
            t0 = time.perf_counter()
            candidates[name]()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def _data(dtype: np.dtype, m: int, d: int = CAL_D) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X (n, d) with rows of norm at most 1, W (d, m) standard normal / sqrt(d), a (m,) of +-1."""
    rng = np.random.default_rng(25)
    X = rng.uniform(-1.0, 1.0, (CAL_N, d)) / np.sqrt(d)
    W = rng.standard_normal((d, m)) / np.sqrt(d)
    a = rng.choice([-1.0, 1.0], m)
    return X.astype(dtype), W.astype(dtype), a.astype(dtype)


def set_step_maker(maker: Callable[..., Any]) -> None:
    """Register what ``measure`` times (``ops`` does, when imported: it sits above this module, through the
    backends that read ``current()``): ``maker(tuning, X, W, a, y)`` returns ``(step, close)``, two callables,
    the step being ``ops.forward_backward`` on a NumPy backend of that tuning. Kept in ``reuse.KEPT.tuning``."""
    KEPT.tuning.step_maker = maker


def _steps(
    d: int, dtype: np.dtype, variants: dict[str, Tuning], m: int | None = None, rounds: int = ROUNDS
) -> dict[str, float]:
    """Seconds of one whole step (``ops.forward_backward``, the step ``expreg.train`` takes) with each tuning, raced.

    n = ``CAL_N``, d, and m neurons (default ``CAL_PASS_M`` float32 activations' bytes: 32 MiB kept, beyond the
    cores' own caches as in a real run; half the neurons in float64), on a fresh NumPy backend per tuning, all on the same
    data.
    """
    maker = KEPT.tuning.step_maker
    if maker is None:
        raise RuntimeError("expreg.core.ops registers the calibration's step when imported: import expreg first")
    m = CAL_PASS_M * 4 // dtype.itemsize if m is None else m
    X, W, a = _data(dtype, m, d)
    y = np.zeros(CAL_N, dtype)
    made = {name: maker(tuning, X, W, a, y) for name, tuning in variants.items()}
    try:
        return race({name: step for name, (step, _) in made.items()}, rounds)
    finally:
        for _, close in made.values():
            close()
