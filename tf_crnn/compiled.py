"""The compiled data set format: TFRecord shards of checked images, an index and a manifest.

``tf-crnn compile`` (:mod:`tf_crnn.datasets.compile`) writes a folder::

    manifest.json         format version, sources, settings, per shard: file, examples, bytes, sha256; totals
    index.jsonl           one line per example, without the pixels (path, CSV line, symbols, size, blank)
    shard-00000.tfrecord  tf.train.Example records (FEATURES), each written to a temporary file and renamed

A training, ``tf-crnn validate``, ``tf-crnn evaluate --csv`` and ``tf-crnn alphabet build`` accept such a
folder wherever they accept a CSV (:func:`read_rows`). The index lets a training plan its epochs (labels
checked against the alphabet, widths bucketed, CTC lengths checked) without reading the shards.

When the shards are checked (:class:`CompiledDataError`, one line naming the shard and saying to compile
again):

- size of every shard and of the index against the manifest: whenever a folder is opened (:func:`load_manifest`;
  a ``stat`` per shard, so it costs nothing at scale). A truncated or appended shard is caught here;
- sha256 of every shard and of the index: when compile writes them, on ``tf-crnn validate DIR``
  (:func:`verify`), and when reading a shard fails (:func:`damaged`), to name the shard: TensorFlow's
  "corrupted record at 1028" does not say which file. A training does not hash its shards before it starts:
  for 100 GB that is minutes of reading, and a changed byte is caught by the record's CRC when it is read.

No TensorFlow at import: provenance and the command line read manifests; the record functions
(:func:`example_bytes`, :func:`read_images`) import it when called.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple

from .annotations import Sample, read_csvs
from .images import ImageInfo

MANIFEST = "manifest.json"
INDEX = "index.jsonl"
FORMAT = "tf-crnn compiled data set"
FORMAT_VERSION = 1
#: Shard file names: ``shard-00000.tfrecord``, numbered from 0 in the order of the examples.
SHARD_NAME = "shard-{:05d}.tfrecord"

#: The features of one record (tf.train.Example): the encoded image the pipeline decodes
#: (:func:`tf_crnn.images.model_input` of the file: its own bytes, or a PNG in the model's mode), the label
#: symbols (UTF-8 each), the image size in pixels, the source path, and the example's number in the folder.
FEATURES = ("image", "symbols", "width", "height", "path", "number")

RECOMPILE = "run tf-crnn compile again"


class CompiledDataError(ValueError):
    """A compiled data set that cannot be used (missing, damaged, of another version or settings): one line."""


class Record(NamedTuple):
    """Where a compiled example is: its folder (absolute) and its number there (0-based, index order)."""

    folder: str
    number: int


@dataclass(frozen=True)
class Example:
    """One line of ``index.jsonl``: what a training needs of an example, without its pixels."""

    sample: Sample
    info: ImageInfo
    record: Record


def is_compiled(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a compiled data set folder (a folder with ``manifest.json``)."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, MANIFEST))


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes.

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _damage(folder: str, name: str, what: str) -> CompiledDataError:
    return CompiledDataError(f"compiled data set {folder}: {name} {what}; {RECOMPILE}")


def load_manifest(folder: str | os.PathLike, check_sizes: bool = True) -> dict:
    """The manifest of a compiled folder, checked: format, version, and (``check_sizes``) every file's size.

    Raises:
        CompiledDataError: no manifest, unreadable manifest, another format version, a shard or the index
            missing or of another size than the manifest records (the message names it).
    """
    folder = os.path.abspath(os.fspath(folder))
    path = os.path.join(folder, MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise CompiledDataError(f"{folder} is not a compiled data set (no {MANIFEST}); {RECOMPILE}") from None
    except (OSError, ValueError) as e:
        raise CompiledDataError(f"{path} cannot be read ({e}); {RECOMPILE}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CompiledDataError(f"{path} is not the manifest of a compiled data set; {RECOMPILE}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CompiledDataError(f"{path} is of format version {manifest.get('format_version')}, this tf-crnn reads "
                                f"version {FORMAT_VERSION}; {RECOMPILE}")
    if check_sizes:
        for entry in [manifest["index"], *manifest["shards"]]:
            try:
                size = os.path.getsize(os.path.join(folder, entry["file"]))
            except OSError:
                raise _damage(folder, entry["file"], "is missing") from None
            if size != entry["bytes"]:
                raise _damage(folder, entry["file"], f"has {size} bytes, the manifest says {entry['bytes']} "
                                                     "(truncated or changed)")
    return manifest


def manifest_sha256(folder: str | os.PathLike) -> str:
    """SHA-256 of the folder's ``manifest.json``: it lists every shard's SHA-256, so it identifies the content."""
    return file_sha256(os.path.join(folder, MANIFEST))


def verify(folder: str | os.PathLike, progress: bool = False) -> list[str]:
    """Hash every shard and the index and compare with the manifest (``tf-crnn validate DIR``).

    Returns:
        One line per damaged file (empty when all match), each naming the file and saying to compile again.

    Raises:
        CompiledDataError: the manifest cannot be used, or a file is missing.
    """
    from tqdm import tqdm

    folder = os.path.abspath(os.fspath(folder))
    manifest = load_manifest(folder, check_sizes=False)
    files = [manifest["index"], *manifest["shards"]]
    problems = []
    for entry in tqdm(files, desc=f"verifying {os.path.basename(folder)}", unit="file", disable=not progress):
        path = os.path.join(folder, entry["file"])
        if not os.path.isfile(path):
            problems.append(str(_damage(folder, entry["file"], "is missing")))
            continue
        size = os.path.getsize(path)
        if size != entry["bytes"]:
            problems.append(str(_damage(folder, entry["file"],
                                        f"has {size} bytes, the manifest says {entry['bytes']}")))
        elif file_sha256(path) != entry["sha256"]:
            problems.append(str(_damage(folder, entry["file"], "does not have the SHA-256 the manifest records "
                                                               "(changed or corrupt)")))
    return problems


def damaged(folders: Iterable[str]) -> str | None:
    """The first damage :func:`verify` finds in ``folders`` (a line naming the shard), or None."""
    for folder in folders:
        problems = verify(folder)
        if problems:
            return problems[0]
    return None


def check_settings(folder: str, manifest: dict, channels: int | None, normalization: str | None) -> None:
    """Refuse a compiled folder whose images or labels are of another form than the reader's.

    Args:
        channels: the model's input channels (None: not a concern of the reader); converted images are
            stored as PNG of the compile's channels.
        normalization: the reader's ``unicode_normalization``; the labels are stored in the compile's.

    Raises:
        CompiledDataError: naming the setting, both values and what to do.
    """
    settings = manifest["settings"]
    if channels is not None and settings["input_channels"] != channels:
        raise CompiledDataError(f"{folder} was compiled for {settings['input_channels']} input channel(s), this "
                                f"model has {channels}: {RECOMPILE} with --channels {channels}")
    if normalization is not None and str(settings["unicode_normalization"]) != str(normalization):
        raise CompiledDataError(f"{folder} holds labels in Unicode form {settings['unicode_normalization']}, this "
                                f"reads them in {normalization}: {RECOMPILE} with --unicode-normalization "
                                f"{normalization}")


def read_index(folder: str | os.PathLike, normalization: str | None = None,
               channels: int | None = None) -> list[Example]:
    """Every example of a compiled folder, in order, from its index (sizes checked, shards not read).

    Args:
        normalization, channels: the reader's (:func:`check_settings`; None: not checked).

    Raises:
        CompiledDataError: as :func:`load_manifest` and :func:`check_settings`, or an unreadable index line.
    """
    folder = os.path.abspath(os.fspath(folder))
    manifest = load_manifest(folder)
    check_settings(folder, manifest, channels, normalization)
    examples = []
    path = os.path.join(folder, INDEX)
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            try:
                row = json.loads(line)
                examples.append(Example(
                    Sample(row["path"], tuple(row["symbols"]), row["csv_file"], row["line"]),
                    ImageInfo(row["width"], row["height"], direct=True, blank=row["blank"]), Record(folder, n)))
            except (ValueError, KeyError, TypeError) as e:
                raise _damage(folder, INDEX, f"line {n + 1} cannot be read ({e})") from None
    if len(examples) != manifest["totals"]["examples"]:
        raise _damage(folder, INDEX, f"lists {len(examples)} examples, the manifest says "
                                     f"{manifest['totals']['examples']}")
    return examples


class Indexes:
    """The examples of the compiled folders one run reads, each folder's index read once however often it is asked
    for: a run reads its rows (:func:`read_rows`) and then the facts of its images (the index again), and at a
    million examples a read takes about 7 s (JSON, a line each). Keep one for the span of one run.
    """

    def __init__(self) -> None:
        self._examples: dict[str, list[Example]] = {}

    def examples(self, folder: str | os.PathLike, normalization: str | None = None,
                 channels: int | None = None) -> list[Example]:
        """:func:`read_index` of ``folder``, read the first time; the settings are checked on every call."""
        folder = os.path.abspath(os.fspath(folder))
        if folder in self._examples:
            check_settings(folder, load_manifest(folder), channels, normalization)
        else:
            self._examples[folder] = read_index(folder, normalization, channels)
        return self._examples[folder]


def read_rows(sources: Iterable[str | os.PathLike], csv_delimiter: str = ";", string_split_delimiter: str = "|",
              normalization: str | None = "NFC", indexes: Indexes | None = None) -> list[Sample]:
    """The rows of CSVs and compiled folders, in order: what every reader of annotations takes.

    A CSV is read by :func:`tf_crnn.annotations.read_csvs`; a compiled folder gives the rows it kept (their
    ``csv_file:line`` are those of the CSVs it was compiled from), its labels in the form it was compiled in,
    which must be ``normalization``.

    Raises:
        FileNotFoundError / AnnotationError: an unreadable CSV.
        CompiledDataError: a compiled folder that cannot be used (:func:`read_index`).

    ``indexes``: the run's :class:`Indexes`, when it reads the folders' examples again (None: a new one).
    """
    samples: list[Sample] = []
    indexes = indexes or Indexes()
    for source in sources:
        if is_compiled(source):
            samples += [e.sample for e in indexes.examples(source, normalization)]
        else:
            samples += read_csvs([source], csv_delimiter, string_split_delimiter, normalization)
    return samples


def compiled_sources(sources: Iterable[str | os.PathLike]) -> list[str]:
    """The compiled folders among ``sources`` (absolute paths)."""
    return [os.path.abspath(s) for s in sources if is_compiled(s)]


def describe(folder: str | os.PathLike) -> dict:
    """A compiled folder as a run records it: ``{"path", "md5", "manifest_sha256", "examples", "shards", "bytes"}``.

    ``md5`` is the manifest's (what the run record compares for every data file); the manifest lists every
    shard's SHA-256, so its own SHA-256 stands for the content.
    """
    folder = os.path.abspath(os.fspath(folder))
    manifest = load_manifest(folder)
    path = os.path.join(folder, MANIFEST)
    with open(path, "rb") as f:
        content = f.read()
    return {"path": folder, "md5": hashlib.md5(content).hexdigest(), "manifest": path,
            "manifest_sha256": hashlib.sha256(content).hexdigest(), "examples": manifest["totals"]["examples"],
            "shards": manifest["totals"]["shards"], "bytes": manifest["totals"]["bytes"]}


def fingerprint(folders: Iterable[str]) -> str:
    """One SHA-256 for compiled folders: of their manifests' SHA-256 (which cover every shard), in order."""
    digest = hashlib.sha256()
    for folder in folders:
        digest.update(f"{manifest_sha256(folder)}\n".encode())
    return digest.hexdigest()


