"""Readers of the common text-recognition annotation formats.

Each reader turns one source (a folder or an annotation file) into a stream of
:class:`Record` (an image path and its raw label text) and :class:`Problem`
(a row that cannot be used, with file, line and reason). Readers neither
clean labels nor write anything; :func:`tf_crnn.datasets.converters.prepare`
does that, so all formats get the same normalization, checks and output.

Formats (the name is the ``fmt`` of ``prepare`` / ``tf-crnn prepare``):

``gt-pairs``
    OCR-D / Kraken / Calamari / archiscribe line ground truth: ``<id>.gt.txt``
    or ``<id>.txt`` (one UTF-8 line) beside ``<id>.png`` (or ``.bin.png``,
    ``.nrm.png``, ``.tif``, ``.tiff``, ``.jpg``, ``.jpeg``), searched
    recursively. A ``.gt.txt`` without an image is a problem; a plain ``.txt``
    without an image (README, LICENSE...) is ignored.
``iiit5k``
    IIIT 5K-Word MATLAB files: ``trainCharBound.mat`` / ``testCharBound.mat``
    (fields ``ImgName``, ``chars``) or ``traindata.mat`` / ``testdata.mat``
    (``ImgName``, ``GroundTruth``). Source: one ``.mat`` or a folder holding
    them; image paths are relative to the ``.mat``'s folder; the natural
    group is ``train`` or ``test``.
``icdar``
    ICDAR 2013 / 2015 word recognition ground truth: ``word_1.png, "Tiredness"``
    per line, UTF-8 with optional BOM, ``\\"`` and ``\\\\`` escaped inside the
    quotes; commas allowed in the label. Source: the gt ``.txt`` file or a
    folder with exactly one ``.txt``.
``mjsynth``
    MJSynth (Jaderberg et al.) annotation files ``./1/2/3_Paintbrushes_55044.jpg 55044``:
    the label is the file name between the first and the last ``_``.
``tsv``
    ``path<TAB>label`` per line, or ``path label`` (the first space splits)
    on lines without a tab. Paths relative to the file's folder.
``filename``
    A folder of images whose file name stem is the label (``皖A2T582.jpg``),
    recursively; ``label_regex`` (first group) extracts the label from the
    stem when names carry more (``皖A2T582_2`` with ``(.*)_\\d+``).
``lmdb``
    The LMDB layout of deep-text-recognition-benchmark / CRNN: ``num-samples``,
    ``image-%09d`` (encoded image bytes), ``label-%09d`` (UTF-8), indices from
    1. Images are extracted (bytes unchanged) to a folder. Needs the optional
    ``lmdb`` package.
``page`` / ``alto``
    Page images with text lines in PAGE XML / ALTO files (a file, a folder of
    them, or a METS file; see :mod:`tf_crnn.datasets.pages`): each line is cut
    out (:mod:`tf_crnn.datasets.line_images`) to ``<page>/<n>_<line id>.png``
    in a folder, ``<page>`` being the XML file's stem. The natural group is
    the book (the folder holding ``mets.xml``, else the XML's folder); the
    image's parent folder is the page. Lines without text or with a
    degenerate polygon, and pages whose image is missing, are problems naming
    the file and line id.
"""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Union

from tqdm import tqdm

from ..config import PREPARE_FORMAT_NAMES

IMAGE_SUFFIXES = (".png", ".bin.png", ".nrm.png", ".tif", ".tiff", ".jpg", ".jpeg")
_FILENAME_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")


@dataclass(frozen=True)
class Record:
    """One labelled image found in a source.

    Attributes:
        image: absolute image path.
        text: the raw label text (not yet normalized or split).
        origin: ``file:line`` (or ``file: entry N``) for messages.
        group: the format's natural group (gt-pairs: parent folder; iiit5k:
            ``train``/``test``; page, alto: the book), used by ``group_by="source"``.
    """

    image: str
    text: str
    origin: str
    group: str | None = None


@dataclass(frozen=True)
class Problem:
    """A row that cannot be converted: where, and why."""

    origin: str
    reason: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.reason}"


Item = Union[Record, Problem]


