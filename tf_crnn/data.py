"""From annotated samples to batches: checks before training, then the tf.data pipeline.

1. :func:`load_split` reads the CSVs, checks every label against the alphabet
   and :func:`scan_samples` checks every image once (:func:`check_images`:
   Pillow and :mod:`tf_crnn.images` for the header and for files TensorFlow
   does not read as they are, TensorFlow's own decoder for the others) to find
   missing / undecodable images, labels too long for the CTC sequence length
   their image width allows (:func:`tf_crnn.decoding.ctc_steps_needed`) and
   degenerate images (one colour, squeezed to ``max_width``: kept, counted, listed).
   What it finds about each usable image is remembered (:mod:`tf_crnn.check_cache`),
   so a later run checks only new or changed files.
2. :func:`make_dataset` decodes with TensorFlow, resizes to the fixed height
   keeping the aspect ratio (:func:`preprocess_image`, shared with the
   exported model), augments (training only) and batches by width buckets so
   little padding is wasted. Files :func:`tf_crnn.images.decodes_directly`
   rejects (GIF, BMP, TIFF, WebP, CMYK JPEG, transparent or 16-bit grey PNG,
   ...) enter it as :func:`tf_crnn.images.normalized_png` bytes.

A split may instead be compiled folders (``tf-crnn compile``, :mod:`tf_crnn.compiled`): its rows and the facts
about its images come from their index (checked when compiled, not again), and :func:`make_dataset` reads the
encoded images from their shards (:func:`compiled_records`) instead of the files.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import PIL
import tensorflow as tf
from tqdm import tqdm

from . import augmentation, check_cache, compiled, images
from .alphabet import Alphabet
from .annotations import Sample, find_duplicate_rows, listing, shared_images
from .config import Params
from .decoding import ctc_steps_needed
from .images import ImageInfo

log = logging.getLogger(__name__)


class DataError(ValueError):
    """Bad training data found before training; the message lists file:line and what to do."""


@dataclass(frozen=True, slots=True)  # slots: a million rows take about 100 bytes less each
class Entry:
    """A checked sample ready for the pipeline."""

    sample: Sample
    codes: tuple[int, ...]
    width: int  # resized width in pixels
    direct: bool = True  # the pipeline decodes the file's bytes; False: tf_crnn.images.normalized_png of it
    record: compiled.Record | None = None  # where a compiled data set holds its image; None: read the file


@dataclass
class ScanReport:
    """Outcome of :func:`scan_samples`."""

    entries: list[Entry] = field(default_factory=list)
    bad_images: list[tuple[Sample, str]] = field(default_factory=list)
    too_long: list[tuple[Sample, int, int]] = field(default_factory=list)  # sample, time steps, min width needed
    #: Usable but suspicious images (they stay in ``entries``): sample, kind (``blank`` / ``squeezed``), details.
    degenerate: list[tuple[Sample, str, str]] = field(default_factory=list)

    @property
    def degenerate_counts(self) -> Counter:
        """How many degenerate images of each kind (``blank``, ``squeezed``)."""
        return Counter(kind for _, kind, _ in self.degenerate)

    @property
    def warnings(self) -> list[str]:
        """One line per degenerate image: ``file:line: image: kind: details``."""
        return [f"{s.where()}: {s.image_path}: {kind}: {details}" for s, kind, details in self.degenerate]

    @property
    def problems(self) -> list[str]:
        """One line per rejected sample: ``file:line: image: reason``."""
        lines = [f"{s.where()}: {s.image_path}: {reason}" for s, reason in self.bad_images]
        lines += [
            f"{s.where()}: label of {len(s.symbols)} symbols needs more CTC time steps than the "
            f"{steps} its image allows (resized width >= {need} px needed); shorten the label, "
            f"lower the pooling or raise max_width"
            for s, steps, need in self.too_long
        ]
        return lines


def check_images(paths: list[str], channels: int, progress: bool = True, desc: str = "checking images",
                 stats: check_cache.FileStats | None = None) -> list[ImageInfo | str]:
    """Check that every image can be fed to a model of ``channels`` channels, as training and export will.

    :func:`tf_crnn.images.inspect_images` opens each file with Pillow (the header only for plain PNG and JPEG)
    and converts the ones TensorFlow does not read as they are; the others are decoded here with
    ``tf.io.decode_image`` at ``channels``, the decoder of :func:`preprocess_image` (a few files Pillow accepts,
    such as a PNG cut short after its pixel data, TensorFlow rejects). So each image is decoded once, by the
    decoder training will use.

    What is found about a usable image is remembered in the check cache (:mod:`tf_crnn.check_cache`, by
    absolute path, size and modification time): a later call checks only new or changed files. ``stats``: the
    run's :class:`tf_crnn.check_cache.FileStats`, so its fingerprint does not stat the files again (None: a new one).

    Returns:
        Per path, in order: an :class:`tf_crnn.images.ImageInfo` with ``blank`` filled in, or the
        reason the image cannot be used (a str).
    """
    cache = check_cache.shared()
    variant = check_variant(channels)
    # Before reading: a file changed while it is checked gets checked again.
    keys = (stats or check_cache.FileStats()).keys(paths)
    known = cache.image_facts(keys, variant)
    infos: list[ImageInfo | str | None] = [None if facts is None else ImageInfo(*facts) for facts in known]
    todo = [i for i, info in enumerate(infos) if info is None]
    if len(todo) < len(paths):
        log.info("%s: %d of %d image(s) known from the check cache %s", desc, len(paths) - len(todo), len(paths),
                 cache.file)
    checked = _check_unknown([paths[i] for i in todo], channels, progress, desc)
    for i, info in zip(todo, checked):
        infos[i] = info
    usable = [(keys[i], (info.width, info.height, info.direct, info.blank)) for i, info in zip(todo, checked)
              if isinstance(info, ImageInfo) and info.blank is not None]
    cache.remember_images(usable, variant)
    return infos


def check_variant(channels: int) -> str:
    """What a check's facts depend on besides the file: the channels and the decoders' versions and rule."""
    return (f"channels {channels}; Pillow {PIL.__version__}; TensorFlow {tf.__version__}; "
            f"rule {images.RULE_VERSION}")


def _check_unknown(paths: list[str], channels: int, progress: bool, desc: str) -> list[ImageInfo | str]:
    """:func:`check_images` without the cache: Pillow for every file, then TensorFlow for the direct ones."""
    if not paths:
        return []
    infos = images.inspect_images(paths, channels, progress, desc)
    direct = [i for i, info in enumerate(infos) if isinstance(info, ImageInfo) and info.direct]
    verdicts = _decode_with_tensorflow([paths[i] for i in direct], channels, progress, desc)
    for i, verdict in zip(direct, verdicts):
        infos[i] = verdict if isinstance(verdict, str) else infos[i]._replace(blank=verdict)
    return infos


def _decode_with_tensorflow(paths: list[str], channels: int, progress: bool, desc: str) -> list[bool | str]:
    """Per path: whether its decoded image is one colour, or TensorFlow's reason it cannot decode it."""
    if not paths:
        return []

    def probe(index, path):
        return index, _one_colour(_decode_file(path, channels))

    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths), dtype=np.int64), paths))
    # ignore_errors drops the images that fail: they are the indices missing from the output.
    ds = ds.map(probe, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False).ignore_errors()
    verdicts: list[bool | str | None] = [None] * len(paths)
    for index, blank in tqdm(ds.as_numpy_iterator(), total=len(paths), desc=f"{desc} (TensorFlow)",
                             disable=not progress, unit="img", mininterval=1.0):
        verdicts[index] = bool(blank)
    return [_tensorflow_reason(path, channels) if v is None else v for path, v in zip(paths, verdicts)]


