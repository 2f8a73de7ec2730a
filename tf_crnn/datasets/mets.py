"""METS files of digitised books (OCR-D workspaces): which page image goes with which PAGE / ALTO file.

Only what the PAGE XML and ALTO readers need: the file groups (``mets:fileGrp/@USE``), each file's local path
(``mets:FLocat/@xlink:href``, relative to the METS file's folder) and the pages of the physical
``mets:structMap`` (``mets:div[@TYPE="page"]`` with ``mets:fptr/@FILEID``). Files of two groups belong to the
same page when one page ``div`` points at both; a METS file without a physical ``structMap`` pairs the files of
two groups by their position in each group.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .layout import LayoutError

METS = "{http://www.loc.gov/METS/}"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"


@dataclass(frozen=True)
class MetsFile:
    """One ``mets:file``: its ID, group, MIME type and local path (None for a URL)."""

    id: str
    group: str
    mimetype: str
    path: Path | None


class Mets:
    """A parsed METS file.

    Args:
        path: the METS file.

    Raises:
        LayoutError: not readable as XML, or its root is not ``mets:mets``.
    """

    def __init__(self, path: str | Path):
        from lxml import etree

        self.path = Path(path).resolve()
        try:
            root = etree.parse(str(self.path)).getroot()
        except (OSError, etree.XMLSyntaxError) as e:
            raise LayoutError(f"{path}: cannot read the METS file ({e})") from None
        if root.tag != f"{METS}mets":
            raise LayoutError(f"{path}: not a METS file (root element {root.tag})")
        self.files: dict[str, MetsFile] = {}
        self.groups: dict[str, list[str]] = {}
        for group in root.iter(f"{METS}fileGrp"):
            use = group.get("USE", "")
            for file in group.iter(f"{METS}file"):
                self.files[file.get("ID", "")] = MetsFile(file.get("ID", ""), use, file.get("MIMETYPE", ""),
                                                          self._local_path(file))
                self.groups.setdefault(use, []).append(file.get("ID", ""))
        self.pages: list[list[str]] = [
            [fptr.get("FILEID", "") for fptr in div.iter(f"{METS}fptr")]
            for struct in root.iter(f"{METS}structMap") if struct.get("TYPE", "").upper() == "PHYSICAL"
            for div in struct.iter(f"{METS}div") if div.get("TYPE", "").lower() == "page"
        ]

    def _local_path(self, file) -> Path | None:
        location = file.find(f"{METS}FLocat")
        href = location.get(XLINK_HREF, "") if location is not None else ""
        if not href or "://" in href.replace("file://", ""):
            return None
        return (self.path.parent / href.removeprefix("file://")).resolve()

    def group_files(self, group: str) -> list[Path]:
        """The local files of ``group`` in page order (the structMap's, else the group's).

        Raises:
            LayoutError: no such group (the message lists the groups).
        """
        if group not in self.groups:
            raise LayoutError(f"{self.path}: no file group {group!r}; its groups are {sorted(self.groups)}")
        ids = self.groups[group]
        if self.pages:
            order = {file_id: i for i, page in enumerate(self.pages) for file_id in page}
            ids = sorted(ids, key=lambda file_id: order.get(file_id, len(order)))
        return [self.files[i].path for i in ids if self.files[i].path is not None]

    def image_for(self, xml: Path, image_group: str | None) -> Path | None:
        """The page image that goes with ``xml`` (see the module doc), or None when the METS file does not say."""
        xml = xml.resolve()
        entry = next((f for f in self.files.values() if f.path == xml), None)
        if entry is None:
            return None
        for page in self.pages:
            if entry.id in page:
                candidates = [self.files[i] for i in page if i in self.files and self.files[i].path is not None]
                return _pick_image(candidates, image_group)
        if image_group is not None and image_group in self.groups:  # no structMap: same position in each group
            position = self.groups[entry.group].index(entry.id)
            images = self.groups[image_group]
            if position < len(images):
                return self.files[images[position]].path
        return None


def _pick_image(candidates: list[MetsFile], image_group: str | None) -> Path | None:
    if image_group is not None:
        chosen = [f for f in candidates if f.group == image_group]
    else:
        chosen = [f for f in candidates if f.mimetype.startswith("image/") and f.path.is_file()]
    return chosen[0].path if chosen else None
