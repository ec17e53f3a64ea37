"""Tables of experiment summaries, as the report and the documentation's Results page show them.

One rule for both: the columns of a table are the keys of its rows in
natural order (numbers inside a name compared as numbers, so ``m=64``,
``m=256``, ``m=1024`` come in that order, not as text), and a table without
rows is left out rather than printed empty.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["natural_key", "table_columns"]

_NUMBER = re.compile(r"(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)")


def natural_key(name: str) -> tuple[tuple[int, float, str], ...]:
    """Sort key of a column name: text parts as text, number parts as numbers ("m=256" < "m=1024").

    >>> sorted(["m=1024", "m=256", "activation", "m=65536"], key=natural_key)
    ['activation', 'm=256', 'm=1024', 'm=65536']
    """
    parts = _NUMBER.split(str(name))
    return tuple((0, float(p), "") if i % 2 else (1, 0.0, p.lower()) for i, p in enumerate(parts) if p)


def table_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The columns of ``rows`` (every key of any row), in natural order; [] for no rows."""
    return sorted(dict.fromkeys(k for r in rows for k in r), key=natural_key)
