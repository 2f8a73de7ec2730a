"""MkDocs hook: drop the Sphinx role prefixes (``:func:``, ``:mod:``, ...) the docstrings carry.

The docstrings are Google style with Sphinx roles for names (``:func:`tf_crnn.images.model_input```);
mkdocstrings renders the name as code and leaves the role as text. The API pages show the code alone.
"""
from __future__ import annotations

import re

_ROLE = re.compile(r":(?:func|mod|class|meth|data|attr|exc|obj|const):(?=<code>)")


def on_page_content(html: str, page, config, files) -> str:
    """MkDocs event: the page's HTML without role prefixes in front of code."""
    return _ROLE.sub("", html)
