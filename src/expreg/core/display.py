"""How results show themselves: one-line reprs, HTML tables for notebooks, pandas frames.

Shared by ``History``, ``TrainResult`` (and ``ShardedTrainResult``), the
theorem's quantities (``theory.TheoremQuantities``): each builds its
(label, value) pairs, these functions lay them out. pandas is imported only
by ``frame`` (the ``experiments`` extra).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any


def number(x: Any) -> str:
    """A figure in 4 significant digits (integers and strings as they are)."""
    if isinstance(x, int | str):  # bool is an int: True, False
        return str(x)
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        return str(x)
    return f"{x:.4g}"


def line(name: str, pairs: Iterable[tuple[str, Any]]) -> str:
    """``Name(label=value, ...)`` on one line, values through ``number``."""
    return f"{name}(" + ", ".join(f"{k}={number(v)}" for k, v in pairs) + ")"


def html_table(title: str, rows: Sequence[Sequence[Any]], header: Sequence[str] = ("", "")) -> str:
    """A small HTML table (escaped) with a caption: what ``_repr_html_`` returns."""
    head = "".join(f"<th style='text-align:left'>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'>{html.escape(number(c))}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return (
        f"<table><caption style='text-align:left'><b>{html.escape(title)}</b></caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def frame(columns: dict[str, Any], index: Any = None, index_name: str | None = None) -> Any:
    """A pandas DataFrame of ``columns``; a clear ImportError when pandas is missing."""
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas is in the experiments extra
        raise ImportError("to_pandas needs pandas: pip install 'expreg[experiments]'") from exc
    df = pd.DataFrame(columns, index=index)
    if index_name is not None:
        df.index.name = index_name
    return df
