"""PredictionModel: load a tf-crnn model (SavedModel export, TFLite or ONNX file, shipped model) and transcribe images.

The export (``output_model_dir/export``, or ``export.zip`` from a run's
artifacts, unzipped) is a SavedModel; see :func:`tf_crnn.export.export_saved_model`.
A model shipped with tf-crnn (``pretrained:NAME``, :mod:`tf_crnn.pretrained`) is a folder of
float16 weights: its CRNN is rebuilt from its ``params.json`` and given them, computing in float32.
``tf-crnn convert`` converts it to a ``.tflite`` or ``.onnx`` file with ``NAME.alphabet.json``
and ``NAME.params.json`` beside it (:mod:`tf_crnn.convert`). Images are first turned
into bytes TensorFlow's decoder reads as training did (:func:`tf_crnn.images.model_input`:
plain PNG / JPEG as they are, anything else converted with Pillow), so a GIF, a TIFF
or a transparent PNG gives the prediction the training pipeline's pixels would.

The formats differ only in how those bytes become CTC logits (:meth:`PredictionModel.iter_logits`):
the SavedModel's ``logits`` signature (or, for exports written before it existed and for shipped models, a CRNN
rebuilt from the model's ``params.json`` and given its weights), LiteRT or ONNX Runtime
(:mod:`tf_crnn.runtimes`). The logits are then decoded outside the model, the same way for every
format and for ``tf-crnn evaluate`` (:func:`tf_crnn.decoding.decode_batch`: greedy, beam search, lexicon).
Several models transcribe together by confidence voting with :class:`tf_crnn.voting.VotingModel`.
"""
from __future__ import annotations

