"""``expreg run``, ``expreg report``, ``expreg list``: the experiments of docs/theory.md section 6."""

from __future__ import annotations

import json
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
        "quick",
        "--preset",
        help="Every experiment has 'tiny' (seconds, for tests), 'quick' (minutes, for the demo) and 'full' (the README's "
        "numbers); width has more ('compare', 'large', ...). `expreg list` names every preset with its number of runs.",
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
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object (runs, paths, headline numbers)."),
) -> None:
    """Run an experiment (resuming: runs already in the table are skipped), then write the report."""
    from ..core.storage import check_writable
    from ..experiments import build_report, get_config, run_experiment

    jobs = _checked_jobs(jobs)
    check_writable(out, "--out", directory=True)
    cfg = get_config(experiment, preset=preset, config_file=config)
    result = run_experiment(experiment, cfg, out, jobs=jobs, scheduler=scheduler, show_progress=not (quiet or json_out))
    table = out / experiment / "results.parquet"
    html_path, md_path, summaries = build_report(out, fresh=[experiment])
    mine = [s for s in summaries if s["experiment"] == experiment]
    if json_out:
        typer.echo(
            json.dumps(
                {
                    "experiment": experiment,
                    "preset": preset,
                    "config_hash": cfg.config_hash,
                    "executed": result.executed,
                    "skipped": result.skipped,
                    "results": str(table.resolve()),
                    **_report_json(html_path, md_path, mine),
                }
            )
        )
        return
    typer.echo(
        f"{experiment}: {result.executed} runs done now, {result.skipped} already in the table "
        f"({table}, configuration {cfg.config_hash})"
    )
    _print_headlines(mine)
    typer.echo(f"report: {html_path.resolve()}")


def _report_json(html_path: Path, md_path: Path, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's paths and each experiment's headline numbers, for ``--json``."""
    return {
        "report": str(html_path.resolve()),
        "summary": str(md_path.resolve()),
        "experiments": [
            {
                "experiment": s["experiment"],
                "versioned_name": s["versioned_name"],
                "runs": s["runs"],
                "headline": s["headline"],
            }
            for s in summaries
        ],
    }


@user_errors
def report_command(
    directory: Path = typer.Argument(Path("results"), help="Results directory given to `expreg run --out`."),
    fresh: bool = typer.Option(
        True, "--fresh/--reuse", help="Re-analyse every experiment, or reuse summaries newer than their results."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object (paths, headline numbers)."),
) -> None:
    """Analyse every experiment under DIRECTORY: figures, report.html and report.md."""
    from ..experiments import build_report

    html_path, md_path, summaries = build_report(directory, fresh=fresh)
    if json_out:
        typer.echo(json.dumps(_report_json(html_path, md_path, summaries)))
        return
    _print_headlines(summaries)
    typer.echo(f"report: {html_path.resolve()}")
    typer.echo(f"summary: {md_path.resolve()}")


@user_errors
def list_command(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object: experiment -> description, presets."),
) -> None:
    """List the experiments, every preset of each and its number of runs."""
    from ..experiments import EXPERIMENTS, get_config, get_experiment, make_tasks

    listing = {}
    for name in EXPERIMENTS:
        module = get_experiment(name)
        runs = {p: len(make_tasks(name, get_config(name, p))) for p in module.PRESETS}
        listing[name] = {"description": module.description, "presets": runs}
    if json_out:
        typer.echo(json.dumps(listing))
        return
    for name, entry in listing.items():
        sizes = ", ".join(f"{p}: {k} runs" for p, k in entry["presets"].items())
        typer.echo(f"{name:12s} {entry['description']} [presets {sizes}]")


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("report")(report_command)
    app.command("list")(list_command)
