"""Recognised text written back into the PAGE XML / ALTO file of a page, the layout left as it was.

A :class:`~tf_crnn.datasets.layout.Page` read by :mod:`~tf_crnn.datasets.pages` keeps its parsed tree and each
line's element; :func:`write_recognition` changes the text of the recognised lines in that tree and writes it
to a new file. Nothing else changes: regions, ``Coords``, ``Baseline``, ``Shape``, reading order, attributes,
lines that were not recognised and their text.

PAGE XML (2013-07-15 and 2019-07-15, written in the file's own namespace):

- the line's recognised text becomes a ``TextEquiv`` with ``@index`` = :attr:`WriteOptions.text_index` (1 by
  default: the main text, what readers take first) and ``@conf`` = the line's score;
- the line's TextEquivs already there (its ground truth, an earlier OCR) are kept, in their index order, and
  renumbered 1, 2, ... skipping the new one's index (with the default: the ground truth that was index 1 or
  unnumbered becomes 2); with :attr:`WriteOptions.keep_text` False they are removed;
- the line's ``Word`` children (with their ``Glyph`` s and texts) are removed: the recognizer reads whole lines
  and gives no word boxes, and words of another text would contradict the line's (PAGE's consistency rule:
  a line's text is its words' texts joined by spaces);
- a ``TextRegion`` whose ``TextLine`` children were recognised gets the same treatment for its own
  ``TextEquiv`` (PAGE's rule: a region's text is its lines' joined by line breaks): its recognised lines'
  texts, in document order, joined by ``"\\n"``, without ``@conf``;
- the new ``TextEquiv`` s stand where the schema's sequence puts them: after ``Coords``, ``Baseline``,
  ``Word`` and before ``TextStyle``, ``UserDefined``, ``Labels`` (TextLine); after the lines and before
  ``TextStyle`` (TextRegion);
- ``Metadata/LastChange`` is set to the time of writing (UTC); a 2019 file also gets a ``MetadataItem``
  ``type="processingStep" name="recognition/text-recognition"`` naming tf-crnn's version and the models.

ALTO (v2-v4): the line's ``String`` / ``SP`` / ``HYP`` children are replaced by one ``String`` per
whitespace-separated word of the recognised text (``CONTENT``, ``WC`` = the line's score, the same for every
word: the model scores lines) with an ``SP`` between two words. The words' boxes (``HPOS``, ``VPOS``,
``WIDTH``, ``HEIGHT``, in the file's unit) split the line's box (its own attributes, else its
``Shape/Polygon`` 's bounding box) in proportion to character counts, a space counting as one character: an
approximation, as the recognizer gives no word positions. An empty text gives one ``String`` with an empty
``CONTENT`` over the whole line (the schema wants at least one). The ``TextLine`` keeps its own attributes and
``Shape`` (its outline, first; an ALTO 3.1 line's other Shapes among its words go with the words, see
:func:`shapes_among_words`); runs of spaces become one (ALTO has no other way to write them). ``Description`` is
left as it is. The line's content is then ``Shape?, (String, SP?)+`` (no Shape in ALTO 2 and 3.0, which have
none), valid in every ALTO schema from 2.0 to 4.4; the tests validate the files written against the 2.0, 3.1 and
4.4 schemas.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from .layout import Line, Page, local_name, parse_points

#: Per element kind, the children a TextEquiv must stand before (the PAGE schemas' sequences).
TEXT_EQUIV_BEFORE = {"TextLine": ("TextStyle", "UserDefined", "Labels"), "TextRegion": ("TextStyle",)}
#: PAGE namespaces whose Metadata takes a MetadataItem (the 2013 schema has none).
METADATA_ITEM_NAMESPACES = ("http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15",)


@dataclass(frozen=True)
class LineText:
    """What the recognizer read in one line.

    Attributes:
        text: the transcription.
        conf: its score, a probability in [0, 1] (:attr:`tf_crnn.loader.Prediction.score`).
    """

    text: str
    conf: float


@dataclass(frozen=True)
class WriteOptions:
    """How recognised text goes into a file (the ``tf-crnn predict --page|--alto`` options of the same names).

    Attributes:
        text_index: PAGE: the ``@index`` of the recognised text's ``TextEquiv`` (>= 0, else ValueError).
        keep_text: PAGE: keep the TextEquivs already there, renumbered (True), or remove them (False).
        models: where the models came from, recorded in a PAGE 2019 file's ``MetadataItem``.
        software: the recording program and version.
    """

    text_index: int = 1
    keep_text: bool = True
    models: tuple[str, ...] = ()
    software: str = "tf-crnn"

    def __post_init__(self):
        if self.text_index < 0:
            raise ValueError(f"the TextEquiv index must be >= 0 (PAGE's schema), got {self.text_index}")


def write_recognition(page: Page, recognised: Sequence[tuple[Line, LineText]], out: str | os.PathLike,
                      options: WriteOptions = WriteOptions()) -> Path:
    """Put the recognised lines' text into ``page.tree`` (see the module doc) and write it to ``out``.

    Args:
        page: the page as read (``format`` ``"page"`` or ``"alto"``); its tree is changed in place.
        recognised: the lines of ``page.lines`` that were recognised, with their text; other lines keep theirs.
        out: the file to write (UTF-8, with an XML declaration); its folder must exist.
        options: PAGE's TextEquiv index, what happens to the text already there, provenance.

    Returns:
        ``out`` as a Path.

    Raises:
        ValueError: a score outside [0, 1].
        OSError: ``out`` cannot be written.
    """
    for line, result in recognised:
        if not 0.0 <= result.conf <= 1.0:
            raise ValueError(f"{page.xml}: line {line.id}: score {result.conf!r} is not in [0, 1]")
    if page.format == "page":
        _write_page(page, recognised, options)
    else:
        _write_alto(recognised)
    out = Path(out)
    page.tree.write(str(out), xml_declaration=True, encoding="UTF-8", standalone=page.tree.docinfo.standalone)
    return out


def number(value: float, digits: int = 6) -> str:
    """``value`` as a short xsd:float literal (``0.8125``, ``1.5e-07``, ``412``)."""
    return format(float(value), f".{digits}g")


# --------------------------------------------------------------------------- PAGE XML

def _namespace(element) -> str:
    return element.tag[1:].partition("}")[0] if element.tag.startswith("{") else ""


def _make(parent, tag: str, **attributes):
    """A new element ``tag`` (local name) in ``parent``'s namespace, not attached."""
    ns = _namespace(parent)
    return parent.makeelement(f"{{{ns}}}{tag}" if ns else tag, attributes)


