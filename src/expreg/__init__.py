"""expreg: over-parameterised exponential regression.

The network of Gao, Mahadevan & Song (2023),
F(W, x) = s * sum_r a_r exp(<w_r, x>), trained by the paper's gradient
descent, with every quantity its proof uses. See docs/theory.md for the maths.

>>> import expreg
>>> X, y = expreg.make_dataset(8, 3, seed=0)
>>> net = expreg.ExpNet.init(3, 512, seed=0)
>>> result = expreg.train(net, X, y, epsilon=1e-2)
>>> result.converged
True
"""

import typing as _typing

# the modules also reached as attributes: expreg.kernels.ntk(X), expreg.data.sphere(...), ...
from .core import data, eigen, kernels, predict, streams, theory  # noqa: F401 (data, streams: attributes outside __all__)
from .core._version import __version__ as __version__
from .core.data import load_dataset, make_dataset, sphere
from .core.errors import CheckpointError, CoincidentPointsError, ExpOverflowError, ExpregError, TrainingDivergedError
from .core.model import ExpNet
from .core.validation import CoincidentPointsWarning, InputOutsideUnitBallWarning, check_points_distinct
from .engine import scan
from .engine.options import TrainOptions
from .engine.train import History, TrainResult, train

__all__ = [
    "CheckpointError",
    "CoincidentPointsError",
    "CoincidentPointsWarning",
    "ExpNet",
    "ExpOverflowError",
    "ExpregError",
    "History",
    "InputOutsideUnitBallWarning",
    "TrainOptions",
    "TrainResult",
    "TrainingDivergedError",
    "check_points_distinct",
    "eigen",
    "kernels",
    "load_dataset",
    "make_dataset",
    "predict",
    "scan",
    "sphere",
    "theory",
    "train",
]

#: Names served by optional modules, imported on first use (the core needs numpy + scipy only):
#: name -> (module, extra, the packages of that extra a missing import may name, what to say is missing).
_SKLEARN = ("sklearn", "sklearn", ("sklearn",), "scikit-learn")
_OPTIONAL = {
    "ExpRegressor": _SKLEARN,
    "UnitBallScaler": _SKLEARN,
    "load_results": ("experiments.tidy", "experiments", ("pandas", "pyarrow", "pydantic"), "pandas and pyarrow"),
}


def __getattr__(name: str) -> _typing.Any:  # PEP 562: lazy access to the optional front ends
    if name in _OPTIONAL:
        module, extra, packages, what = _OPTIONAL[name]
        import importlib

        try:
            mod = importlib.import_module(f"{__name__}.{module}")
        except ImportError as exc:
            if exc.name is None or exc.name.split(".")[0] not in packages:
                raise
            raise ImportError(
                f"expreg.{name} needs {what}, which is not installed: pip install 'expreg[{extra}]'"
            ) from exc
        return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
