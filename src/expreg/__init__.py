"""expreg: over-parameterised exponential regression.

The network of Gao, Mahadevan & Song (2023),
F(W, x) = s * sum_r a_r exp(<w_r, x>), trained by the paper's gradient
descent, with every quantity its proof uses. See MATH.md for the maths.

>>> import expreg
>>> X, y = expreg.make_dataset(8, 3, seed=0)
>>> net = expreg.ExpNet.init(3, 512, seed=0)
>>> result = expreg.train(net, X, y, epsilon=1e-2)
>>> result.converged
True
"""

from . import kernels, theory
from .data import load_dataset, make_dataset, sphere
from .errors import CheckpointError, ExpOverflowError, ExpregError, TrainingDivergedError
from .model import ExpNet
from .train import History, TrainResult, train
from .validation import InputOutsideUnitBallWarning

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ExpNet",
    "ExpOverflowError",
    "ExpregError",
    "History",
    "InputOutsideUnitBallWarning",
    "TrainResult",
    "TrainingDivergedError",
    "kernels",
    "load_dataset",
    "make_dataset",
    "sphere",
    "theory",
    "train",
]
