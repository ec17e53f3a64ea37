"""The ``expreg`` command.

Each group of subcommands lives in its own module with a ``register(app)``
function; this module assembles them, with ``--version`` and shell
completion (``--install-completion``, ``--show-completion``). Expected
errors become one error line (no traceback) and an exit code
(``_common.exit_code``: 0 done, 1 runtime error, 2 usage error, 3 not
converged, 130 interrupted). ``python -m expreg`` runs the same command.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

_COMMAND_MODULES = ("train_cmd", "theory_cmd", "distributed_cmd", "experiments_cmd", "calibrate_cmd", "width_cmd")

HELP = (
    "Over-parameterised exponential regression: train the network of Gao, Mahadevan & Song (2023) and test its "
    "theorem. Exit codes: 0 done, 1 runtime error, 2 usage error (bad command line or input), 3 `expreg train` "
    "stopped at --max-steps before --epsilon, 130 interrupted."
)


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
        help=HELP,
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # click's plain help: flags shown as flags (typer's rich help labels them <bool>)
    )

    def show_version(value: bool) -> None:
        if value:
            from ..core._version import __version__

            typer.echo(f"expreg {__version__}")
            raise typer.Exit()

    @app.callback()
    def root(
        version: bool = typer.Option(
            False, "--version", callback=show_version, is_eager=True, help="Print expreg's version and exit."
        ),
    ) -> None:
        """Over-parameterised exponential regression (Gao, Mahadevan & Song 2023)."""

    root.__doc__ = HELP
    for name in _COMMAND_MODULES:
        import_module(f"{__name__}.{name}").register(app)
    return app


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``expreg`` console script and of ``python -m expreg``."""
    app = build_app()
    try:
        app(args=argv, prog_name="expreg", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
