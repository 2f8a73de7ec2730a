"""The tf-crnn annotation CSV format: read, split into symbols, write.

One row per image::

    path/to/image.png;|s|y|m|b|o|l|s|

``;`` (``csv_delimiter``) separates the image path from the label and ``|``
(``string_split_delimiter``) separates the label's symbols, so one symbol can
be several code points (``aͤ``, ``special_char``). This is the format of the
original tf-crnn (github.com/solivr/tf-crnn, 0.5 and before). Relative image
paths resolve against the folder of the CSV file. No header row.

This module has no TensorFlow dependency so converters and tools can use it.
"""
from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Sequence

import pandas as pd
import regex

from ._util import atomic_write
from .textfiles import TextFileError, read_text


class AnnotationError(ValueError):
    """A CSV row or label that cannot be used; the message names file and line."""


@dataclass(frozen=True, slots=True)  # slots: a million rows take about 100 bytes less each
class Sample:
    """One annotated image.

    Attributes:
        image_path: absolute path of the image file.
        symbols: the label as a tuple of symbols (each one or more code points).
        csv_file: the CSV file the row came from.
        line: 1-based line number of the row in ``csv_file``.
    """

    image_path: str
    symbols: tuple[str, ...]
    csv_file: str
    line: int

    @property
    def text(self) -> str:
        """The label as plain text (symbols joined without separator)."""
        return "".join(self.symbols)

    def where(self) -> str:
        """``file:line`` for error messages."""
        return f"{self.csv_file}:{self.line}"


def listing(problems, limit: int = 20) -> str:
    """The first ``limit`` problems, one per line indented by two spaces, then ``... and K more``.

    For error messages that name many rows (file:line) without flooding the terminal.
    """
    lines = [str(p) for p in problems]
    more = [f"... and {len(lines) - limit} more"] if len(lines) > limit else []
    return "  " + "\n  ".join(lines[:limit] + more)


def split_label(label: str, string_split_delimiter: str = "|") -> tuple[str, ...]:
    """Split a ``|a|b|c|`` label into its symbols.

    Leading and trailing delimiters are optional; empty fields are dropped.

    Args:
        label: the label field of a CSV row.
        string_split_delimiter: the symbol separator (``|`` by default).

    Returns:
        The symbols, in order.
    """
    return tuple(filter(None, label.split(string_split_delimiter)))


def graphemes(text: str) -> list[str]:
    """Split text into Unicode extended grapheme clusters (UAX #29).

    ``"aͤb"`` gives ``["aͤ", "b"]``: a base letter and its combining marks form
    one symbol, as OCR ground truth expects.
    """
    return _GRAPHEME.findall(text)


_GRAPHEME = regex.compile(r"\X")  # compiled once: regex.findall's pattern cache costs more than the split


def normalize(text: str, form: str | None = "NFC") -> str:
    """Unicode-normalize ``text``.

    Args:
        text: any text.
        form: ``NFC``, ``NFD``, ``NFKC``, ``NFKD``; None or ``"none"`` (the ``unicode_normalization``
            setting's word for it) leave the text as it is.
    """
    return unicodedata.normalize(form, text) if form and form != "none" else text


def normalize_symbols(symbols: Iterable[str], form: str | None = "NFC") -> tuple[str, ...]:
    """Each symbol normalized on its own (:func:`normalize`), so symbol boundaries stay where the label put them."""
    symbols = tuple(symbols)
    if "".join(symbols).isascii():  # every form leaves ASCII as it is: a million word labels read 4 s faster
        return symbols
    return tuple(normalize(s, form) for s in symbols)


def format_label(symbols: Sequence[str], string_split_delimiter: str = "|") -> str:
    """Join symbols into the ``|a|b|c|`` label field.

    Raises:
        AnnotationError: a symbol contains the delimiter or is empty, so the
            row could not be read back.
    """
    for s in symbols:
        if s == "" or string_split_delimiter in s:
            raise AnnotationError(
                f"symbol {s!r} cannot be written with string_split_delimiter "
                f"{string_split_delimiter!r}; choose another delimiter"
            )
    return string_split_delimiter + string_split_delimiter.join(symbols) + string_split_delimiter


