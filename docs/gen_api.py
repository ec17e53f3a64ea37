"""Write the API reference page (``docs/api/index.rst``) from the public names of expreg.

Every public name is listed through its ``expreg.<module>.<name>`` path (or
``expreg.<name>`` for the top level), so the pages survive a reorganisation of
the modules behind those names. A name is public when it is in the module's
``__all__`` or, for a module without one, when it is a class or function
defined in that module whose name does not start with an underscore.

Run by ``docs/conf.py`` at build time; ``python docs/gen_api.py`` prints the page.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from types import ModuleType

#: (title, module path, one-line description) of each documented submodule, in page order.
SUBMODULES: list[tuple[str, str, str]] = [
    (
        "Kernels",
        "expreg.core.kernels",
        "Closed-form infinite-width kernels, the finite-width NTK, eigenvalues, the kernel-predicted trajectory (theory section 3-4).",
    ),
    (
        "Predictions",
        "expreg.core.predict",
        "Outputs of the linearised network at any time or step of gradient descent, on train and test points (theory section 4).",
    ),
    (
        "Eigenvalues",
        "expreg.core.eigen",
        "Extreme eigenvalues, spectral norms and the two lazy-regime criteria (theory section 3-4).",
    ),
    (
        "Nested-width scan",
        "expreg.engine.scan",
        "H^dis at every width of a grid in one pass over the neurons (theory section 6).",
    ),
    (
        "Softmax features",
        "expreg.core.softmax_features",
        "The softmax kernel exp(<q, k>) and its positive random features, i.i.d. and orthogonal (theory section 7).",
    ),
    (
        "Nested-feature scan",
        "expreg.engine.feature_scan",
        "The attention estimate at every feature count of a grid in one pass over the features (theory section 7).",
    ),
    (
        "Theorem calculator",
        "expreg.core.theory",
        "The theorem's width, step size, iterations and bounds, each tagged [paper] or [derived] (theory section 4-5).",
    ),
    ("Data", "expreg.core.data", "Synthetic data (the unit sphere, the equicorrelated family) and ``.npz`` loading."),
    (
        "Initialisation",
        "expreg.core.initialisation",
        "The initial weights, drawn neuron by neuron so that widths are nested (theory section 1).",
    ),
    (
        "scikit-learn kernels",
        "expreg.sklearn.kernels",
        "H^cts and the NNGP kernel as scikit-learn ``Kernel`` objects (needs ``expreg[sklearn]``).",
    ),
    (
        "Random streams",
        "expreg.core.streams",
        "One independent random stream per kind of random object (theory section 1).",
    ),
    (
        "Experiments",
        "expreg.experiments",
        "Configurations, sweeps, result tables and the report (needs ``expreg[experiments]``).",
    ),
    (
        "Width thresholds",
        "expreg.experiments.thresholds",
        "Per-seed threshold intervals from a scan over widths, censoring, when to stop (theory section 6).",
    ),
    (
        "Width rules",
        "expreg.experiments.width_rules",
        "The width experiment's criteria (lambda/4 the proof's), grid and stop rule, declared once (theory section 6).",
    ),
    (
        "Width laws",
        "expreg.experiments.width_laws",
        "Candidate laws for the width threshold and the Bernstein variance proxy in closed form (theory section 6).",
    ),
    (
        "Laws by prediction",
        "expreg.experiments.width_predict",
        "Candidate laws fitted on some designs and scored on designs they did not see (theory section 6).",
    ),
    (
        "Width for your data",
        "expreg.experiments.data_width",
        "The width thresholds of one data set over network seeds: ``expreg width --data`` (theory section 6).",
    ),
    (
        "Censored regression",
        "expreg.experiments.censored",
        "Censored lognormal regression of thresholds, profile-likelihood intervals, local exponents (theory section 6).",
    ),
    (
        "Width-sharded training",
        "expreg.distributed.sharded",
        "Gradient descent with the neurons split over torch.distributed ranks (needs ``expreg[torch]``).",
    ),
    (
        "Sharded checkpoints",
        "expreg.distributed.checkpoint",
        "Checkpoints of a width-sharded run, readable with any number of ranks.",
    ),
]

TOP_GROUPS: list[tuple[str, list[str]]] = [
    ("Network and training", ["ExpNet", "train", "TrainResult", "History"]),
    ("Data and results", ["make_dataset", "sphere", "load_dataset", "check_points_distinct", "load_results"]),
    ("scikit-learn estimator", ["ExpRegressor", "UnitBallScaler"]),
    (
        "Errors and warnings",
        [
            "ExpregError",
            "ExpOverflowError",
            "TrainingDivergedError",
            "CheckpointError",
            "CoincidentPointsError",
            "InputOutsideUnitBallWarning",
            "CoincidentPointsWarning",
        ],
    ),
]


def _is_documentable(obj: object) -> bool:
    return inspect.isclass(obj) or inspect.isfunction(obj)


def top_level_names() -> list[str]:
    """Public names of ``expreg`` itself (``__all__`` and the lazily imported optional names), modules excluded."""
    import expreg

    names = list(expreg.__all__) + list(getattr(expreg, "_OPTIONAL", {}))
    return [n for n in dict.fromkeys(names) if not isinstance(getattr(expreg, n), ModuleType)]


def _module(path: str) -> ModuleType:
    """The module at ``path``: imported, or reached as attributes from ``expreg`` (a re-exported module)."""
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError:
        obj: object = importlib.import_module("expreg")
        for part in path.split(".")[1:]:
            obj = getattr(obj, part)
        if not isinstance(obj, ModuleType):
            raise TypeError(f"{path} is not a module; update SUBMODULES in docs/gen_api.py") from None
        return obj


def module_names(path: str) -> list[str]:
    """Public names of the module at ``path`` (see the module docstring)."""
    mod = _module(path)
    if hasattr(mod, "__all__"):
        names = [n for n in mod.__all__ if _is_documentable(getattr(mod, n))]
    else:
        names = [
            n
            for n, obj in vars(mod).items()
            if not n.startswith("_") and _is_documentable(obj) and getattr(obj, "__module__", None) == mod.__name__
        ]
    return sorted(names, key=str.lower)


def _module_directive(path: str) -> str:
    """The module's own docstring (``automodule``), or a bare target when ``path`` is only an attribute of expreg."""
    try:
        importlib.import_module(path)
    except ModuleNotFoundError:
        return f".. py:module:: {path}\n"
    return f".. automodule:: {path}\n   :no-members:\n"


