"""
Diabetes: the network, its infinite-width kernel and an MLP
===========================================================

scikit-learn's bundled diabetes data (442 patients, 10 features, disease
progression after one year). We compare the cross-validated root-mean-square
error of :class:`expreg.ExpRegressor` at a few widths with kernel ridge
regression on the exp NTK :math:`H^{\\mathrm{cts}}` (the network's
infinite-width limit), scikit-learn's ``MLPRegressor``, linear ridge and the
mean.

This is a quick version (3 folds, widths 32 and 128) that runs on its own
once downloaded; ``python examples/diabetes.py`` in the repository runs the
full comparison (5 folds, widths 64 to 4096).
"""

# %%
# The models
# ----------
# ``ExpRegressor`` trains the network by the paper's gradient descent with
# ``lr="auto"``; the step budget (100 steps) stops it early, because driving
# the training residual to epsilon would interpolate these noisy targets:
# the budget is the regulariser. It maps the inputs into the unit ball and
# centres and scales the targets itself. Kernel ridge gets the same two maps
# from ``UnitBallScaler`` and a standardised target (the kernel has no
# constant term, so uncentred targets would cost it most of its accuracy).
import warnings

import matplotlib.pyplot as plt
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_diabetes
from sklearn.dummy import DummyRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold, cross_validate
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from expreg import ExpRegressor, UnitBallScaler
from expreg.sklearn.kernels import NTKKernel

WIDTHS = (32, 128)
FOLDS = 3
models = {f"ExpRegressor m={m}": ExpRegressor(width=m, max_steps=100, random_state=0) for m in WIDTHS}
models["kernel ridge, exp NTK"] = TransformedTargetRegressor(
    make_pipeline(UnitBallScaler(), KernelRidge(alpha=1.0, kernel=NTKKernel())), transformer=StandardScaler()
)
models["MLPRegressor (100,)"] = TransformedTargetRegressor(
    make_pipeline(
        StandardScaler(),
        MLPRegressor(hidden_layer_sizes=(100,), alpha=1.0, max_iter=2000, early_stopping=True, random_state=0),
    ),
    transformer=StandardScaler(),
)
models["linear ridge"] = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
models["mean"] = DummyRegressor()
print("\n".join(models))

# %%
# Cross-validation
# ----------------
X, y = load_diabetes(return_X_y=True)
cv = KFold(FOLDS, shuffle=True, random_state=0)
rmse = {}
for name, model in models.items():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the step budget, not epsilon, ends each run
        scores = -cross_validate(model, X, y, cv=cv, scoring="neg_root_mean_squared_error")["test_score"]
    rmse[name] = (scores.mean(), scores.std())
    print(f"{name:<24} RMSE {scores.mean():6.2f} +- {scores.std():.2f}")

# %%
# Every model beats predicting the mean; the network and its kernel limit
# are close to each other. The legend sits beside the axes, and the axis
# covers every line, the mean's included.
fig, ax = plt.subplots(figsize=(8.0, 4.2))
net = [rmse[f"ExpRegressor m={m}"] for m in WIDTHS]
ax.errorbar(
    WIDTHS, [r[0] for r in net], yerr=[r[1] for r in net], marker="o", capsize=3, label="ExpRegressor (100 steps)"
)
for name, colour in (
    ("kernel ridge, exp NTK", "C1"),
    ("MLPRegressor (100,)", "C2"),
    ("linear ridge", "C3"),
    ("mean", "0.4"),
):
    ax.axhline(rmse[name][0], color=colour, linestyle="--", label=name)
ax.set_xscale("log", base=2)
ax.set_xticks(WIDTHS, [str(m) for m in WIDTHS])
ax.set_xlabel("width m")
ax.set_ylabel(f"RMSE ({FOLDS}-fold cross-validation)")
ax.set_title("Diabetes: exponential network vs its infinite-width kernel")
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
fig.tight_layout()