def _write_page(page: Page, recognised: Sequence[tuple[Line, LineText]], options: WriteOptions) -> None:
    regions: dict = {}  # region element -> None (an ordered set)
    texts = {}
    for line, result in recognised:
        element = line.element
        closing = _closing_tail(element)
        for word in [c for c in element if local_name(c) == "Word"]:
            element.remove(word)
        set_text_equiv(element, result.text, result.conf, options)
        element[-1].tail = closing
        texts[element] = result.text
        parent = element.getparent()
        if parent is not None and local_name(parent) == "TextRegion":
            regions[parent] = None
    for region in regions:
        lines = [texts[c] for c in region if c in texts]
        set_text_equiv(region, "\n".join(lines), None, options)
    _stamp_metadata(page.tree.getroot(), options)


def set_text_equiv(element, text: str, conf: float | None, options: WriteOptions) -> None:
    """Make ``text`` the ``TextEquiv`` of index ``options.text_index`` of a PAGE ``TextLine`` / ``TextRegion``.

    The element's other TextEquivs are kept and renumbered (1, 2, ... in their index order, skipping the new
    one's index; unnumbered ones last, in document order) or, without ``options.keep_text``, removed. All of
    them are put, in index order, where the schema's sequence wants them (:data:`TEXT_EQUIV_BEFORE`).
    """
    closing = _closing_tail(element)
    existing = [c for c in element if local_name(c) == "TextEquiv"]
    for old in existing:
        element.remove(old)
    kept = sorted(existing, key=lambda e: _index(e.get("index"))) if options.keep_text else []
    free = (i for i in range(1, len(kept) + 2) if i != options.text_index)
    for old in kept:
        old.set("index", str(next(free)))
    new = _make(element, "TextEquiv", index=str(options.text_index))
    if conf is not None:
        new.set("conf", number(conf))
    _make_child(new, "Unicode").text = text
    before = TEXT_EQUIV_BEFORE[local_name(element)]
    position = next((i for i, c in enumerate(element) if local_name(c) in before), len(element))
    for offset, equiv in enumerate(sorted([new, *kept], key=lambda e: int(e.get("index")))):
        _insert(element, position + offset, equiv)
    element[-1].tail = closing


def _index(value: str | None) -> float:
    try:
        return int(value)
    except (TypeError, ValueError):
        return float("inf")


def _make_child(parent, name: str):
    child = _make(parent, name)
    parent.append(child)
    return child


def _insert(parent, position: int, element) -> None:
    """``parent.insert(position, element)`` with the indentation of its siblings (the file stays readable)."""
    if len(parent):
        if position < len(parent):
            element.tail = parent[position - 1].tail if position else parent.text
        else:
            element.tail, parent[-1].tail = parent[-1].tail, parent.text
    parent.insert(position, element)


