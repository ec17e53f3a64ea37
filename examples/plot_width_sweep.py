"""
How wide is wide enough? A width sweep on tiny n
================================================

The theorem asks for :math:`m = n^{2+o(1)}` neurons. Here we measure, for a
few small :math:`n`, the smallest width at which the kernel criterion of the
proof holds at initialisation,

.. math::

    \\lVert H^{\\mathrm{dis}}(W(0)) - H^{\\mathrm{cts}} \\rVert_{\\mathrm{op}} \\le \\lambda / 2,

and the smallest width at which gradient descent reaches
:math:`\\lVert u - y \\rVert_2 \\le \\epsilon`. It is a miniature of the
``width`` experiment (``expreg run width``), small enough to run in seconds;
its numbers are far too few to fit an exponent.
"""

# %%
# Nested widths
# -------------
# Neuron :math:`r` depends only on the seed and :math:`r`, so the first
# :math:`m'` neurons of a width-:math:`m` network are the width-:math:`m'`
# network: scanning widths is scanning prefixes of one network.
import matplotlib.pyplot as plt
import numpy as np

import expreg
from expreg import kernels

d, seeds = 16, [0, 1, 2]
ns = [4, 8, 16]
widths = [2**k for k in range(1, 18)]  # 2 .. 131072: the cap


def kernel_passes(X, net_seed):
    """Pass/fail of ||H^dis(W(0)) - H^cts|| <= lambda/2 at every width of the grid."""
    H = kernels.ntk(X)
    lam = kernels.lambda_min(H)
    out = []
    for m in widths:
        net = expreg.ExpNet.init(d, m, seed=net_seed)
        H_dis = kernels.empirical_ntk(net, X, average=True)
        out.append(kernels.operator_norm(H_dis - H) <= lam / 2)
    return np.array(out)


# %%
# The threshold of one seed is an interval
# ----------------------------------------
# Passing need not be monotone in :math:`m` (the exponential's features are
# heavy-tailed), so each seed's threshold is recorded as an interval: the
# earliest passing width and the width from which every larger one passes.
def interval(passes):
    """(earliest pass, stable pass) on the grid; the stable pass is inf when the cap fails (right-censored)."""
    first = widths[int(np.argmax(passes))] if passes.any() else np.inf
    if not passes[-1]:
        return first, np.inf
    failing = np.flatnonzero(~passes)
    return first, widths[failing[-1] + 1] if failing.size else widths[0]


lazy = {}
for n in ns:
    for s in seeds:
        X, y = expreg.make_dataset(n, d, seed=s)
        lazy[n, s] = interval(kernel_passes(X, net_seed=1000 + s))
        lo, hi = lazy[n, s]
        shown = f"[{lo:g}, {hi:g}]" if np.isfinite(hi) else f"> {widths[-1]} (right-censored)"
        print(f"n = {n:2d}, seed {s}: kernel criterion holds from m in {shown}")


# %%
# Gradient descent converges far earlier
# --------------------------------------
# The smallest grid width at which gradient descent (``lr="auto"``) reaches
# :math:`\epsilon = 10^{-2}` within 2000 steps; a run that diverges counts as
# a failure at that width. A seed that converges at the smallest grid width
# (:math:`m = 2`) only tells us that its threshold is at most 2.
def converges(X, y, m, net_seed):
    net = expreg.ExpNet.init(d, m, seed=net_seed)
    try:
        return expreg.train(net, X, y, epsilon=1e-2, max_steps=2000, record_every=0, track_movement=False).converged
    except expreg.TrainingDivergedError:
        return False


conv = {}
for n in ns:
    for s in seeds:
        X, y = expreg.make_dataset(n, d, seed=s)
        conv[n, s] = next((m for m in widths if converges(X, y, m, 1000 + s)), np.inf)
    print(f"n = {n:2d}: GD reaches epsilon from m = {[conv[n, s] for s in seeds]}")

# %%
# The figure
# ----------
# Each bar is one seed's interval for the kernel criterion; the dots are the
# widths at which gradient descent first converged. The dotted line has the
# theorem's slope 2. The ``width`` experiment does this with many seeds, a
# finer grid, a censored regression and larger :math:`n`
# (:doc:`/theory`, section 6).
fig, ax = plt.subplots(figsize=(6.4, 4.2))
for i, s in enumerate(seeds):
    x = np.array(ns) * (1 + 0.06 * (i - 1))
    cap = widths[-1]
    lo = np.array([min(lazy[n, s][0], cap) for n in ns])  # a right-censored seed is drawn at the cap
    hi = np.array([min(lazy[n, s][1], cap) for n in ns])
    ax.vlines(x, lo, hi, color="C0", lw=3, label="kernel criterion: [first, stable]" if i == 0 else None)
    ax.scatter(x, lo, color="C0", s=12)
    ax.scatter(x, [conv[n, s] for n in ns], color="C1", marker="s", label="GD reaches epsilon" if i == 0 else None)
ref = np.array([ns[0], ns[-1]], dtype=float)
ax.plot(ref, min(v[0] for v in lazy.values()) * (ref / ref[0]) ** 2, "k:", label="slope 2 (theorem)")
ax.set(xscale="log", yscale="log", xlabel="n (data points)", ylabel="width m", title=f"d = {d}, {len(seeds)} seeds")
ax.legend(fontsize=8)
fig.tight_layout()
