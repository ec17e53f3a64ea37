"""Sweeps started from Python scripts (docs/guide/experiments.md, "From Python"), run as real processes.

Truth: what the interpreter does with a script file, with ``python -`` and
with ``if __name__ == "__main__":``; whether any child process existed is
read from multiprocessing itself (its forkserver's pid) and from /proc.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")

SWEEP = """\
import multiprocessing.forkserver as fs
from expreg.experiments import get_config, run_experiment
cfg = get_config("convergence", "quick", widths=[64, 128], seeds=[0])
"""
CALL = 'result = run_experiment("convergence", cfg, {out!r}, jobs={jobs}, show_progress=False, max_retries=0)\n'
REPORT = "print('executed', result.executed, 'forkserver', fs._forkserver._forkserver_pid is not None)\n"


def _run(args: list[str], tmp_path: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, *args], input=stdin, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )


def _script(tmp_path: Path, jobs: int, guarded: bool) -> str:
    call = CALL.format(out=str(tmp_path / "out"), jobs=jobs) + REPORT
    if guarded:
        call = 'if __name__ == "__main__":\n' + textwrap.indent(call, "    ")
    return SWEEP + call


def _run_unguarded(tmp_path, jobs, how):
    """The sweep script without a main guard, run as a file or fed to ``python -``."""
    source = _script(tmp_path, jobs=jobs, guarded=False)
    if how == "file":
        (tmp_path / "sweep.py").write_text(source)
        return _run(["sweep.py"], tmp_path)
    return _run(["-"], tmp_path, stdin=source)


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_jobs_1_runs_in_this_process_without_a_guard(tmp_path, how):
    proc = _run_unguarded(tmp_path, 1, how)
    assert proc.returncode == 0, proc.stderr
    # every run done, and no forkserver (so no worker) was ever started
    assert proc.stdout.split() == ["executed", "4", "forkserver", "False"], proc.stdout


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_a_pool_without_a_guard_stops_at_once_with_one_line(tmp_path, how):
    proc = _run_unguarded(tmp_path, 2, how)
    assert proc.returncode == 1 and proc.stdout == ""
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("expreg.experiments.inprocess.PoolStartError: ")
    assert 'if __name__ == "__main__":' in last and "jobs=1" in last
    assert not (tmp_path / "out" / "convergence" / "results.parquet").exists()  # nothing ran


def test_a_pool_under_the_guard_runs(tmp_path):
    (tmp_path / "sweep.py").write_text(_script(tmp_path, jobs=2, guarded=True))
    proc = _run(["sweep.py"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["executed", "4", "forkserver", "True"], proc.stdout


def test_guard_detection_reads_the_script(tmp_path):
    from expreg.experiments.inprocess import _guarded_lines

    source = 'import x\nif __name__ == "__main__":\n    a = 1\n    b = 2\nif "__main__" == __name__:\n    c = 3\nif x:\n    d = 4\n'
    assert _guarded_lines(source) == [(3, 4), (6, 6)]