def _closing_tail(element) -> str | None:
    """The whitespace after ``element``'s last child (before its end tag), to keep it there after edits."""
    return element[-1].tail if len(element) else None


def _stamp_metadata(root, options: WriteOptions) -> None:
    """``Metadata/LastChange`` = now (UTC); a 2019 file also gets a processing-step ``MetadataItem``."""
    metadata = root.find("{*}Metadata")
    if metadata is None:
        return
    now = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    last_change = metadata.find("{*}LastChange")
    if last_change is not None:
        last_change.text = now
    if _namespace(root) in METADATA_ITEM_NAMESPACES:
        item = _make(metadata, "MetadataItem", type="processingStep", name="recognition/text-recognition",
                     value=options.software, date=now)
        if options.models:
            labels = _make_child(item, "Labels")
            for model in options.models:
                labels.append(_make(labels, "Label", type="model", value=str(model)))
        _insert(metadata, len(metadata), item)


# --------------------------------------------------------------------------- ALTO

def _write_alto(recognised: Sequence[tuple[Line, LineText]]) -> None:
    for line, result in recognised:
        element = line.element
        closing = _closing_tail(element)
        for old in [c for c in element if local_name(c) in ("String", "SP", "HYP")] + shapes_among_words(element):
            element.remove(old)
        for name, attributes in alto_words(result.text, result.conf, line_box(element)):
            _insert(element, len(element), _make(element, name, **attributes))
        element[-1].tail = closing


def shapes_among_words(element) -> list:
    """The ``Shape`` s of an ALTO ``TextLine`` other than its outline: they go with the words they stand among.

    ALTO 3.1 defines a TextLine's content as ``(Shape?, String, SP?)+, HYP?``, a Shape allowed before every
    String; ALTO 4.0 fixed it to ``Shape?, (String, SP?)+, HYP?`` ("The Shape element can now only be used once
    within a PageSpace or a TextLine as it was intended"); ALTO 2 and 3.0 have no Shape in a TextLine. With the
    words removed, any Shapes left would all stand before the new words: two of them are valid in no version. The
    line keeps the one the reader (:mod:`~tf_crnn.datasets.alto`) and :func:`line_box` take for its outline, the
    first with a ``Polygon`` (else the first), which then stands first, where ALTO 4 wants it.
    """
    shapes = [c for c in element if local_name(c) == "Shape"]
    polygon = element.find("{*}Shape/{*}Polygon")
    outline = polygon.getparent() if polygon is not None else (shapes[0] if shapes else None)
    return [shape for shape in shapes if shape is not outline]


def line_box(element) -> tuple[float, float, float, float]:
    """``(HPOS, VPOS, WIDTH, HEIGHT)`` of an ALTO ``TextLine`` in the file's unit: its attributes, else the
    bounding box of its ``Shape/Polygon``."""
    try:
        return tuple(float(element.get(name)) for name in ("HPOS", "VPOS", "WIDTH", "HEIGHT"))
    except (TypeError, ValueError):
        polygon = element.find("{*}Shape/{*}Polygon")
        points = parse_points(polygon.get("POINTS", ""), f"line {element.get('ID')}")
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


def alto_words(text: str, conf: float, box: tuple[float, float, float, float]) -> list[tuple[str, dict]]:
    """The ``String`` / ``SP`` children of an ALTO line reading ``text``: ``[(tag, attributes), ...]``.

    Args:
        text: the recognised text (split at whitespace).
        conf: the line's score, every word's ``WC``.
        box: the line's ``(HPOS, VPOS, WIDTH, HEIGHT)``, split in proportion to character counts.
    """
    x, y, width, height = box
    words = text.split()
    joined = " ".join(words)
    per_char = width / max(len(joined), 1)
    vertical = {"VPOS": number(round(y, 2)), "HEIGHT": number(round(height, 2))}

    def span(start: int, length: int) -> dict:
        return {"HPOS": number(round(x + start * per_char, 2)), **vertical,
                "WIDTH": number(round(length * per_char, 2))}

    if not words:
        return [("String", {"CONTENT": "", **span(0, 1), "WIDTH": number(round(width, 2)), "WC": number(conf)})]
    out: list[tuple[str, dict]] = []
    start = 0
    for k, word in enumerate(words):
        if k:
            out.append(("SP", {key: value for key, value in span(start - 1, 1).items() if key != "HEIGHT"}))
        out.append(("String", {"CONTENT": word, **span(start, len(word)), "WC": number(conf)}))
        start += len(word) + 1
    return out

