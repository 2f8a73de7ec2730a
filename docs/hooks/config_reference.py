"""MkDocs hook: the configuration reference, built from ``tf_crnn.config.Params`` so it cannot drift.

A page holding the marker ``<!-- params-reference -->`` gets, in its place, one table per group of the
``Params`` docstring (Data, Model, Training, ...), one row per entry: the key(s), type, default and the
docstring's description. ``tests/test_docs.py`` checks that every field has an entry and every entry a field.

The docstring's layout (``tf_crnn/config.py``): a group title indented 4 spaces, entries indented 8 spaces as
``name[, name...]: description``, the description going on at 12 spaces. ``tf_crnn.config`` imports neither
TensorFlow nor Keras, so importing it here is cheap.
"""
from __future__ import annotations

import dataclasses
import re
import sys
import types
import typing
from pathlib import Path

MARKER = "<!-- params-reference -->"
ROOT = Path(__file__).resolve().parents[2]

_ENTRY = re.compile(r"^(?P<names>[a-z_][a-z0-9_]*(?:, [a-z_][a-z0-9_]*)*): (?P<text>.*)$")


@dataclasses.dataclass
class Entry:
    """One documented entry of the ``Params`` docstring: its group, the keys it covers, their description."""

    group: str
    names: list[str]
    text: str


def _params():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tf_crnn.config import Params
    return Params


def docstring_entries(doc: str) -> list[Entry]:
    """The entries of a ``Params``-style docstring, in order.

    Raises:
        ValueError: a line indented 8 spaces that does not start with ``name[, name...]: ``
            (the message quotes it), so a malformed entry cannot pass unnoticed.
    """
    entries: list[Entry] = []
    group = None
    for line in doc.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        text = line.strip()
        if not text:
            continue
        if indent == 4:
            group = text
        elif indent == 8 and group is not None:
            match = _ENTRY.match(text)
            if match is None:
                raise ValueError(f"Params docstring: entry without 'name: description': {text!r}")
            entries.append(Entry(group, match["names"].split(", "), match["text"]))
        elif indent > 8 and entries:
            entries[-1].text += " " + text
    return entries


def _type_text(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return " \\| ".join(f'`"{a}"`' for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_text(a) for a in args)
    if origin is list:
        return f"list of {_type_text(args[0])}"
    return getattr(hint, "__name__", str(hint))


def _default_text(f: dataclasses.Field) -> str:
    value = f.default_factory() if f.default is dataclasses.MISSING else f.default
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value}`"


def _cell(text: str) -> str:
    # Sphinx roles (:mod:`x`, :data:`y`) and reST literals as Markdown code.
    # Python-Markdown's tables do not split a cell at a "|" inside a code span, the only place one occurs here.
    return re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text).replace("``", "`")


def reference_markdown() -> str:
    """The configuration reference as Markdown: a heading and a table per docstring group."""
    params = _params()
    fields = {f.name: f for f in dataclasses.fields(params)}
    hints = typing.get_type_hints(params)
    out: list[str] = []
    group = None
    for entry in docstring_entries(params.__doc__ or ""):
        if entry.group != group:
            group = entry.group
            out += ["", f"### {_cell(group)}", "",
                    "| key | type | default | description |", "| --- | --- | --- | --- |"]
        known = [n for n in entry.names if n in fields]
        keys = "<br>".join(f"`{n}`" for n in known)
        types = "<br>".join(_type_text(hints[n]) for n in known)
        defaults = "<br>".join(_default_text(fields[n]) for n in known)
        out.append(f"| {keys} | {types} | {defaults} | {_cell(entry.text)} |")
    return "\n".join(out) + "\n"


def on_page_markdown(markdown: str, page, config, files) -> str:
    """MkDocs event: put the reference where a page has the marker."""
    return markdown.replace(MARKER, reference_markdown()) if MARKER in markdown else markdown
