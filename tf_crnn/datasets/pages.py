"""Find PAGE XML / ALTO files and read them page by page: the library entry point of both readers.

Sources (files or folders, any mix):

- a PAGE XML / ALTO file;
- a folder: its ``.xml`` files of the format (root element ``PcGts`` / ``alto``), recursively, sorted by path;
  other XML files (``mets.xml``, the other format) are passed over;
- a METS file (root element ``mets:mets``): the files of ``LayoutOptions.page_group`` in page order, and the
  METS file is used to find their images.

The METS file used to find a page's image (:func:`tf_crnn.datasets.layout.find_image`) is ``LayoutOptions.mets``,
else the METS file given as source, else the ``mets.xml`` of the page's workspace (the nearest folder above the
XML file that holds one).

Example::

    from tf_crnn.datasets.pages import read_pages
    for page in read_pages("page", ["../shared/data/ocrd-kant-1784/OCR-D-GT-PAGE"]):
        for line in page.lines:
            print(page.image, line.id, line.polygon.shape, line.text)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .alto import parse_alto
from .layout import LayoutError, LayoutOptions, Page, workspace_of
from .mets import Mets
from .page_xml import parse_page_xml

#: format -> (root element's local name, parser)
PARSERS: dict[str, tuple[str, Callable[..., Page]]] = {"page": ("PcGts", parse_page_xml), "alto": ("alto", parse_alto)}


@dataclass(frozen=True)
class PageFile:
    """A PAGE / ALTO file to read and the METS file that lists it (None: look for the workspace's)."""

    xml: Path
    mets: Path | None = None


def _root_name(path: Path) -> str:
    """The local name of ``path``'s root element ("" when it is not XML)."""
    from lxml import etree

    try:
        for _, element in etree.iterparse(str(path), events=("start",)):
            return element.tag.rpartition("}")[2]
    except (OSError, etree.XMLSyntaxError):
        return ""
    return ""


def find_page_files(fmt: str, sources: Iterable[str | os.PathLike],
                    options: LayoutOptions = LayoutOptions()) -> list[PageFile]:
    """The PAGE (``fmt="page"``) or ALTO (``fmt="alto"``) files of ``sources`` (see the module doc).

    Raises:
        FileNotFoundError: a source does not exist.
        LayoutError: a folder holds no file of the format, a METS source without ``page_group`` or with an
            unknown group, or a file of another kind.
    """
    root_name = PARSERS[fmt][0]
    found: list[PageFile] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files = [p for p in sorted(path.rglob("*")) if p.suffix.lower() == ".xml" and p.is_file()
                     and _root_name(p) == root_name]
            if not files:
                raise LayoutError(f"{path}: no {fmt} file (XML with root element {root_name}) in this folder")
            found += [PageFile(p) for p in files]
        elif path.is_file():
            found += _files_of(path, fmt, root_name, options)
        else:
            raise FileNotFoundError(f"{fmt} source not found: {path}")
    return found


def _files_of(path: Path, fmt: str, root_name: str, options: LayoutOptions) -> list[PageFile]:
    name = _root_name(path)
    if name == root_name:
        return [PageFile(path)]
    if name == "mets":
        mets = Mets(path)
        if options.page_group is None:
            raise LayoutError(f"{path}: a METS file as source needs --page-group (the file group of the {fmt} "
                              f"files; its groups are {sorted(mets.groups)})")
        return [PageFile(p, path) for p in mets.group_files(options.page_group)]
    raise LayoutError(f"{path}: not a {fmt} file (root element {name or 'none: not XML'!r}, expected {root_name!r} "
                      "or a METS file)")


def read_page_file(fmt: str, page_file: PageFile, options: LayoutOptions = LayoutOptions(),
                   mets_cache: dict[Path, Mets] | None = None) -> Page:
    """Read one file found by :func:`find_page_files`.

    Args:
        fmt: ``"page"`` or ``"alto"``.
        page_file: the file and its METS file.
        options: text index, images folder, METS file and groups.
        mets_cache: METS files already parsed (path -> Mets), filled here; pass the same dict for every page
            of a workspace so its METS file is parsed once.

    Raises:
        LayoutError: see :func:`~tf_crnn.datasets.page_xml.parse_page_xml` and
            :func:`~tf_crnn.datasets.alto.parse_alto`.
    """
    mets_path = Path(options.mets) if options.mets else page_file.mets
    if mets_path is None:
        workspace = workspace_of(page_file.xml)
        mets_path = workspace / "mets.xml" if workspace is not None else None
    mets = None
    if mets_path is not None:
        cache = mets_cache if mets_cache is not None else {}
        key = mets_path.resolve()
        if key not in cache:
            cache[key] = Mets(mets_path)
        mets = cache[key]
    return PARSERS[fmt][1](page_file.xml, options, mets)


def read_pages(fmt: str, sources: Iterable[str | os.PathLike],
               options: LayoutOptions = LayoutOptions()) -> Iterator[Page]:
    """Every page of ``sources``, in order: files as found by :func:`find_page_files`, lines in reading order.

    Raises:
        FileNotFoundError, LayoutError: see :func:`find_page_files` and :func:`read_page_file` (raised when the
            page is reached).
    """
    cache: dict[Path, Mets] = {}
    for page_file in find_page_files(fmt, sources, options):
        yield read_page_file(fmt, page_file, options, cache)


def book_of(xml: Path) -> str:
    """The book a page belongs to: the name of its workspace folder (holding ``mets.xml``), else of its folder."""
    workspace = workspace_of(xml)
    return (workspace or xml.resolve().parent).name
