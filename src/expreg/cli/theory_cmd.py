"""``expreg theory``: the theorem's quantities for given n, lambda, delta."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from ._common import user_errors


@user_errors
def theory_command(
    n: int | None = typer.Option(
        None, "--n", help="Number of data points (needed unless --data gives them; checked against --data)."
    ),
    lam: float | None = typer.Option(
        None,
        "--lambda",
        help="lambda = lambda_min(H^cts). Omit it to compute it from --data or from synthetic data (--d, --seed).",
    ),
    delta: float = typer.Option(0.1, "--delta", help="Failure probability."),
    epsilon: float = typer.Option(1e-3, "--epsilon", help="Target ||u - y||_2."),
    d: int | None = typer.Option(
        None, "--d", help="Dimension of synthetic data when lambda is computed [default: 16]; checked against --data."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of synthetic data when lambda is computed."),
    data: Path | None = typer.Option(None, "--data", help=".npz with X to compute lambda from."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Print B, R, the theorem's width, step size, iterations and movement bound (docs/theory.md section 5)."""
    from ..core.theory import theorem_quantities

    n, lam = _n_and_lambda(n, lam, d, seed, data)
    q = theorem_quantities(n, lam, delta, epsilon)
    if json_out:
        typer.echo(json.dumps(q.as_dict()))
        return
    _print_table(q, f"Theorem quantities: n = {n}, lambda = {lam:.6g}, delta = {delta}, epsilon = {epsilon}")


def _n_and_lambda(n: int | None, lam: float | None, d: int | None, seed: int, data: Path | None) -> tuple[int, float]:
    """n and lambda as given, or lambda_min(H^cts) of --data or of synthetic data (its n checked against --n)."""
    from ..core import data as data_mod
    from ..core.kernels import ntk_lambda
    from ..core.resources import check_fits
    from ..core.theory import check_lambda
    from ..core.validation import check_points_distinct, check_sphere_sample

    if lam is not None:
        check_lambda(lam, "--lambda")
    if lam is not None and data is not None:
        raise ValueError("--lambda and --data both given: lambda is computed from --data; give one of them")
    if data is not None:
        X = data_mod.load_dataset(data)[0]
        for flag, given, found in (("--n", n, X.shape[0]), ("--d", d, X.shape[1])):
            if given is not None and given != found:
                raise ValueError(
                    f"{flag} {given} does not match the data: X in {str(data)!r} has shape {X.shape}; omit {flag} with --data"
                )
        check_points_distinct(X, name=f"X in --data {str(data)!r}")
        n = X.shape[0]
    elif n is None:
        raise ValueError("--n is needed (the number of data points), unless --data gives them")
    if lam is None:
        if data is None:
            check_fits(
                3 * 8 * n * n,
                f"lambda of n = {n} points (the n x n kernel H^cts and its eigenvalues)",
                advice="give --lambda, or fewer points",
            )
            check_sphere_sample(n, 16 if d is None else d, where=f" for --n {n} --d {d}")
            X = data_mod.sphere(n, 16 if d is None else d, seed=seed)
        lam = ntk_lambda(X)
        n = X.shape[0]
    return int(n), float(lam)


def _print_table(q: Any, title: str) -> None:
    """The quantities as a rich table, with the provenance legend."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title)
    for col in ("quantity", "value", "formula", "provenance"):
        table.add_column(col)
    for row in q.rows():
        table.add_row(*(escape(cell) for cell in row))
    Console().print(table)
    Console().print(
        "[derived]: rebuilt from the abstract and the analyses it names (docs/theory.md); [paper]: stated in the abstract.",
        markup=False,
    )


def register(app: typer.Typer) -> None:
    app.command("theory")(theory_command)