def _read_text(path: Path) -> str | Problem:
    """UTF-8 text (BOM allowed), or a Problem naming the byte offset that is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        return Problem(f"{path}:{line}", f"not valid UTF-8 at byte {e.start} ({e.reason}); re-encode the file as UTF-8")


def _existing_file(source: str | os.PathLike, what: str) -> Path:
    """``source`` as a Path; FileNotFoundError naming ``what`` when it is not a file."""
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def _annotation_items(path: Path, parse: Callable[[str, str], Item]) -> Iterator[Item]:
    """Parse a line-per-sample annotation file: blank lines skipped, ``parse(where, line)`` for the rest.

    An undecodable file yields one Problem (naming the line of the first bad byte).
    """
    text = _read_text(path)
    if isinstance(text, Problem):
        yield text
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield parse(f"{path}:{number}", line)


# --------------------------------------------------------------------------- gt-pairs

def _gt_id(path: Path) -> tuple[str, bool] | None:
    """``(id, is_gt_txt)`` for ``id.gt.txt`` / ``id.txt``, else None."""
    name = path.name
    if name.endswith(".gt.txt"):
        return name[: -len(".gt.txt")], True
    if name.endswith(".txt"):
        return name[: -len(".txt")], False
    return None


def read_gt_pairs(source: str | os.PathLike, **_) -> Iterator[Item]:
    """Line ground truth pairs ``<id>.gt.txt``/``<id>.txt`` + ``<id>.<image>`` (see module doc)."""
    root = Path(source)
    if not root.is_dir():
        raise FileNotFoundError(f"gt-pairs source must be a folder: {root}")
    seen_ids: set[Path] = set()
    for gt in sorted(root.rglob("*.txt")):
        parsed = _gt_id(gt)
        if parsed is None or not gt.is_file():
            continue
        stem, is_gt = parsed
        key = gt.parent / stem
        if key in seen_ids:  # id.gt.txt and id.txt both present: the .gt.txt (sorted first) wins
            continue
        image = next((gt.parent / (stem + s) for s in IMAGE_SUFFIXES if (gt.parent / (stem + s)).is_file()), None)
        if image is None:
            if is_gt:
                yield Problem(str(gt), f"no image beside it ({stem}{{{','.join(IMAGE_SUFFIXES)}}})")
            continue
        seen_ids.add(key)
        text = _read_text(gt)
        if isinstance(text, Problem):
            yield text
            continue
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) > 1:
            yield Problem(f"{gt}:2", f"expected one line of ground truth, found {len(lines)}")
            continue
        yield Record(str(image.resolve()), lines[0] if lines else "", f"{gt}:1", gt.parent.name)


# --------------------------------------------------------------------------- iiit5k

_IIIT5K_KEYS = {
    "trainCharBound": ("train", "chars"),
    "testCharBound": ("test", "chars"),
    "traindata": ("train", "GroundTruth"),
    "testdata": ("test", "GroundTruth"),
}


def _mat_string(value) -> str:
    """A MATLAB char array / cell as str (numbers as written, integers without '.0')."""
    import numpy as np

    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return ""
        if value.dtype.kind in "UO":
            return "".join(_mat_string(v) for v in value.ravel())
        value = value.ravel()[0]
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def read_iiit5k(source: str | os.PathLike, **_) -> Iterator[Item]:
    """IIIT5K ``.mat`` annotations (one file, or every known ``.mat`` in a folder)."""
    import scipy.io  # a declared dependency, imported here to keep start-up light

    source = Path(source)
    if source.is_dir():
        mats = [source / f"{k}.mat" for k in _IIIT5K_KEYS if (source / f"{k}.mat").is_file()]
        if not mats:
            raise FileNotFoundError(f"no IIIT5K .mat file ({', '.join(k + '.mat' for k in _IIIT5K_KEYS)}) in {source}")
    elif source.is_file():
        mats = [source]
    else:
        raise FileNotFoundError(f"IIIT5K source not found: {source}")
    for mat in mats:
        try:
            content = scipy.io.loadmat(mat, squeeze_me=True)
        except Exception as e:  # scipy raises several types for corrupt files
            raise ValueError(f"{mat}: cannot read MATLAB file ({e})") from e
        keys = [k for k in _IIIT5K_KEYS if k in content]
        if not keys:
            found = [k for k in content if not k.startswith("__")]
            raise ValueError(f"{mat}: none of the IIIT5K keys {list(_IIIT5K_KEYS)} (found {found})")
        group, label_field = _IIIT5K_KEYS[keys[0]]
        table = content[keys[0]]
        table = table.reshape(-1) if table.ndim else table.reshape(1)
        names = table.dtype.names or ()
        if "ImgName" not in names or label_field not in names:
            raise ValueError(f"{mat}: key {keys[0]} lacks field ImgName or {label_field} (fields: {names})")
        for i, entry in enumerate(table, start=1):
            name = _mat_string(entry["ImgName"])
            yield Record(str((mat.parent / name).resolve()), _mat_string(entry[label_field]),
                         f"{mat}: entry {i} ({name})", group)


# --------------------------------------------------------------------------- icdar

_ICDAR_LINE = re.compile(r'^\s*(?P<image>[^,]+?)\s*,\s*"(?P<label>(?:[^"\\]|\\.)*)"\s*$')


def _icdar_file(source: Path) -> Path:
    if source.is_file():
        return source
    if source.is_dir():
        candidates = sorted(source.glob("*.txt"))
        if len(candidates) == 1:
            return candidates[0]
        raise FileNotFoundError(f"{source}: expected exactly one ground-truth .txt, found {len(candidates)}; "
                                "pass the file")
    raise FileNotFoundError(f"ICDAR ground truth not found: {source}")


def read_icdar(source: str | os.PathLike, **_) -> Iterator[Item]:
    """ICDAR 2013/2015 word recognition gt: ``word_1.png, "Tiredness"`` lines."""
    gt = _icdar_file(Path(source))

    def parse(where: str, line: str) -> Item:
        match = _ICDAR_LINE.match(line)
        if match is None:
            return Problem(where, f'expected `image, "label"`, got {line!r}')
        label = re.sub(r"\\(.)", r"\1", match["label"])  # \" -> ", \\ -> \
        return Record(str((gt.parent / match["image"]).resolve()), label, where)

    return _annotation_items(gt, parse)


# --------------------------------------------------------------------------- mjsynth

def read_mjsynth(source: str | os.PathLike, **_) -> Iterator[Item]:
    """MJSynth annotation file: ``./1/2/3_Paintbrushes_55044.jpg 55044``."""
    annotation = _existing_file(source, "MJSynth annotation file")

    def parse(where: str, line: str) -> Item:
        relative = line.strip().split(" ")[0]
        parts = Path(relative).stem.split("_")
        if len(parts) < 3:
            return Problem(where, f"file name {relative!r} is not <index>_<label>_<lexicon index>")
        return Record(str((annotation.parent / relative).resolve()), "_".join(parts[1:-1]), where)

    return _annotation_items(annotation, parse)


# --------------------------------------------------------------------------- tsv

def read_tsv(source: str | os.PathLike, **_) -> Iterator[Item]:
    """``path<TAB>label`` lines, or ``path label`` (first space) on lines without a tab."""
    annotation = _existing_file(source, "annotation file")

    def parse(where: str, line: str) -> Item:
        separator = "\t" if "\t" in line else " "
        path, _, label = line.partition(separator)
        if not path:
            return Problem(where, f"empty image path in {line!r}")
        return Record(str((annotation.parent / path).resolve()), label, where)

    return _annotation_items(annotation, parse)


# --------------------------------------------------------------------------- filename

def read_filename(source: str | os.PathLike, label_regex: str | None = None, **_) -> Iterator[Item]:
    """Images whose file name stem is the label, recursively (see module doc)."""
    root = Path(source)
    if not root.is_dir():
        raise FileNotFoundError(f"filename source must be a folder of images: {root}")
    pattern = re.compile(label_regex) if label_regex else None
    for image in sorted(root.rglob("*")):
        if image.suffix.lower() not in _FILENAME_IMAGE_SUFFIXES or not image.is_file():
            continue
        label = image.stem
        if pattern is not None:
            match = pattern.fullmatch(label)
            if match is None:
                yield Problem(str(image), f"file name stem {label!r} does not match label_regex {label_regex!r}")
                continue
            label = match.group(1) if pattern.groups else match.group(0)
        yield Record(str(image.resolve()), label, str(image), image.parent.name)


# --------------------------------------------------------------------------- lmdb

def _image_suffix(data: bytes) -> str:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return "." + (im.format or "bin").lower().replace("jpeg", "jpg")
    except (UnidentifiedImageError, OSError):
        return ".bin"  # kept as is; `tf-crnn validate` reports it as undecodable


def read_lmdb(source: str | os.PathLike, staging: str | None = None, **_) -> Iterator[Item]:
    """An LMDB data set (``num-samples``, ``image-%09d``, ``label-%09d``), images extracted to ``staging``.

    Raises:
        ImportError: the ``lmdb`` package is missing.
        ValueError: no ``num-samples`` key.
    """
    try:
        import lmdb
    except ImportError as e:
        raise ImportError("format 'lmdb' needs the lmdb package: pip install lmdb") from e
    if staging is None:
        raise ValueError("read_lmdb needs a staging folder to extract images into")
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"LMDB not found: {path}")
    env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False, subdir=path.is_dir())
    try:
        with env.begin(write=False) as txn:
            count = txn.get(b"num-samples")
            if count is None:
                raise ValueError(f"{path}: no 'num-samples' key; not an LMDB text-recognition data set")
            for i in range(1, int(count) + 1):
                origin = f"{path}: sample {i}"
                label, data = txn.get(b"label-%09d" % i), txn.get(b"image-%09d" % i)
                if data is None or label is None:
                    yield Problem(origin, f"missing key {'image' if data is None else 'label'}-{i:09d}")
                    continue
                try:
                    text = label.decode("utf-8")
                except UnicodeDecodeError as e:
                    yield Problem(origin, f"label is not valid UTF-8 ({e.reason} at byte {e.start})")
                    continue
                image = Path(staging) / f"{i:09d}{_image_suffix(data)}"
                image.write_bytes(data)
                yield Record(str(image), text, origin)
    finally:
        env.close()


# --------------------------------------------------------------------------- page / alto

#: Formats whose reader writes the images it yields (into ``staging``).
WRITES_IMAGES = ("lmdb", "page", "alto")
#: Formats read through :mod:`tf_crnn.datasets.pages` (options: ``layout``, a LayoutOptions).
LAYOUT_FORMATS = ("page", "alto")
_UNSAFE_IN_NAMES = re.compile(r"[^\w.-]")  # a line id's characters that a file name does not get


def _page_folder(staging: Path, stem: str) -> Path:
    """A new folder ``staging/stem`` (``stem_2``, ... when two sources have pages of the same name)."""
    folder, n = staging / stem, 1
    while folder.exists():
        n += 1
        folder = staging / f"{stem}_{n}"
    folder.mkdir(parents=True)
    return folder


def _read_layout(fmt: str, source, staging: str | None, layout=None, progress: bool = False) -> Iterator[Item]:
    """Lines of PAGE / ALTO pages cut into ``staging`` (see the module doc); a progress bar over pages."""
    from .layout import LayoutError, LayoutOptions
    from .line_images import cut_line, load_page, page_background, polygon_problem
    from .pages import book_of, find_page_files, read_page_file

    if staging is None:
        raise ValueError(f"the {fmt} reader needs a staging folder to write line images into")
    options = layout if layout is not None else LayoutOptions()
    cache: dict = {}
    for page_file in tqdm(find_page_files(fmt, [source], options), desc=f"cutting lines ({fmt})", unit="page",
                          disable=not progress):
        try:
            page = read_page_file(fmt, page_file, options, cache)
            image = load_page(page.image)
        except (LayoutError, OSError) as e:
            yield Problem(str(page_file.xml), str(e).removeprefix(f"{page_file.xml}: "))
            continue
        yield from (Problem(f"{page.xml}: line {line_id}", reason) for line_id, reason in page.problems)
        folder, background, book = _page_folder(Path(staging), page.xml.stem), page_background(image), book_of(page.xml)
        for number, line in enumerate(page.lines, start=1):
            origin = f"{page.xml}: line {line.id}"
            reason = "no text (its TextEquiv / String content is empty or missing)" if not line.text.strip() \
                else polygon_problem(line.polygon, image.size)
            if reason is not None:
                yield Problem(origin, reason)
                continue
            path = folder / f"{number:04d}_{_UNSAFE_IN_NAMES.sub('_', line.id)}.png"
            cut_line(image, line.polygon, line.baseline, background).save(path)
            yield Record(str(path), line.text, origin, book)


def read_page(source: str | os.PathLike, staging: str | None = None, layout=None, progress: bool = False,
              **_) -> Iterator[Item]:
    """PAGE XML lines cut into ``staging`` (see the module doc; ``layout``: a LayoutOptions)."""
    return _read_layout("page", source, staging, layout, progress)


def read_alto(source: str | os.PathLike, staging: str | None = None, layout=None, progress: bool = False,
              **_) -> Iterator[Item]:
    """ALTO lines cut into ``staging`` (see the module doc; ``layout``: a LayoutOptions)."""
    return _read_layout("alto", source, staging, layout, progress)


#: format name -> reader(source, **options)
READERS: dict[str, Callable[..., Iterator[Item]]] = {
    "gt-pairs": read_gt_pairs,
    "iiit5k": read_iiit5k,
    "icdar": read_icdar,
    "mjsynth": read_mjsynth,
    "tsv": read_tsv,
    "filename": read_filename,
    "lmdb": read_lmdb,
    "page": read_page,
    "alto": read_alto,
}
# The names are defined once, in config.PrepareFormat (the CLI offers them as choices).
assert tuple(READERS) == PREPARE_FORMAT_NAMES, "READERS and config.PrepareFormat must name the same formats"