def _tensorflow_reason(path: str, channels: int) -> bool | str:
    """Why ``tf.io.decode_image`` rejects one file (or, should it decode now, whether it is one colour)."""
    try:
        return bool(_one_colour(_decode_file(path, channels)))
    except tf.errors.OpError as e:
        return decode_failure(e)


def _decode_file(path: tf.Tensor | str, channels: int) -> tf.Tensor:
    """uint8 ``[height, width, channels]``: the file decoded as :func:`preprocess_image` decodes it."""
    return tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)


def _one_colour(image: tf.Tensor) -> tf.Tensor:
    """bool scalar: every pixel has the same value in every channel."""
    return tf.reduce_all(tf.reduce_min(image, axis=[0, 1]) == tf.reduce_max(image, axis=[0, 1]))


def decode_failure(error: tf.errors.OpError) -> str:
    """The reason an image cannot be used, in the decoder's own words, from a TensorFlow error.

    ``"Graph execution error: ... Invalid PNG data, size 38525 [[{{node DecodeImage}}]] [Op:...]"``
    -> ``"cannot decode image (TensorFlow: Invalid PNG data, size 38525)"``: no graph and node decorations.
    """
    text = re.sub(r"\{\{[^}]*\}\}|\[\[.*?\]\]|\[Op:[^\]]*\](\s*name:.*)?", " ", error.message, flags=re.S)
    lines = [line.strip() for line in text.splitlines()]
    useful = [line for line in lines if line and not line.startswith(("Graph execution error", "Detected at node"))]
    return f"cannot decode image (TensorFlow: {useful[-1] if useful else type(error).__name__})"


