"""README's Dask commands listen on loopback only, dashboards included (issue 11, item 7)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
GUIDE = Path(__file__).parents[1] / "docs" / "guide" / "scale_out.md"


def _option(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


@pytest.mark.parametrize("page", [README, GUIDE], ids=["README", "scale-out guide"])
def test_every_dask_command_binds_loopback_and_its_dashboard_too(page: Path) -> None:
    commands = [
        shlex.split(line.split("#")[0].rstrip(" &"))
        for line in page.read_text().splitlines()
        if line.lstrip().startswith(("dask scheduler", "dask worker", "dask-scheduler", "dask-worker"))
    ]
    assert len(commands) >= 2  # a scheduler and a worker
    for args in commands:
        assert _option(args, "--host") == "127.0.0.1", args
        assert (_option(args, "--dashboard-address") or "").startswith("127.0.0.1:"), args
        for a in args:  # and nothing else on a public interface
            assert "0.0.0.0" not in a, args
    assert "listen on the loopback interface only" in " ".join(page.read_text().split())
