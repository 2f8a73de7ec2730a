"""The SavedModel a training leaves: signatures from image bytes to text and to CTC logits.

Shared by the trainer (which writes exports) and the loader (which rebuilds
the logits function for exports written before the ``logits`` signature
existed), so loading a model for inference never imports the trainer.
"""
from __future__ import annotations

import os

import keras
import tensorflow as tf

from . import data
from ._util import write_json
from .alphabet import Alphabet
from .config import Params
from .decoding import codes_to_strings, ctc_decode
from .model import sequence_lengths
from .model_files import MODEL_INFO


def logits_fn(model, params: Params):
    """The function from encoded images to CTC logits that the ``logits`` signature exports.

    Args:
        model: a :class:`tf_crnn.model.CRNN` (or anything called as ``model(images, widths, training=False)``).
        params: the settings the model was trained with (height, width bounds, channels).

    Returns:
        A function: tf.string ``[batch]`` of encoded images -> ``{"logits": float32
        [batch, time, num_classes] (class 0 = blank), "lengths": int32 [batch] valid time steps}``.
        Each image is decoded and resized by :func:`tf_crnn.data.preprocess_image`, the
        training pipeline's own function, so export and training see the same pixels.
    """
    def logits(images):
        batch, widths = preprocess_batch(images, params)
        out = model(batch, widths, training=False)
        return {"logits": tf.cast(out, tf.float32), "lengths": sequence_lengths(widths, model.pool_widths)}

    return logits


def preprocess_batch(images: tf.Tensor, params: Params) -> tuple[tf.Tensor, tf.Tensor]:
    """Encoded images -> the CRNN's input batch, each image by :func:`tf_crnn.data.preprocess_image`.

    Args:
        images: tf.string ``[batch]``, encoded images (see :func:`tf_crnn.images.model_input`).
        params: height, width bounds and channels.

    Returns:
        images: float32 ``[batch, height, width, channels]`` in [-1, 1], right-padded with 0 to the
            widest image of the batch; widths: int32 ``[batch]``, each image's width before padding.

    Raises:
        tf.errors.InvalidArgumentError: an image TensorFlow cannot decode (when run).
    """
    p = params

    def one(encoded):
        image, width = data.preprocess_image(encoded, p)
        # Pad to max_width so tf.map_fn stacks; cropped to the batch's widest image below.
        return tf.pad(image, [[0, 0], [0, p.max_width - width], [0, 0]]), width

    padded, widths = tf.map_fn(one, images, fn_output_signature=(
        tf.TensorSpec([p.height, p.max_width, p.input_channels], tf.float32), tf.TensorSpec([], tf.int32)))
    return padded[:, :, :tf.reduce_max(widths), :], widths


def serving_fn(model, params: Params, alphabet: Alphabet):
    """Image bytes ``[batch]`` -> ``{"text", "score"}``: the CRNN's logits decoded with the configured CTC decoder."""
    symbols = alphabet.symbols_by_code
    to_logits = logits_fn(model, params)

    def serve(images):
        out = to_logits(images)
        codes, scores = ctc_decode(out["logits"], out["lengths"], params.decoding, params.beam_width,
                                   params.num_beam_paths)
        return {"text": codes_to_strings(codes, symbols), "score": scores}

    return serve


def model_info(model) -> dict:
    """What ``model.json`` records of a CRNN (see :func:`export_saved_model`).

    The variables are listed in ``model.variables`` order, the order in which Keras' ``ExportArchive``
    stores them in the SavedModel (its ``variables`` list: ``variables/0``, ``variables/1``, ...).
    """
    return {"dtype_policy": getattr(model, "precision_policy", "float32"),
            "variables": [{"path": v.path, "shape": list(v.shape), "dtype": str(v.dtype)} for v in model.variables]}


def export_saved_model(model, params: Params, alphabet: Alphabet, export_dir: str) -> str:
    """Export a SavedModel whose ``serving_default`` signature maps image bytes to text.

    Signature ``serving_default``:
        inputs: ``images``: tf.string ``[batch]``, encoded PNG / JPEG / BMP / GIF of any size.
        outputs: ``text``: tf.string ``[batch, num_beam_paths]`` (UTF-8);
                 ``score``: float32 ``[batch, num_beam_paths]``, hypothesis probability in [0, 1].

    Signature ``logits`` (same input), for decoding outside the graph (``tf-crnn evaluate``):
        outputs: ``logits``: float32 ``[batch, time, num_classes]`` (class 0 = blank);
                 ``lengths``: int32 ``[batch]``, valid time steps per image.

    The folder also gets ``alphabet.json`` and ``params.json`` (the training
    settings) so a user can see what the model expects, and ``model.json``
    (:data:`tf_crnn.model_files.MODEL_INFO`): the dtype policy the model computes in
    (``model.precision_policy``; a converter rebuilds it in float32) and the Keras path,
    shape and dtype of every variable of the SavedModel's ``variables`` list, in its order,
    so that a loader assigns weights by path, never by position.

    Returns:
        ``export_dir``.

    Raises:
        OSError: the folder cannot be written (a previous export at ``export_dir`` is kept then).
    """
    tmp = export_dir.rstrip("/") + ".tmp"
    if tf.io.gfile.exists(tmp):
        tf.io.gfile.rmtree(tmp)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serving_fn(model, params, alphabet),
                         input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    # For decoding at evaluation time (tf_crnn.loader / tf-crnn evaluate): logits [batch, time, classes], lengths.
    archive.add_endpoint("logits", logits_fn(model, params),
                         input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    archive.write_out(tmp, verbose=False)
    alphabet.save(os.path.join(tmp, "alphabet.json"))
    # Where runs are stored (and any credentials) is no business of the model.
    write_json(os.path.join(tmp, "params.json"),
               {k: v for k, v in params.to_dict().items() if not k.startswith("mongo_")})
    write_json(os.path.join(tmp, MODEL_INFO), model_info(model))
    # Replace the previous export only once the new one is complete.
    if tf.io.gfile.exists(export_dir):
        tf.io.gfile.rmtree(export_dir)
    os.replace(tmp, export_dir)
    return export_dir
