"""What the PAGE XML and ALTO readers give: pages of text lines with their geometry, in reading order.

The readers (:mod:`~tf_crnn.datasets.page_xml`, :mod:`~tf_crnn.datasets.alto`) turn one XML file into a
:class:`Page`; :mod:`~tf_crnn.datasets.pages` finds the files; :mod:`~tf_crnn.datasets.line_images` cuts the
lines out of the page image. Nothing here writes files: ``tf-crnn prepare page|alto`` writes line images and
CSVs, and a writer of recognised text can put it back through :attr:`Line.element` and :attr:`Page.tree`.

Coordinates are page-image pixels (x to the right, y down), float64, whatever unit the file used.

The page image of a file is looked for, in this order (:func:`find_image`):

1. the name the file gives (PAGE ``Page/@imageFilename``, ALTO ``sourceImageInformation/fileName``) against the
   XML file's folder (or as is, when absolute);
2. the same name against the workspace folder: the nearest folder above the XML that holds ``mets.xml`` (OCR-D
   workspaces write paths relative to it);
3. the image the METS file (``--mets``, else that ``mets.xml``) gives the same page: the file of ``--image-group``
   in the physical ``structMap`` page that points at the XML, or, without ``--image-group``, that page's first
   local file whose MIME type is ``image/*``;
4. in ``--images DIR``: the named file's base name, else a file with the XML's stem and an image suffix.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Suffixes tried for a page image named after its XML file (``--images DIR``).
PAGE_IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".bmp")


class LayoutError(ValueError):
    """A PAGE XML / ALTO / METS file that cannot be read as a page: the message names the file and what to do."""


@dataclass(frozen=True)
class LayoutOptions:
    """How to read PAGE XML / ALTO files (the ``tf-crnn prepare page|alto`` options of the same names).

    Attributes:
        text_index: PAGE only: take the ``TextEquiv`` with this ``@index``; None: the one with
            ``index="1"``, else the first.
        images: a folder to look for page images in when the file's own reference does not lead to one.
        mets: a METS file: its physical ``structMap`` tells which image belongs to which page file.
        image_group: the METS file group (``mets:fileGrp/@USE``) of the page images, e.g. ``OCR-D-IMG``.
        page_group: the METS file group of the PAGE / ALTO files, when a METS file is given as the source.
    """

    text_index: int | None = None
    images: str | None = None
    mets: str | None = None
    image_group: str | None = None
    page_group: str | None = None


@dataclass(frozen=True)
class Line:
    """One text line of a page.

    Attributes:
        id: the line's ``@id`` (PAGE) / ``@ID`` (ALTO); ``line_<n>`` (1-based position) when it has none.
        polygon: (N, 2) float64, the outline in page pixels (x, y); ALTO without ``Shape``: the box's 4 corners.
        baseline: (M, 2) float64 in page pixels, or None when the file gives none.
        text: the line's text, Unicode NFC ("" when it has none).
        element: the XML element of the line (an ``lxml`` element of :attr:`Page.tree`): where a writer puts text.
    """

    id: str
    polygon: np.ndarray
    baseline: np.ndarray | None
    text: str
    element: Any = field(repr=False, compare=False)


@dataclass
class Page:
    """One PAGE XML / ALTO file read.

    Attributes:
        xml: the XML file.
        image: the page image found for it (see the module doc).
        lines: the text lines in reading order.
        problems: ``(line id, reason)`` of lines left out because their coordinates cannot be read.
        tree: the parsed document (``lxml.etree._ElementTree``), to write back.
        format: ``"page"`` or ``"alto"``.
    """

    xml: Path
    image: Path
    lines: list[Line]
    problems: list[tuple[str, str]]
    tree: Any = field(repr=False)
    format: str = "page"


def local_name(element) -> str:
    """The tag of an lxml element without its namespace (``TextLine``)."""
    return element.tag.rpartition("}")[2] if isinstance(element.tag, str) else ""


def parse_layout_xml(xml: Path, root_name: str, kind: str):
    """The parsed tree of a layout file whose root element is ``root_name`` (any namespace): ``(tree, root)``.

    Raises:
        LayoutError: not well-formed XML, or another root element (the message says which ``kind`` was expected).
    """
    from lxml import etree

    try:
        tree = etree.parse(str(xml))
    except (OSError, etree.XMLSyntaxError) as e:
        raise LayoutError(f"{xml}: cannot read the XML ({e})") from None
    root = tree.getroot()
    if local_name(root) != root_name:
        raise LayoutError(f"{xml}: not {kind} file (root element {local_name(root)!r}, expected {root_name!r})")
    return tree, root


def parse_points(value: str, where: str) -> np.ndarray:
    """``"x,y x,y ..."`` (PAGE, ALTO ``POINTS``; ``"x y x y"`` too) as an (N, 2) float64 array.

    Raises:
        LayoutError: not an even count of numbers (naming ``where``).
    """
    numbers = [n for n in re.split(r"[\s,]+", value.strip()) if n]
    try:
        values = np.array([float(n) for n in numbers], dtype=np.float64)
    except ValueError:
        raise LayoutError(f"{where}: points {value[:60]!r} are not numbers 'x,y x,y ...'") from None
    if values.size % 2:
        raise LayoutError(f"{where}: points {value[:60]!r} have an odd count of numbers")
    return values.reshape(-1, 2)


def nfc(text: str | None) -> str:
    """``text`` in Unicode NFC, "" for None."""
    return unicodedata.normalize("NFC", text or "")


def workspace_of(xml: Path) -> Path | None:
    """The nearest folder at or above ``xml``'s folder that holds ``mets.xml``, or None."""
    for folder in xml.resolve().parents:
        if (folder / "mets.xml").is_file():
            return folder
    return None


def find_image(xml: Path, named: str | None, options: LayoutOptions, mets_image: Path | None) -> Path:
    """The page image of ``xml``, looked for in the order of the module doc.

    Args:
        xml: the PAGE / ALTO file.
        named: the image name the file gives, or None.
        options: ``images`` is the last folder tried.
        mets_image: the image a METS file gives this page, or None.

    Returns:
        The first candidate that is a file.

    Raises:
        LayoutError: none is; the message lists every path tried.
    """
    candidates: list[Path] = []
    if named:
        name = Path(named.removeprefix("file://"))
        candidates.append(name if name.is_absolute() else xml.parent / name)
        workspace = workspace_of(xml)
        if workspace is not None and not name.is_absolute():
            candidates.append(workspace / name)
    if mets_image is not None:
        candidates.append(mets_image)
    if options.images:
        folder = Path(options.images)
        if named:
            candidates.append(folder / Path(named).name)
        candidates += [folder / (xml.stem + suffix) for suffix in PAGE_IMAGE_SUFFIXES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in dict.fromkeys(candidates)) or "nothing (the file names no image)"
    raise LayoutError(f"{xml}: page image not found; tried {tried}. Pass --images DIR (the folder of the page "
                      "images) or --mets mets.xml --image-group GROUP")


def image_size_and_dpi(image: Path) -> tuple[tuple[int, int], tuple[float, float] | None]:
    """``((width, height), (x dpi, y dpi) or None)`` from the image's header (Pillow, no pixel decoding)."""
    from PIL import Image

    with Image.open(image) as im:
        dpi = im.info.get("dpi")
        size = im.size
    if dpi is not None and (float(dpi[0]) <= 1 or float(dpi[1]) <= 1):
        dpi = None  # 1 dpi / 0 dpi: TIFF and PNG writers' "unknown"
    return size, (float(dpi[0]), float(dpi[1])) if dpi is not None else None

