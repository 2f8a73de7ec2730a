"""``tf-crnn compile``: annotation CSVs to a compiled data set (:mod:`tf_crnn.compiled`).

Each row's image is checked once, as training checks it (:func:`tf_crnn.data.check_images`), and
stored as the bytes the training pipeline decodes (:func:`tf_crnn.images.model_input` of the file: a
plain PNG or JPEG as it is, anything else as a PNG in the model's mode), so a training from the folder
reads a few large files instead of many small ones and decodes each image once, as from the CSVs.
Rows the training would refuse for their image (missing, undecodable) or for naming one image with
different labels are an error naming them, or with ``on_bad_sample="skip"`` left out and listed.
Labels are kept as symbols, not codes: any alphabet reads them. What depends on the model (CTC length
of a label, width after resizing) is checked by the training from the index.

Shards end at ``shard_images`` examples or ``shard_mb`` MB, whichever comes first; each is written to
a temporary file and renamed, the index and the manifest last, so an interrupted compile leaves no
manifest naming a partial file.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import re

from tqdm import tqdm

from .. import __version__, compiled, images
from .._util import atomic_write
from ..annotations import Sample, listing, read_csvs
from ..config import Params
from ..images import ImageInfo

log = logging.getLogger(__name__)

#: Default shard bound: 128 MB (large enough that opening files does not count, small enough that a few
#: shards read in parallel fit in memory and a data set of some GB gives enough shards to interleave).
DEFAULT_SHARD_MB = 128


def parse_shard_size(text: str) -> tuple[int | None, float | None]:
    """``--shard-size``: ``"5000"`` (images) or ``"64MB"`` (megabytes, 10**6 bytes): ``(images, mb)``.

    Raises:
        ValueError: anything else, or a size not > 0.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(MB|mb|M)?\s*", text)
    if not match or float(match.group(1)) <= 0 or (not match.group(2) and "." in match.group(1)):
        raise ValueError(f"--shard-size must be a number of images (5000) or of megabytes (64MB), got {text!r}")
    return (None, float(match.group(1))) if match.group(2) else (int(match.group(1)), None)


def usable_rows(samples: list[Sample], params: Params, progress: bool) -> tuple[list[Sample], list[ImageInfo]]:
    """The rows a training would keep for their image, with what the check found; the others as
    ``on_bad_sample`` says (error naming them, or left out with a warning).

    Raises:
        tf_crnn.data.DataError: unusable rows or images listed with different labels and ``on_bad_sample ==
            "error"``, or no usable row.
    """
    from ..data import DataError, check_images, without_duplicates  # imports TensorFlow

    samples = without_duplicates(samples, params, "compiled")
    infos = check_images([s.image_path for s in samples], params.input_channels, progress, "checking images")
    bad = [f"{s.where()}: {s.image_path}: {info}" for s, info in zip(samples, infos) if isinstance(info, str)]
    if bad:
        if params.on_bad_sample == "error":
            raise DataError(f"{len(bad)} unusable row(s):\n{listing(bad)}\n"
                            "Fix or remove them, or give --on-bad-sample skip to leave them out.")
        log.warning("leaving out %d unusable row(s) (on_bad_sample=skip):\n%s", len(bad), listing(bad))
    kept = [(s, info) for s, info in zip(samples, infos) if not isinstance(info, str)]
    if not kept:
        raise DataError("no usable row left to compile")
    return [s for s, _ in kept], [info for _, info in kept]


def stored_image(sample: Sample, info: ImageInfo, channels: int) -> bytes:
    """The bytes the pipeline decodes for one checked image: the file's own, or its PNG in the model's mode."""
    if info.direct:
        with open(sample.image_path, "rb") as f:
            return f.read()
    return images.normalized_png(sample.image_path, channels)


class ShardWriter:
    """Writes records into numbered shards of bounded size in ``folder``, each to a temporary file then renamed."""

    def __init__(self, folder: str, shard_images: int | None, shard_mb: float | None):
        self.folder, self.max_images = folder, shard_images
        self.max_bytes = None if shard_mb is None else int(shard_mb * 1e6)
        self.shards: list[dict] = []
        self._writer = self._tmp = None
        self._count = self._bytes = 0

    def write(self, record: bytes) -> None:
        """Add one serialized record, starting a new shard when the current one is full."""
        import tensorflow as tf

        size = len(record) + 16  # TFRecord framing: length (8), its CRC (4), the data's CRC (4)
        full = (self.max_images is not None and self._count >= self.max_images) or (
            self.max_bytes is not None and self._count and self._bytes + size > self.max_bytes)
        if self._writer is not None and full:
            self._finish()
        if self._writer is None:
            name = compiled.SHARD_NAME.format(len(self.shards))
            self._tmp = os.path.join(self.folder, f".{name}.tmp-{os.getpid()}")
            self._writer = tf.io.TFRecordWriter(self._tmp)
        self._writer.write(record)
        self._count += 1
        self._bytes += size

    def _finish(self) -> None:
        self._writer.close()
        name = compiled.SHARD_NAME.format(len(self.shards))
        path = os.path.join(self.folder, name)
        os.replace(self._tmp, path)
        self.shards.append({"file": name, "examples": self._count, "bytes": os.path.getsize(path),
                            "sha256": compiled.file_sha256(path)})
        self._writer = self._tmp = None
        self._count = self._bytes = 0

    def close(self) -> list[dict]:
        """Finish the last shard; the shards' manifest entries (file, examples, bytes, sha256)."""
        if self._writer is not None:
            self._finish()
        return self.shards

    def abort(self) -> None:
        """Remove the shard being written (after an error or interrupt)."""
        if self._writer is not None:
            self._writer.close()
            os.unlink(self._tmp)
            self._writer = None


