"""expreg's version, written here once: ``expreg.__version__``, the package metadata (pyproject.toml reads it) and ``expreg --version``."""

__version__ = "0.1.0"
