"""Sweeps started from Python: the in-process executor (``jobs=1``) and the check before a pool starts.

A local pool's workers are started by multiprocessing's *forkserver* (or
*spawn*), which imports the caller's main script in every worker so that
functions defined there can be found. A script that calls ``run_experiment``
at its top level, outside ``if __name__ == "__main__":``, would then start
the sweep again in every worker, and a script read from standard input
(``python -``) cannot be imported at all: either way the workers die and
the sweep fails after its retries. ``check_pool_can_start`` recognises both
cases before any worker starts and says what to change in one line.
Notebooks and interactive sessions have no main file: their pools work.
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from ..core.errors import ExpregError

T = TypeVar("T")

__all__ = ["InProcessExecutor", "PoolStartError", "check_pool_can_start"]


class PoolStartError(ExpregError, RuntimeError):
    """A local process pool cannot start from where the sweep was called; nothing has run."""


class InProcessExecutor(Executor):
    """Runs each submitted call at once, in the calling process and thread (``jobs=1``: no pool, no worker).

    ``submit`` returns a future that is already done: with the call's result,
    or with the exception it raised (KeyboardInterrupt and SystemExit
    propagate, so Ctrl-C stops the sweep as it would a pool's).
    """

    workers = 1

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


def _guarded_lines(source: str) -> list[tuple[int, int]]:
    """(first, last) line of each ``if __name__ == "__main__":`` body at a module's top level."""
    spans = []
    for node in ast.parse(source).body:
        if not isinstance(node, ast.If):
            continue
        test = node.test
        if (
            isinstance(test, ast.Compare)
            and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq)
            and {ast.unparse(test.left), ast.unparse(test.comparators[0])} in ({"__name__", "'__main__'"},)
        ):
            spans.append((node.body[0].lineno, node.end_lineno or node.body[-1].lineno))
    return spans


def _main_module_frame(frame: FrameType | None) -> FrameType | None:
    """The outermost frame running the top-level code of ``__main__``, if the call came through one."""
    main_globals = getattr(sys.modules.get("__main__"), "__dict__", None)
    found = None
    while frame is not None:
        if frame.f_globals is main_globals and frame.f_code.co_name == "<module>":
            found = frame
        frame = frame.f_back
    return found


def check_pool_can_start(jobs: int, frame: FrameType | None = None) -> None:
    """Raise ``PoolStartError`` (one line) if a process pool's workers would re-run or fail to import the main script.

    ``frame`` is where to start looking up the stack (default: the caller's).
    """
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if main is None or main_file is None or getattr(getattr(main, "__spec__", None), "name", None):
        return  # a notebook, the interactive prompt, or `python -m module`: workers import nothing of the caller
    fix = f"or pass jobs=1 to run the sweep in this process (the pool asked for {jobs} workers)"
    path = Path(main_file)
    if not path.is_file():
        raise PoolStartError(
            f"a process pool cannot start from a script read from {main_file!r} (its workers import the main script, "
            f'and this one is not a file): save it to a file and put the sweep under `if __name__ == "__main__":`, {fix}'
        )
    top = _main_module_frame(frame if frame is not None else sys._getframe(1))
    if top is None:
        return  # called from a function that the script's top level did not call (a thread, a callback)
    try:
        spans = _guarded_lines(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return  # cannot tell: let the pool try
    if not any(lo <= top.f_lineno <= hi for lo, hi in spans):
        where = f"{os.path.basename(main_file)}, line {top.f_lineno}"
        raise PoolStartError(
            f'the sweep was started at the top level of {where}, outside `if __name__ == "__main__":`, and every pool '
            f'worker would run that script again: put the call under `if __name__ == "__main__":`, {fix}'
        )
