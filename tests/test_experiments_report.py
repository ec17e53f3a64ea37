"""The report opens and embeds every figure; the CLI runs, reports, lists and refuses bad input."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser

import pytest

from expreg.cli import main
from expreg.experiments import build_report, get_config, run_experiment


class Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.headings: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        self._in_h2 = tag == "h2"

    def handle_data(self, data):
        if self._in_h2:
            self.headings.append(data)
            self._in_h2 = False


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    for name in ("kernel", "lazy"):
        run_experiment(
            name, get_config(name, "tiny"), out, show_progress=False, executor_factory=lambda: ThreadPoolExecutor(2)
        )
    return out


def test_report_embeds_every_figure(results):
    html_path, md_path, summaries = build_report(results)
    parser = Images()
    parser.feed(html_path.read_text())
    stems = [stem for s in summaries for stem in s["figures"]]
    assert len(stems) >= 2 and [img["alt"] for img in parser.images] == stems
    for img in parser.images:
        assert img["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert parser.headings == ["lazy-v1", "kernel-v1"]  # the order of `expreg list`
    md = md_path.read_text()
    for s in summaries:
        for key in s["headline"]:
            assert key in md
        for stem in s["figures"]:
            assert f"({s['experiment']}/figures/{stem}.png)" in md
    assert "<img" not in md and "src=" not in md.replace("](", "")


def test_cli_run_resume_report_list(tmp_path, capsys):
    args = ["run", "kernel", "--preset", "tiny", "--out", str(tmp_path), "--jobs", "1", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "6 runs done now, 0 already in the table" in out and "slope of ||H^dis(W(0)) - H^cts||_op" in out
    assert f"report: {(tmp_path / 'report.html').resolve()}" in out
    assert main(args) == 0
    assert "0 runs done now, 6 already in the table" in capsys.readouterr().out
    assert main(["report", "--reuse", str(tmp_path)]) == 0
    assert "report.md" in capsys.readouterr().out
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    for name in ("convergence", "width", "lazy", "kernel", "realdata"):
        assert name in listing


def test_cli_config_file_and_errors(tmp_path, capsys):
    cfg = tmp_path / "k.toml"
    cfg.write_text('experiment = "kernel"\npreset = "tiny"\nseeds = [4]\n')
    assert main(["run", "kernel", "--config", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    meta = json.loads((tmp_path / "o" / "kernel" / "config.json").read_text())
    assert meta["config"]["seeds"] == [4]
    capsys.readouterr()
    assert main(["run", "nope", "--out", str(tmp_path)]) == 2
    assert "experiment 'nope' is not known" in capsys.readouterr().err
    assert main(["run", "width", "--preset", "huge", "--out", str(tmp_path)]) == 2
    assert "preset 'huge' is not known" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no experiment results" in capsys.readouterr().err


def test_reuse_and_experiments_without_runs(results, tmp_path):
    build_report(results)
    stamp = (results / "lazy" / "summary.json").stat().st_mtime_ns
    _, _, summaries = build_report(results, fresh=False)  # up-to-date summaries are reused, not recomputed
    assert (results / "lazy" / "summary.json").stat().st_mtime_ns == stamp and len(summaries) == 2
    # an experiment that has a configuration but no finished run yet is listed, not fatal
    import shutil

    shutil.copytree(results, tmp_path / "r")
    (tmp_path / "r" / "width").mkdir()
    from expreg.core.storage import write_json_atomic

    cfg = get_config("width", "tiny")
    write_json_atomic(
        tmp_path / "r" / "width" / "config.json",
        {
            "experiment": "width",
            "versioned_name": cfg.versioned_name,
            "config_hash": cfg.config_hash,
            "config": cfg.model_dump(mode="json"),
        },
    )
    _html_path, md_path, summaries = build_report(tmp_path / "r", fresh=False)
    assert [s["experiment"] for s in summaries] == ["lazy", "kernel"]
    assert "No finished runs yet: width" in md_path.read_text()
