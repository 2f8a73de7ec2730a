"""PAGE XML (PRImA page content, 2013-07-15 and 2019-07-15) read into a :class:`~tf_crnn.datasets.layout.Page`.

Namespace-agnostic: every element is matched by its local name, so both schema versions (and files that
declare another version's namespace) read the same where the schema did not change.

- Lines: every ``TextLine`` of the page, also inside nested regions (``TextRegion`` in ``TextRegion``, the
  cells of a ``TableRegion``).
- Reading order: ``ReadingOrder`` lists regions (``RegionRefIndexed`` by ``@index`` in ordered groups, in
  document order in unordered ones, nested groups flattened). A line takes the position of its innermost
  enclosing region that the reading order names; lines of regions it does not name come after, in document
  order; lines of one region keep their document order. Without a ``ReadingOrder``: document order.
- Geometry: ``Coords/@points`` (``"x,y x,y ..."``), or the 2013 form ``Coords/Point[@x][@y]``; ``Baseline`` the
  same way (optional).
- Text: the line's own ``TextEquiv/Unicode`` (not its words'), the one with ``@index`` = ``text_index``, else
  (``text_index`` None) the one with ``index="1"``, else the first; NFC.
- Image: ``Page/@imageFilename`` (see :func:`~tf_crnn.datasets.layout.find_image`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .layout import LayoutError, LayoutOptions, Line, Page, find_image, local_name, nfc, parse_layout_xml, parse_points
from .mets import Mets


def parse_page_xml(xml: str | Path, options: LayoutOptions = LayoutOptions(), mets: Mets | None = None) -> Page:
    """Read one PAGE XML file.

    Args:
        xml: the PAGE XML file.
        options: text index and where to look for the image.
        mets: the METS file that lists this page, if any (for its image).

    Returns:
        The :class:`~tf_crnn.datasets.layout.Page`; lines whose ``Coords`` cannot be read are in its ``problems``.

    Raises:
        LayoutError: not well-formed XML, not PAGE (root element other than ``PcGts``), no ``Page`` element,
            or the page image not found (the message lists the paths tried).
    """
    xml = Path(xml)
    tree, root = parse_layout_xml(xml, "PcGts", "a PAGE XML")
    page = root.find("{*}Page")
    if page is None:
        raise LayoutError(f"{xml}: PAGE XML without a Page element")
    mets_image = mets.image_for(xml, options.image_group) if mets is not None else None
    image = find_image(xml, page.get("imageFilename"), options, mets_image)
    lines, problems = [], []
    for number, element in enumerate(_lines_in_reading_order(page), start=1):
        line_id = element.get("id") or f"line_{number}"
        try:
            lines.append(_line(element, line_id, xml, options.text_index))
        except LayoutError as e:
            problems.append((line_id, str(e).removeprefix(f"{xml}: line {line_id}: ")))
    return Page(xml, image, lines, problems, tree, "page")


def _lines_in_reading_order(page) -> list:
    """The page's ``TextLine`` elements sorted by their region's reading-order position (see the module doc)."""
    position = {region_id: i for i, region_id in enumerate(_reading_order(page))}
    keyed = []
    for doc_position, line in enumerate(page.iter("{*}TextLine")):
        ranks = [position[a.get("id")] for a in line.iterancestors() if a.get("id") in position]
        keyed.append(((ranks[0] if ranks else len(position), doc_position), line))
    return [line for _, line in sorted(keyed, key=lambda item: item[0])]


def _reading_order(page) -> list[str]:
    """Region ids in reading order: the groups of ``ReadingOrder`` flattened ([] without one)."""
    order = page.find("{*}ReadingOrder")
    if order is None:
        return []
    ids: list[str] = []
    for group in order:
        if isinstance(group.tag, str):
            _flatten(group, ids)
    return list(dict.fromkeys(ids))


def _flatten(group, ids: list[str]) -> None:
    if group.get("regionRef"):
        ids.append(group.get("regionRef"))
    children = [c for c in group if isinstance(c.tag, str) and local_name(c) not in ("Labels", "UserDefined")]
    if local_name(group).startswith("OrderedGroup"):
        children.sort(key=lambda c: int(c.get("index", "0")))
    for child in children:
        if local_name(child).startswith("RegionRef"):
            ids.append(child.get("regionRef", ""))
        else:
            _flatten(child, ids)


def _points(element, where: str) -> np.ndarray:
    """The ``@points`` of a Coords/Baseline element, or its 2013 ``Point`` children."""
    if element.get("points") is not None:
        return parse_points(element.get("points"), where)
    points = [(p.get("x"), p.get("y")) for p in element.iterfind("{*}Point")]
    try:
        return np.array(points, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise LayoutError(f"{where}: Point elements without numeric x and y") from None


def _line(element, line_id: str, xml: Path, text_index: int | None) -> Line:
    where = f"{xml}: line {line_id}"
    coords = element.find("{*}Coords")
    if coords is None:
        raise LayoutError(f"{where}: no Coords")
    baseline = element.find("{*}Baseline")
    return Line(line_id, _points(coords, where), _points(baseline, where) if baseline is not None else None,
                _text(element, text_index, where), element)


def _text(element, text_index: int | None, where: str) -> str:
    equivs = element.findall("{*}TextEquiv")
    if text_index is not None:
        chosen = next((e for e in equivs if e.get("index") == str(text_index)), None)
        if chosen is None and equivs:
            raise LayoutError(f"{where}: no TextEquiv with index {text_index} (indices: "
                              f"{[e.get('index') for e in equivs]})")
    else:
        chosen = next((e for e in equivs if e.get("index") == "1"), equivs[0] if equivs else None)
    if chosen is None:
        return ""
    unicode = chosen.find("{*}Unicode")
    return nfc(unicode.text if unicode is not None else "")