def degeneracy(info: ImageInfo, params: Params) -> tuple[str, str] | None:
    """``(kind, details)`` when a usable image is unlikely to teach or show anything, else None.

    Kinds: ``blank`` (one colour after conversion to the model's channels) and ``squeezed`` (wider
    than ``max_width`` at the model height, so it is compressed horizontally, by the factor given).
    """
    if info.blank:
        return "blank", "one colour after conversion to the model's channels"
    scaled = info.width * params.height / max(1, info.height)
    if scaled - params.max_width >= 0.5:  # resized_width rounds half up
        return "squeezed", (f"{info.width}x{info.height} px is {scaled:.0f} px wide at height {params.height}, "
                            f"squeezed {scaled / params.max_width:.1f}x to max_width {params.max_width}")
    return None


def scan_samples(samples: list[Sample], params: Params, alphabet: Alphabet,
                 progress: bool = True, desc: str = "checking images",
                 known: dict[str, compiled.Example] | None = None,
                 stats: check_cache.FileStats | None = None) -> ScanReport:
    """Check every image once (:func:`check_images`) and the CTC feasibility of every label.

    A label of L symbols with R adjacent repeats needs ``L + R`` time steps;
    the CRNN gives :meth:`Params.sequence_length` of the resized width.

    Args:
        samples: rows from the CSVs (labels already checked against the alphabet).
        params: gives height, width bounds, pooling and channels.
        alphabet: encodes the labels.
        progress: show a tqdm bar.
        known: image path -> its compiled example (:func:`compiled_examples`): those images were checked
            when compiled, their facts come from the index and their entries point at the records.
        stats: the run's file keys (:func:`check_images`).

    Returns:
        A :class:`ScanReport`: usable entries, rejected samples with reasons, degenerate entries.
    """
    report = ScanReport()
    known = known or {}
    sequence_length = functools.lru_cache(maxsize=None)(params.sequence_length)  # a few hundred widths, 1 M rows
    todo = [s.image_path for s in samples if s.image_path not in known]
    checked = iter(check_images(todo, params.input_channels, progress, desc, stats) if todo else [])
    infos = [known[s.image_path].info if s.image_path in known else next(checked) for s in samples]
    for sample, info in zip(samples, infos):
        if isinstance(info, str):
            report.bad_images.append((sample, info))
            continue
        width = params.resized_width(info.width, info.height)
        steps = sequence_length(width)
        needed = ctc_steps_needed(sample.symbols)
        if needed > steps:
            report.too_long.append((sample, steps, needed * math.prod(params.width_downsampling)))
            continue
        record = known[sample.image_path].record if sample.image_path in known else None
        report.entries.append(Entry(sample, tuple(alphabet.encode(sample.symbols)), width, info.direct, record))
        found = degeneracy(info, params)
        if found:
            report.degenerate.append((sample, *found))
    return report


def read_split(csv_files: list[str], params: Params, indexes: compiled.Indexes | None = None) -> list[Sample]:
    """Every row of one split's CSVs, in file order (``csv_delimiter``, ``string_split_delimiter``), labels in
    the ``unicode_normalization`` form; an entry that is a compiled folder gives the rows it holds
    (:func:`tf_crnn.compiled.read_rows`; ``indexes``: the run's, so its checks do not read the folders' indexes
    again).

    Raises:
        FileNotFoundError / AnnotationError: unreadable CSV.
        tf_crnn.compiled.CompiledDataError: a compiled folder that cannot be used.
    """
    return compiled.read_rows(csv_files, params.csv_delimiter, params.string_split_delimiter,
                              params.unicode_normalization, indexes)


