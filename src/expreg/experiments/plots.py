"""Figure helpers: matplotlib on the Agg backend, PNG + SVG, log axes, fitted lines.

Every figure is saved twice, ``<stem>.png`` (for the HTML report) and
``<stem>.svg``, atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.storage import atomic_open
from .fitting import SlopeFit

#: One colour per series, in order.
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22")


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.2, height: float = 4.0) -> tuple[Any, np.ndarray]:
    """A figure with an (nrows, ncols) array of axes."""
    plt = pyplot()
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes


def save(fig: Any, directory: str | Path, stem: str) -> str:
    """Save ``fig`` as ``stem.png`` and ``stem.svg`` in ``directory`` (atomic); close it; return ``stem``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for ax in fig.axes:
        tidy_log_ticks(ax)
    fig.tight_layout()
    for ext in ("png", "svg"):
        with atomic_open(d / f"{stem}.{ext}", "wb") as fh:
            fig.savefig(fh, format=ext, dpi=110)
    pyplot().close(fig)
    return stem


def plot_width_fit(ax: Any, entry: dict[str, Any], label: str, colour: str, marker: str = "o") -> None:
    """One fitted quantity against the width: per-seed points, their summary and the fitted line.

    ``entry`` is one element of an experiment's ``fits``: ``m`` (the widths),
    ``values`` (one summary per width), ``table`` (widths x seeds) and ``fit``
    (a ``SlopeFit``, its slope shown in the legend).
    """
    x = np.array(entry["m"], dtype=float)
    table = np.asarray(entry["table"], dtype=float)
    fit: SlopeFit = entry["fit"]
    ax.scatter(np.repeat(x, table.shape[1]), table.ravel(), s=10, alpha=0.3, color=colour, marker=marker)
    ax.plot(x, np.array(entry["values"]), marker=marker, linestyle="none", color=colour, label=f"{label}: slope {fit}")
    if np.isfinite(fit.slope):
        xs = np.geomspace(np.nanmin(x), np.nanmax(x), 50)
        ax.plot(xs, fit.predict(xs), color=colour, linewidth=1.2, alpha=0.8)


#: Characters per line of an axes title before it wraps (titles of side-by-side panels must not run into each other).
TITLE_WIDTH = 48


def log_axes(ax: Any, xlabel: str, ylabel: str, title: str = "", x: bool = True, y: bool = True) -> None:
    """Label the axes, log scales, grid, legend.

    The title wraps at ``TITLE_WIDTH`` characters; the legend goes below the
    axes, outside them, so that it covers no data (``save`` makes room).
    """
    import textwrap

    if x:
        ax.set_xscale("log")
    if y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(textwrap.fill(title, TITLE_WIDTH), fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    handles, _labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(
            fontsize=7,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.16),
            ncol=2 if len(handles) > 3 else 1,
            frameon=False,
        )


def tidy_log_ticks(ax: Any) -> None:
    """Log axes with fewer than two powers of 10 in view get ticks at 1, 2, 5 x 10^k; minor ticks are never labelled.

    matplotlib labels the minor ticks of such an axis, and on a narrow panel
    the labels run together ("3x10^1 4x10^1"); 1-2-5 ticks are far enough apart.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis, scale, limits in ((ax.xaxis, ax.get_xscale(), ax.get_xlim()), (ax.yaxis, ax.get_yscale(), ax.get_ylim())):
        if scale != "log":
            continue
        lo, hi = sorted(limits)
        if not (lo > 0 and np.isfinite(hi)):
            continue
        axis.set_minor_formatter(NullFormatter())
        decades = int(np.floor(np.log10(hi)) - np.ceil(np.log10(lo))) + 1  # powers of 10 inside the limits
        if np.log10(hi / lo) < 1.5 or decades < 2:
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
