"""``expreg run``, ``expreg report``, ``expreg list``: the experiments of docs/theory.md section 6."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ._common import user_errors


def _print_headlines(summaries: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    for s in summaries:
        console.print(f"[bold]{escape(s['versioned_name'])}[/bold] ({s['runs']} runs)")
        for k, v in s["headline"].items():
            console.print(f"  {escape(k)} {escape(str(v))}", soft_wrap=True)


def _checked_jobs(jobs: int | None) -> int | None:
    """``--jobs`` at least 1, and at most the usable cores (more is capped, with a warning: no run would go faster)."""
    import warnings

    from ..experiments.runner import default_jobs

    if jobs is None:
        return None
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    cores = default_jobs()
    if jobs > cores:
        warnings.warn(f"--jobs {jobs} is more than the {cores} usable cores; using --jobs {cores}", stacklevel=2)
        return cores
    return jobs


@user_errors
def run_command(
    experiment: str = typer.Argument(..., help="Experiment name (see `expreg list`)."),
    preset: str = typer.Option(
        "quick", "--preset", help="'quick' (minutes, for the demo) or 'full' (the README's numbers)."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="TOML file of configuration fields (overrides the preset it names, default quick)."
    ),
    out: Path = typer.Option(
        Path("results"), "--out", help="Results directory: DIR/EXPERIMENT/results.parquet, figures, DIR/report.html."
    ),
    jobs: int | None = typer.Option(None, "--jobs", help="Worker processes (default: all cores)."),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="Run on an existing Dask cluster: its scheduler address, tcp://HOST:PORT (--jobs is then unused).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Run an experiment (resuming: runs already in the table are skipped), then write the report."""
    from ..core.storage import check_writable
    from ..experiments import build_report, get_config, run_experiment

    jobs = _checked_jobs(jobs)
    check_writable(out, "--out", directory=True)
    cfg = get_config(experiment, preset=preset, config_file=config)
    result = run_experiment(experiment, cfg, out, jobs=jobs, scheduler=scheduler, show_progress=not quiet)
    typer.echo(
        f"{experiment}: {result.executed} runs done now, {result.skipped} already in the table "
        f"({out / experiment / 'results.parquet'}, configuration {cfg.config_hash})"
    )
    html_path, _md_path, summaries = build_report(out, fresh=[experiment])
    _print_headlines([s for s in summaries if s["experiment"] == experiment])
    typer.echo(f"report: {html_path.resolve()}")


@user_errors
def report_command(
    directory: Path = typer.Argument(Path("results"), help="Results directory given to `expreg run --out`."),
    fresh: bool = typer.Option(
        True, "--fresh/--reuse", help="Re-analyse every experiment, or reuse summaries newer than their results."
    ),
) -> None:
    """Analyse every experiment under DIRECTORY: figures, report.html and report.md."""
    from ..experiments import build_report

    html_path, md_path, summaries = build_report(directory, fresh=fresh)
    _print_headlines(summaries)
    typer.echo(f"report: {html_path.resolve()}")
    typer.echo(f"summary: {md_path.resolve()}")


@user_errors
def list_command() -> None:
    """List the experiments, their presets and their sizes."""
    from ..experiments import EXPERIMENTS, get_config, get_experiment, make_tasks

    for name in EXPERIMENTS:
        module = get_experiment(name)
        sizes = ", ".join(f"{p}: {len(make_tasks(name, get_config(name, p)))} runs" for p in ("quick", "full"))
        typer.echo(f"{name:12s} {module.description} [{sizes}]")


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("report")(report_command)
    app.command("list")(list_command)
