"""``expreg calibrate``: measure the NumPy backend's speed choices on this machine, or show the ones in use."""

from __future__ import annotations

import json
from typing import Any

import typer

from ._common import user_errors


@user_errors
def calibrate_command(
    show: bool = typer.Option(
        False,
        "--show",
        help="Print the choices in use (from the cache; measured first if there is none) instead of measuring again.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object: tuning, machine, cache file."),
) -> None:
    """Choose the exp kernel, GEMM library, block size and thread layout by measurement (cached per CPU and versions).

    EXPREG_CALIBRATE=0 turns calibration off (the fixed defaults); the cache
    lives in $XDG_CACHE_HOME/expreg (default ~/.cache/expreg).
    """
    from ..core import calibrate

    tuning = calibrate.current() if calibrate.disabled() or show else calibrate.recalibrate()
    identity = calibrate.machine_identity()
    report: dict[str, Any] = {
        "enabled": not calibrate.disabled(),
        "tuning": tuning.as_dict(),
        "machine": identity,
        "cache": str(calibrate.cache_path(identity)),
    }
    if json_out:
        typer.echo(json.dumps(report))
        return
    typer.echo(f"{identity['cpu']} ({', '.join(identity['isa']) or 'no ISA flags read'}; BLAS {_blas(identity)})")
    typer.echo(f"chosen: {tuning.describe()}")
    for name, seconds in sorted(tuning.seconds.items()):
        typer.echo(f"  {name:<32} {1e3 * seconds:9.3f} ms")
    typer.echo(f"cache: {report['cache']}" + ("" if report["enabled"] else " (not used: EXPREG_CALIBRATE=0)"))


def _blas(identity: dict[str, Any]) -> str:
    libs = identity.get("blas") or []
    return ", ".join(f"{b.get('internal_api')} {b.get('version')} {b.get('architecture')}" for b in libs) or "unknown"


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_command)
