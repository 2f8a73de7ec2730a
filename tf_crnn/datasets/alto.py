"""ALTO (v2, v3, v4; namespace-agnostic) read into a :class:`~tf_crnn.datasets.layout.Page`.

- Lines: every ``TextLine`` in document order (ALTO has no reading order of its own; ``ComposedBlock`` and
  nested blocks are read in place).
- Geometry: ``TextLine/Shape/Polygon/@POINTS`` when present, else the box ``HPOS``, ``VPOS``, ``WIDTH``,
  ``HEIGHT``. ``@BASELINE``: a list of points (ALTO 4.2+) or one number, the baseline's y across the line's box
  (earlier versions).
- Units (``Description/MeasurementUnit``): ``pixel`` (also when absent), ``mm10`` (1/10 mm: value x dpi / 254)
  and ``inch1200`` (1/1200 inch: value x dpi / 1200), the dpi taken from the page image (a
  :class:`~tf_crnn.datasets.layout.LayoutError` when it records none).
- Text: the line's children in order: ``String/@CONTENT``, ``SP`` a space, ``HYP/@CONTENT`` appended (usually
  the hyphen), NFC. A file without any ``SP`` (the Kant ALTO of OCR-D's assets stores punctuation as
  separate ``String`` s and no space at all) is joined by the gap between consecutive ``String`` boxes: a space
  where the gap is wider than :data:`SPACE_GAP` times the line's height, nothing where it is narrower. On the
  Kant pages the gaps are either 0 (punctuation drawn against its word) or at least 0.156 line heights (between
  words), and this rule gives the text of the PAGE file exactly for 50 of the 55 lines, equal but for spaces for
  all 55 (joining every ``String`` by a space: 13; no space before punctuation: 35).
- Image: ``Description/sourceImageInformation/fileName`` (see :func:`~tf_crnn.datasets.layout.find_image`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .layout import (
    LayoutError,
    LayoutOptions,
    Line,
    Page,
    find_image,
    image_size_and_dpi,
    local_name,
    nfc,
    parse_layout_xml,
    parse_points,
)
from .mets import Mets

#: Files without ``SP``: a gap between two ``String`` boxes wider than this fraction of the line height is a space.
SPACE_GAP = 0.08
#: MeasurementUnit -> the unit's size in inches (None: pixels).
UNITS = {"pixel": None, "mm10": 1 / 254, "inch1200": 1 / 1200}


def parse_alto(xml: str | Path, options: LayoutOptions = LayoutOptions(), mets: Mets | None = None) -> Page:
    """Read one ALTO file.

    Args:
        xml: the ALTO file.
        options: where to look for the image (``text_index`` does not apply).
        mets: the METS file that lists this page, if any (for its image).

    Returns:
        The :class:`~tf_crnn.datasets.layout.Page`; lines whose coordinates cannot be read are in its ``problems``.

    Raises:
        LayoutError: not well-formed XML, not ALTO, an unknown MeasurementUnit, mm10 / inch1200 with an image
            that records no resolution, or the page image not found (the message lists the paths tried).
    """
    xml = Path(xml)
    tree, root = parse_layout_xml(xml, "alto", "an ALTO")
    named = root.findtext("{*}Description/{*}sourceImageInformation/{*}fileName")
    mets_image = mets.image_for(xml, options.image_group) if mets is not None else None
    image = find_image(xml, named.strip() if named else None, options, mets_image)
    scale = _scale(xml, root, image)
    with_sp = next(root.iter("{*}SP"), None) is not None
    lines, problems = [], []
    for number, element in enumerate(root.iter("{*}TextLine"), start=1):
        line_id = element.get("ID") or f"line_{number}"
        try:
            lines.append(_line(element, line_id, xml, scale, with_sp))
        except LayoutError as e:
            problems.append((line_id, str(e).removeprefix(f"{xml}: line {line_id}: ")))
    return Page(xml, image, lines, problems, tree, "alto")


def _scale(xml: Path, root, image: Path) -> np.ndarray:
    """Pixels per file unit, (x, y)."""
    unit = (root.findtext("{*}Description/{*}MeasurementUnit") or "pixel").strip()
    if unit not in UNITS:
        raise LayoutError(f"{xml}: MeasurementUnit {unit!r} is not one of {list(UNITS)}")
    if UNITS[unit] is None:
        return np.ones(2)
    _, dpi = image_size_and_dpi(image)
    if dpi is None:
        raise LayoutError(f"{xml}: MeasurementUnit {unit} needs the page image's resolution to convert to pixels, "
                          f"and {image} records none (no dpi); save the image with its resolution or convert the "
                          "ALTO file to pixel units")
    return np.array(dpi) * UNITS[unit]


def _number(element, name: str, where: str) -> float:
    try:
        return float(element.get(name))
    except (TypeError, ValueError):
        raise LayoutError(f"{where}: no numeric {name} ({element.get(name)!r})") from None


def _box(element, where: str) -> tuple[float, float, float, float]:
    return tuple(_number(element, name, where) for name in ("HPOS", "VPOS", "WIDTH", "HEIGHT"))


def _line(element, line_id: str, xml: Path, scale: np.ndarray, with_sp: bool) -> Line:
    where = f"{xml}: line {line_id}"
    polygon = element.find("{*}Shape/{*}Polygon")
    if polygon is not None and polygon.get("POINTS"):
        points = parse_points(polygon.get("POINTS"), where)
        x0, y0 = points.min(axis=0)
        x1, y1 = points.max(axis=0)
        height = y1 - y0
    else:
        x0, y0, width, height = _box(element, where)
        x1, y1 = x0 + width, y0 + height
        points = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    baseline = _baseline(element.get("BASELINE"), x0, x1, where)
    return Line(line_id, points * scale, baseline * scale if baseline is not None else None,
                nfc(join_text(element, height, with_sp)), element)


def _baseline(value: str | None, x0: float, x1: float, where: str) -> np.ndarray | None:
    if value is None or not value.strip():
        return None
    points = parse_points(value, where) if ("," in value or " " in value.strip()) else None
    if points is not None:
        return points
    try:
        y = float(value)
    except ValueError:
        raise LayoutError(f"{where}: BASELINE {value!r} is neither a number nor points") from None
    return np.array([[x0, y], [x1, y]])


def join_text(line, height: float, with_sp: bool) -> str:
    """The text of an ALTO ``TextLine`` element (see the module doc for the rule).

    Args:
        line: the ``TextLine`` element.
        height: the line's height (file units), the scale of the gap rule.
        with_sp: the file uses ``SP`` elements: spaces only where they are.

    Returns:
        The joined text (not normalized).
    """
    parts: list[str] = []
    previous_end = None
    for child in line:
        name = local_name(child)
        if name == "String":
            start = _optional_float(child.get("HPOS"))
            if not with_sp and previous_end is not None and start is not None and parts \
                    and start - previous_end > SPACE_GAP * height:
                parts.append(" ")
            width = _optional_float(child.get("WIDTH"))
            previous_end = start + width if start is not None and width is not None else None
            parts.append(child.get("CONTENT", ""))
        elif name == "SP":
            parts.append(" ")
        elif name == "HYP":
            parts.append(child.get("CONTENT", ""))
    return "".join(parts)


def _optional_float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
