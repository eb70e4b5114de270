"""The documentation site: Sphinx with MyST (the pages are the Markdown files GitHub shows)
and the Furo theme. Built strictly by .ci/run:

    .venv/bin/sphinx-build -W --keep-going -n -b html docs docs/_build/html

(-W: any warning fails the build: a broken cross-reference, a heading anchor a link names
that does not exist, a page left out of the table of contents.)
"""

from __future__ import annotations

project = "llmreplay"
author = "the llmreplay developers"
extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3  # links to a section (page.md#a-heading) are checked too
html_theme = "furo"
html_title = "llmreplay"
