"""The ``expreg`` command.

Each group of subcommands lives in its own module with a ``register(app)``
function; this module assembles them and turns expected errors into one
error line and exit code 2 (no traceback).
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

_COMMAND_MODULES = ("train_cmd", "theory_cmd", "distributed_cmd", "experiments_cmd", "calibrate_cmd", "width_cmd")


def build_app() -> typer.Typer:
    """The typer application with every subcommand registered."""
    try:
        import typer
    except ImportError:  # pragma: no cover - depends on the environment
        sys.stderr.write(
            "error: the expreg command needs typer and rich; install them with `pip install 'expreg[cli]'`\n"
        )
        raise SystemExit(2) from None
    app = typer.Typer(
        name="expreg",
        help="Over-parameterised exponential regression: train the network of Gao, Mahadevan & Song (2023) and test its theorem.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for name in _COMMAND_MODULES:
        import_module(f"{__name__}.{name}").register(app)
    return app


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``expreg`` console script."""
    app = build_app()
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