def compiled_examples(csv_files: list[str], params: Params, name: str,
                      indexes: compiled.Indexes | None = None) -> dict[str, compiled.Example]:
    """Image path -> compiled example, of the split's compiled folders (empty when it has none).

    A split is all CSVs or all compiled folders: one pipeline reads either files or shards. ``indexes``: the
    run's :class:`tf_crnn.compiled.Indexes` (None: the indexes are read here).

    Raises:
        DataError: a split mixing CSVs and compiled folders.
        tf_crnn.compiled.CompiledDataError: a folder of other channels or Unicode form than ``params``.
    """
    folders = compiled.compiled_sources(csv_files)
    if folders and len(folders) < len(csv_files):
        csvs = [f for f in csv_files if os.path.abspath(f) not in folders]
        raise DataError(f"{name} split: compiled folders ({', '.join(folders)}) and CSVs ({', '.join(csvs)}) "
                        "cannot be mixed: compile the CSVs too, or list only CSVs")
    known: dict[str, compiled.Example] = {}
    indexes = indexes or compiled.Indexes()
    for folder in folders:
        for example in indexes.examples(folder, params.unicode_normalization, params.input_channels):
            known.setdefault(example.sample.image_path, example)  # the first, as without_duplicates keeps
    return known


def without_duplicates(samples: list[Sample], params: Params, name: str) -> list[Sample]:
    """``samples`` with repeated rows kept once and, under ``on_bad_sample=skip``, conflicting images left out.

    An image listed twice with the same label is kept once (a warning lists the ``file:line`` pairs): a repeat
    would weigh it twice in an epoch and count it twice in the eval CER. An image listed with different labels
    has no single ground truth: an error naming every row, or with ``on_bad_sample=skip`` all its rows are
    left out (a warning lists them).

    Raises:
        DataError: an image with different labels and ``on_bad_sample == "error"``.
    """
    found = find_duplicate_rows(samples)
    if found.repeated:
        log.warning("%s split: %d repeated row(s) (same image, same label) kept once:\n%s", name,
                    len(found.repeated), listing(found.repeated_lines()))
    if not found.conflicting:
        return found.unique
    listed = listing(found.conflicting_lines())
    if params.on_bad_sample == "error":
        raise DataError(f"{name} split: {len(found.conflicting)} image(s) listed with different labels, so their "
                        f"ground truth is ambiguous:\n{listed}\nKeep the one right row of each, or set "
                        "on_bad_sample=skip to leave all of their rows out.")
    log.warning("%s split: leaving out %d image(s) listed with different labels (on_bad_sample=skip):\n%s", name,
                len(found.conflicting), listed)
    return [s for s in found.unique if s.image_path not in found.conflicting]


def shared_with_training(train: list[Entry], evaluation: list[Entry], shown: int = 5) -> list[str]:
    """Images in both splits (a leak: the eval CER then measures memory too), with a warning if there are any.

    A warning, not an error: training and evaluating on one set is a deliberate check (can the model fit these
    lines at all?), and the run records the count (``info.train_eval_overlap``) beside its CER.

    Returns:
        The shared image paths (absolute), in eval order.
    """
    shared = shared_images([e.sample for e in train], [e.sample for e in evaluation])
    if shared:
        more = f" ... and {len(shared) - shown} more" if len(shared) > shown else ""
        log.warning("%d of %d eval image(s) are also training images, so the eval CER is not measured on unseen "
                    "lines: %s%s", len(shared), len(evaluation), ", ".join(shared[:shown]), more)
    return shared


