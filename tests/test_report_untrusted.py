"""The report trusts no file it reads: crafted summary.json and config.json (issue 19).

A summary.json with script in its text cannot run script in report.html
(every text escaped; the experiment field must be the directory's), a figure
name cannot read outside the results directory, and config.json is checked
field by field and against its hash, each failure one line naming the file
and the field, through the library and through the console script.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import pytest

from expreg import CheckpointError
from expreg.experiments import build_report, get_config, run_experiment
from expreg.experiments.analysis import load_run_config

SCRIPT = "<script>document.title='pwned'</script>"
SRC = os.path.dirname(os.path.dirname(os.path.abspath(__import__("expreg").__file__)))


class Scripts(HTMLParser):
    """Every <script> element and every on* attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "script" or any(name.startswith("on") for name, _ in attrs):
            self.found.append(tag)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    run_experiment(
        "lazy", get_config("lazy", "tiny"), out, show_progress=False, executor_factory=lambda: ThreadPoolExecutor(2)
    )
    build_report(out)
    return out


@pytest.fixture
def results(base, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(base, out)
    return out


def _edit(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = "import sys; from expreg.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=280)


def test_script_in_summary_text_is_escaped(results):
    summary = results / "lazy" / "summary.json"
    data = json.loads(summary.read_text())
    key = next(iter(data["headline"]))
    data["headline"][key + SCRIPT] = SCRIPT
    data["description"] = SCRIPT
    data["notes"] = [SCRIPT]
    data["tables"] = {SCRIPT: [{SCRIPT: SCRIPT}]}
    summary.write_text(json.dumps(data))
    os.utime(summary)  # newer than the results: reused as it is
    html_path, md_path, _ = build_report(results, fresh=False)
    page = html_path.read_text()
    parser = Scripts()
    parser.feed(page)
    assert parser.found == [] and "<script" not in page and "&lt;script&gt;" in page
    assert "<script" not in md_path.read_text()


def test_script_in_the_experiment_field_is_refused_then_analysed_again(results):
    summary = results / "lazy" / "summary.json"
    _edit(summary, experiment=SCRIPT)
    with pytest.warns(UserWarning, match=r"summary\.json.*field 'experiment'"):
        html_path, _, summaries = build_report(results, fresh=False)
    assert "<script" not in html_path.read_text() and summaries[0]["experiment"] == "lazy"
    assert json.loads(summary.read_text())["experiment"] == "lazy"  # written anew


def test_a_figure_name_cannot_read_outside_the_results_directory(results, tmp_path):
    secret = tmp_path / "outside_secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\nTOP SECRET")
    summary = results / "lazy" / "summary.json"
    _edit(summary, figures=["../../../outside_secret", "../../outside_secret"])
    os.utime(summary)
    with pytest.warns(UserWarning, match="figure names must be plain file stems"):
        html_path, _, _ = build_report(results, fresh=False)
    assert "VE9QIFNFQ1JFVA" not in html_path.read_text()  # base64 of "TOP SECRET" never embedded
    # a figure file that is a link out of the directory is refused too
    fig = next((results / "lazy" / "figures").glob("*.png"))
    fig.unlink()
    fig.symlink_to(secret)
    os.utime(results / "lazy" / "summary.json")
    with pytest.warns(UserWarning, match="outside it"):
        html_path, _, _ = build_report(results, fresh=False)
    assert "VE9QIFNFQ1JFVA" not in html_path.read_text() and not fig.is_symlink()  # analysed again: figure redrawn


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"experiment": "lazy", "versi', "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object, found list"),
        ({"experiment": None}, "field 'experiment' is missing"),
        ({"extra_field": 1}, "unknown field 'extra_field'"),
        ({"experiment": "nope"}, "experiment 'nope' is not known"),
        ({"config": {"d": "many"}}, "field 'config.d'"),
        ({"config": {"n": 7}}, "(the file was edited)"),
    ],
    ids=[
        "truncated",
        "not an object",
        "no experiment",
        "unknown field",
        "unknown experiment",
        "bad field",
        "hash mismatch",
    ],
)
def test_config_json_is_checked_with_one_line_naming_file_and_field(results, content, message):
    path = results / "lazy" / "config.json"
    if isinstance(content, str):
        path.write_text(content)
    else:
        data = json.loads(path.read_text())
        for k, v in content.items():
            if v is None:
                del data[k]
            elif k == "config":
                data[k] = {**data[k], **v}
            else:
                data[k] = v
        path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError) as info:
        load_run_config(results / "lazy")
    assert message in str(info.value) and str(path) in str(info.value)
    proc = _cli("report", str(results))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert message in " ".join(proc.stderr.split()) and len(proc.stderr.strip().splitlines()) <= 3


def test_summary_json_not_an_object_or_without_headline_is_analysed_again(results):
    summary = results / "lazy" / "summary.json"
    for content in ("[]", json.dumps({k: v for k, v in json.loads(summary.read_text()).items() if k != "headline"})):
        summary.write_text(content)
        os.utime(summary)
        proc = _cli("report", "--reuse", str(results))
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert "summary.json" in proc.stderr and "analysing lazy again" in " ".join(proc.stderr.split())
        assert "headline" in json.loads(summary.read_text())


def test_a_seed_out_of_range_is_named(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('experiment = "lazy"\npreset = "tiny"\nseeds = [18446744073709551616]\n')
    proc = _cli("run", "lazy", "--config", str(config), "--out", str(tmp_path / "o"), "--quiet")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "field 'seeds'" in proc.stderr and "2^63 - 1" in proc.stderr
