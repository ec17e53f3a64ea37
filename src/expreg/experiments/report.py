"""The report: one self-contained HTML file and a Markdown summary for a results directory.

``build_report(out)`` looks for experiment directories under ``out`` (those
with a ``config.json``), analyses each (``analysis.analyse``: summary.json
and figures), and writes

- ``out/report.html``: every figure embedded as a base64 PNG data URI (the
  file opens anywhere, alone), headline numbers, tables, configurations;
- ``out/report.md``: the headline numbers and tables, figures linked.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from ..core.storage import atomic_open
from .analysis import NoRunsError, analyse
from .base import EXPERIMENTS
from .tables import table_columns


def experiment_dirs(out: str | Path) -> list[Path]:
    """Experiment directories under ``out``, in the order of ``EXPERIMENTS``."""
    out = Path(out)
    found = [out / name for name in EXPERIMENTS if (out / name / "config.json").is_file()]
    return found


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _html_table(rows: list[dict[str, Any]]) -> str:
    cols = table_columns(rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(rows: list[dict[str, Any]]) -> str:
    cols = table_columns(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")).replace("|", "\\|") for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


CSS = """body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:12px;max-width:100%}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right;overflow-wrap:anywhere}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}dl.h dt{font-weight:600}dl.h dd{margin:0 0 .4em 1.5em;font-family:monospace}
details{margin:.5em 0 1.5em}pre{background:#f7f7f7;padding:.6em;font-size:12px}"""


def _up_to_date(d: Path) -> dict[str, Any] | None:
    """The experiment's summary.json if it is newer than its results and of the recorded configuration."""
    summary, table, config = d / "summary.json", d / "results.parquet", d / "config.json"
    if not (summary.is_file() and table.is_file()) or summary.stat().st_mtime < max(
        table.stat().st_mtime, config.stat().st_mtime
    ):
        return None
    s = json.loads(summary.read_text())
    if s.get("config_hash") != json.loads(config.read_text()).get("config_hash"):
        return None
    if not all((d / "figures" / f"{stem}.png").is_file() for stem in s.get("figures", [])):
        return None
    return s


def build_report(out: str | Path, *, fresh: bool | list[str] = True) -> tuple[Path, Path, list[dict[str, Any]]]:
    """Write ``report.html`` and ``report.md`` in ``out``; return their paths and the summaries.

    ``fresh``: True re-analyses every experiment; False reuses each
    up-to-date ``summary.json`` (newer than the results, same configuration);
    a list of names re-analyses those and reuses the others.
    """
    out = Path(out)
    dirs = experiment_dirs(out)
    if not dirs:
        raise FileNotFoundError(
            f"no experiment results under {str(out)!r}; run e.g. `expreg run width --out {out}` first"
        )
    summaries, kept, pending = [], [], []
    for d in dirs:
        try:
            again = fresh if isinstance(fresh, bool) else d.name in fresh
            summaries.append((None if again else _up_to_date(d)) or analyse(d))
            kept.append(d)
        except NoRunsError:
            pending.append(d.name)
    dirs = kept
    parts_html = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>expreg report</title><style>{CSS}</style></head><body>",
        "<h1>expreg: experiments on the over-parameterised exponential regression network</h1>",
        "<p>Gao, Mahadevan &amp; Song (2023): F(W, x) = s &sum;<sub>r</sub> a<sub>r</sub> exp(&lang;w<sub>r</sub>, x&rang;). "
        "Definitions: docs/theory.md section 6. [paper]: stated in the paper's abstract; [derived]: rebuilt from the analyses it names.</p>",
    ]
    parts_md = [
        "# expreg report\n",
        "Experiments of docs/theory.md section 6; the HTML report (`report.html`) embeds every figure.\n",
    ]
    if pending:
        parts_html.append(f"<p>No finished runs yet: {html.escape(', '.join(pending))}.</p>")
        parts_md.append(f"\nNo finished runs yet: {', '.join(pending)}.\n")
    for d, s in zip(dirs, summaries, strict=True):
        parts_html.append(
            f"<h2 id='{s['experiment']}'>{html.escape(s['versioned_name'])}</h2><p>{html.escape(s['description'])} "
            f"({s['runs']} runs, {s['cpu_seconds']:.0f} CPU s, configuration {s['config_hash']})</p>"
        )
        parts_md.append(
            f"\n## {s['versioned_name']}\n\n{s['description']} ({s['runs']} runs, configuration `{s['config_hash']}`)\n"
        )
        parts_html.append(
            "<dl class='h'>"
            + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in s["headline"].items())
            + "</dl>"
        )
        parts_md.append("\n" + "".join(f"- **{k}** {v}\n" for k, v in s["headline"].items()))
        for stem in s["figures"]:
            png = d / "figures" / f"{stem}.png"
            data = base64.b64encode(png.read_bytes()).decode()
            parts_html.append(
                f"<figure><img alt='{html.escape(stem)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{html.escape(stem)} (SVG: {html.escape(s['experiment'])}/figures/{html.escape(stem)}.svg)</figcaption></figure>"
            )
            parts_md.append(f"\n![{stem}]({s['experiment']}/figures/{stem}.png)\n")
        for title, rows in s.get("tables", {}).items():
            if not rows:  # an empty table says nothing: left out
                continue
            parts_html.append(f"<h3>{html.escape(title)}</h3>" + _html_table(rows))
            parts_md.append(f"\n### {title}\n\n" + _md_table(rows))
        for note in s.get("notes", []):
            parts_html.append(f"<p><small>{html.escape(note)}</small></p>")
            parts_md.append(f"\n_{note}_\n")
        parts_html.append(
            f"<details><summary>configuration</summary><pre>{html.escape(json.dumps(s['config'], indent=1))}</pre></details>"
        )
    parts_html.append("</body></html>")
    html_path, md_path = out / "report.html", out / "report.md"
    with atomic_open(html_path, "w") as fh:
        fh.write("\n".join(parts_html))
    with atomic_open(md_path, "w") as fh:
        fh.write("".join(parts_md))
    return html_path, md_path, summaries