# ---- records (TensorFlow) ---------------------------------------------------------

def example_bytes(image: bytes, sample: Sample, info: ImageInfo, number: int) -> bytes:
    """One serialized tf.train.Example of :data:`FEATURES`."""
    import tensorflow as tf

    def strings(*values: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))

    def integer(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    features = {"image": strings(image), "symbols": strings(*(s.encode("utf-8") for s in sample.symbols)),
                "width": integer(info.width), "height": integer(info.height),
                "path": strings(os.fsencode(sample.image_path)), "number": integer(number)}
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def shard_paths(folder: str, manifest: dict) -> list[str]:
    """The shard files of a compiled folder, in order."""
    return [os.path.join(folder, shard["file"]) for shard in manifest["shards"]]


def parse_features():
    """The ``tf.io.parse_single_example`` spec of :data:`FEATURES`."""
    import tensorflow as tf

    return {"image": tf.io.FixedLenFeature([], tf.string), "symbols": tf.io.VarLenFeature(tf.string),
            "width": tf.io.FixedLenFeature([], tf.int64), "height": tf.io.FixedLenFeature([], tf.int64),
            "path": tf.io.FixedLenFeature([], tf.string), "number": tf.io.FixedLenFeature([], tf.int64)}


def iter_records(folder: str | os.PathLike) -> Iterator[dict]:
    """Every record of a compiled folder, in order, parsed: ``{"image": bytes, "symbols": tuple[str],
    "width": int, "height": int, "path": str, "number": int}``.

    Raises:
        CompiledDataError: a shard that cannot be read (named; sizes are checked first).
    """
    import tensorflow as tf

    folder = os.path.abspath(os.fspath(folder))
    manifest = load_manifest(folder)
    spec = parse_features()
    for path in shard_paths(folder, manifest):
        try:
            for raw in tf.data.TFRecordDataset(path):
                item = tf.io.parse_single_example(raw, spec)
                yield {"image": item["image"].numpy(),
                       "symbols": tuple(s.decode("utf-8") for s in item["symbols"].values.numpy()),
                       "width": int(item["width"]), "height": int(item["height"]),
                       "path": os.fsdecode(item["path"].numpy()), "number": int(item["number"])}
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            reason = str(e).split("}}")[-1].split("[Op:")[0].strip()
            raise _damage(folder, os.path.basename(path), f"has a corrupt record ({reason})") from None


def read_images(folder: str | os.PathLike, numbers: Iterable[int] | None = None) -> dict[int, bytes]:
    """The encoded images of a compiled folder by number: all, or those of ``numbers`` (reading stops once
    they are found: the first examples are in the first shard).

    Raises:
        CompiledDataError: as :func:`iter_records`.
    """
    wanted = None if numbers is None else set(numbers)
    found = {}
    for record in iter_records(folder):
        if wanted is None or record["number"] in wanted:
            found[record["number"]] = record["image"]
            if wanted is not None and len(found) == len(wanted):
                break
    return found
