"""A Dask scheduler killed mid-sweep: the driver ends within its timeout with one line, finished rows kept (issue 19).

Real processes: ``dask scheduler`` and ``dask worker`` on 127.0.0.1, a driver
running ``run_experiment`` on them; the scheduler is killed once rows are on
disk. Every process is ended at exit, by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

import expreg
from expreg.experiments import ResultStore

BIN = Path(sys.executable).parent
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(Path(expreg.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
}
LOST_S = 5.0

DRIVER = """
import sys
from expreg.experiments import get_config, run_experiment
from expreg.experiments.dask_executor import DaskExecutor
from expreg.cli._common import runtime_message
address, out, config, lost = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
cfg = get_config("lazy", config_file=config)
try:
    run_experiment("lazy", cfg, out, show_progress=False,
                   executor_factory=lambda: DaskExecutor(address, lost_timeout_s=lost))
except Exception as exc:
    print("error:", runtime_message(exc), file=sys.stderr)
    sys.exit(1)
"""


def _wait_for(condition, what: str, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def test_a_lost_scheduler_ends_the_sweep_within_the_timeout_rows_kept(tmp_path: Path) -> None:
    started: list[subprocess.Popen] = []

    def start(*cmd: str) -> subprocess.Popen:
        proc = subprocess.Popen(list(cmd), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        started.append(proc)
        return proc

    scheduler_file = tmp_path / "scheduler.json"
    config = tmp_path / "sweep.toml"  # 240 short runs: long enough to be under way when the scheduler dies
    seeds = ", ".join(str(s) for s in range(40))
    config.write_text(f'experiment = "lazy"\npreset = "tiny"\nepsilon = 1e-12\nmax_steps = 1500\nseeds = [{seeds}]\n')
    out = tmp_path / "out"
    try:
        scheduler = start(
            str(BIN / "dask"),
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--dashboard-address",
            "127.0.0.1:0",
            "--scheduler-file",
            str(scheduler_file),
        )
        _wait_for(
            lambda: '"address"' in (scheduler_file.read_text() if scheduler_file.exists() else ""), "the scheduler"
        )
        address = json.loads(scheduler_file.read_text())["address"]
        start(
            str(BIN / "dask"),
            "worker",
            address,
            "--host",
            "127.0.0.1",
            "--dashboard-address",
            "127.0.0.1:0",
            "--nworkers",
            "1",
            "--nthreads",
            "1",
        )
        driver = start(sys.executable, "-c", DRIVER, address, str(out), str(config), str(LOST_S))
        parts = out / "lazy" / "parts"
        _wait_for(lambda: driver.poll() is not None or any(parts.glob("part-*.parquet")), "the first finished rows")
        assert driver.poll() is None, driver.communicate()
        scheduler.kill()
        killed_at = time.monotonic()
        _, err = driver.communicate(timeout=LOST_S + 60)
        waited = time.monotonic() - killed_at
    finally:
        for proc in started:  # the worker's own processes too
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(proc.pid).children(recursive=True):
                    child.kill()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert driver.returncode == 1 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: lost the Dask scheduler at {address} (no answer for {LOST_S:g} s)"), err
    assert waited < LOST_S + 45  # the timeout, the poll and the shutdown; not for ever
    assert len(ResultStore(out / "lazy").done_keys()) > 0  # finished rows kept


def test_a_closed_connection_in_an_event_loop_callback_is_logged_in_one_line() -> None:
    """Tornado's log of a failed loop callback (how distributed 2024.1 reported a gather cut by the lost
    scheduler, a traceback that reached the user in CI) keeps one line while a DaskExecutor is open, when the
    exception is a closed connection (here the real CommClosedError raised from a StreamClosedError); any other
    exception there keeps its traceback."""
    import logging

    from distributed.comm.core import CommClosedError
    from tornado.iostream import StreamClosedError

    from expreg.experiments import dask_executor

    def record(exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except BaseException:
            return logging.LogRecord(
                "tornado.application", logging.ERROR, __file__, 1, "Exception in callback %r", ("f",), sys.exc_info()
            )

    try:
        raise CommClosedError("in <TCP (closed) ConnectionPool.gather>: Stream is closed") from StreamClosedError()
    except CommClosedError as exc:
        lost = record(exc)
    other = record(ValueError("a bug"))
    flt = dask_executor._OneLineLogs(lost_only=True)
    assert flt.filter(lost) and flt.filter(other)
    text = logging.Formatter().format(lost)
    assert "Traceback" not in text and len(text.splitlines()) == 1
    assert (
        text == "Exception in callback 'f': CommClosedError: in <TCP (closed) ConnectionPool.gather>: Stream is closed"
    )
    assert "Traceback" in logging.Formatter().format(other)  # not a lost connection: left as it was
