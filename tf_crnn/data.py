"""From annotated samples to batches: checks before training, then the tf.data pipeline.

1. :func:`load_split` reads the CSVs, checks every label against the alphabet
   and :func:`scan_samples` opens every image once (:mod:`tf_crnn.images`) to
   find missing / undecodable images and labels too long for the CTC sequence
   length their image width allows (:func:`tf_crnn.decoding.ctc_steps_needed`).
2. :func:`make_dataset` decodes with TensorFlow, resizes to the fixed height
   keeping the aspect ratio (:func:`preprocess_image`, shared with the
   exported model), augments (training only) and batches by width buckets so
   little padding is wasted.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from .alphabet import Alphabet
from .annotations import Sample, listing, read_csvs
from .config import Params
from .decoding import ctc_steps_needed
from .images import image_sizes

log = logging.getLogger(__name__)


class DataError(ValueError):
    """Bad training data found before training; the message lists file:line and what to do."""


@dataclass(frozen=True)
class Entry:
    """A checked sample ready for the pipeline."""

    sample: Sample
    codes: tuple[int, ...]
    width: int  # resized width in pixels


@dataclass
class ScanReport:
    """Outcome of :func:`scan_samples`."""

    entries: list[Entry] = field(default_factory=list)
    bad_images: list[tuple[Sample, str]] = field(default_factory=list)
    too_long: list[tuple[Sample, int, int]] = field(default_factory=list)  # sample, time steps, min width needed

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


def scan_samples(samples: list[Sample], params: Params, alphabet: Alphabet,
                 progress: bool = True, desc: str = "checking images") -> ScanReport:
    """Decode every image once and check CTC feasibility of every label.

    A label of L symbols with R adjacent repeats needs ``L + R`` time steps;
    the CRNN gives :meth:`Params.sequence_length` of the resized width.

    Args:
        samples: rows from the CSVs (labels already checked against the alphabet).
        params: gives height, width bounds and pooling.
        alphabet: encodes the labels.
        progress: show a tqdm bar.

    Returns:
        A :class:`ScanReport`: usable entries and rejected samples with reasons.
    """
    report = ScanReport()
    for sample, size in zip(samples, image_sizes([s.image_path for s in samples], progress, desc)):
        if isinstance(size, str):
            report.bad_images.append((sample, size))
            continue
        width = params.resized_width(*size)
        steps = params.sequence_length(width)
        needed = ctc_steps_needed(sample.symbols)
        if needed > steps:
            report.too_long.append((sample, steps, needed * math.prod(params.width_downsampling)))
            continue
        report.entries.append(Entry(sample, tuple(alphabet.encode(sample.symbols)), width))
    return report


def load_split(csv_files: list[str], params: Params, alphabet: Alphabet, name: str,
               progress: bool = True) -> list[Entry]:
    """Read, check and scan one split (``train`` or ``eval``).

    Raises:
        FileNotFoundError / AnnotationError: unreadable CSV.
        AlphabetError: a label symbol is not in the alphabet (file, line, symbol).
        DataError: bad images or infeasible labels and ``on_bad_sample == "error"``,
            or no usable sample at all.
    """
    samples = read_csvs(csv_files, params.csv_delimiter, params.string_split_delimiter)
    if not samples:
        raise DataError(f"{name} split: no rows in {csv_files}")
    alphabet.check(samples)
    report = scan_samples(samples, params, alphabet, progress, desc=f"checking {name} images")
    problems = report.problems
    if problems:
        listed = listing(problems)
        if params.on_bad_sample == "error":
            raise DataError(f"{name} split: {len(problems)} unusable row(s):\n{listed}\n"
                            "Fix or remove them, or set on_bad_sample=skip to leave them out.")
        log.warning("%s split: skipping %d unusable row(s) (on_bad_sample=skip):\n%s", name, len(problems), listed)
    if not report.entries:
        raise DataError(f"{name} split: no usable sample left in {csv_files}")
    return report.entries


# ---- TensorFlow side ---------------------------------------------------------

def preprocess_image(encoded: tf.Tensor, params: Params, width: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """Decode and resize one image to ``params.height`` keeping its aspect ratio.

    Args:
        encoded: tf.string scalar, PNG / JPEG / BMP / GIF bytes.
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


def augment(image: tf.Tensor) -> tf.Tensor:
    """Photometric and stroke-width jitter that keeps the image's shape (training only)."""
    image = tf.image.random_brightness(image, 0.2)
    image = tf.image.random_contrast(image, 0.6, 1.4)
    # Thicker or thinner strokes: a 2x2 min / max filter half of the time each.
    stroke = tf.random.uniform([])
    batched = image[None]
    image = tf.case([
        (stroke < 0.2, lambda: -tf.nn.max_pool2d(-batched, 2, 1, "SAME")[0]),
        (stroke > 0.8, lambda: tf.nn.max_pool2d(batched, 2, 1, "SAME")[0]),
    ], default=lambda: image)
    image = image + tf.random.normal(tf.shape(image), stddev=tf.random.uniform([], 0.0, 0.1))
    return tf.clip_by_value(image, -1.0, 1.0)


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


def make_dataset(entries: list[Entry], params: Params, batch_size: int, training: bool,
                 seed: int | None = None) -> tf.data.Dataset:
    """The tf.data pipeline for checked entries.

    Elements are dicts:
        images: float32 ``[batch, height, max_width_in_batch, channels]``, padded with 0;
        widths: int32 ``[batch]``;
        labels: int32 ``[batch, max_label_len]``, padded with 0 (blank);
        label_lengths: int32 ``[batch]``;
        index: int32 ``[batch]``, position of the entry in ``entries``.

    Training data is shuffled each epoch and augmented when
    ``params.data_augmentation``; batches are bucketed by width.
    """
    paths = [e.sample.image_path for e in entries]
    widths = [e.width for e in entries]
    max_len = max(len(e.codes) for e in entries)
    labels = np.zeros([len(entries), max_len], np.int32)
    for i, e in enumerate(entries):
        labels[i, :len(e.codes)] = e.codes
    ds = tf.data.Dataset.from_tensor_slices({
        "path": paths, "widths": np.array(widths, np.int32), "labels": labels,
        "label_lengths": np.array([len(e.codes) for e in entries], np.int32),
        "index": np.arange(len(entries), dtype=np.int32),
    })
    if training:
        ds = ds.shuffle(len(entries), seed=seed, reshuffle_each_iteration=True)

    def load(item):
        image, width = preprocess_image(tf.io.read_file(item.pop("path")), params, item["widths"])
        if training and params.data_augmentation:
            image = augment(image)
        item["images"] = image
        item["labels"] = item["labels"][:item["label_lengths"]]
        item["widths"] = width
        return item

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    boundaries = width_buckets(widths, batch_size)
    ds = ds.bucket_by_sequence_length(
        lambda item: item["widths"], bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padded_shapes={"images": [params.height, None, params.input_channels], "widths": [],
                       "labels": [None], "label_lengths": [], "index": []},
        padding_values={"images": 0.0, "widths": 0, "labels": 0, "label_lengths": 0, "index": 0},
        drop_remainder=False,
    )
    return ds.prefetch(tf.data.AUTOTUNE)


def padding_fraction(entries: list[Entry], params: Params, batch_size: int) -> float:
    """Fraction of padded pixels over one pass of :func:`make_dataset` (eval order, no augmentation)."""
    padded = real = 0
    for batch in make_dataset(entries, params, batch_size, training=False):
        w = batch["widths"].numpy()
        padded += int(batch["images"].shape[2]) * len(w)
        real += int(w.sum())
    return 1.0 - real / max(1, padded)
