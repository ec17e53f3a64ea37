"""One line, never a traceback, for every CLI error (issue 19), through the console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__import__("expreg").__file__)))


def _cli(*args: str, timeout: float = 280) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("EXPREG_TRACEBACK", None)
    code = "import sys; from expreg.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.skipif(_cuda(), reason="the failing run is scan_device = 'cuda' on a machine without a GPU")
def test_a_run_that_raises_inside_a_sweep_is_one_line_naming_the_failures_file(tmp_path: Path) -> None:
    config = tmp_path / "cuda.toml"
    config.write_text('experiment = "width"\npreset = "tiny"\nns = [4, 8]\nseeds = [0]\nscan_device = "cuda"\n')
    out = tmp_path / "out"
    proc = _cli("run", "width", "--config", str(config), "--out", str(out), "--quiet", "--jobs", str(10**20))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("warning: --jobs 100000000000000000000 is more than the") and "usable cores" in lines[0]
    error = " ".join(lines[1:])
    assert error.startswith("error: 2 of 2 runs failed") and "torch.cuda.is_available() is False" in error
    listing = next((out / "width").glob("failures-*.json"))
    assert str(listing) in error.replace(" ", "") or listing.name in error
    failures = json.loads(listing.read_text())["failures"]
    assert len(failures) == 2 and all("device='cuda'" in v for v in failures.values())


def test_an_unexpected_error_is_one_line_with_exit_code_1(monkeypatch, capsys) -> None:
    import expreg.experiments as experiments
    from expreg.cli import main

    def boom(*args, **kwargs):
        raise RuntimeError("something broke\nsecond line")

    monkeypatch.setattr(experiments, "build_report", boom)
    assert main(["report", "nowhere"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: RuntimeError: something broke (set EXPREG_TRACEBACK=1 to see the traceback)"