def read_csv(
    csv_file: str | os.PathLike,
    csv_delimiter: str = ";",
    string_split_delimiter: str = "|",
    normalization: str | None = "NFC",
) -> list[Sample]:
    """Read one annotation CSV with pandas.

    Args:
        csv_file: path of the CSV (UTF-8, optional BOM, no header).
        csv_delimiter: separator between path and label.
        string_split_delimiter: separator between symbols of the label.
        normalization: the Unicode form every label symbol is put in (``unicode_normalization``: ``NFC``,
            ``NFD``, or ``none`` / None for the labels as written; :func:`normalize_symbols`). Image paths
            are kept as written: the file system decides how they match.

    Returns:
        The samples in file order; image paths made absolute against the CSV's
        folder.

    The row is split at the first ``csv_delimiter``, so labels may contain it
    (a ``;`` symbol); image paths may not.

    Raises:
        FileNotFoundError: the CSV does not exist.
        AnnotationError: not UTF-8 (the line and byte offset, and the command that converts it: see
            :mod:`tf_crnn.textfiles`), a header row, a row without delimiter, or an empty path or label (message
            names file and line). A 0-byte file gives no samples.
    """
    csv_file = os.path.abspath(os.fspath(csv_file))
    try:
        text = read_text(csv_file, "annotation CSV")
    except TextFileError as e:
        raise AnnotationError(str(e)) from None
    base = os.path.dirname(csv_file)
    lines = pd.Series(text.splitlines(), dtype=object)
    if lines.empty:
        return []  # a 0-byte file: no rows (the split's check says when a split ends up with none)
    # Split at the FIRST delimiter only: the label may itself contain it (a ';' symbol). partition, not
    # split(n=1, expand=True): the same fields in half the time (2.0 against 4.5 s for 1 M rows, measured).
    fields = lines.str.partition(csv_delimiter)
    samples = []
    for line, (path, delimiter, label) in enumerate(zip(fields[0], fields[1], fields[2]), start=1):
        if not delimiter:
            if path.strip() == "":
                continue  # blank line
            raise AnnotationError(
                f"{csv_file}:{line}: no {csv_delimiter!r} between image path and label; "
                f"check csv_delimiter (now {csv_delimiter!r})"
            )
        if path == "":
            raise AnnotationError(f"{csv_file}:{line}: empty image path")
        if line == 1 and _looks_like_header(path, base):
            raise AnnotationError(
                f"{csv_file}:1: {path}{csv_delimiter}{label} looks like a header row, but tf-crnn's CSVs have none "
                f"(each row is image path{csv_delimiter}label): delete the first line")
        symbols = normalize_symbols(split_label(label, string_split_delimiter), normalization)
        if not symbols:
            raise AnnotationError(f"{csv_file}:{line}: empty label for {path}")
        samples.append(Sample(os.path.normpath(os.path.join(base, path)), symbols, csv_file, line))
    return samples


_HEADER_WORDS = {"path", "image", "images", "file", "filename", "file_name", "image_path", "imagepath", "img",
                 "filepath", "name", "id"}


def _looks_like_header(path: str, base: str) -> bool:
    """Whether a first row's path field is a column name (``path``, ``filename``, ...) naming no existing file."""
    return path.strip().lower() in _HEADER_WORDS and not os.path.exists(os.path.join(base, path))


def read_csvs(
    csv_files: Iterable[str | os.PathLike], csv_delimiter: str = ";", string_split_delimiter: str = "|",
    normalization: str | None = "NFC",
) -> list[Sample]:
    """Read and concatenate several annotation CSVs (see :func:`read_csv`)."""
    samples: list[Sample] = []
    for f in csv_files:
        samples.extend(read_csv(f, csv_delimiter, string_split_delimiter, normalization))
    return samples


