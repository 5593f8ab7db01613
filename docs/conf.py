"""Sphinx configuration of the diffprior documentation.

Build (warnings are errors)::

    sphinx-build -W -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("COLUMNS", "92")  # argparse help width on the CLI page

import diffprior  # noqa: E402

project = "diffprior"
author = "the diffprior developers"
copyright = "2025, the diffprior developers"
release = diffprior.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    # MathJax 3 from a Python package, copied into _static/mathjax/ of the build: the site
    # renders its math without a network (air-gapped clusters, file:// browsing).
    "sphinx-mathjax-offline",
    "sphinx.ext.viewcode",
    "sphinxcontrib.bibtex",
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"
default_role = "code"  # `name` in docstrings is inline code, as in scico's
pygments_style = "sphinx"

bibtex_bibfiles = ["references.bib"]
bibtex_default_style = "plain"
bibtex_reference_style = "author_year"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# "Attributes:" sections become field lists; as attribute directives they would duplicate the
# dataclass and NamedTuple fields that autodoc documents itself.
napoleon_use_ivar = True

# furo: a modern theme that ships its own CSS and JavaScript and uses the system fonts, so
# it requests nothing from the network either (tests/test_docs.py checks every built page).
html_theme = "furo"
html_title = f"diffprior {release}"
html_theme_options = {
    "sidebar_hide_name": False,
}
html_static_path = ["_static"]
html_css_files = ["diffprior.css"]

# ----------------------------------------------------------------------------- math
#: The MathJax bundle that pages load, relative to _static/ (sphinx-mathjax-offline copies
#: its MathJax 3 tree to _static/mathjax/). The "full" SVG build has every TeX package built
#: in and draws glyphs as SVG paths: no extension is loaded later and no web font is fetched.
MATHJAX_BUNDLE = "mathjax/tex-svg-full.js"
mathjax3_config = {
    "tex": {
        # Exactly the delimiters that sphinx.ext.mathjax writes (mathjax_inline and
        # mathjax_display); no "$" or "$$", which prose and shell examples use.
        "inlineMath": [["\\(", "\\)"]],
        "displayMath": [["\\[", "\\]"]],
        "processEscapes": False,
        # Multi-line ".. math::" blocks become \begin{split} / \begin{align}\begin{aligned}
        # (AMS environments, part of the full build); equation numbers come from Sphinx.
        # The docstrings use standard LaTeX only (tests/test_docs.py typesets every formula of
        # the built site with this MathJax); shorthands would go in "macros" here.
        "tags": "none",
    },
    "svg": {"fontCache": "global"},
}

math_number_all = False


# ----------------------------------------------------------------------------- docstrings
_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+])\1{2,}\s*$")


def _titles_to_rubrics(lines):
    """Turn underlined section titles of a module docstring into rubrics.

    Sections are not allowed inside autodoc's directive content; a module docstring may use
    them (diffprior.io does) so that it also reads well as a page of its own.
    """
    out, i = [], 0
    while i < len(lines):
        if (i + 1 < len(lines) and lines[i].strip() and not lines[i].startswith(" ")
                and _UNDERLINE.match(lines[i + 1]) and len(lines[i + 1].strip()) >= len(lines[i].strip())):
            out += [f".. rubric:: {lines[i].strip()}", ""]
            i += 2
            continue
        out.append(lines[i])
        i += 1
    lines[:] = out


#: Module docstrings shown in full on narrative pages; the API reference links there instead.
_SHOWN_ELSEWHERE = {
    "diffprior.io": ("hdf5", "The file formats are described in :doc:`/hdf5`."),
    "diffprior.tasks": ("cli", "The presets and their parameters are listed in :ref:`task-presets`."),
}


def _process_docstring(app, what, name, obj, options, lines):
    if what != "module":
        return
    if name in _SHOWN_ELSEWHERE:
        first = []
        for line in lines:
            if not line.strip():
                break
            first.append(line)
        lines[:] = first + ["", _SHOWN_ELSEWHERE[name][1]]
        return
    _titles_to_rubrics(lines)


# ----------------------------------------------------------------------------- directives
from docutils import nodes  # noqa: E402
from docutils.parsers.rst import Directive  # noqa: E402
from docutils.statemachine import StringList  # noqa: E402
from sphinx.util.nodes import nested_parse_with_titles  # noqa: E402


class ModuleDocstring(Directive):
    """``.. module-docstring:: package.module``: a module's docstring as part of the page
    (section titles allowed)."""

    required_arguments = 1

    def run(self):
        import importlib
        import inspect

        name = self.arguments[0]
        doc = inspect.getdoc(importlib.import_module(name)) or ""
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, StringList(doc.splitlines(), source=name), node)
        return node.children


class CommandHelp(Directive):
    """``.. diffprior-help:: solve``: the ``--help`` text of a command, as a literal block."""

    optional_arguments = 2

    def run(self):
        from diffprior.cli import build_parser

        parser = build_parser()
        for word in self.arguments:
            sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
            parser = sub.choices[word]
        text = parser.format_help()
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def _skip_member(app, what, name, obj, skip, options):
    """Skip NamedTuple field aliases ("Alias for field number 0"): the class docstring's
    Attributes section documents the fields."""
    doc = getattr(obj, "__doc__", None) or ""
    if isinstance(obj, property) and doc.startswith("Alias for field number"):
        return True
    return None


def _use_bundled_mathjax(app, config):
    # sphinx-mathjax-offline points mathjax_path at its tex-chtml.js, which loads web fonts and
    # TeX extensions from _static/ as it goes (browsers may refuse the fonts of a file:// page);
    # use the self-contained SVG build of the same copy.
    config.mathjax_path = MATHJAX_BUNDLE


def setup(app):
    app.connect("config-inited", _use_bundled_mathjax, priority=900)
    app.connect("autodoc-process-docstring", _process_docstring)
    app.connect("autodoc-skip-member", _skip_member)
    app.add_directive("module-docstring", ModuleDocstring)
    app.add_directive("diffprior-help", CommandHelp)
