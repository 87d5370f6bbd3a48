"""Sphinx configuration of fastio's documentation site.

Build (from the repository root, with fastio installed: ``python -m pip
install '.[docs]'``)::

    python -m sphinx -W -b html docs docs/_build/html

No network: no intersphinx, no remote inventory, no theme to fetch; only
Sphinx's built-in extensions and myst-parser. The API reference
(``docs/api/``) is autodoc of the installed fastio, so it documents the
backend that ``import fastio`` picks (``FASTIO_BACKEND=c|pure`` forces one;
the compiled one is the default). Works with Sphinx 7.4 (Python 3.9) and 9.
"""

import inspect
import os
import sys

import fastio

project = "fastio"
author = "fastio developers"
copyright = "fastio developers"
version = release = fastio.__version__

extensions = [
    "sphinx.ext.autodoc",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
# docs/examples/*.py are literalincluded, never sources of their own.
language = "en"

# Markdown: `# Title` headings get anchors, so [text](page.md#a-section) links resolve.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

html_theme = "alabaster"
html_title = f"fastio {release}"
html_static_path = []
html_show_sourcelink = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
# The compiled modules carry their signatures in the docstring's first line
# (Cython's embedsignature): autodoc reads them from there.
autodoc_docstring_signature = True
autodoc_inherit_docstrings = False

nitpicky = False


def _drop_type_docstrings(app, what, name, obj, options, lines):
    """A constant (an ``int``, a ``tuple``) has no docstring of its own:
    autodoc would show its type's (``int([x]) -> integer ...``). Drop that."""
    if what not in ("data", "attribute") or isinstance(obj, type) or not lines:
        return
    type_doc = type(obj).__doc__
    if isinstance(type_doc, str) and "\n".join(lines).strip() == inspect.cleandoc(type_doc).strip():
        lines[:] = []


def setup(app):
    app.connect("autodoc-process-docstring", _drop_type_docstrings)
    # What the reference was built from, once, in the build log.
    print(f"fastio {fastio.__version__}, backend {fastio.backend}, from {os.path.dirname(fastio.__file__)}, "
          f"Python {sys.version.split()[0]}")
