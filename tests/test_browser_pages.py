"""The built documentation site and an experiment report, opened in headless Chromium with the network off.

Chromium is Debian's (``make test`` installs it). Every host name resolves
to nothing and every request goes to a closed proxy, so a page that needed
the network (a CDN's MathJax) would show raw LaTeX. A probe script, added to
a copy of each page beside it, waits for MathJax to finish and records what
a reader would see: typeset formulas, leftover TeX, tables wider than their
column, images that did not load, and the page's text.

The site is the one ``make docs`` built (``make test`` builds it first); if
it is missing, it is built here.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "docs" / "_build" / "html"

#: The flags every run uses (headless, no sandbox as root, nothing in the background), then "network off".
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=http://127.0.0.1:9",
    "--allow-file-access-from-files",
    "--window-size=1280,1000",
]

PROBE = """<script>
(function () {
  function measure() {
    var main = document.querySelector('article') || document.querySelector('main') || document.body;
    var right = main.getBoundingClientRect().right;
    var r = {
      mathjax: !!(window.MathJax && window.MathJax.version),
      typeset: document.querySelectorAll('mjx-container').length,
      raw: Array.prototype.filter.call(document.querySelectorAll('.math'), function (e) {
        return !e.querySelector('mjx-container'); }).length,
      errors: document.querySelectorAll('mjx-merror').length,
      wide_tables: Array.prototype.filter.call(document.querySelectorAll('table'), function (t) {
        var box = t.parentElement;
        return t.scrollWidth > box.clientWidth + 1 || t.getBoundingClientRect().right > right + 1;
      }).map(function (t) { return t.innerText.slice(0, 80); }),
      broken_images: Array.prototype.filter.call(document.images, function (i) {
        return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.src.slice(0, 100); }),
      remote: Array.prototype.map.call(document.querySelectorAll('script[src], link[rel=stylesheet], img[src]'),
        function (e) { return e.src || e.href; }).filter(function (u) { return /^https?:/.test(u); }),
      text: document.body.innerText
    };
    document.body.setAttribute('data-probe', JSON.stringify(r));
  }
  window.addEventListener('load', function () {
    var done = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
    if (done) { done.then(measure, measure); } else { measure(); }
  });
})();
</script>"""


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Debian's chromium is needed (`make test` installs it: apt-get install -y chromium)")
    return path


@pytest.fixture(scope="module")
def site() -> Path:
    if not (SITE / "theory.html").is_file():
        subprocess.run(
            [sys.executable, "-m", "sphinx", "-q", "-b", "html", str(ROOT / "docs"), str(SITE)],
            check=True,
            timeout=1200,
        )
    return SITE


def _run(chromium: str, tmp_path: Path, *args: str) -> str:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"  # a fresh profile per run
    proc = subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def probe(chromium: str, page: Path, tmp_path: Path) -> dict:
    """Open a copy of ``page`` (beside it, so relative links work) with the probe; return what it measured."""
    copy = page.with_name(f".probe-{page.name}")
    copy.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>", 1), encoding="utf-8")
    try:
        dom = _run(chromium, tmp_path, "--virtual-time-budget=30000", "--dump-dom", copy.as_uri())
    finally:
        copy.unlink()
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, "the probe did not run: " + dom[:500]
    import html

    return json.loads(html.unescape(found.group(1)))


def _png_size_and_colours(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct grey levels in a sample of rows) of an 8-bit RGB(A) PNG, read with zlib alone."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, _depth, colour = struct.unpack(">IIBB", data[16:26])
    raw, pos = b"", 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        if data[pos + 4 : pos + 8] == b"IDAT":
            raw += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    pixels = zlib.decompress(raw)
    channels = {2: 3, 6: 4}[colour]
    stride = 1 + width * channels
    levels = set()
    for row in range(0, height, max(1, height // 50)):
        line = pixels[row * stride + 1 : (row + 1) * stride]
        levels.update(line[:: channels * 7])
    return width, height, len(levels)


def test_theory_page_typesets_its_maths_offline(chromium: str, site: Path, tmp_path: Path) -> None:
    r = probe(chromium, site / "theory.html", tmp_path)
    assert r["mathjax"], "MathJax did not load (it must come from _static, not a CDN)"
    assert r["typeset"] > 50 and r["raw"] == 0 and r["errors"] == 0, {k: r[k] for k in ("typeset", "raw", "errors")}
    assert r["remote"] == [], r["remote"]
    assert "\\lambda" not in r["text"] and "\\mathrm" not in r["text"]  # no raw LaTeX left on the page
    shot = tmp_path / "theory.png"
    _run(chromium, tmp_path, "--virtual-time-budget=30000", f"--screenshot={shot}", (site / "theory.html").as_uri())
    width, height, levels = _png_size_and_colours(shot)
    assert (width, height) == (1280, 1000) and levels > 8  # a rendered page, not a blank one


@pytest.mark.parametrize("page", ["index.html", "getting_started.html", "guide/training.html", "guide/sklearn.html"])
def test_other_pages_typeset_their_maths_offline(chromium: str, site: Path, tmp_path: Path, page: str) -> None:
    r = probe(chromium, site / page, tmp_path)
    assert r["mathjax"] and r["raw"] == 0 and r["errors"] == 0 and r["remote"] == [], r


def _readable(r: dict) -> None:
    assert r["wide_tables"] == [], r["wide_tables"]
    assert r["broken_images"] == [], r["broken_images"]
    assert "no rows" not in r["text"]
    assert not re.search(r"\[-?inf, -?inf\]|\[nan, nan\]", r["text"]), "an interval that says nothing"


def test_results_page_is_readable(chromium: str, site: Path, tmp_path: Path) -> None:
    r = probe(chromium, site / "results.html", tmp_path)
    _readable(r)
    assert r["raw"] == 0


def test_report_html_is_readable(chromium: str, tmp_path: Path) -> None:
    from expreg.experiments import build_report, get_config, run_experiment

    out = tmp_path / "results"
    for name in ("convergence", "lazy"):
        run_experiment(name, get_config(name, "tiny"), out, jobs=1, show_progress=False)
    html_path, _, _ = build_report(out)
    r = probe(chromium, html_path, tmp_path)
    _readable(r)
    assert r["remote"] == []
    # numeric order of the width columns: m=64 before m=256 before m=1024 wherever they appear
    widths = [int(w) for w in re.findall(r"\bm=(\d+)\b", r["text"])]
    runs = [widths[i : i + 2] for i in range(len(widths) - 1)]
    assert widths and all(a < b or b <= widths[0] for a, b in runs)


def test_api_pages_link_their_theory_citations(site: Path) -> None:
    """Every "docs/theory.md section N" of the API reference is a link to that section of the Theory page."""
    pages = sorted((site / "api" / "generated").glob("*.html"))
    assert pages
    linked = plain = 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for m in re.finditer(r"docs/theory\.md,? sections? (\d)", text):
            before = text[max(0, m.start() - 300) : m.start()]
            anchor = before.rfind("<a ")
            if (
                anchor >= 0
                and "</a>" not in before[anchor:]
                and f'theory.html#theory-section-{m.group(1)}"' in before[anchor:]
            ):
                linked += 1
            else:
                plain += 1
    assert linked > 20 and plain == 0, (linked, plain)
    theory = (site / "theory.html").read_text(encoding="utf-8")
    for n in (int(k) for k in re.findall(r"^## (\d+)\. ", (ROOT / "docs" / "theory.md").read_text(), re.M)):
        assert f'id="theory-section-{n}"' in theory, n  # every numbered section has its label
