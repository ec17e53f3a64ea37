"""Buffers kept for reuse between calls: the few most recently given back, by key.

A fresh array costs its page faults on first touch, which for the small,
frequent calls of expreg (a step's workspace, a Gram block, the small-n Gram
sums) is a visible share of the call. ``KeptForReuse`` holds what a call
gives back for the next call of the same key; ``take`` removes it, so two
users never share one, and only the ``size`` most recent keys are kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

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
