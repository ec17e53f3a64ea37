"""Everything expreg keeps between calls, in one place: ``KEPT``.

A fresh array costs its page faults on first touch, which for the small,
frequent calls of expreg (a step's workspace, a Gram block, the small-n Gram
sums) is a visible share of the call. ``KeptForReuse`` holds what a call
gives back for the next call of the same key; ``take`` removes it, so two
users never share one, and only the ``size`` most recent keys are kept.

``KEPT`` (a ``Kept``) is the only module-level state of the package that
holds memory between calls; ``KEPT.clear()`` (also ``ops.release_workspaces``)
gives it all back. Nothing else keeps arrays at module level (a test checks
this: tests/test_architecture.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class KeptForReuse(Generic[K, V]):
    """Values given back by key, the ``size`` most recent keys kept; safe to use from several threads.

    Examples
    --------
    >>> kept: KeptForReuse[str, list[int]] = KeptForReuse(1)
    >>> kept.give("a", [1]); kept.give("b", [2])
    >>> kept.take("a") is None, kept.take("b"), kept.take("b")
    (True, [2], None)
    """

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self._kept: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: K) -> V | None:
        """The value kept under ``key``, removed from the keep (None when there is none)."""
        with self._lock:
            return self._kept.pop(key, None)

    def give(self, key: K, value: V) -> None:
        """Keep ``value`` for the next ``take(key)``; the least recently given key goes when more than ``size``."""
        with self._lock:
            self._kept[key] = value
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)

    def values(self) -> list[V]:
        """The values kept now, least recently given first."""
        with self._lock:
            return list(self._kept.values())

    def clear(self) -> None:
        """Drop every kept value (their memory goes back once nothing else holds them)."""
        with self._lock:
            self._kept.clear()


#: Step workspaces kept (each holds up to the memory budget of a step).
WORKSPACES_KEPT = 2
#: Gram block buffers kept.
GRAM_BLOCKS_KEPT = 2
#: Small-n Gram sums (``gram.PartsSum``) kept: the most recent sizes.
GRAM_SUMS_KEPT = 4


class CompiledState:
    """What ``fastpath`` has loaded: the compiled kernels, why loading failed, whether ``EXPREG_FASTPATH=0``.

    Attributes
    ----------
    kernels : dict or None
        The numba kernels by name, once loaded.
    failed : str or None
        Why they could not be loaded (numba missing): the NumPy fallback is used.
    disabled : bool or None
        EXPREG_FASTPATH=0, read at the first call (None: not read yet).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget the kernels and the environment: the next call loads them (and reads EXPREG_FASTPATH) again."""
        self.kernels: dict[str, Callable[..., Any]] | None = None
        self.failed: str | None = None
        self.disabled: bool | None = None


class Made:
    """Objects made once per process and shared: ``backends.get_backend``'s backends, the BLAS thread controller.

    Attributes
    ----------
    backends : dict
        (name, device, threads) -> the ``Backend`` made for it.
    blas_controller : threadpoolctl.ThreadpoolController, False or None
        False: threadpoolctl is not installed; None: not looked for yet.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.backends: dict[tuple[Any, ...], Any] = {}
        # Its own lock: a backend made under ``lock`` may calibrate, which limits BLAS threads.
        self.controller_lock = threading.Lock()
        self.blas_controller: Any = None


class TuningState:
    """The speed choices in use (``calibrate``): a ``tuning.Tuning`` once chosen, None before.

    Attributes
    ----------
    chosen : tuning.Tuning or None
        Read from the cache, measured, or the default (``EXPREG_CALIBRATE=0``);
        ``calibrate.forget()`` sets it back to None.
    step_maker : callable or None
        What the calibration times, registered by ``ops`` when imported
        (``calibrate.set_step_maker``): ``ops`` sits above ``calibrate``.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.chosen: Any = None
        self.step_maker: Any = None


class Kept:
    """The buffers kept between calls, by kind, and the compiled kernels' state; ``clear`` frees the buffers.

    Attributes
    ----------
    workspaces : KeptForReuse
        ``ops`` step workspaces, keyed by (backend, shapes, dtype, plan).
    gram_blocks : KeptForReuse
        Flat block buffers of ``gram.GramAccumulator``, keyed by (backend, size, dtype).
    gram_sums : KeptForReuse
        ``gram.PartsSum`` accumulators, keyed by (n, dtype, parts).
    compiled : CompiledState
        ``fastpath``'s kernels (``compiled.reset()`` forgets them).
    made : Made
        Backends and the BLAS controller, made once per process.
    tuning : TuningState
        The speed choices of the NumPy backend (``calibrate``).
    """

    def __init__(self) -> None:
        self.compiled = CompiledState()
        self.made = Made()
        self.tuning = TuningState()
        self.workspaces: KeptForReuse[Hashable, Any] = KeptForReuse(WORKSPACES_KEPT)
        self.gram_blocks: KeptForReuse[Hashable, Any] = KeptForReuse(GRAM_BLOCKS_KEPT)
        self.gram_sums: KeptForReuse[Hashable, Any] = KeptForReuse(GRAM_SUMS_KEPT)

    def clear(self) -> None:
        """Drop every kept buffer (their memory goes back once nothing else holds them)."""
        self.workspaces.clear()
        self.gram_blocks.clear()
        self.gram_sums.clear()


#: The package's one keep of buffers between calls.
KEPT = Kept()
