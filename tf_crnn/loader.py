"""PredictionModel: load a tf-crnn SavedModel export and transcribe images.

The export (``output_model_dir/export``, or ``export.zip`` from a run's
artifacts, unzipped) has a ``serving_default`` signature taking encoded image
bytes; see :func:`tf_crnn.training.export_saved_model`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import tensorflow as tf


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
            # Find which image broke the batch, so the error names it.
            for item, data in zip(items, encoded):
                try:
                    self.predict_bytes([data])
                except tf.errors.InvalidArgumentError as e:
                    name = item if not isinstance(item, bytes) else f"<{len(item)} bytes>"
                    raise ValueError(f"cannot decode image {name}: {e.message.splitlines()[0]}") from None
            raise


def _read(path: str | os.PathLike) -> bytes:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    with open(path, "rb") as f:
        return f.read()
