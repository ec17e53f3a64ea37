"""Render the stored experiment results (``docs/results/*/summary.json``) into the Results page.

Each experiment directory under ``docs/results/`` holds the ``summary.json``
that ``expreg report`` writes (``expreg.experiments.analysis.analyse``:
``{"headline": {str: str}, "tables": {name: [row dicts]}, "notes": [str], ...}``)
and its figures (``figures/*.png``). ``write`` turns them into one MyST page;
``docs/conf.py`` calls it at every build, so the page cannot go stale.

Refresh the stored results from a results directory::

    expreg run width --preset full --out results/full      # ... the other experiments
    python docs/gen_results.py --collect results/full      # runs `expreg report` if needed, then copies

``--collect`` copies each experiment's ``summary.json`` and PNG figures
(not the result tables) into ``docs/results/<experiment>/``; an experiment
module with ``write_per_seed_rows`` (``attention``) also writes its small
per-seed table there as ``rows.csv``, which its docs page refits.

The width experiment keeps its per-seed rows instead
(``docs/results/width/rows.csv.gz``, ``expreg.experiments.width_rows``), and
every width table and figure is recomputed from them at each run of this
script::

    python docs/gen_results.py --width-runs runs/full runs/dsweep runs/fixedlambda runs/beyondcap  # store rows
    python docs/gen_results.py                                    # recompute the width tables and the page
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
WIDTH_ROWS = RESULTS / "width" / "rows.csv.gz"

#: Characters that Markdown (MyST, with dollar maths) would read as markup.
_SPECIAL = "\\`*_{}[]<>#+!|$~"


def escape(text: Any) -> str:
    """``text`` as literal Markdown inline text."""
    s = _fmt(text)
    return "".join("\\" + c if c in _SPECIAL else c for c in s).replace("\n", " ")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "\N{EN DASH}"
    return str(v)


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of row dicts (columns in order of first appearance)."""
    if not rows:
        return "_no rows_\n"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(escape(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(escape(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def figures(directory: Path, summary: dict[str, Any]) -> list[Path]:
    """The PNG figures of one experiment: those the summary names first, then any others beside it."""
    named = [directory / "figures" / f"{stem}.png" for stem in summary.get("figures", [])]
    found = sorted(directory.glob("*.png")) + sorted(directory.glob("figures/*.png"))
    return [p for p in dict.fromkeys(named + found) if p.is_file()]


def section(directory: Path, page_dir: Path) -> str:
    """The Markdown of one experiment directory."""
    summary = json.loads((directory / "summary.json").read_text())
    title = summary.get("versioned_name") or summary.get("experiment") or directory.name
    parts = [f"## {escape(title)}\n"]
    if summary.get("description"):
        runs = (
            f" ({summary['runs']} runs, configuration `{summary.get('config_hash', '?')}`)" if "runs" in summary else ""
        )
        parts.append(escape(summary["description"]) + runs + "\n")
    if summary.get("headline"):
        parts.append(
            "| headline | value |\n|---|---|\n"
            + "".join(f"| {escape(k)} | {escape(v)} |\n" for k, v in summary["headline"].items())
        )
    for png in figures(directory, summary):
        parts.append(f"![{escape(png.stem)}]({png.relative_to(page_dir).as_posix()})\n")
    for name, rows in summary.get("tables", {}).items():
        parts.append(f"### {escape(name)}\n\n" + table(rows))
    for note in summary.get("notes", []):
        parts.append(f"- {escape(note)}")
    if summary.get("notes"):
        parts.append("")
    if summary.get("config"):
        parts.append("Configuration:\n\n```json\n" + json.dumps(summary["config"], indent=1) + "\n```\n")
    return "\n".join(parts)


def render(results: Path = RESULTS, page_dir: Path = HERE) -> str:
    """The whole Results page for the experiment directories under ``results``."""
    dirs = sorted(p.parent for p in results.glob("*/summary.json"))
    head = [
        "# Results\n",
        "The measured numbers and figures of expreg's experiments, rendered by `docs/gen_results.py` from "
        "the summaries stored under `docs/results/` (each written by `expreg report`). What each quantity "
        "means is on the {doc}`theory` page, section 6; `[paper]` and `[derived]` mark the provenance of "
        "theory numbers as explained there.\n",
        "To regenerate them: run the experiments (`expreg run EXPERIMENT --preset PRESET --out OUT`), then "
        "`python docs/gen_results.py --collect OUT`, and rebuild the docs (`make docs`). The configuration of "
        "each run is printed below it: check the preset before reading the numbers as the paper's regime.\n",
    ]
    if not dirs:
        return "\n".join([*head, "_No stored results yet._\n"])
    return "\n".join(head + [section(d, page_dir) for d in dirs])


def write(results: str | Path = RESULTS, page: str | Path = HERE / "results.md") -> None:
    """Write the page to ``page`` if its text changed."""
    page = Path(page)
    text = render(Path(results), page.parent)
    if not page.is_file() or page.read_text() != text:
        page.write_text(text)


def collect(out: str | Path, results: str | Path = RESULTS) -> list[str]:
    """Copy each experiment's summary.json and PNG figures from ``out`` into ``results``; return the names.

    Runs ``expreg.experiments.build_report(out, fresh=False)`` first, which
    re-analyses only the experiments whose summary is out of date.
    """
    from expreg.experiments import EXPERIMENTS, build_report, get_experiment

    out, results = Path(out), Path(results)
    build_report(out, fresh=False)
    names = []
    for summary in sorted(out.glob("*/summary.json")):
        src, dst = summary.parent, results / summary.parent.name
        if src.name == "width":  # its stored results are per-seed rows of several presets: --width-runs
            print(f"skipped {src}: store width rows with --width-runs")
            continue
        if dst.exists():
            shutil.rmtree(dst)
        (dst / "figures").mkdir(parents=True)
        shutil.copy2(summary, dst / "summary.json")
        for png in sorted(src.glob("figures/*.png")):
            shutil.copy2(png, dst / "figures" / png.name)
        export = getattr(get_experiment(src.name), "write_per_seed_rows", None) if src.name in EXPERIMENTS else None
        if export is not None:  # an experiment whose docs recompute their numbers from the per-seed rows
            export(src, dst / "rows.csv")
        names.append(src.name)
    if not names:
        raise SystemExit(f"no experiment summaries under {str(out)!r}; run `expreg run EXPERIMENT --out {out}` first")
    return names


def recompute_width(rows: Path = WIDTH_ROWS) -> None:
    """Recompute docs/results/width/summary.json and its figures from the stored per-seed rows."""
    from expreg.core.storage import write_json_atomic
    from expreg.experiments import width_rows
    from expreg.experiments.analysis import _jsonable

    directory = rows.parent
    summary = width_rows.summary(rows, directory / "figures")
    write_json_atomic(directory / "summary.json", _jsonable(summary))
    for svg in (directory / "figures").glob("*.svg"):  # the docs show the PNGs; keep the stored results small
        svg.unlink()
    for stem in summary["figures"]:  # the README shows these
        shutil.copy2(directory / "figures" / f"{stem}.png", HERE / "figures" / f"{stem}.png")
    _check_fitted(rows, summary)


def _check_fitted(rows: Path, summary: dict[str, Any]) -> None:
    """Print each criterion's winning law refitted on every row, and say if ``width_laws.FITTED`` differs."""
    from expreg.experiments import width_analysis, width_rows
    from expreg.experiments.width_laws import FITTED
    from expreg.experiments.width_predict import fitted_constants

    df = width_analysis.with_design(width_rows.read(rows))
    df = df[~df["preset"].isin(list(width_rows.CHECKS))]
    for row in summary["tables"].get("laws: laws by prediction: the winner", []):
        if row["winner"] != "yes":
            continue
        entry = fitted_constants(
            df, row["criterion"], row["law"].split(":")[0], row["rms over every held-out cell (log2)"]
        )
        same = FITTED.get(row["criterion"], {}).get("log_C") == entry["log_C"]
        print(f"{row['criterion']}: {entry!r}" + ("" if same else "   <- differs from width_laws.FITTED: update it"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collect", metavar="OUT", help="copy summaries and figures from this results directory first")
    parser.add_argument(
        "--page", default=str(HERE / "results.md"), help="where to write the page (default: docs/results.md)"
    )
    parser.add_argument(
        "--width-runs",
        nargs="+",
        metavar="DIR",
        help="store the per-seed rows of these width runs (DIR named by preset)",
    )
    args = parser.parse_args(argv)
    if args.collect:
        print("collected:", ", ".join(collect(args.collect)))
    if args.width_runs:
        from expreg.experiments import width_rows

        print(f"stored {width_rows.collect(args.width_runs, WIDTH_ROWS)} width rows in {WIDTH_ROWS}")
    if WIDTH_ROWS.is_file():
        recompute_width()
        print("recomputed the width tables and figures from", WIDTH_ROWS)
    write(RESULTS, args.page)
    print(f"wrote {args.page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
