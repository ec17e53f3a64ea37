"""The documentation generators: docs/gen_results.py (Results page) and docs/gen_api.py (API page).

Truth used here: a Markdown parser (markdown-it, the one MyST builds on)
reading the generated page back must give the original text of every cell;
the API page must name every public name that ``expreg`` exports.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

import expreg

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def gen_results():
    return _load("gen_results")


@pytest.fixture
def gen_api():
    return _load("gen_api")


def _summary(tmp_path: Path) -> Path:
    d = tmp_path / "results" / "width"
    (d / "figures").mkdir(parents=True)
    (d / "figures" / "width_exponents.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (d / "figures" / "extra.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    summary = {
        "experiment": "width",
        "versioned_name": "width-v2",
        "description": "m*_conv and m*_lazy | tricky $text$",
        "runs": 4,
        "config_hash": "abc",
        "config": {"ns": [3, 6]},
        "figures": ["width_exponents"],
        "headline": {"exp: m*_lazy ~ n^a, a =": "1.5 [1.2, 1.8] (theorem: 2)"},
        "tables": {"fitted exponents": [{"variant": "exp, <coupled>, s_1", "a": 1.23456, "note": None}]},
        "notes": ["[derived] width of section_5 *not* emphasis"],
    }
    (d / "summary.json").write_text(json.dumps(summary))
    return tmp_path / "results"


def test_results_page_keeps_every_text_literal(tmp_path, gen_results):
    markdown_it = pytest.importorskip("markdown_it", reason="markdown-it-py comes with the docs extra (myst-parser)")
    results = _summary(tmp_path)
    page = gen_results.render(results, tmp_path)
    tokens = markdown_it.MarkdownIt("commonmark").enable("table").parse(page)
    rendered = markdown_it.MarkdownIt("commonmark").enable("table").render(page)
    for literal in (
        "m*_conv and m*_lazy | tricky $text$",
        "exp: m*_lazy ~ n^a, a =",
        "1.5 [1.2, 1.8] (theorem: 2)",
        "exp, &lt;coupled&gt;, s_1",
        "1.235",
        "[derived] width of section_5 *not* emphasis",
    ):
        assert literal in rendered, literal
    assert "<em>" not in rendered  # no stray emphasis from * or _
    # the named figure first, then the one found beside it, as paths relative to the page
    figures = [t.attrGet("src") for tok in tokens if tok.type == "inline" for t in tok.children if t.type == "image"]
    assert figures == ["results/width/figures/width_exponents.png", "results/width/figures/extra.png"]


def test_results_page_without_results(tmp_path, gen_results):
    page = gen_results.render(tmp_path / "nothing", tmp_path)
    assert page.startswith("# Results") and "No stored results yet" in page


def test_api_page_lists_every_public_name(gen_api):
    page = gen_api.render()
    listed = {line.strip() for line in page.splitlines() if line.startswith("   ") and not line.strip().startswith(":")}
    public = {n for n in expreg.__all__ if not isinstance(getattr(expreg, n), type(expreg))} | set(expreg._OPTIONAL)
    assert public <= listed, public - listed
    entries = [
        line.strip() for line in page.splitlines() if line.startswith("   ") and not line.strip().startswith(":")
    ]
    for _, path, _ in gen_api.SUBMODULES:
        mod = importlib.import_module(path)
        own, at_top = gen_api.section_names(path)
        for name in gen_api.module_names(path):
            assert hasattr(mod, name) and (name in own or getattr(mod, name) is getattr(expreg, name)), (path, name)
            assert name in listed, (path, name)
        for name in at_top:  # documented once, at the top level, and pointed to from the module's section
            assert f":py:obj:`expreg.{name}`" in page
    # every object appears once: make_dataset, load_dataset and sphere are not listed twice
    objects = {}
    current = "expreg"
    for line in page.splitlines():
        if line.startswith(".. currentmodule:: "):
            current = line.split(":: ", 1)[1]
        elif line.startswith("   ") and not line.strip().startswith(":") and line.strip() in entries:
            obj = getattr(importlib.import_module(current), line.strip())
            assert id(obj) not in objects, (line.strip(), objects.get(id(obj)))
            objects[id(obj)] = f"{current}.{line.strip()}"
    assert "ntk" in gen_api.module_names("expreg.core.kernels") and "required_width" in gen_api.module_names(
        "expreg.core.theory"
    )
