"""MathJax for the documentation site, shipped with the build (the pages typeset their maths offline).

``vendor(cache)`` fetches the MathJax release ``MATHJAX`` from the npm
registry with the ordinary client (``npm pack``, which checks the package's
integrity), once, and keeps only what the pages load: the combined
``tex-mml-chtml.js`` component and its CommonHTML web fonts, under
``cache/mathjax/`` (git-ignored). ``conf.py`` adds ``cache`` to
``html_static_path``, so every build copies them to ``_static/mathjax/``
and ``mathjax_path`` points there: no page refers to a CDN.

Run as a script to fetch them without building: ``python docs/vendor_mathjax.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

#: The npm package and version vendored (MathJax 3: the version Sphinx's mathjax extension configures).
MATHJAX = "mathjax@3.2.2"
#: Inside the package: the script the pages load, and the fonts it loads from beside itself.
SCRIPT = "package/es5/tex-mml-chtml.js"
FONTS = "package/es5/output/chtml/fonts/woff-v2/"
#: ``mathjax_path`` of conf.py, relative to the site's _static directory.
MATHJAX_PATH = "mathjax/tex-mml-chtml.js"


def vendor(cache: Path) -> Path:
    """Make sure ``cache/mathjax`` holds MathJax's script and fonts; returns ``cache`` (for html_static_path)."""
    target = cache / "mathjax"
    stamp = target / ".version"
    if stamp.is_file() and stamp.read_text() == MATHJAX and (cache / MATHJAX_PATH).is_file():
        return cache
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            f"the documentation ships MathJax ({MATHJAX}) from the npm registry and needs npm to fetch it once; "
            "install Node.js and npm (Debian: apt-get install -y npm)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([npm, "pack", MATHJAX, "--silent", "--pack-destination", tmp], check=True, capture_output=True)
        (archive,) = Path(tmp).glob("*.tgz")
        staging = Path(tmp) / "mathjax"
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and (member.name == SCRIPT or member.name.startswith(FONTS)):
                    relative = Path(member.name).relative_to("package/es5")
                    (staging / relative).parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src:  # type: ignore[union-attr]
                        (staging / relative).write_bytes(src.read())
        (staging / ".version").write_text(MATHJAX)
        if target.exists():
            shutil.rmtree(target)
        cache.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), target)
    return cache


if __name__ == "__main__":
    print(vendor(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "_vendor") / "mathjax")
