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
import warnings
from pathlib import Path
from typing import Any

from ..core.errors import CheckpointError
from ..core.storage import atomic_open
from .analysis import NoRunsError, analyse
from .base import EXPERIMENTS
from .records import figure_path, read_config_record, read_summary_record


def experiment_dirs(out: str | Path) -> list[Path]:
    """Experiment directories under ``out``, in the order of ``EXPERIMENTS``."""
    out = Path(out)
    found = [out / name for name in EXPERIMENTS if (out / name / "config.json").is_file()]
    return found


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _md(v: Any) -> str:
    """Text for report.md: HTML's angle brackets and ampersands escaped (Markdown renders raw HTML)."""
    return html.escape(str(v), quote=False)


def _html_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p><em>no rows</em></p>"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_no rows_\n"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(_md(c).replace("|", "\\|") for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_md(_fmt(r.get(c, ""))).replace("|", "\\|") for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


CSS = """body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}dl.h dt{font-weight:600}dl.h dd{margin:0 0 .4em 1.5em;font-family:monospace}
details{margin:.5em 0 1.5em}pre{background:#f7f7f7;padding:.6em;font-size:12px}"""


def _up_to_date(d: Path) -> dict[str, Any] | None:
    """The experiment's summary.json if it is newer than its results and of the recorded configuration.

    Both JSON files are checked (``records``); a summary.json that fails
    the check is not used (a warning names the file and the field) and the
    experiment is analysed again, which writes it anew.
    """
    summary, table, config = d / "summary.json", d / "results.parquet", d / "config.json"
    if not (summary.is_file() and table.is_file()) or summary.stat().st_mtime < max(
        table.stat().st_mtime, config.stat().st_mtime
    ):
        return None
    record, _cfg = read_config_record(d)
    try:
        s = read_summary_record(d)
        paths = [figure_path(d, stem) for stem in s["figures"]]
    except CheckpointError as exc:
        warnings.warn(f"{exc}; analysing {d.name} again", stacklevel=2)
        return None
    if s["config_hash"] != record.config_hash or not all(p.is_file() for p in paths):
        return None
    return s


def _section_html(d: Path, s: dict[str, Any]) -> str:
    """One experiment's part of report.html: every text from its files escaped (quotes too: attribute values)."""
    e = html.escape
    parts = [
        f"<h2 id='{e(d.name)}'>{e(str(s['versioned_name']))}</h2><p>{e(str(s['description']))} "
        f"({int(s['runs'])} runs, {float(s['cpu_seconds']):.0f} CPU s, configuration {e(str(s['config_hash']))})</p>",
        "<dl class='h'>"
        + "".join(f"<dt>{e(str(k))}</dt><dd>{e(str(v))}</dd>" for k, v in s["headline"].items())
        + "</dl>",
    ]
    for stem in s["figures"]:
        data = base64.b64encode(figure_path(d, stem).read_bytes()).decode()
        parts.append(
            f"<figure><img alt='{e(stem)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{e(stem)} (SVG: {e(d.name)}/figures/{e(stem)}.svg)</figcaption></figure>"
        )
    parts += [f"<h3>{e(str(title))}</h3>" + _html_table(rows) for title, rows in s.get("tables", {}).items()]
    parts += [f"<p><small>{e(str(note))}</small></p>" for note in s.get("notes", [])]
    parts.append(
        f"<details><summary>configuration</summary><pre>{e(json.dumps(s['config'], indent=1))}</pre></details>"
    )
    return "\n".join(parts)


def _section_md(d: Path, s: dict[str, Any]) -> str:
    """One experiment's part of report.md (angle brackets escaped: Markdown renders raw HTML)."""
    parts = [
        f"\n## {_md(s['versioned_name'])}\n\n{_md(s['description'])} ({int(s['runs'])} runs, "
        f"configuration `{_md(s['config_hash'])}`)\n",
        "\n" + "".join(f"- **{_md(k)}** {_md(v)}\n" for k, v in s["headline"].items()),
    ]
    parts += [f"\n![{_md(stem)}]({d.name}/figures/{_md(stem)}.png)\n" for stem in s["figures"]]
    parts += [f"\n### {_md(title)}\n\n" + _md_table(rows) for title, rows in s.get("tables", {}).items()]
    parts += [f"\n_{_md(note)}_\n" for note in s.get("notes", [])]
    return "".join(parts)


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
        parts_html.append(_section_html(d, s))
        parts_md.append(_section_md(d, s))
    parts_html.append("</body></html>")
    html_path, md_path = out / "report.html", out / "report.md"
    with atomic_open(html_path, "w") as fh:
        fh.write("\n".join(parts_html))
    with atomic_open(md_path, "w") as fh:
        fh.write("".join(parts_md))
    return html_path, md_path, summaries
