"""
Diabetes: the network, its infinite-width kernel and an MLP
===========================================================

scikit-learn's bundled diabetes data (442 patients, 10 features, disease
progression after one year). We compare the cross-validated root-mean-square
error of :class:`expreg.ExpRegressor` at a few widths with kernel ridge
regression on the exp NTK :math:`H^{\\mathrm{cts}}` (the network's
infinite-width limit), scikit-learn's ``MLPRegressor``, linear ridge and the
mean.

This is the quick version of ``examples/diabetes.py`` (3 folds, widths 32
and 128); ``python examples/diabetes.py`` runs the full comparison (5 folds,
widths 64 to 4096, about 30 s on two cores).
"""

# %%
# The models
# ----------
# ``ExpRegressor`` trains the network by the paper's gradient descent with
# ``lr="auto"``; the step budget (100 steps) stops it early, because driving
# the training residual to epsilon would interpolate these noisy targets.
# It maps the inputs into the unit ball and scales the targets itself.
from diabetes import QUICK_WIDTHS, draw, evaluate, models, table

print("\n".join(models(QUICK_WIDTHS)))

# %%
# Cross-validation
# ----------------
rows = evaluate(QUICK_WIDTHS, folds=3)
print(table(rows, folds=3))

# %%
# Every model beats predicting the mean; the network and its kernel limit
# are close to each other.
fig = draw(rows, QUICK_WIDTHS)
