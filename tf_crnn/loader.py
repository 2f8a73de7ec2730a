"""PredictionModel: load a tf-crnn SavedModel export and transcribe images.

The export (``output_model_dir/export``, or ``export.zip`` from a run's
artifacts, unzipped) has a ``serving_default`` signature taking encoded image
bytes; see :func:`tf_crnn.export.export_saved_model`.

:meth:`PredictionModel.iter_logits` gives the CTC logits instead, for decoding
outside the graph (greedy, beam search, lexicon; see ``tf-crnn evaluate``):
from the export's ``logits`` signature, or, for exports written before it
existed, from a CRNN rebuilt from the export's ``params.json`` and given the
export's weights.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from .alphabet import Alphabet


@dataclass(frozen=True)
class Prediction:
    """One image's transcription.

    Attributes:
        text: the best hypothesis.
        score: its probability in [0, 1] (best-path or beam probability).
        alternatives: all hypotheses with their scores, best first (``num_beam_paths`` of them).
    """

    text: str
    score: float
    alternatives: tuple[tuple[str, float], ...] = ()


class PredictionModel:
    """A loaded export.

    Args:
        export_dir: folder of the SavedModel (contains ``saved_model.pb``).

    Raises:
        FileNotFoundError: ``export_dir`` holds no SavedModel.
    """

    def __init__(self, export_dir: str | os.PathLike):
        export_dir = os.fspath(export_dir)
        if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
            raise FileNotFoundError(f"no SavedModel in {export_dir} (expected {export_dir}/saved_model.pb)")
        self.export_dir = export_dir
        self._model = tf.saved_model.load(export_dir)
        self._serve = self._model.signatures["serving_default"]
        params_file = os.path.join(export_dir, "params.json")
        self.params = json.load(open(params_file, encoding="utf-8")) if os.path.isfile(params_file) else {}
        alphabet_file = os.path.join(export_dir, "alphabet.json")
        #: The lookup table the model was trained with (None if the export lacks ``alphabet.json``).
        self.alphabet: Alphabet | None = Alphabet.from_file(alphabet_file) if os.path.isfile(alphabet_file) else None
        self._logits = None

    @property
    def train_run(self):
        """The ``_id`` of the Sacred run that trained this export, if recorded, else None.

        Looked up in ``run.json`` (``{"run_id": ...}``, as :func:`tf_crnn.tracking.run_records.write_run_file`
        leaves in ``output_model_dir``) in the export folder, then in its parent
        (``output_model_dir`` for ``output_model_dir/export``), then ``run_id`` in ``params.json``.
        """
        for folder in (self.export_dir, os.path.dirname(os.path.abspath(self.export_dir))):
            try:
                with open(os.path.join(folder, "run.json"), encoding="utf-8") as f:
                    record = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and record.get("run_id", record.get("_id")) is not None:
                return record.get("run_id", record.get("_id"))
        return self.params.get("run_id")

    @property
    def has_logits_signature(self) -> bool:
        """Whether the export has the ``logits`` signature (exports from this version on)."""
        return "logits" in self._model.signatures

    def _logits_function(self):
        if self._logits is None:
            if self.has_logits_signature:
                self._logits = self._model.signatures["logits"]
            else:
                self._logits = self._rebuilt_logits_function()
        return self._logits

    def _rebuilt_logits_function(self):
        """For an export without ``logits`` signature: the CRNN of its params.json with its weights."""
        from .config import Params
        from .export import logits_fn
        from .model import build_crnn

        problem = None
        if not self.params or self.alphabet is None:
            problem = "no params.json / alphabet.json"
        else:
            params = Params.from_dict({k: v for k, v in self.params.items() if k in Params.field_names()})
            model = build_crnn(params, self.alphabet.num_classes)
            saved = list(self._model.variables)
            if len(saved) != len(model.variables) or any(
                    tuple(a.shape) != tuple(b.shape) for a, b in zip(model.variables, saved)):
                problem = "its weights do not match the CRNN its params.json describes"
        if problem:
            raise ValueError(f"{self.export_dir} has no 'logits' signature and cannot be rebuilt ({problem}); "
                             "re-export it with this version of tf-crnn")
        for variable, value in zip(model.variables, saved):
            variable.assign(value)
        fn = tf.function(logits_fn(model, params), input_signature=[tf.TensorSpec([None], tf.string)])
        self._rebuilt_model = model  # keep the variables alive
        return lambda images: fn(images)

    def iter_logits(self, images: Sequence[str | os.PathLike | bytes],
                    batch_size: int = 32) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """CTC logits of images (paths or encoded bytes), batch by batch.

        Yields:
            ``(start, logits, lengths)``: the batch covers ``images[start:start + len(lengths)]``;
            ``logits`` float32 ``[batch, time, num_classes]`` (class 0 = blank, time padded
            to the batch's widest image), ``lengths`` int32 ``[batch]`` valid time steps.

        Raises:
            FileNotFoundError / ValueError: as :meth:`predict`, naming the image.
            ValueError: the export has neither the ``logits`` signature nor what is needed to rebuild it.
        """
        fn = self._logits_function()
        for start in range(0, len(images), batch_size):
            items = list(images[start:start + batch_size])
            encoded = [item if isinstance(item, bytes) else _read(item) for item in items]
            try:
                out = fn(images=tf.constant(encoded, dtype=tf.string))
            except tf.errors.InvalidArgumentError:
                _raise_for_culprit(items, encoded, lambda one: fn(images=tf.constant(one, dtype=tf.string)))
                raise
            yield start, out["logits"].numpy(), out["lengths"].numpy()

    def predict_bytes(self, images: Sequence[bytes], batch_size: int = 32) -> list[Prediction]:
        """Transcribe encoded images (PNG / JPEG / BMP / GIF bytes)."""
        out: list[Prediction] = []
        for start in range(0, len(images), batch_size):
            result = self._serve(images=tf.constant(list(images[start:start + batch_size]), dtype=tf.string))
            for texts, scores in zip(result["text"].numpy(), result["score"].numpy()):
                alternatives = tuple((t.decode("utf-8"), float(s)) for t, s in zip(texts, scores))
                out.append(Prediction(alternatives[0][0], alternatives[0][1], alternatives))
        return out

    def predict(self, images: Iterable[str | os.PathLike | bytes], batch_size: int = 32) -> list[Prediction]:
        """Transcribe images given as file paths or encoded bytes.

        Raises:
            FileNotFoundError: a path does not exist (named in the message).
            ValueError: an image cannot be decoded (named in the message).
        """
        items = list(images)
        encoded = [item if isinstance(item, bytes) else _read(item) for item in items]
        try:
            return self.predict_bytes(encoded, batch_size)
        except tf.errors.InvalidArgumentError:
            _raise_for_culprit(items, encoded, self.predict_bytes)
            raise


def _raise_for_culprit(items: list, encoded: list[bytes], run_one) -> None:
    """Find which image broke a batch by running ``run_one([bytes])`` on each, and raise a ValueError naming it.

    Returns without raising when every image passes alone (the batch failed for another reason).
    """
    for item, data in zip(items, encoded):
        try:
            run_one([data])
        except tf.errors.InvalidArgumentError as e:
            name = item if not isinstance(item, bytes) else f"<{len(item)} bytes>"
            raise ValueError(f"cannot decode image {name}: {e.message.splitlines()[0]}") from None


def _read(path: str | os.PathLike) -> bytes:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    with open(path, "rb") as f:
        return f.read()
