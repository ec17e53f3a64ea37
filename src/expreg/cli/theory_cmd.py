"""``expreg theory``: the theorem's quantities for given n, lambda, delta."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ._common import user_errors


@user_errors
def theory_command(
    n: int = typer.Option(..., "--n", help="Number of data points."),
    lam: Optional[float] = typer.Option(None, "--lambda", help="lambda = lambda_min(H^cts). Omit it to compute it from --data or from synthetic data (--d, --seed)."),
    delta: float = typer.Option(0.1, "--delta", help="Failure probability."),
    epsilon: float = typer.Option(1e-3, "--epsilon", help="Target ||u - y||_2."),
    d: int = typer.Option(16, "--d", help="Dimension of synthetic data when lambda is computed."),
    seed: int = typer.Option(0, "--seed", help="Seed of synthetic data when lambda is computed."),
    data: Optional[Path] = typer.Option(None, "--data", help=".npz with X to compute lambda from."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Print B, R, the theorem's width, step size, iterations and movement bound (docs/theory.md section 5)."""
    from .. import data as data_mod
    from ..kernels import ntk_lambda
    from ..theory import theorem_quantities

    if lam is None:
        X = data_mod.load_dataset(data)[0] if data is not None else data_mod.sphere(n, d, seed=seed)
        lam = ntk_lambda(X)
        n = X.shape[0]
    q = theorem_quantities(n, lam, delta, epsilon)
    if json_out:
        typer.echo(json.dumps(q.as_dict()))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Theorem quantities: n = {n}, lambda = {lam:.6g}, delta = {delta}, epsilon = {epsilon}")
    for col in ("quantity", "value", "formula", "provenance"):
        table.add_column(col)
    from rich.markup import escape

    for row in q.rows():
        table.add_row(*(escape(cell) for cell in row))
    Console().print(table)
    Console().print("[derived]: rebuilt from the abstract and the analyses it names (docs/theory.md); [paper]: stated in the abstract.", markup=False)


def register(app: typer.Typer) -> None:
    app.command("theory")(theory_command)