import json
import logging
import numbers
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from .alphabet import Alphabet
from .config import recorded_unicode_normalization
from .data import decode_failure
from .decoding import Decoding, Lexicon, decode_batch, default_decoding
from .images import ACCEPTED, IMAGE_TYPES, ImageError, ImageInput, describe, model_input
from .model_files import (  # PredictionModel.format: one of ONNX, PRETRAINED, SAVED_MODEL, TFLITE
    MODEL_INFO,
    ONNX,
    PRETRAINED,
    SAVED_MODEL,
    STORED_DTYPE,
    TFLITE,
    companion_files,
    format_of,
    is_pretrained_folder,
    read_model_info,
    read_weights,
)
from .pretrained import locate, resolve

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One image's transcription.

    Attributes:
        text: the best hypothesis ("" when ``error`` is set).
        score: its probability in [0, 1] (best-path or beam probability; 0.0 when ``error`` is set).
        alternatives: all hypotheses with their scores, best first (``num_beam_paths`` of them).
        error: None, or why the image could not be read (``missing image file``, Pillow's or
            TensorFlow's reason); the image's other fields are then empty.
    """

    text: str
    score: float
    alternatives: tuple[tuple[str, float], ...] = ()
    error: str | None = None




class PredictionModel:
    """A loaded model: a SavedModel export, a ``.tflite`` / ``.onnx`` file of ``tf-crnn convert``, or a
    model shipped with tf-crnn.

    Args:
        export_dir: folder of the SavedModel (contains ``saved_model.pb``), a ``.tflite`` /
            ``.onnx`` file with ``NAME.params.json`` and ``NAME.alphabet.json`` beside it, or a
            shipped model: ``pretrained:NAME`` or its folder (:mod:`tf_crnn.pretrained`).

    Raises:
        FileNotFoundError: ``export_dir`` is none of these, or a model file's ``params.json`` is missing.
        tf_crnn.pretrained.PretrainedError: ``pretrained:NAME`` with a name tf-crnn does not ship (they are listed).
        tf_crnn.runtimes.ModelFileError: a ``.tflite`` / ``.onnx`` file that cannot be loaded (named).
        ImportError: the runtime of a ``.tflite`` / ``.onnx`` file is not installed (``tf-crnn[deploy]``).
    """

    def __init__(self, export_dir: str | os.PathLike):
        export_dir = resolve(export_dir)
        #: ``saved_model``, ``tflite``, ``onnx`` or ``pretrained`` (:mod:`tf_crnn.model_files`).
        self.format = (PRETRAINED if is_pretrained_folder(export_dir) else SAVED_MODEL if os.path.isdir(export_dir)
                       else format_of(export_dir) or SAVED_MODEL)
        if self.format in (TFLITE, ONNX) and not os.path.isfile(export_dir):
            raise FileNotFoundError(f"no such model file: {export_dir}")
        if self.format == SAVED_MODEL and not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
            raise FileNotFoundError(f"no SavedModel in {export_dir} (expected {export_dir}/saved_model.pb, "
                                    "or a .tflite / .onnx file of tf-crnn convert, or pretrained:NAME)")
        self.export_dir = export_dir
        if self.format in (SAVED_MODEL, PRETRAINED):
            self._model = tf.saved_model.load(export_dir) if self.format == SAVED_MODEL else None
            alphabet_file, params_file = (os.path.join(export_dir, f) for f in ("alphabet.json", "params.json"))
        else:
            self._model = None
            alphabet_file, params_file = companion_files(export_dir)
            if not os.path.isfile(params_file):
                label = {"onnx": "an ONNX", "tflite": "a TFLite"}.get(self.format, f"a {self.format}")
                raise FileNotFoundError(f"{params_file} is missing: {label} model needs the params.json "
                                        f"tf-crnn convert writes beside {export_dir}")
        self.params = json.load(open(params_file, encoding="utf-8")) if os.path.isfile(params_file) else {}
        #: The Unicode form the model compares text in (``unicode_normalization`` of ``params.json``; NFC for an
        #: export written before the key): its alphabet, lexicons and evaluated labels are put in it.
        self.normalization: str = recorded_unicode_normalization(self.params)
        #: The lookup table the model was trained with (None if the export lacks ``alphabet.json``).
        self.alphabet: Alphabet | None = (Alphabet.from_file(alphabet_file, self.normalization)
                                          if os.path.isfile(alphabet_file) else None)
        #: Where :attr:`alphabet` was read (whether or not the file exists).
        self.alphabet_file = alphabet_file
        #: How :meth:`predict` decodes unless told otherwise: the training-time setting of ``params.json``.
        self.decoding: Decoding = default_decoding(self.params)
        self._lexicons: dict[str, Lexicon] = {}
        self._logits = None if self.format in (SAVED_MODEL, PRETRAINED) else self._runtime()

    @classmethod
    def pretrained(cls, name: str) -> "PredictionModel":
        """The model tf-crnn ships as ``name`` (``fraktur-19c``; ``tf-crnn models list`` lists them).

        Raises:
            tf_crnn.pretrained.PretrainedError: no shipped model of that name (the message lists those there are).
        """
        return cls(locate(name))

    @classmethod
    def from_run(cls, run_id, url: str | None = None, db_name: str | None = None,
                 cache_dir: str | os.PathLike | None = None) -> "PredictionModel":
        """The model a recorded training run exported (its ``export.zip`` artifact in GridFS).

        Args:
            run_id: the run's ``_id``.
            url, db_name: the database, resolved as training resolves it (``$TF_CRNN_MONGO_URL``,
                else the embedded server); ``tf_crnn`` by default.
            cache_dir: where downloads are kept (default ``$TF_CRNN_HOME/models``), by run id and
                artifact, so a second call loads from disk.

        Raises:
            tf_crnn.tracking.runs.RunsError: no such run, or it has no ``export.zip``.
            tf_crnn.tracking.urls.TrackingError: the database cannot be reached.
        """
        from .tracking.runs import download_export

        return cls(download_export(run_id, url, db_name, cache_dir))

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
        """Whether the model is a SavedModel export with the ``logits`` signature (exports from this version on)."""
        return self._model is not None and "logits" in self._model.signatures

    @property
    def logits_source(self) -> str:
        """Where the logits come from: ``logits signature``, ``CRNN rebuilt from params.json``,
        ``TFLite file (LiteRT)`` or ``ONNX file (ONNX Runtime)``."""
        if self.format == TFLITE:
            return "TFLite file (LiteRT)"
        if self.format == ONNX:
            return "ONNX file (ONNX Runtime)"
        if self.format == PRETRAINED:
            return f"shipped model ({STORED_DTYPE} weights) in a CRNN rebuilt from params.json"
        return "logits signature" if self.has_logits_signature else "CRNN rebuilt from params.json"

    def _runtime(self):
        """The :mod:`tf_crnn.runtimes` runner of a ``.tflite`` / ``.onnx`` file."""
        from .config import Params
        from .runtimes import ONNXRuntime, TFLiteRuntime

        params = Params.from_dict({k: v for k, v in self.params.items() if k in Params.field_names()})
        return (TFLiteRuntime if self.format == TFLITE else ONNXRuntime)(self.export_dir, params)

    def _logits_function(self):
        if self._logits is None:
            if self.has_logits_signature:
                self._logits = self._model.signatures["logits"]
            else:
                self._logits = self._rebuilt_logits_function()
        return self._logits

    def crnn(self, trained_precision: bool = False):
        """The export's network as a Keras CRNN: rebuilt from its ``params.json`` and given the export's weights.

        For exports without the ``logits`` signature, for the converter (:mod:`tf_crnn.convert`) and for
        fine-tuning (:mod:`tf_crnn.finetune`). The weights are assigned by variable path
        (:func:`tf_crnn.model.assign_by_path`): ``model.json`` names each saved variable
        (:func:`tf_crnn.export.model_info`), and every path of the rebuilt CRNN must be there with its
        shape. An export written before ``model.json`` existed (tf-crnn 0.4) names its variables only by
        their last part (``kernel``, ``gamma``): its weights are taken in their saved order, each checked
        by that name and its shape, with a warning (see :meth:`saved_weights`).

        Args:
            trained_precision: rebuild in the dtype policy the export was trained with (``model.json``;
                the 16-bit compute of a mixed-precision training, what the SavedModel computes), not float32.

        Returns:
            ``(model, params)``: a :class:`tf_crnn.model.CRNN` with :attr:`alphabet`'s classes (float32
            weights; float32 compute unless ``trained_precision``), and the :class:`tf_crnn.config.Params`
            of ``params.json``.

        Raises:
            ValueError: no ``params.json`` / ``alphabet.json``, not a SavedModel, or weights that do not fit
                the CRNN ``params.json`` describes (:class:`tf_crnn.model.WeightMismatch`, naming the paths).
        """
        from .config import Params
        from .model import WeightMismatch, assign_by_path, build_crnn, weight_paths

        problem = None
        if not self.params or self.alphabet is None:
            problem = "no params.json / alphabet.json"
        elif self.format not in (SAVED_MODEL, PRETRAINED):
            problem = f"only a SavedModel export or a shipped model can be, not a {self.format} file"
        if problem:
            raise ValueError(f"{self.export_dir} cannot be rebuilt as a CRNN ({problem})")
        params = Params.from_dict({k: v for k, v in self.params.items() if k in Params.field_names()})
        policy = self.dtype_policy if trained_precision else "float32"
        model = build_crnn(params, self.alphabet.num_classes, None if policy == "float32" else policy)
        targets = weight_paths(model.variables)
        try:
            assign_by_path(targets, self.saved_weights(targets), self.export_dir)
        except WeightMismatch as e:
            raise WeightMismatch(f"{self.export_dir} cannot be rebuilt as the CRNN its params.json describes: {e}"
                                 ) from None
        return model, params

    @property
    def dtype_policy(self) -> str:
        """The dtype policy the export computes in (``model.json``): ``float32``, ``mixed_float16`` or
        ``mixed_bfloat16``; ``float32`` for a model file (converted in float32) or an export without ``model.json``;
        a shipped model, the policy it was trained in.
        """
        info = read_model_info(self.export_dir) if self.format in (SAVED_MODEL, PRETRAINED) else None
        return (info or {}).get("dtype_policy", "float32")

    def saved_weights(self, targets: dict | None = None) -> dict[str, tf.Variable]:
        """The SavedModel's float variables by Keras path (``crnn/conv1/kernel``, :func:`tf_crnn.model.weight_paths`).

        The paths come from ``model.json``, which lists the SavedModel's ``variables`` in their saved order
        (checked: as many, of the same shapes). Without ``model.json`` (an export of tf-crnn 0.4), the
        saved order is taken as ``targets``' order (the CRNN rebuilt from the same settings), each pair
        checked by the variable's last name part and shape, and a warning says so; only such an export is
        read by order.

        A shipped model (``pretrained``) gives its stored weights (float16) cast back to the dtype ``model.json``
        records for each (the training's: float32), as NumPy arrays.

        Raises:
            ValueError: ``model.json`` does not describe this SavedModel's variables (or a shipped model's
                weights), or (without it) the variables do not pair with ``targets`` (names the first that does not).
        """
        if self.format == PRETRAINED:
            info = read_model_info(self.export_dir) or {"variables": []}
            return read_weights(self.export_dir, {v["path"]: v.get("dtype", "float32") for v in info["variables"]})
        saved = list(self._model.variables)
        info = read_model_info(self.export_dir)
        if info is not None:
            recorded = info["variables"]
            if len(recorded) != len(saved) or any(tuple(r["shape"]) != tuple(v.shape)
                                                  for r, v in zip(recorded, saved)):
                raise ValueError(f"{self.export_dir}/{MODEL_INFO} does not describe this SavedModel "
                                 f"({len(recorded)} variables listed, {len(saved)} saved, or other shapes); "
                                 "re-export the model")
            return {r["path"]: v for r, v in zip(recorded, saved) if tf.as_dtype(v.dtype).is_floating}
        return self._legacy_weights([v for v in saved if tf.as_dtype(v.dtype).is_floating], targets or {})

    def _legacy_weights(self, saved: list, targets: dict) -> dict:
        """An export without ``model.json``: its float variables paired with ``targets`` in order, each
        checked by its last name part (``crnn/kernel:0`` -> ``kernel``) and shape."""
        for (path, target), variable in zip(targets.items(), saved):
            name = variable.name.split(":")[0].rsplit("/", 1)[-1]
            if name != path.rsplit("/", 1)[-1] or tuple(variable.shape) != tuple(target.shape):
                raise ValueError(f"{self.export_dir} has no {MODEL_INFO} and its variable {variable.name} "
                                 f"{tuple(variable.shape)} does not pair with {path} {tuple(target.shape)} of the "
                                 "CRNN its params.json describes")
        if len(saved) != len(targets):
            raise ValueError(f"{self.export_dir} has no {MODEL_INFO} and holds {len(saved)} weights, the CRNN its "
                             f"params.json describes {len(targets)}")
        log.warning("%s has no %s (written before tf-crnn 0.5): its weights are taken in their saved order, "
                    "checked by name and shape; re-export it to have them matched by variable path",
                    self.export_dir, MODEL_INFO)
        return dict(zip(targets, saved))

    def _rebuilt_logits_function(self):
        """For an export without ``logits`` signature and a shipped model: the CRNN of its params.json with its
        weights (float32 compute)."""
        from .export import logits_fn

        try:
            model, params = self.crnn()
        except ValueError as e:
            raise ValueError(f"{e} and has no 'logits' signature; re-export it with this version of tf-crnn") from None
        fn = tf.function(logits_fn(model, params), input_signature=[tf.TensorSpec([None], tf.string)])
        self._rebuilt_model = model  # keep the variables alive
        return lambda images: fn(images)

    @property
    def input_channels(self) -> int:
        """Channels the model was trained on (1 grey, 3 RGB; from ``params.json``, 1 if absent)."""
        return int(self.params.get("input_channels", 1))

    def encode(self, image: ImageInput) -> bytes:
        """Bytes of one image that this export decodes into the pixels training would have seen.

        See :func:`tf_crnn.images.model_input` for what ``image`` may be and what it raises.
        """
        return model_input(image, self.input_channels)

    def iter_logits(self, images: Sequence[ImageInput] | ImageInput,
                    batch_size: int = 32) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """CTC logits of images (anything :meth:`predict` takes), batch by batch.

        Yields:
            ``(start, logits, lengths)``: the batch covers ``images[start:start + len(lengths)]``;
            ``logits`` float32 ``[batch, time, num_classes]`` (class 0 = blank, time padded
            to the batch's widest image), ``lengths`` int32 ``[batch]`` valid time steps.

        Raises:
            TypeError / ValueError: as :meth:`predict`.
            FileNotFoundError / tf_crnn.images.ImageError: an image cannot be read (named in the message);
                ``tf-crnn evaluate`` leaves such images out beforehand.
            ValueError: the export has neither the ``logits`` signature nor what is needed to rebuild it.
        """
        check_batch_size(batch_size)
        items = image_list(images)
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            encoded = [encode_or_error(self.encode, item, strict=True) for item in chunk]
            try:
                logits, lengths = self.logits_of(encoded)
            except tf.errors.InvalidArgumentError:
                for item, data in zip(chunk, encoded):  # which image? TensorFlow's error does not say
                    try:
                        self.logits_of([data])
                    except tf.errors.InvalidArgumentError as e:
                        raise ImageError(f"{describe(item)}: {decode_failure(e)}") from None
                raise
            yield start, logits, lengths

    def iter_decoded(self, images: Sequence[ImageInput] | ImageInput, batch_size: int = 32,
                     decoding: Decoding | None = None, lexicon: Lexicon | None = None
                     ) -> Iterator[tuple[int, list[tuple[tuple[tuple[str, ...], float], list]]]]:
        """:meth:`iter_logits` decoded with :func:`tf_crnn.decoding.decode_batch`, batch by batch.

        Args:
            decoding: default :attr:`decoding`; lexicon: its loaded word list, if it has one.

        Yields:
            ``(start, decoded)``: ``decoded`` is :func:`~tf_crnn.decoding.decode_batch`'s list for
            ``images[start:start + len(decoded)]``.

        Raises:
            as :meth:`iter_logits`.
        """
        decoding = decoding or self.decoding
        for start, logits, lengths in self.iter_logits(images, batch_size):
            yield start, decode_batch(logits, lengths, self.alphabet.symbols_by_code, decoding, lexicon)

    def logits_of(self, encoded: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """CTC logits of encoded images sent to the model as they are (see :meth:`predict_bytes`).

        Returns:
            ``(logits, lengths)``: float32 ``[batch, time, num_classes]`` (class 0 = blank), int32 ``[batch]``.

        Raises:
            tf.errors.InvalidArgumentError: TensorFlow cannot decode an image.
            ValueError: the export has neither the ``logits`` signature nor what is needed to rebuild it.
        """
        out = self._logits_function()(images=tf.constant(list(encoded), dtype=tf.string))
        return np.asarray(out["logits"]), np.asarray(out["lengths"])

    def predict_bytes(self, encoded: Sequence[bytes], batch_size: int = 32,
                      decoding: Decoding | None = None) -> list[Prediction]:
        """Transcribe encoded images sent to the model as they are (no check, no conversion).

        For bytes ``tf.io.decode_image`` reads as training did: plain PNG / JPEG, or
        :meth:`encode` output; :meth:`predict` takes anything else. ``decoding`` as :meth:`predict`.

        Raises:
            TypeError / ValueError: ``batch_size`` is not a positive integer.
            tf.errors.InvalidArgumentError: TensorFlow cannot decode an image of a batch.
            FileNotFoundError / ValueError: the lexicon of ``decoding`` is missing or has no usable word.
        """
        check_batch_size(batch_size)
        decoding = decoding or self.decoding
        lexicon = self._lexicon(decoding)
        out: list[Prediction] = []
        for start in range(0, len(encoded), batch_size):
            logits, lengths = self.logits_of(encoded[start:start + batch_size])
            for (best, score), hypotheses in decode_batch(logits, lengths, self.alphabet.symbols_by_code,
                                                          decoding, lexicon):
                out.append(Prediction("".join(best), score, tuple(("".join(h), p) for h, p in hypotheses)))
        return out

    def _lexicon(self, decoding: Decoding) -> Lexicon | None:
        """The word list of ``decoding`` (read once per file), or None."""
        if self.alphabet is None:
            raise ValueError(f"{self.export_dir} has no alphabet.json ({self.alphabet_file}): "
                             "its logits cannot be decoded")
        if decoding.lexicon and decoding.lexicon not in self._lexicons:
            self._lexicons[decoding.lexicon] = Lexicon.from_file(
                decoding.lexicon, self.alphabet.lookup, self.params.get("string_split_delimiter", "|"),
                self.normalization)
        return self._lexicons.get(decoding.lexicon) if decoding.lexicon else None

    def predict(self, images: Iterable[ImageInput] | ImageInput, batch_size: int = 32,
                strict: bool = False, decoding: Decoding | None = None) -> list[Prediction]:
        """Transcribe images; bad ones are reported in their :class:`Prediction`, the others transcribed.

        Args:
            images: one image or an iterable of images, each a path (str or os.PathLike), encoded
                bytes, a NumPy array (``[H, W]`` or ``[H, W, C]``, C in 1, 3, 4; uint8, or float in
                [0, 1]) or a PIL image (its current frame). An ``[N, H, W, C]`` array is N images.
                Any format Pillow reads; see :func:`tf_crnn.images.model_input`.
            batch_size: images per model call (a positive int).
            strict: raise at the first image that cannot be read instead of reporting it.
            decoding: how the CTC logits become text (greedy, beam search, lexicon;
                :func:`tf_crnn.decoding.default_decoding` makes one); default :attr:`decoding`,
                the training-time setting. With a lexicon, ``text`` is the lexicon word and
                ``alternatives`` the lexicon-free hypotheses.

        Returns:
            One :class:`Prediction` per image, in order (a list of one for a single image); an image
            that cannot be read has ``error`` set (why) and empty text.

        Raises:
            TypeError: an input of another type (the message lists the accepted ones), or an array
                of another dtype.
            ValueError: ``batch_size`` < 1, or an array of another shape or range.
            FileNotFoundError / tf_crnn.images.ImageError: only with ``strict``, naming the image.
            FileNotFoundError / ValueError: the lexicon of ``decoding`` is missing or has no usable word.
        """
        check_batch_size(batch_size)
        decoding = decoding or self.decoding
        self._lexicon(decoding)  # a bad lexicon fails before any image is read
        return predict_images(images, self.encode, lambda encoded: self.predict_bytes(encoded, len(encoded), decoding),
                              batch_size, strict)


def predict_images(images: Iterable[ImageInput] | ImageInput, encode: Callable[[ImageInput], Any],
                   transcribe: Callable[[list], list[Prediction]], batch_size: int = 32,
                   strict: bool = False) -> list[Prediction]:
    """The loop of :meth:`PredictionModel.predict`, for any model that encodes and transcribes images.

    Every image is encoded first; one that cannot be read gets a :class:`Prediction` with ``error``
    (or, with ``strict``, stops everything). The others are transcribed ``batch_size`` at a time; when
    TensorFlow cannot decode an image of a batch, the batch is transcribed image by image to find it.

    Args:
        images: as :meth:`PredictionModel.predict`.
        encode: one image -> what ``transcribe`` takes for it (:meth:`PredictionModel.encode`);
            raises OSError or :class:`ImageError` for an image that cannot be read.
        transcribe: a list of encoded images -> one :class:`Prediction` each; raises
            ``tf.errors.InvalidArgumentError`` when TensorFlow cannot decode one of them.
        batch_size, strict: as :meth:`PredictionModel.predict`.

    Returns:
        one :class:`Prediction` per image, in order.

    Raises:
        as :meth:`PredictionModel.predict`.
    """
    check_batch_size(batch_size)
    items = image_list(images)
    encoded = [encode_or_error(encode, item, strict) for item in items]
    results: list[Prediction | None] = [_failed(e) if isinstance(e, Exception) else None for e in encoded]
    readable = [i for i, e in enumerate(encoded) if not isinstance(e, Exception)]
    for start in range(0, len(readable), batch_size):
        chunk = readable[start:start + batch_size]
        for i, prediction in zip(chunk, _transcribe_chunk(transcribe, [encoded[i] for i in chunk])):
            if strict and prediction.error:
                raise ImageError(f"{describe(items[i])}: {prediction.error}")
            results[i] = prediction
    return results


def encode_or_error(encode: Callable[[ImageInput], Any], item, strict: bool):
    """``encode(item)``, or why ``item`` cannot be read (OSError / ImageError; raised, naming it, when ``strict``)."""
    try:
        return encode(item)
    except (OSError, ImageError) as e:
        if strict:
            raise type(e)(f"{describe(item)}: {e}") from None
        return e


def _transcribe_chunk(transcribe: Callable[[list], list[Prediction]], encoded: list) -> list[Prediction]:
    """``transcribe`` one batch; if TensorFlow rejects an image, image by image."""
    try:
        return transcribe(encoded)
    except tf.errors.InvalidArgumentError:
        pass
    out = []
    for data in encoded:  # which image? TensorFlow's error does not say
        try:
            out.append(transcribe([data])[0])
        except tf.errors.InvalidArgumentError as e:
            out.append(_failed(decode_failure(e)))
    return out


def check_batch_size(batch_size) -> None:
    """Raise unless ``batch_size`` is a positive integer.

    Raises:
        TypeError: not an integer.
        ValueError: 0 or negative.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"batch_size must be a positive integer, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def image_list(value) -> list:
    """The images of :meth:`PredictionModel.predict`'s argument as a list (a single image -> a list of one).

    Raises:
        TypeError: ``value``, or one of its items, is not an accepted image (the message says what is).
    """
    if isinstance(value, np.ndarray) and value.ndim == 4:
        return list(value)
    if isinstance(value, IMAGE_TYPES):
        return [value]
    if not isinstance(value, Iterable) or isinstance(value, dict):
        raise TypeError(f"expected an image or a list of images, each {ACCEPTED}; "
                        f"got {type(value).__name__}")
    items = list(value)
    for position, item in enumerate(items):
        if not isinstance(item, IMAGE_TYPES):
            raise TypeError(f"image {position} is a {type(item).__name__}; each image must be {ACCEPTED}")
    return items


def _failed(reason) -> Prediction:
    return Prediction("", 0.0, (), str(reason))
