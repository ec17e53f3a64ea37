"""The speed choices of the NumPy backend, as data: which exp kernel, GEMM library, block size, thread layout.

A ``Tuning`` names one choice of each; the results of a step, a gradient
or a kernel are the same whichever is chosen, to rounding (each choice
computes the same formulas, docs/theory.md section 2; tests/test_calibrate.py
checks every choice against a float64 reference). ``calibrate`` measures
them on the machine at hand and keeps the winner in ``reuse.KEPT.tuning``;
``Tuning.default()`` is the fixed choice made before measurement existed
(and with ``EXPREG_CALIBRATE=0``):

- ``exp``: per dtype, ``"fastpath"`` (numba's fused exp and row sums,
  ``fastpath``; NumPy's exp when numba is missing or ``EXPREG_FASTPATH=0``),
  ``"numpy"`` (``np.exp`` then a matrix-vector product) or ``"torch"``
  (``torch.exp`` on the same memory, then the product);
- ``gemm``: ``"numpy"`` (NumPy's BLAS) or ``"torch"`` (PyTorch's, on the
  same memory through ``torch.from_numpy``);
- ``block_bytes``, ``block_bytes_wide``: bytes of one block of activations
  (``ops.plan_blocks``) for inputs of at most ``WIDE_D`` dimensions, and for
  wider ones: the best block depends on the GEMM's inner dimension d
  (on an Intel Xeon, 4 MiB at d = 32 and 1 MiB at d = 128, benchmarks/RESULTS.md);
  ``block_bytes_recompute`` for steps that recompute their activations
  (nothing kept: the block's GEMM, exp and products run in cache, and the
  best block need not be the best for kept activations);
- ``threads``: worker threads of the blocked passes (None: every usable
  CPU, BLAS on one thread each; 1: one worker, BLAS on its own threads);
- ``recompute_d``, ``recompute_beyond``: activations of inputs of at most
  ``recompute_d`` dimensions whose n m values take more than
  ``recompute_beyond`` bytes (the last-level cache) are recomputed in the
  backward pass instead of kept (``Tuning.keeps``, ``ops.plan_blocks``):
  beyond the cache, kept activations stream through memory twice a step
  (read back by the backward pass, written back after the next forward
  pass has overwritten them in cache, ``ops.Step.ahead``), and at small d the GEMM and
  exp that recompute a block in cache can cost less (on an Intel Xeon with
  a 260 MiB L3, about 10 % less at d = 16 beside torch's exp, more beside
  NumPy's: benchmarks/RESULTS.md). 0 and None: keep whatever the memory
  budget allows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

#: The exp kernels a tuning may name (``fastpath`` falls back to NumPy's exp without numba).
EXP_KERNELS = ("fastpath", "numpy", "torch")
#: The GEMM libraries a tuning may name.
GEMM_LIBRARIES = ("numpy", "torch")
#: The block sizes (bytes of activations per block) the calibration tries; 2^20 is the default. 2^21 since the
#: next forward pass runs inside the backward pass (``ops.Step.ahead``): on an Intel Xeon (2 MiB of L2 per core)
#: it beat 4 MiB by 7 % at (1024, 32, 65536) (benchmarks/RESULTS.md).
BLOCK_BYTES_CHOICES = (2**18, 2**20, 2**21, 2**22)
#: The default block of the NumPy backend: 1 MiB of activations (fits L2 beside the block's inputs).
DEFAULT_BLOCK_BYTES = 2**20
#: Inputs of more dimensions than this use ``Tuning.block_bytes_wide`` (measured at d = 128), others
#: ``Tuning.block_bytes`` (measured at d = 32): 64 is their midpoint on a log scale.
WIDE_D = 64
#: The input dimensions at which the calibration races recomputing against keeping activations beyond the
#: last-level cache: first the first; when recomputing wins there, the second (``Tuning.recompute_d``).
RECOMPUTE_D_CHOICES = (16, WIDE_D)
#: The dtypes a tuning chooses an exp kernel for.
TUNED_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Tuning:
    """One choice of each speed setting of the NumPy backend (see the module docstring).

    Attributes
    ----------
    exp_float32, exp_float64 : str
        The exp kernel for each dtype, one of ``EXP_KERNELS``.
    gemm : str
        The GEMM library, one of ``GEMM_LIBRARIES``.
    block_bytes : int
        Bytes of one block of activations, for inputs of d <= ``WIDE_D``.
    block_bytes_wide : int
        The same for d > ``WIDE_D`` (``block_bytes_for``).
    block_bytes_recompute : int
        The same for steps that recompute their activations instead of keeping them, any d.
    threads : int or None
        Worker threads (None: every usable CPU).
    recompute_d : int
        Inputs of at most this many dimensions recompute activations of more than ``recompute_beyond``
        bytes in the backward pass (0: never; ``keeps``).
    recompute_beyond : int or None
        Bytes of activations (n m itemsize) above which ``recompute_d`` applies: the last-level cache.
    source : str
        Where it comes from: "default", "measured", "cache <path>", "forced".
    seconds : dict
        What the calibration measured (name -> seconds), for inspection only.

    Examples
    --------
    >>> t = Tuning.default()
    >>> t.exp_for(np.float32), t.gemm, t.block_bytes
    ('fastpath', 'numpy', 1048576)
    >>> Tuning.from_dict(t.as_dict()) == t
    True
    """

    exp_float32: str = "fastpath"
    exp_float64: str = "fastpath"
    gemm: str = "numpy"
    block_bytes: int = DEFAULT_BLOCK_BYTES
    block_bytes_wide: int = DEFAULT_BLOCK_BYTES
    block_bytes_recompute: int = DEFAULT_BLOCK_BYTES
    threads: int | None = None
    recompute_d: int = 0
    recompute_beyond: int | None = None
    source: str = field(default="default", compare=False)
    seconds: dict[str, float] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        for dt in TUNED_DTYPES:
            _check_choice(f"exp_{dt}", getattr(self, f"exp_{dt}"), EXP_KERNELS)
        _check_choice("gemm", self.gemm, GEMM_LIBRARIES)
        for name in ("block_bytes", "block_bytes_wide", "block_bytes_recompute"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1024:
                raise ValueError(f"{name} must be an integer of at least 1024, got {value!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be None or an integer >= 1, got {self.threads!r}")
        if not isinstance(self.recompute_d, int) or isinstance(self.recompute_d, bool) or self.recompute_d < 0:
            raise ValueError(f"recompute_d must be an integer >= 0, got {self.recompute_d!r}")
        beyond = self.recompute_beyond
        if beyond is not None and (not isinstance(beyond, int) or isinstance(beyond, bool) or beyond < 0):
            raise ValueError(f"recompute_beyond must be None or an integer >= 0, got {beyond!r}")

    @classmethod
    def default(cls) -> Tuning:
        """The fixed choice used without calibration (``EXPREG_CALIBRATE=0``): the arithmetic before issue 25."""
        return cls()

    def exp_for(self, dtype: Any) -> str:
        """The exp kernel for ``dtype`` (float32 or float64)."""
        return str(getattr(self, f"exp_{np.dtype(dtype).name}"))

    def block_bytes_for(self, d: int | None, keep: bool = True) -> int:
        """Bytes of one block of activations for inputs of d dimensions (None: ``block_bytes``), kept or not.

        >>> t = Tuning(block_bytes=2**22, block_bytes_wide=2**20, block_bytes_recompute=2**18)
        >>> t.block_bytes_for(128), t.block_bytes_for(32), t.block_bytes_for(32, keep=False)
        (1048576, 4194304, 262144)
        """
        if not keep:
            return self.block_bytes_recompute
        return self.block_bytes_wide if d is not None and d > WIDE_D else self.block_bytes

    def keeps(self, nbytes: int, d: int | None) -> bool:
        """Whether a step keeps its ``nbytes`` of activations (d inputs; None: unknown) rather than recompute them.

        >>> t = Tuning(recompute_d=16, recompute_beyond=2**28)
        >>> t.keeps(2**30, 16), t.keeps(2**30, 32), t.keeps(2**27, 16), t.keeps(2**30, None)
        (False, True, True, True)
        """
        if d is None or d > self.recompute_d or self.recompute_beyond is None:
            return True
        return nbytes <= self.recompute_beyond

    def uses_torch(self) -> bool:
        """Whether any choice runs PyTorch code."""
        return "torch" in (self.gemm, self.exp_float32, self.exp_float64)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``from_dict`` reads it back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | None = None) -> Tuning:
        """A ``Tuning`` from ``as_dict``'s output; ValueError naming the field on anything else."""
        if not isinstance(data, dict):
            raise ValueError(f"a tuning is a JSON object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown tuning fields {unknown}; expected some of {sorted(names)}")
        values = dict(data)
        if source is not None:
            values["source"] = source
        seconds = values.get("seconds", {})
        if not isinstance(seconds, dict):
            raise ValueError("tuning field 'seconds' must be an object")
        return cls(**values)

    def describe(self) -> str:
        """One line: every choice."""
        threads = "every usable CPU" if self.threads is None else str(self.threads)
        return (
            f"exp float32={self.exp_float32}, float64={self.exp_float64}; gemm={self.gemm}; "
            f"block={self.block_bytes // 1024} KiB (d > {WIDE_D}: {self.block_bytes_wide // 1024} KiB; "
            f"recomputed: {self.block_bytes_recompute // 1024} KiB); "
            f"threads={threads}; {self.describe_keep()} ({self.source})"
        )

    def describe_keep(self) -> str:
        """Where activations are kept or recomputed, in words.

        >>> Tuning().describe_keep()
        'activations kept'
        >>> Tuning(recompute_d=16, recompute_beyond=2**28).describe_keep()
        'activations recomputed beyond 256 MiB for d <= 16'
        """
        if self.recompute_d == 0 or self.recompute_beyond is None:
            return "activations kept"
        return f"activations recomputed beyond {self.recompute_beyond / 2**20:.0f} MiB for d <= {self.recompute_d}"


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"tuning {name}={value!r} is not one of {list(allowed)}")
