"""Sphinx configuration of expreg's documentation site.

Builds offline: no intersphinx inventories are fetched (other projects are
linked by plain URL). ``make docs`` builds with warnings as errors. Before
reading the sources, the Results page is regenerated from the stored
summaries under ``docs/results/`` (``gen_results.py``) and the API listing
from the public names of ``expreg`` (``gen_api.py``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import gen_api  # noqa: E402
import gen_results  # noqa: E402
import vendor_mathjax  # noqa: E402

import expreg  # noqa: E402

# Generated pages: written here, before Sphinx looks for source files (autosummary reads api/index.rst then).
gen_api.write(HERE / "api" / "index.rst")
gen_results.write(HERE / "results", HERE / "results.md")

project = "expreg"
author = "the expreg developers"
copyright = "2026, the expreg developers"
release = expreg.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_vendor", "results/**/*.md", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# -- MyST: $...$ and $$...$$ maths, definition lists, heading anchors ---------
myst_enable_extensions = ["dollarmath", "amsmath", "deflist", "colon_fence"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# -- MathJax: shipped with the site (vendor_mathjax.py fetches the npm package once into
# _vendor/, copied to _static/mathjax/ by every build), so the pages typeset offline.
mathjax_path = vendor_mathjax.MATHJAX_PATH
html_static_path = [str(vendor_mathjax.vendor(HERE / "_vendor")), "css"]
html_css_files = ["expreg.css"]

# -- API reference -------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # the numpydoc docstrings give the types
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()
add_module_names = False

# -- Gallery: every examples/plot_*.py runs at build time ---------------------
sphinx_gallery_conf = {
    "examples_dirs": str(HERE.parent / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"(__init__|(^|[/\\])diabetes)\.py$",  # diabetes.py: the full command-line comparison, not a gallery page
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "plot_gallery": "True",
    "matplotlib_animations": False,
    "within_subsection_order": "FileNameSortKey",
}

# -- HTML ---------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"expreg {release}"
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
# pages without sub-pages need no left sidebar
html_sidebars = {page: [] for page in ("index", "getting_started", "theory", "results")}
html_show_sourcelink = False

# Offline: no intersphinx. Unresolved Python cross-references are errors.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|scipy|sklearn|torch|pandas|pydantic|dask|matplotlib|typing|collections|pathlib|os)\..*"),
    (r"py:.*", r"(optional|array|array-like|ndarray|callable|path|str|int|float|bool|dict|list|tuple|None|object)"),
]


def _skip_member(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated metadata-routing methods (set_*_request, get_metadata_routing)."""
    if name == "get_metadata_routing" or (name.startswith("set_") and name.endswith("_request")):
        return True
    return None


#: "docs/theory.md section 3" (or "sections 3-4") in a docstring: a link to that section of the Theory page.
THEORY_CITATION = re.compile(r"docs/theory\.md,? (sections?) (\d)((?:-|\N{EN DASH})\d)?")


def _link_theory_sections(app, what, name, obj, options, lines):
    """Turn the docstrings' plain-text citations of docs/theory.md into links to the cited section."""
    for i, line in enumerate(lines):
        lines[i] = THEORY_CITATION.sub(
            lambda m: (
                f":ref:`docs/theory.md {m.group(1)} {m.group(2)}{m.group(3) or ''} <theory-section-{m.group(2)}>`"
            ),
            line,
        )


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("autodoc-process-docstring", _link_theory_sections)
