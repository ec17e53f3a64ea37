"""Helpers shared by the subcommand modules: error reporting and consoles."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.errors import ExpregError

if TYPE_CHECKING:
    from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])

#: Exceptions that are the user's to fix: shown as one line. OSError covers every file-system
#: error (a full disk, a read-only or missing directory); MemoryError a run or file too large for the machine.
USER_ERRORS = (ValueError, TypeError, OSError, MemoryError, OverflowError, FloatingPointError, ExpregError, ImportError)

#: The exit codes of every command (README "Command line"): 0 done; 1 the work failed at run time (a diverged
#: run, a file that cannot be written, too little memory); 2 usage: the command line or the input it names is
#: wrong (click's own code for a bad command line; our checks raise ValueError or TypeError); 3 ``expreg train``
#: or ``expreg distributed`` stopped at --max-steps before --epsilon (``exit_unless_converged``); 130 interrupted.
EXIT_RUNTIME, EXIT_USAGE, EXIT_NOT_CONVERGED, EXIT_INTERRUPTED = 1, 2, 3, 130


#: Errors that mean the command line, or a file it names, is wrong: exit code 2.
USAGE_ERRORS = (ValueError, TypeError, FileNotFoundError, IsADirectoryError, NotADirectoryError)


def exit_code(exc: BaseException) -> int:
    """2 for a bad command line or input (``USAGE_ERRORS``), 1 for anything that failed at run time."""
    return EXIT_USAGE if isinstance(exc, USAGE_ERRORS) else EXIT_RUNTIME


#: Exit code of a runtime error (not the user's input: a run that raised, a lost cluster); usage errors exit 2.
RUNTIME_EXIT = 1


#: Runtime errors whose message is already the whole story (it says what was saved and where the details are).
SELF_EXPLAINING = ("SweepError", "SchedulerLostError")


def runtime_message(exc: BaseException) -> str:
    """One line for a runtime error: its first line, with its type unless it explains itself.

    ``EXPREG_TRACEBACK=1`` in the environment makes the command re-raise
    instead (for a bug report).
    """
    import os

    if os.environ.get("EXPREG_TRACEBACK"):
        raise exc
    lines = str(exc).strip().splitlines()
    head = lines[0] if lines else "(no message)"
    if type(exc).__name__ in SELF_EXPLAINING:
        return head
    return f"{type(exc).__name__}: {head} (set EXPREG_TRACEBACK=1 to see the traceback)"


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def user_errors(fn: F) -> F:
    """Decorator: ``error: ...`` on one line of stderr, never a traceback; warnings as one line.

    Exit codes (``exit_code``): 2 for a bad command line or input (``USAGE_ERRORS``), 1 for anything that
    failed at run time (a diverged run, a path that cannot be written, a run inside a sweep that raised,
    a lost cluster: ``RUNTIME_EXIT``), 130 for an interrupt.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import typer
        from rich.markup import escape

        def show(message: Any, category: Any, filename: Any, lineno: Any, file: Any = None, line: Any = None) -> None:
            err_console().print(f"[yellow]warning:[/yellow] {escape(str(message))}", markup=True, soft_wrap=True)

        with warnings.catch_warnings():
            warnings.showwarning = show
            try:
                return fn(*args, **kwargs)
            except USER_ERRORS as exc:
                text = str(exc) or (
                    "out of memory; use a smaller --m or --n, or float32"
                    if isinstance(exc, MemoryError)
                    else type(exc).__name__
                )
                err_console().print(f"[red]error:[/red] {escape(text)}", markup=True, soft_wrap=True)
                raise typer.Exit(exit_code(exc)) from None
            except typer.Exit:  # a command's own exit code (expreg train's 3 when it stops before epsilon)
                raise
            except Exception as exc:  # anything else (a sweep's failed run, a lost cluster): a runtime error
                err_console().print(f"[red]error:[/red] {escape(runtime_message(exc))}", markup=True, soft_wrap=True)
                raise typer.Exit(RUNTIME_EXIT) from None
            except KeyboardInterrupt as exc:  # a sweep's SweepInterrupted says what was saved
                message = (
                    str(exc)
                    or "interrupted; a run with --checkpoint resumes when started again with the same arguments"
                )
                err_console().print(f"[red]error:[/red] {escape(message)}", markup=True, soft_wrap=True)
                raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def print_summary(title: str, summary: dict[str, Any]) -> None:
    """Print a run's summary as a two-column table on stdout (floats to 6 significant digits)."""
    import math

    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    for k, v in summary.items():
        table.add_row(k, f"{v:.6g}" if isinstance(v, float) and math.isfinite(v) else str(v))
    Console().print(table)


def exit_unless_converged(result: Any, max_steps: int, epsilon: float, allow: bool, *, speak: bool = True) -> None:
    """Exit with ``EXIT_NOT_CONVERGED`` when ``max_steps`` ended the run before ``epsilon`` (unless ``allow``,
    the command's --allow-unconverged), saying why on stderr when ``speak`` (rank 0 of a distributed run)."""
    if result.converged or allow:
        return
    import typer

    if speak:
        err_console().print(
            f"stopped at --max-steps {max_steps} with ||u - y|| = {result.final_residual:.4g} > --epsilon {epsilon:g}; "
            f"raise --max-steps or --m, or pass --allow-unconverged to exit 0 (exit code {EXIT_NOT_CONVERGED})",
            markup=False,
            soft_wrap=True,
        )
    raise typer.Exit(EXIT_NOT_CONVERGED)