def load_split(csv_files: list[str], params: Params, alphabet: Alphabet, name: str,
               progress: bool = True, samples: list[Sample] | None = None,
               stats: check_cache.FileStats | None = None,
               indexes: compiled.Indexes | None = None) -> list[Entry]:
    """Read, check and scan one split (``train`` or ``eval``).

    Logs a warning listing the degenerate images (kept) with their count per kind, and the
    number of images converted with Pillow before decoding. Rows naming one image twice go through
    :func:`without_duplicates` first.

    Args:
        samples: the rows of ``csv_files`` when the caller has read them already (:func:`read_split`; a
            training records them in its run too); None: read here.
        stats: the run's file keys, shared with its data fingerprint (:func:`check_images`).
        indexes: the compiled indexes the run has read already (:func:`read_split`).

    Raises:
        FileNotFoundError / AnnotationError: unreadable CSV.
        AlphabetError: a label symbol is not in the alphabet (file, line, symbol).
        DataError: bad images, infeasible labels or an image listed with different labels and
            ``on_bad_sample == "error"``, or no usable sample at all.
    """
    if samples is None:
        samples = read_split(csv_files, params)
    if not samples:
        raise DataError(f"{name} split: no rows in {csv_files}")
    samples = without_duplicates(samples, params, name)
    if not samples:
        raise DataError(f"{name} split: no usable sample left in {csv_files}")
    alphabet.check(samples)
    # Compiled images were checked when compiled: their facts come from the index, the shards are not read.
    report = scan_samples(samples, params, alphabet, progress, desc=f"checking {name} images",
                          known=compiled_examples(csv_files, params, name, indexes), stats=stats)
    problems = report.problems
    if problems:
        listed = listing(problems)
        if params.on_bad_sample == "error":
            raise DataError(f"{name} split: {len(problems)} unusable row(s):\n{listed}\n"
                            "Fix or remove them, or set on_bad_sample=skip to leave them out.")
        log.warning("%s split: skipping %d unusable row(s) (on_bad_sample=skip):\n%s", name, len(problems), listed)
    if not report.entries:
        raise DataError(f"{name} split: no usable sample left in {csv_files}")
    converted = sum(not e.direct for e in report.entries)
    log.info("%s split: %d usable image(s), %d converted with Pillow before decoding, %d degenerate",
             name, len(report.entries), converted, len(report.degenerate))
    if report.degenerate:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(report.degenerate_counts.items()))
        log.warning("%s split: %d of %d usable image(s) degenerate (%s), kept:\n%s", name, len(report.degenerate),
                    len(report.entries), counts, listing(report.warnings))
    return report.entries


# ---- TensorFlow side ---------------------------------------------------------

