"""Recognition over a whole collection: gather images from folders and CSVs, transcribe them chunk by chunk,
write the results in input order to a file that a killed run resumes.

``tf-crnn predict SOURCE... -o OUTPUT`` is this module behind a command line:

- :func:`gather` turns the sources into one stream of image paths: a folder is read recursively
  (:func:`walk_images`: files with a suffix of :data:`tf_crnn.images.IMAGE_SUFFIXES`, in sorted order), a
  ``.csv`` file gives the image paths of its rows (tf-crnn's annotation format,
  :func:`tf_crnn.annotations.read_csv`; the labels are ignored), anything else is one image file.
- :func:`transcribe_collection` takes the stream ``chunk_size`` images at a time (memory stays bounded at
  millions of images), sorts each chunk by aspect ratio so that the images of a batch are about as wide
  (less padding, as ``tf-crnn evaluate`` batches), transcribes it with the model's own runtime (SavedModel,
  TFLite or ONNX: :class:`tf_crnn.loader.PredictionModel`, or a :class:`tf_crnn.voting.VotingModel`) and
  hands the chunk's results back in input order.
- :class:`OutputFile` writes them, one line per image (:func:`format_line`: TSV ``path<TAB>text<TAB>score``,
  or JSON Lines when the name ends in ``.jsonl``), and flushes after every chunk, so that a kill loses at most
  the chunk in flight. Reopened with ``resume``, it drops an unfinished last line and reports the images
  already written (:func:`written_paths`), which the next run skips.

An image that cannot be read has a line too: empty text, no score and the reason (TSV: a fourth column;
JSON Lines: ``"score": null`` and an ``"error"`` field), so every image of the input is in the output once.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Protocol, Sequence

from .annotations import read_csv
from .images import IMAGE_SUFFIXES, ImageError, open_image

#: Suffix of the annotation CSVs taken as lists of images (compared in lower case).
CSV_SUFFIX = ".csv"
#: Suffix of an output file written as JSON Lines (any other name: TSV).
JSONL_SUFFIX = ".jsonl"
#: Images transcribed (and written) together by default: a kill loses at most this many.
DEFAULT_CHUNK_SIZE = 2000


class Transcriber(Protocol):
    """What :func:`transcribe_collection` needs of a model: :meth:`tf_crnn.loader.PredictionModel.predict`."""

    def predict(self, images, batch_size: int = 32, strict: bool = False, decoding=None) -> list: ...


class OutputError(ValueError):
    """An output file that cannot be continued (not written by ``tf-crnn predict``, or refused)."""


@dataclass(frozen=True)
class Sources:
    """The images of :func:`gather`.

    Attributes:
        paths: the image paths in input order (a generator: folders are walked as it is consumed).
        total: how many there are, when known without walking a folder (files and CSV rows only), else None.
    """

    paths: Iterator[str]
    total: int | None


def walk_images(folder: str | os.PathLike) -> Iterator[str]:
    """The image files under ``folder``, recursively, in sorted order.

    Each folder's own images come first (sorted by name), then its subfolders' (by name), depth first;
    names starting with ``.`` (hidden files and folders, macOS ``._`` companions) are left out, and so are
    symbolic links to folders (no cycles). The paths start with ``folder`` as given.

    Yields:
        ``str`` paths of files whose suffix, in lower case, is one of :data:`tf_crnn.images.IMAGE_SUFFIXES`.
    """
    for root, dirs, files in os.walk(os.fspath(folder)):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # os.walk descends into what is left, in order
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                yield os.path.join(root, name)


def gather(sources: Sequence[str | os.PathLike], csv_delimiter: str = ";") -> Sources:
    """One stream of image paths from folders, annotation CSVs and image files, in the order given.

    Args:
        sources: each a folder (:func:`walk_images`), a file ending in ``.csv`` (the image paths of its rows,
            made absolute against the CSV's folder, in file order; labels ignored), or an image file (kept as
            given, also when it does not exist: predicting reports it as missing).
        csv_delimiter: the CSVs' separator between path and label (``Params.csv_delimiter``).

    Returns:
        :class:`Sources`; every CSV is read here (its errors come at once), folders as the paths are consumed.

    Raises:
        FileNotFoundError / tf_crnn.annotations.AnnotationError: a CSV that is missing or not tf-crnn's format
            (named with its line).
    """
    parts: list[Iterable[str]] = []
    total: int | None = 0
    for source in map(os.fspath, sources):
        if os.path.isdir(source):
            parts.append(walk_images(source))
            total = None
        elif source.lower().endswith(CSV_SUFFIX):
            rows = [sample.image_path for sample in read_csv(source, csv_delimiter, normalization=None)]
            parts.append(rows)
            total = None if total is None else total + len(rows)
        else:
            parts.append([source])
            total = None if total is None else total + 1
    return Sources((path for part in parts for path in part), total)


def aspect_ratio(path: str) -> float:
    """Width / height of the image at ``path`` from its header (0.0 when it cannot be read: predicting says why)."""
    try:
        with open_image(path) as im:
            return im.width / max(1, im.height)
    except (OSError, ImageError):
        return 0.0


@dataclass
class Tally:
    """What :func:`transcribe_collection` did.

    Attributes:
        seen: images of the input (including skipped ones).
        skipped: images left out because they were in ``done``.
        transcribed: images transcribed.
        failed: images that could not be read (their results carry ``error``).
    """

    seen: int = 0
    skipped: int = 0
    transcribed: int = 0
    failed: int = 0


def transcribe_collection(model: Transcriber, paths: Iterable[str],
                          write: Callable[[list[tuple[str, object]]], None], batch_size: int = 32,
                          decoding=None, chunk_size: int = DEFAULT_CHUNK_SIZE, done: frozenset[str] = frozenset(),
                          progress: Callable[[int], object] | None = None) -> Tally:
    """Transcribe a stream of images chunk by chunk, each chunk batched by width, results in input order.

    Args:
        model: a :class:`tf_crnn.loader.PredictionModel` or :class:`tf_crnn.voting.VotingModel`.
        paths: image paths (:attr:`Sources.paths`).
        write: called once per chunk with ``[(path, Prediction), ...]`` in input order (an unreadable image's
            :class:`~tf_crnn.loader.Prediction` has ``error`` set).
        batch_size: images per model call.
        decoding: a :class:`tf_crnn.decoding.Decoding` (default: the model's own).
        chunk_size: images read, sorted and transcribed together (memory grows with it; a kill loses one).
        done: absolute paths (``os.path.abspath``) to skip: those already in the output (:func:`written_paths`).
        progress: called with the number of images each chunk advanced (transcribed or skipped), e.g.
            ``tqdm.update``.

    Returns:
        a :class:`Tally`.

    Raises:
        ValueError: ``chunk_size`` < 1; as :meth:`tf_crnn.loader.PredictionModel.predict` otherwise.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk size must be >= 1, got {chunk_size}")
    tally = Tally()
    for chunk, skipped in _chunks(paths, chunk_size, done):
        tally.seen += len(chunk) + skipped
        tally.skipped += skipped
        if chunk:
            # Similar widths in a batch, as evaluation batches: less padding, fewer wasted time steps.
            order = sorted(range(len(chunk)), key=lambda i: aspect_ratio(chunk[i]))
            predictions = model.predict([chunk[i] for i in order], batch_size=batch_size, decoding=decoding)
            results: list = [None] * len(chunk)
            for i, prediction in zip(order, predictions):
                results[i] = prediction
            failed = sum(1 for p in results if p.error)
            tally.failed += failed
            tally.transcribed += len(chunk) - failed
            write(list(zip(chunk, results)))
        if progress is not None:
            progress(len(chunk) + skipped)
    return tally


def _chunks(paths: Iterable[str], size: int, done: frozenset[str]) -> Iterator[tuple[list[str], int]]:
    """``(up to size paths not in done, how many were skipped before them)``; the last may be short."""
    chunk: list[str] = []
    skipped = 0
    for path in paths:
        if done and os.path.abspath(path) in done:
            skipped += 1
            continue
        chunk.append(path)
        if len(chunk) == size:
            yield chunk, skipped
            chunk, skipped = [], 0
    if chunk or skipped:
        yield chunk, skipped


def is_jsonl(output: str | os.PathLike) -> bool:
    """Whether ``output`` is written as JSON Lines (its name ends in ``.jsonl``), else TSV."""
    return os.fspath(output).lower().endswith(JSONL_SUFFIX)


def format_line(path: str, prediction, jsonl: bool) -> str:
    """One output line (with its ``\\n``) for an image and its :class:`~tf_crnn.loader.Prediction`.

    TSV: ``path<TAB>text<TAB>score`` (score with 4 decimals, as ``tf-crnn predict`` prints), or for an image
    that could not be read ``path<TAB><TAB><TAB>reason``. JSON Lines: ``{"path", "text", "score"}``, or
    ``{"path", "text": "", "score": null, "error": reason}``. Tabs and line breaks of the reason become spaces.
    """
    if jsonl:
        record = {"path": path, "text": prediction.text, "score": None if prediction.error else prediction.score}
        if prediction.error:
            record["error"] = prediction.error
        return json.dumps(record, ensure_ascii=False) + "\n"
    if prediction.error:
        return f"{path}\t\t\t{' '.join(prediction.error.split())}\n"
    return f"{path}\t{prediction.text}\t{prediction.score:.4f}\n"


def path_of_line(line: str, jsonl: bool) -> str | None:
    """The image path of one complete output line (without its ``\\n``), or None if it is not one of ours."""
    if jsonl:
        try:
            record = json.loads(line)
        except ValueError:
            return None
        path = record.get("path") if isinstance(record, dict) else None
        return path if isinstance(path, str) else None
    path, tab, _ = line.partition("\t")
    return path if tab else None


def written_paths(output: str | os.PathLike, repair: bool = True) -> tuple[frozenset[str], bool]:
    """The images an output file already holds, after dropping an unfinished last line.

    A run killed while writing can leave a last line without its ``\\n``; with ``repair`` the file is cut
    back to its last complete line (that image is then transcribed again).

    Args:
        output: a file written by :class:`OutputFile` (a missing file holds nothing).
        repair: truncate an unfinished last line away.

    Returns:
        ``(paths, repaired)``: the absolute paths (``os.path.abspath`` as of now: resume from the same working
        folder) of its lines, and whether an unfinished last line was dropped.

    Raises:
        OutputError: a complete line that is not a line of ``tf-crnn predict``'s TSV / JSON Lines (file:line).
    """
    output = os.fspath(output)
    if not os.path.exists(output):
        return frozenset(), False
    jsonl = is_jsonl(output)
    paths: set[str] = set()
    complete = 0  # bytes up to the end of the last complete line
    with open(output, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                break  # the unfinished last line of a killed run
            complete += len(raw)
            try:
                path = path_of_line(raw[:-1].decode("utf-8"), jsonl)
            except UnicodeDecodeError:
                path = None
            if path is None:
                raise OutputError(f"{output}:{number}: not a line of tf-crnn predict's "
                                  f"{'JSON Lines' if jsonl else 'TSV'} output; --resume continues only such "
                                  "a file (choose another -o, or remove this one)")
            paths.add(os.path.abspath(path))
    repaired = complete != os.path.getsize(output)
    if repaired and repair:
        os.truncate(output, complete)
    return frozenset(paths), repaired


class OutputFile:
    """The ``-o`` file of ``tf-crnn predict``: lines appended chunk by chunk and flushed to disk after each.

    Args:
        path: the file; ``.jsonl`` -> JSON Lines, anything else -> TSV (:func:`format_line`).
        resume: continue an existing file (:func:`written_paths` gives what it holds, an unfinished last
            line is dropped); without it an existing non-empty file is refused (hours of results are not
            overwritten by a repeated command).

    Attributes:
        done: absolute paths of the images already in the file (empty unless ``resume``).
        repaired: whether an unfinished last line was dropped.

    Raises:
        OutputError: the file exists and is not empty without ``resume``, or is not ours with it.
        OSError: the file's folder is missing, the file or folder is not writable, or an unfinished last line
            cannot be cut off.
    """

    def __init__(self, path: str | os.PathLike, resume: bool = False):
        self.path = os.fspath(path)
        self.jsonl = is_jsonl(self.path)
        if not resume and os.path.isfile(self.path) and os.path.getsize(self.path) > 0:
            raise OutputError(f"{self.path} exists: add --resume to continue it (the images it holds are "
                              "skipped), or remove it to start over")
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{self.path}: no folder {folder} to write it in")
        if not os.access(self.path if os.path.exists(self.path) else folder, os.W_OK):
            raise PermissionError(f"{self.path}: not writable")
        self.done, self.repaired = written_paths(self.path) if resume else (frozenset(), False)
        self._file = None  # opened at the first write: a run that fails before it leaves no empty file

    def write(self, results: list[tuple[str, object]]) -> None:
        """Append one chunk's ``(path, Prediction)`` lines, then flush them to disk (``fsync``).

        Raises:
            OSError: the file cannot be opened or written.
        """
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8", newline="\n")
        self._file.write("".join(format_line(path, prediction, self.jsonl) for path, prediction in results))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file (if a chunk was written)."""
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> "OutputFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
