"""torch.distributed launches checked before any rendezvous, and the loopback-only single-machine launch (issue 19).

Real rank processes (``python -m expreg.distributed`` with RANK / WORLD_SIZE,
as torchrun starts them, and a file:// rendezvous), each ended at exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from test_distributed import SMALL, _Ranks

import expreg

ENV = {
    **os.environ,
    "GLOO_SOCKET_IFNAME": "lo",
    "OMP_NUM_THREADS": "1",
    "PYTHONPATH": os.pathsep.join(map(str, [Path(expreg.__file__).parents[1], os.environ.get("PYTHONPATH", "")])),
}


def _one_rank(env: dict[str, str], *args: str, timeout: float = 60) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "expreg.distributed", *SMALL, "--m", "8", "--timeout", "30", *args],
        env={**ENV, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, " ".join(proc.stderr.split()), time.monotonic() - started


@pytest.mark.parametrize(
    "env, message",
    [
        ({"RANK": "5", "WORLD_SIZE": "2"}, "RANK=5 is outside 0..1 (WORLD_SIZE=2)"),
        ({"RANK": "-1", "WORLD_SIZE": "2"}, "RANK=-1 is outside 0..1"),
        ({"RANK": "0", "WORLD_SIZE": "0"}, "WORLD_SIZE=0 must be at least 1"),
    ],
)
def test_rank_and_world_size_are_checked_before_any_rendezvous(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    rc, err, seconds = _one_rank(env, "--init-method", f"file://{tmp_path}/rdzv")
    assert rc == 2 and err.startswith("error: ") and message in err and "Traceback" not in err, err
    assert seconds < 25  # at once, not after the 30 s timeout


def test_a_file_rendezvous_in_a_missing_directory_is_refused_at_once(tmp_path: Path) -> None:
    rc, err, seconds = _one_rank({"RANK": "0", "WORLD_SIZE": "2"}, "--init-method", f"file://{tmp_path}/nowhere/rdzv")
    assert rc == 2 and "does not exist" in err and "nowhere" in err and "Traceback" not in err, err
    assert seconds < 25


def test_ranks_that_see_different_checkpoint_directories_stop_in_one_line(tmp_path: Path) -> None:
    dirs = [tmp_path / f"rank{r}" for r in range(2)]
    for d in dirs:
        d.mkdir()
    args = [*SMALL, "--m", "8", "--checkpoint-dir", "ck", "--checkpoint-every", "2", "--timeout", "10"]
    with _Ranks(tmp_path, [args, args], cwds=dirs) as ranks:
        results = ranks.results()
    for rc, _out, err in results:
        assert rc != 0 and "Traceback" not in err and len(err) < 600, err
    assert any("not shared by every rank" in err for _, _, err in results), results


def _listening(pid: int) -> list[str]:
    proc = psutil.Process(pid)
    conns = proc.net_connections(kind="inet") if hasattr(proc, "net_connections") else proc.connections(kind="inet")
    return [c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN]


def test_the_documented_single_machine_launch_listens_on_loopback_only(tmp_path: Path) -> None:
    """The README's launch without torchrun (file rendezvous, GLOO_SOCKET_IFNAME=lo): no socket beyond 127.0.0.1."""
    args = [
        *("--n", "6", "--d", "3", "--m", "64", "--init", "gaussian", "--epsilon", "0"),
        *("--max-steps", "100000000", "--record-every", "0", "--log-every", "1", "--timeout", "60"),
    ]
    with _Ranks(tmp_path, [args, args]) as ranks:
        rank0 = ranks.procs[0]  # rank 0 logs the steps
        assert rank0.stderr is not None and rank0.stderr.readline().startswith("step 0")  # training has begun
        addresses = [ip for proc in ranks.procs for ip in _listening(proc.pid)]
    assert addresses and all(ip in ("127.0.0.1", "::1") for ip in addresses), addresses