def prepare_folder(out_dir: str, overwrite: bool) -> list[str]:
    """Make ``out_dir`` ready; the files of an earlier compile there (removed once the new manifest is written).

    Raises:
        FileExistsError: ``out_dir`` holds a compiled data set and not ``overwrite``, or other files.
    """
    if compiled.is_compiled(out_dir):
        if not overwrite:
            raise FileExistsError(f"{out_dir} holds a compiled data set already: give --overwrite to replace it")
        return [name for name in os.listdir(out_dir) if re.fullmatch(r"shard-\d{5}\.tfrecord", name)]
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise FileExistsError(f"{out_dir} is not empty and not a compiled data set: give an empty or new folder")
    os.makedirs(out_dir, exist_ok=True)
    return []


def compile_dataset(csv_files: list[str], out_dir: str, params: Params | None = None, shard_images: int | None = None,
                    shard_mb: float | None = None, overwrite: bool = False, progress: bool = True) -> dict:
    """Compile annotation CSVs into ``out_dir``: shards, index, manifest (see :mod:`tf_crnn.compiled`).

    Args:
        csv_files: annotation CSVs, read with ``params``' ``csv_delimiter``, ``string_split_delimiter`` and
            ``unicode_normalization``.
        out_dir: a new or empty folder, or one compiled before (with ``overwrite``).
        params: CSV settings, ``input_channels`` (converted images are stored in its mode) and
            ``on_bad_sample``; default :class:`~tf_crnn.config.Params` ().
        shard_images, shard_mb: bound of a shard in images and in MB (10**6 bytes); neither given:
            :data:`DEFAULT_SHARD_MB`.
        overwrite: replace a compiled data set in ``out_dir``.
        progress: tqdm bars (checking, writing).

    Returns:
        The manifest written (``manifest.json``).

    Raises:
        FileNotFoundError / AnnotationError: unreadable CSV.
        tf_crnn.data.DataError: unusable rows and ``on_bad_sample == "error"`` (each named), or none usable.
        FileExistsError: ``out_dir`` is in use (:func:`prepare_folder`).
    """
    params = params or Params()
    if shard_images is None and shard_mb is None:
        shard_mb = DEFAULT_SHARD_MB
    out_dir = os.path.abspath(out_dir)
    csv_files = [os.path.abspath(f) for f in csv_files]
    samples = read_csvs(csv_files, params.csv_delimiter, params.string_split_delimiter, params.unicode_normalization)
    old_shards = prepare_folder(out_dir, overwrite)
    rows = len(samples)
    samples, infos = usable_rows(samples, params, progress)
    writer = ShardWriter(out_dir, shard_images, shard_mb)
    index_lines = []
    try:
        for number, (sample, info) in enumerate(tqdm(list(zip(samples, infos)), desc="writing shards", unit="img",
                                                     disable=not progress, mininterval=1.0)):
            writer.write(compiled.example_bytes(stored_image(sample, info, params.input_channels), sample, info,
                                                number))
            index_lines.append(json.dumps({
                "path": sample.image_path, "csv_file": sample.csv_file, "line": sample.line,
                "symbols": list(sample.symbols), "width": info.width, "height": info.height,
                "blank": info.blank, "shard": len(writer.shards)}, ensure_ascii=False) + "\n")
    except BaseException:
        writer.abort()
        raise
    shards = writer.close()
    with atomic_write(os.path.join(out_dir, compiled.INDEX)) as f:
        f.writelines(index_lines)
    index_path = os.path.join(out_dir, compiled.INDEX)
    manifest = {
        "format": compiled.FORMAT, "format_version": compiled.FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tf_crnn_version": __version__,
        "sources": [{"path": f, "sha256": compiled.file_sha256(f)} for f in csv_files],
        "settings": {"csv_delimiter": params.csv_delimiter, "string_split_delimiter": params.string_split_delimiter,
                     "unicode_normalization": params.unicode_normalization, "input_channels": params.input_channels,
                     "on_bad_sample": params.on_bad_sample, "shard_images": shard_images, "shard_mb": shard_mb},
        "index": {"file": compiled.INDEX, "bytes": os.path.getsize(index_path),
                  "sha256": compiled.file_sha256(index_path)},
        "shards": shards,
        "totals": {"rows": rows, "examples": len(samples), "left_out": rows - len(samples), "shards": len(shards),
                   "bytes": sum(s["bytes"] for s in shards)},
    }
    with atomic_write(os.path.join(out_dir, compiled.MANIFEST)) as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
        f.write("\n")
    for name in sorted(set(old_shards) - {s["file"] for s in shards}):  # an earlier compile's extra shards
        os.unlink(os.path.join(out_dir, name))
    return manifest