@dataclass
class DuplicateRows:
    """Rows of one split that name the same image (:func:`find_duplicate_rows`).

    Attributes:
        unique: the rows with each repeated (same path, same label) row after the first left out, in file order;
            rows of conflicting images are still in.
        repeated: ``(first row, later row)`` pairs of the same image with the same label.
        conflicting: image path -> its rows, for images listed with different labels (ambiguous ground truth).
    """

    unique: list[Sample]
    repeated: list[tuple[Sample, Sample]]
    conflicting: dict[str, list[Sample]]

    def repeated_lines(self) -> list[str]:
        """``file:line == file:line (path)`` for each repeated row, for a message."""
        return [f"{later.where()} == {first.where()} ({first.image_path})" for first, later in self.repeated]

    def conflicting_lines(self) -> list[str]:
        """``path: file:line 'label', file:line 'label'`` for each conflicting image, for a message."""
        return [f"{path}: " + ", ".join(f"{s.where()} {s.text!r}" for s in rows)
                for path, rows in self.conflicting.items()]


def find_duplicate_rows(samples: Sequence[Sample]) -> DuplicateRows:
    """Group rows by image path (absolute, as :func:`read_csv` makes them): repeats and conflicts.

    A repeat (same image, same label) usually comes from concatenating overlapping exports; it would count
    the image twice in an epoch and in the CER. Different labels for one image leave the ground truth
    ambiguous: no choice between them is right.
    """
    if len({s.image_path for s in samples}) == len(samples):  # the usual case, checked in a fraction of the time
        return DuplicateRows(list(samples), [], {})
    by_path: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_path.setdefault(s.image_path, []).append(i)
    repeated, conflicting, dropped = [], {}, set()
    for path, indices in by_path.items():
        rows = [samples[i] for i in indices]
        if len(rows) == 1:
            continue
        if len({r.symbols for r in rows}) > 1:
            conflicting[path] = rows
            continue
        repeated += [(rows[0], r) for r in rows[1:]]
        dropped.update(indices[1:])
    return DuplicateRows([s for i, s in enumerate(samples) if i not in dropped], repeated, conflicting)


def shared_images(first: Iterable[Sample], second: Iterable[Sample]) -> list[str]:
    """Image paths listed in both sample lists (a train/eval leak), in the order of ``second``, each once."""
    paths = {s.image_path for s in first}
    return list(dict.fromkeys(s.image_path for s in second if s.image_path in paths))


def write_csv(
    rows: Iterable[tuple[str, Sequence[str]]],
    csv_file: str | os.PathLike,
    csv_delimiter: str = ";",
    string_split_delimiter: str = "|",
    relative: bool = True,
) -> int:
    """Write ``(image_path, symbols)`` rows atomically (temporary file, then rename).

    Args:
        rows: image paths and their symbol sequences.
        csv_file: destination; its folder is created.
        csv_delimiter: separator between path and label.
        string_split_delimiter: separator between symbols.
        relative: write image paths relative to the CSV's folder (portable),
            else absolute.

    Returns:
        The number of rows written.

    Raises:
        AnnotationError: a path contains ``csv_delimiter`` or a symbol cannot be
            represented; nothing is written then.
    """
    csv_file = os.path.abspath(os.fspath(csv_file))
    base = os.path.dirname(csv_file)
    os.makedirs(base, exist_ok=True)
    lines = []
    for path, symbols in rows:
        path = os.path.abspath(path)
        if relative:
            path = os.path.relpath(path, base)
        if csv_delimiter in path or "\n" in path:
            raise AnnotationError(f"image path {path!r} contains the csv_delimiter {csv_delimiter!r}")
        lines.append(f"{path}{csv_delimiter}{format_label(symbols, string_split_delimiter)}\n")
    with atomic_write(csv_file, newline="") as out:
        out.writelines(lines)
    return len(lines)
