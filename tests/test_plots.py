"""The figure helpers (expreg.experiments.plots) make readable figures, judged on the rendered geometry.

Truth: matplotlib's renderer extents of the drawn artists, after ``save``:
neighbouring titles do not intersect, a legend does not intersect its axes
(so it covers no data), tick labels on an axis do not intersect, and a log
axis with less than two powers of ten in view still has at least two labels.
"""

from __future__ import annotations

import stat

import numpy as np

from expreg.experiments import plots


def _disjoint(boxes) -> bool:
    return all(not a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def test_saved_figures_have_no_overlapping_text_and_legends_outside(tmp_path) -> None:
    fig, axes = plots.new_figure(ncols=3)
    long = "op: over windows [n, 4 n] (windows with an unbounded interval left out)"
    for k, ax in enumerate(axes[0]):
        x = np.array([16.0, 24, 32, 48]) * (1 + k)
        for j in range(5):
            ax.plot(x, (j + 1) * x**0.5, marker="o", label=f"series {j}, d={8 * 2**j}")
        plots.log_axes(ax, "n (window centre)", "local exponent", f"{long} panel {k}")
    plots.save(fig, tmp_path, "f")
    renderer = fig.canvas.get_renderer() if hasattr(fig.canvas, "get_renderer") else fig._get_renderer()
    titles = [ax.title.get_window_extent(renderer) for ax in fig.axes]
    assert _disjoint(titles)
    for ax in fig.axes:
        legend = ax.get_legend()
        assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t for t in axis.get_ticklabels(which="both") if t.get_text() and t.get_visible()]
            lo, hi = sorted(axis.get_view_interval())
            labels = [
                t for t in labels if lo <= (t.get_position()[0] if axis is ax.xaxis else t.get_position()[1]) <= hi
            ]
            assert len(labels) >= 2, [t.get_text() for t in labels]
            assert _disjoint([t.get_window_extent(renderer) for t in labels]), [t.get_text() for t in labels]
    for ext in ("png", "svg"):
        assert stat.S_IMODE((tmp_path / f"f.{ext}").stat().st_mode) & 0o044 == 0o044  # readable by others (umask 022)
