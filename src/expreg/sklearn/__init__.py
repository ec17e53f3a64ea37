"""scikit-learn front ends (needs the ``sklearn`` extra).

``estimator``: ``ExpRegressor`` and ``UnitBallScaler``; ``kernels``: the
infinite-width kernels ``NTKKernel`` and ``NNGPKernel`` for scikit-learn's
kernel methods.
"""

from .estimator import ExpRegressor, UnitBallScaler

__all__ = ["ExpRegressor", "UnitBallScaler"]