def _autosummary(names: list[str]) -> str:
    return (
        ".. autosummary::\n   :toctree: generated\n   :nosignatures:\n\n" + "".join(f"   {n}\n" for n in names) + "\n"
    )


def render() -> str:
    """The reStructuredText of the API page."""
    top = top_level_names()
    grouped = {n for _, names in TOP_GROUPS for n in names}
    groups = [(t, [n for n in names if n in top]) for t, names in TOP_GROUPS]
    rest = sorted(set(top) - grouped)
    if rest:
        groups.append(("Other", rest))
    out = [
        ".. This page is written by docs/gen_api.py at build time; edit that script, not this file.\n",
        "API reference\n=============\n",
        "Every public name of expreg, generated from its docstrings. The names below are importable "
        "from the paths shown; the top-level names are also available as ``expreg.<name>``.\n",
        "Top level: ``expreg``\n---------------------\n",
        ".. currentmodule:: expreg\n",
    ]
    for title, names in groups:
        if names:
            out.append(f"{title}\n{'~' * len(title)}\n")
            out.append(_autosummary(names))
    for title, path, blurb in SUBMODULES:
        heading = f"{title}: ``{path}``"
        out.append(f"{heading}\n{'-' * len(heading)}\n")
        out.append(_module_directive(path))
        out.append(f".. currentmodule:: {path}\n")
        out.append(f"{blurb}\n")
        own, at_top = section_names(path)
        if at_top:
            out.append(
                "Also here, documented once under the top level: "
                + ", ".join(f":py:obj:`expreg.{n}`" for n in at_top)
                + ".\n"
            )
        if own:
            out.append(_autosummary(own))
    return "\n".join(out)


def section_names(path: str) -> tuple[list[str], list[str]]:
    """(names the module's section lists, names it leaves to the top level because ``expreg.<name>`` is the same object).

    Each object is documented once: a function re-exported as ``expreg.make_dataset``
    is not listed again under ``expreg.core.data``.
    """
    import expreg

    top = {id(getattr(expreg, n)) for n in top_level_names()}
    mod = _module(path)
    names = module_names(path)
    return [n for n in names if id(getattr(mod, n)) not in top], [n for n in names if id(getattr(mod, n)) in top]


def write(path: str | Path) -> None:
    """Write the page to ``path`` if its text changed (so Sphinx does not rebuild it needlessly).

    Stubs that autosummary generated earlier (``generated/``) for names the
    page no longer lists are deleted, so pages of names that are gone do not linger.
    """
    path = Path(path)
    text = render()
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    listed = set(documented_names())
    for stub in (path.parent / "generated").glob("*.rst"):
        if stub.stem not in listed:
            stub.unlink()


def documented_names() -> list[str]:
    """The full dotted name of every entry of the page (the stems of autosummary's stub files)."""
    names = [f"expreg.{n}" for n in top_level_names()]
    for _, path, _ in SUBMODULES:
        names += [f"{path}.{n}" for n in section_names(path)[0]]
    return names


if __name__ == "__main__":
    sys.stdout.write(render())