def preprocess_image(encoded: tf.Tensor, params: Params, width: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """Decode and resize one image to ``params.height`` keeping its aspect ratio.

    Args:
        encoded: tf.string scalar, bytes ``tf.io.decode_image`` reads (PNG, JPEG, BMP, GIF, WebP); other
            files, and those it reads differently from Pillow, come as :func:`tf_crnn.images.normalized_png`
            (see :func:`tf_crnn.images.decodes_directly`).
        params: height, width bounds and channels.
        width: target width (int32 scalar) when known in advance; else computed
            like :meth:`Params.resized_width`.

    Returns:
        image: float32 ``[height, width, channels]`` scaled to [-1, 1] (0 = mid grey).
        width: int32 scalar.
    """
    image = tf.io.decode_image(encoded, channels=params.input_channels, expand_animations=False)
    image = tf.image.convert_image_dtype(image, tf.float32)
    if width is None:
        shape = tf.cast(tf.shape(image), tf.float32)
        width = tf.cast(tf.floor(shape[1] * params.height / tf.maximum(shape[0], 1.0) + 0.5), tf.int32)
        width = tf.clip_by_value(width, params.min_width, params.max_width)
    image = tf.image.resize(image, [params.height, width], antialias=True)
    image.set_shape([params.height, None, params.input_channels])
    return image * 2.0 - 1.0, tf.cast(width, tf.int32)


def encoded_image(path: tf.Tensor, direct: tf.Tensor, channels: int) -> tf.Tensor:
    """The bytes :func:`preprocess_image` gets for one file: its own, or :func:`tf_crnn.images.normalized_png`.

    Args:
        path: tf.string scalar, the file.
        direct: tf.bool scalar, :attr:`Entry.direct`.
        channels: the model's input channels.

    Returns:
        tf.string scalar. The conversion runs in Python (``tf.numpy_function``), only for files
        that need it; such a pipeline cannot be sent to a tf.data service.
    """
    def convert(file_name):
        return images.normalized_png(os.fsdecode(file_name), channels)

    def converted():
        return tf.ensure_shape(tf.numpy_function(convert, [path], tf.string, stateful=False), [])

    return tf.cond(direct, lambda: tf.io.read_file(path), converted)


def columns_of(columns: dict[str, np.ndarray | list]) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """The function from an entry's number (int scalar tensor) to its row of ``columns`` (held as constants)."""
    table = {key: tf.constant(value) for key, value in columns.items()}
    return lambda i: {key: tf.gather(value, i) for key, value in table.items()}


def file_records(entries: list[Entry], columns: dict[str, np.ndarray], params: Params, shuffle: bool,
                 seed: int | None) -> tuple[tf.data.Dataset, Callable[[dict], tf.Tensor]]:
    """``columns`` per entry with its image file's path (shuffled, all entries at once, when ``shuffle``), and the
    function that reads an element's encoded image (:func:`encoded_image`; in the decoding step, so a file name,
    not an image, waits in the shuffle buffer)."""
    columns = {**columns, "path": [e.sample.image_path for e in entries]}
    # Only data with files TensorFlow does not read as they are gets the Python conversion step.
    converts = not all(e.direct for e in entries)
    if converts:
        columns["direct"] = np.array([e.direct for e in entries])
    if shuffle:
        # The shuffle buffer holds entry numbers, not the entries' columns: at a million entries, 1.5 against 2.6 GB
        # RSS after three epochs (a buffer element is a tensor per column), and the same seed gives the same
        # permutation (a shuffle's draws do not depend on what it shuffles).
        ds = tf.data.Dataset.range(len(entries)).shuffle(len(entries), seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(columns_of(columns), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = tf.data.Dataset.from_tensor_slices(columns)

    def read(item):
        path = item.pop("path")
        return encoded_image(path, item.pop("direct"), params.input_channels) if converts else tf.io.read_file(path)

    return ds, read


#: Shards a training reads at once (``interleave``'s cycle length): records of this many shards alternate.
INTERLEAVED_SHARDS = 8
#: Records a training's shuffle buffer holds after the interleave (encoded images, a few kB each).
SHUFFLE_BUFFER_RECORDS = 10_000
#: Records parsed together (``tf.io.parse_example``), in the order read.
PARSE_BATCH = 256


def compiled_records(entries: list[Entry], columns: dict[str, np.ndarray], shuffle: bool,
                     seed: int | None) -> tf.data.Dataset:
    """``columns`` per entry with ``encoded``, its image from its compiled folder's shards
    (:attr:`Entry.record`), in shard order, or when ``shuffle``: the shards in a new order each epoch,
    :data:`INTERLEAVED_SHARDS` of them read in turns, then a :data:`SHUFFLE_BUFFER_RECORDS` shuffle
    buffer; both seeded by ``seed`` (the same seed, the same order). Records the split does not use (their
    label too long for this model, a duplicate) are passed over.
    """
    folders = list(dict.fromkeys(e.record.folder for e in entries))
    manifests = {folder: compiled.load_manifest(folder) for folder in folders}  # sizes checked
    offsets = dict(zip(folders, np.cumsum([0] + [manifests[f]["totals"]["examples"] for f in folders]).tolist()))
    # Record (folder offset + number) -> position in entries, -1 for records this split leaves out.
    position = np.full(sum(manifests[f]["totals"]["examples"] for f in folders), -1, np.int32)
    for i, e in enumerate(entries):
        position[offsets[e.record.folder] + e.record.number] = i
    shards = [(path, offsets[folder]) for folder in folders
              for path in compiled.shard_paths(folder, manifests[folder])]
    ds = tf.data.Dataset.from_tensor_slices(([path for path, _ in shards],
                                             np.array([offset for _, offset in shards], np.int64)))
    if shuffle:
        ds = ds.shuffle(len(shards), seed=seed, reshuffle_each_iteration=True)
    spec = {name: feature for name, feature in compiled.parse_features().items() if name in ("image", "number")}
    position, row_of = tf.constant(position), columns_of(columns)

    def records(path, offset):  # each record with its folder's offset, unparsed: parsing runs in parallel below
        return tf.data.Dataset.zip((tf.data.TFRecordDataset(path), tf.data.Dataset.from_tensors(offset).repeat()))

    def parse(records, offsets):  # a batch at once: tf.io.parse_example is 1.6-3x parse_single_example's rate here
        found = tf.io.parse_example(records, spec)
        return found["image"], tf.gather(position, offsets + found["number"])

    ds = ds.interleave(records, cycle_length=min(len(shards), INTERLEAVED_SHARDS) if shuffle else 1,
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(PARSE_BATCH).map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
    ds = ds.filter(lambda image, i: i >= 0)
    if shuffle:
        ds = ds.shuffle(min(len(entries), SHUFFLE_BUFFER_RECORDS), seed=seed, reshuffle_each_iteration=True)

    def with_columns(image, i):
        return {"encoded": image, **row_of(i)}

    # Several workers split the elements, as they split a CSV split's, not the shards (tf.data's AUTO policy
    # would give each worker whole shards: uneven batch counts when the shards are few or of unequal size).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.map(with_columns, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).with_options(options)


def data_loss(error: tf.errors.OpError, *splits: list[Entry]) -> Exception:
    """What to raise for a read error of the pipeline: for compiled entries, a
    :class:`tf_crnn.compiled.CompiledDataError` naming the damaged shard (found by :func:`tf_crnn.compiled.damaged`:
    TensorFlow's message does not name the file); else ``error`` itself."""
    folders = list(dict.fromkeys(e.record.folder for entries in splits for e in entries if e.record is not None))
    found = compiled.damaged(folders) if folders else None
    return compiled.CompiledDataError(found) if found else error


def image_sources(entries: list[Entry]) -> list[str | bytes]:
    """Per entry what opens its image with :func:`tf_crnn.images.open_image`: the file's path, or for a
    compiled entry its encoded image read from the shards (the source file need not exist any more)."""
    numbers: dict[str, list[int]] = {}
    for e in entries:
        if e.record is not None:
            numbers.setdefault(e.record.folder, []).append(e.record.number)
    stored = {folder: compiled.read_images(folder, wanted) for folder, wanted in numbers.items()}
    return [e.sample.image_path if e.record is None else stored[e.record.folder][e.record.number] for e in entries]


def width_buckets(widths: list[int], batch_size: int, max_buckets: int = 8) -> list[int]:
    """Bucket boundaries at width quantiles, so a batch holds images of similar width."""
    if len(widths) < 2 * batch_size:
        return []
    qs = np.quantile(widths, np.linspace(0, 1, max_buckets + 1)[1:-1])
    return sorted({int(q) + 1 for q in qs})


def batch_count(entries: list[Entry], batch_size: int) -> int:
    """Number of batches in one pass of :func:`make_dataset` over ``entries`` (one worker).

    Each width bucket ends the pass with its own partial batch, so this is the sum over
    buckets of ``ceil(bucket size / batch_size)``, not ``ceil(len(entries) / batch_size)``.
    """
    widths = [e.width for e in entries]
    boundaries = width_buckets(widths, batch_size)
    # tf.data's bucket_by_sequence_length puts width w in bucket i when boundaries[i-1] <= w < boundaries[i].
    sizes = np.bincount(np.searchsorted(boundaries, widths, side="right"), minlength=len(boundaries) + 1)
    return int(sum(math.ceil(n / batch_size) for n in sizes))


#: Batches :func:`make_dataset` prepares ahead of the training step (fixed: tf.data's autotuner is off).
PREFETCH_BATCHES = 2


def cache_bytes(entries: list[Entry], params: Params) -> int:
    """Memory the decoded, resized images of ``entries`` take in :func:`make_dataset`'s cache, in bytes.

    float32 ``[height, width, channels]`` per image (4 bytes a value), at each entry's model width.
    """
    return 4 * params.height * params.input_channels * sum(e.width for e in entries)


def use_image_cache(params: Params, *splits: list[Entry]) -> bool:
    """What ``cache_images`` means for these splits: ``on``, ``off``, or ``auto`` = they fit ``cache_images_mb``."""
    if params.cache_images != "auto":
        return params.cache_images == "on"
    needed = sum(cache_bytes(entries, params) for entries in splits)
    fits = needed <= params.cache_images_mb * 2**20
    log.info("decoded-image cache %s: the splits take %.0f MiB, cache_images_mb=%d", "on" if fits else "off",
             needed / 2**20, params.cache_images_mb)
    return fits


def make_dataset(entries: list[Entry], params: Params, batch_size: int, training: bool,
                 seed: int | None = None, cache: bool = False) -> tf.data.Dataset:
    """The tf.data pipeline for checked entries.

    Elements are dicts:
        images: float32 ``[batch, height, max_width_in_batch, channels]``, padded with 0;
        widths: int32 ``[batch]``;
        labels: int32 ``[batch, max_label_len]``, padded with 0 (blank);
        label_lengths: int32 ``[batch]``;
        index: int32 ``[batch]``, position of the entry in ``entries``.

    Training data is shuffled each epoch and augmented as ``params.augmentation_ops`` says
    (:func:`tf_crnn.augmentation.augment`); batches are bucketed by width. Each file is
    read as it is, or, for an entry that is not :attr:`Entry.direct`, converted
    by Pillow first (:func:`encoded_image`), as :class:`tf_crnn.loader.PredictionModel` does.

    ``cache``: keep the decoded, resized images in memory after the first full pass
    (:func:`use_image_cache`, :func:`cache_bytes`); later passes start from them, shuffle and
    augment them anew. With the same ``seed`` the batches are those of the uncached pipeline.
    """
    widths = [e.width for e in entries]
    max_len = max(len(e.codes) for e in entries)
    labels = np.zeros([len(entries), max_len], np.int32)
    for i, e in enumerate(entries):
        labels[i, :len(e.codes)] = e.codes
    columns = {
        "widths": np.array(widths, np.int32), "labels": labels,
        "label_lengths": np.array([len(e.codes) for e in entries], np.int32),
        "index": np.arange(len(entries), dtype=np.int32),
    }
    # Shuffled before decoding (a buffer of file names or encoded images is small), or, with the cache, after
    # it (the cache then holds the images in file order and every epoch draws a new order from it). The same
    # seed gives the same permutation of the same sequence either way.
    shuffle = training and not cache
    if all(e.record is not None for e in entries):
        ds, encoded = compiled_records(entries, columns, shuffle, seed), lambda item: item.pop("encoded")
    else:
        ds, encoded = file_records(entries, columns, params, shuffle, seed)

    def load(item):
        item["images"], item["widths"] = preprocess_image(encoded(item), params, item["widths"])
        item["labels"] = item["labels"][:item["label_lengths"]]
        return item

    # A cache is filled in the order it is given: keep file order there so a seed means the same batches.
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=cache or not training)
    if cache:
        ds = ds.cache()
        if training:
            ds = ds.shuffle(len(entries), seed=seed, reshuffle_each_iteration=True)
    if training and params.augmentation_ops:
        def augment(item):
            item["images"] = augmentation.augment(item["images"], params.augmentation_ops)
            return item

        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    boundaries = width_buckets(widths, batch_size)
    ds = ds.bucket_by_sequence_length(
        lambda item: item["widths"], bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padded_shapes={"images": [params.height, None, params.input_channels], "widths": [],
                       "labels": [None], "label_lengths": [], "index": []},
        padding_values={"images": 0.0, "widths": 0, "labels": 0, "label_lengths": 0, "index": 0},
        drop_remainder=False,
    )
    # tf.data's autotuner off, two batches prefetched: on a 2-core CPU its background tuning made most epochs
    # of the quick start 30 % slower (146 against 205 images/s, every step of the epoch; with it off, every
    # epoch ran at 204-209). AUTOTUNE parallelism then means the machine's cores.
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(PREFETCH_BATCHES).with_options(options)


def padding_fraction(entries: list[Entry], params: Params, batch_size: int) -> float:
    """Fraction of padded pixels over one pass of :func:`make_dataset` (eval order, no augmentation)."""
    padded = real = 0
    for batch in make_dataset(entries, params, batch_size, training=False):
        w = batch["widths"].numpy()
        padded += int(batch["images"].shape[2]) * len(w)
        real += int(w.sum())
    return 1.0 - real / max(1, padded)
