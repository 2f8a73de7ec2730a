"""Recognise the text lines of PAGE XML / ALTO pages and write the text back into a copy of each file.

What ``tf-crnn predict --page|--alto FILES... --output-dir DIR`` does, page by page:

1. read the file (:func:`tf_crnn.datasets.pages.read_page_file`: lines in reading order, the page image found
   as ``tf-crnn prepare page|alto`` finds it);
2. cut every line as ``tf-crnn prepare`` cuts it (:mod:`tf_crnn.datasets.line_images`: upright, masked), in
   memory, whatever its text (lines whose polygon cannot be cut are left out and reported);
3. transcribe the crops ``batch_size`` at a time with the model (:class:`tf_crnn.loader.PredictionModel`, or
   several voting: :class:`tf_crnn.voting.VotingModel`);
4. write ``DIR/<the file's name>`` with the text and scores (:func:`tf_crnn.datasets.page_writer.write_recognition`).

A page that cannot be read (its image missing, bad XML) is reported and passed over; the others are written.

Example::

    from tf_crnn.loader import PredictionModel
    from tf_crnn.page_recognition import recognise_pages
    outcome = recognise_pages(PredictionModel("output/fraktur/export"), "page",
                              ["../shared/data/ocrd-kant-1784/OCR-D-GT-PAGE"], "ocr-pages")
    print(len(outcome.written), "pages written,", len(outcome.failed), "failed")
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .datasets.layout import LayoutError, LayoutOptions, Line, Page
from .datasets.line_images import cut_line, load_page, page_background, polygon_problem
from .datasets.page_writer import LineText, WriteOptions, write_recognition
from .datasets.pages import PageFile, find_page_files, read_page_file


@dataclass(frozen=True)
class PageWritten:
    """One page recognised and written.

    Attributes:
        xml: the file read; out: the file written.
        lines: how many lines were recognised.
        left_out: ``(line id, reason)`` of lines that were not (their text in ``out`` is the one they had).
    """

    xml: Path
    out: Path
    lines: int
    left_out: list[tuple[str, str]]


@dataclass
class PagesOutcome:
    """What :func:`recognise_pages` did.

    Attributes:
        written: the pages written, in the order of the sources.
        failed: ``(file, reason)`` of pages that could not be read (nothing written for them).
    """

    written: list[PageWritten] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def output_paths(files: list[PageFile], output_dir: str | os.PathLike) -> list[Path]:
    """``output_dir/<name of each file>``.

    Raises:
        ValueError: two files of the same name (their copies would overwrite each other), or a copy that
            would overwrite the file it is made from.
    """
    folder = Path(output_dir)
    by_name: dict[str, Path] = {}
    for page_file in files:
        other = by_name.setdefault(page_file.xml.name, page_file.xml)
        if other != page_file.xml:
            raise ValueError(f"two pages are named {page_file.xml.name} ({other}, {page_file.xml}): their copies in "
                             f"{folder} would overwrite each other; recognise them into separate --output-dir")
    targets = [folder / page_file.xml.name for page_file in files]
    for page_file, target in zip(files, targets):
        if target.resolve() == page_file.xml.resolve():
            raise ValueError(f"--output-dir {folder} holds {page_file.xml} itself: the copy with the recognised text "
                             "would overwrite it; choose another folder")
    return targets


def recognise_page(model: Any, page: Page, batch_size: int = 32, decoding=None
                   ) -> tuple[list[tuple[Line, LineText]], list[tuple[str, str]]]:
    """Cut and transcribe the lines of one page.

    Args:
        model: a :class:`tf_crnn.loader.PredictionModel` or :class:`tf_crnn.voting.VotingModel`.
        page: the page as read.
        batch_size: crops per model call.
        decoding: a :class:`tf_crnn.decoding.Decoding`, or None: the model's own.

    Returns:
        ``(recognised, left_out)``: the lines transcribed with their text and score (in page order), and
        ``(line id, reason)`` of those that were not (the reader's problems, uncuttable polygons).

    Raises:
        OSError: the page image cannot be decoded.
    """
    image = load_page(page.image)
    background = page_background(image)
    left_out = list(page.problems)
    lines, crops = [], []
    for line in page.lines:
        problem = polygon_problem(line.polygon, image.size)
        if problem is not None:
            left_out.append((line.id, problem))
            continue
        lines.append(line)
        crops.append(cut_line(image, line.polygon, line.baseline, background))
    predictions = model.predict(crops, batch_size=batch_size, decoding=decoding) if crops else []
    recognised = []
    for line, prediction in zip(lines, predictions):
        if prediction.error:
            left_out.append((line.id, prediction.error))
        else:
            recognised.append((line, LineText(prediction.text, prediction.score)))
    return recognised, left_out


def recognise_pages(model: Any, fmt: str, sources: Iterable[str | os.PathLike], output_dir: str | os.PathLike,
                    layout: LayoutOptions = LayoutOptions(), writing: WriteOptions = WriteOptions(),
                    batch_size: int = 32, decoding=None, progress: bool = True) -> PagesOutcome:
    """Recognise every page of ``sources`` and write each with its text into ``output_dir`` (see the module doc).

    Args:
        model: a :class:`tf_crnn.loader.PredictionModel` or :class:`tf_crnn.voting.VotingModel`.
        fmt: ``"page"`` or ``"alto"``.
        sources: PAGE / ALTO files, folders of them, or a METS file (:func:`~tf_crnn.datasets.pages.find_page_files`).
        output_dir: where the copies go, one per file, under the file's name (created when missing).
        layout: how to find the page images (``text_index`` is not used: the text read is not needed).
        writing: where the text goes in the file and what happens to the text already there.
        batch_size: line crops per model call.
        decoding: as :meth:`tf_crnn.loader.PredictionModel.predict`.
        progress: a tqdm bar over the pages (its postfix counts the lines).

    Returns:
        The pages written and those that failed.

    Raises:
        FileNotFoundError, LayoutError: a source that does not exist or holds no file of the format.
        ValueError: two files of one name, or ``output_dir`` holding an input file.
    """
    from tqdm import tqdm

    files = find_page_files(fmt, sources, layout)
    targets = output_paths(files, output_dir)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    outcome, cache, line_count = PagesOutcome(), {}, 0
    bar = tqdm(list(zip(files, targets)), desc=f"recognising {fmt} pages", unit="page", disable=not progress)
    for page_file, target in bar:
        try:
            page = read_page_file(fmt, page_file, layout, cache)
            recognised, left_out = recognise_page(model, page, batch_size, decoding)
        except (LayoutError, OSError) as e:
            outcome.failed.append((page_file.xml, str(e)))
            continue
        write_recognition(page, recognised, target, writing)
        outcome.written.append(PageWritten(page_file.xml, target, len(recognised), left_out))
        line_count += len(recognised)
        bar.set_postfix(lines=line_count)
    return outcome
