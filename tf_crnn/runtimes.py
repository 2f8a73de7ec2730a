"""Run a TFLite or ONNX model file written by ``tf-crnn convert``: encoded images -> CTC logits.

:class:`tf_crnn.loader.PredictionModel` calls these as it calls a SavedModel's ``logits``
signature: ``runtime(images=tf.string [batch])`` -> ``{"logits": float32 [batch, time,
num_classes], "lengths": int32 [batch]}``; decoding (greedy, beam search, lexicon) happens
outside, the same for every format (:func:`tf_crnn.decoding.decode_batch`). The images are
decoded and resized by :func:`tf_crnn.export.preprocess_batch`, the function the SavedModel runs
in-graph (:func:`tf_crnn.data.preprocess_image` per image), so every format sees the pixels
training saw. See :mod:`tf_crnn.convert` for the inputs and outputs of each file.

- TFLite, with LiteRT's interpreter (``ai-edge-litert``): one image per call, the
  interpreter's input resized to each image's width (its batch is fixed at 1).
- ONNX, with ONNX Runtime (CPU): a whole batch per call, right-padded, with the widths.
"""
from __future__ import annotations

import json
import logging
import os

import numpy as np
import tensorflow as tf

from ._util import filtered_stderr
from .config import Params
from .export import preprocess_batch

#: What LiteRT prints on stderr for every model it loads.
LITERT_NOISE = ("Created TensorFlow Lite XNNPACK delegate",)


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the file and why."""


log = logging.getLogger(__name__)


def litert_interpreter(**source):
    """LiteRT's ``Interpreter(**source)`` (``model_path=`` or ``model_content=``, ``num_threads=``), allocated.

    When LiteRT's default XNNPACK delegate fails to prepare the model, the model runs on LiteRT's builtin
    kernels instead (slower), with a warning. Why: XNNPACK refuses some int8 models whose quantization
    parameters it does not support (seen: an int8 CRNN with a spatial transformer, "failed to create XNNPACK
    runtime", depending on the trained weights), which the builtin kernels run correctly.

    Raises:
        ValueError / RuntimeError: LiteRT cannot load or prepare the model at all.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(**source)
    try:
        interpreter.allocate_tensors()
        return interpreter
    except RuntimeError as e:
        if "XNNPACK" not in str(e):
            raise
        reason = str(e).strip().splitlines()[0]
    log.warning("LiteRT's XNNPACK delegate cannot run this model (%s): using LiteRT's builtin kernels (slower)",
                reason)
    interpreter = Interpreter(**source, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    return interpreter


_PREPROCESSORS: dict[str, tf.types.experimental.PolymorphicFunction] = {}


def _preprocessor(params: Params):
    """:func:`tf_crnn.export.preprocess_batch` for ``params`` as a tf.function, one per distinct params."""
    key = json.dumps(params.to_dict(), sort_keys=True, default=str)
    if key not in _PREPROCESSORS:
        _PREPROCESSORS[key] = tf.function(lambda images: preprocess_batch(images, params),
                                          input_signature=[tf.TensorSpec([None], tf.string)])
    return _PREPROCESSORS[key]


class TFLiteRuntime:
    """A ``.tflite`` file of ``tf-crnn convert`` in LiteRT's interpreter.

    Args:
        path: the file.
        params: the settings of its ``params.json`` (height, width bounds, channels).
        threads: interpreter threads (default: every CPU core).

    Raises:
        ImportError: ``ai-edge-litert`` is not installed.
        ModelFileError: the file is not a TFLite model, or not one of ``tf-crnn convert``
            for these params (its input is not float32 ``[1, height, width, channels]``).
    """

    def __init__(self, path: str, params: Params, threads: int | None = None):
        try:
            import ai_edge_litert.interpreter  # noqa: F401
        except ImportError:
            raise ImportError("running a .tflite model needs LiteRT: pip install 'tf-crnn[deploy]'") from None
        self.path = path
        try:
            with filtered_stderr(LITERT_NOISE):  # printed by the first allocation in a process
                self.interpreter = litert_interpreter(model_path=path, num_threads=threads or os.cpu_count() or 1)
        except Exception as e:  # LiteRT raises ValueError / RuntimeError for a file it cannot read
            raise ModelFileError(f"{path}: not a TFLite model LiteRT can load ({_first_line(e)})") from None
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        expected = [1, params.height, -1, params.input_channels]
        if (len(inputs) != 1 or list(inputs[0]["shape_signature"]) != expected or inputs[0]["dtype"] != np.float32
                or len(outputs) != 1 or len(outputs[0]["shape_signature"]) != 3):
            raise ModelFileError(
                f"{path}: not a tf-crnn TFLite model for its params.json (inputs "
                f"{[(d['name'], list(d['shape_signature'])) for d in inputs]}, expected one float32 {expected}; "
                f"outputs {[list(d['shape_signature']) for d in outputs]}, expected one [1, time, classes])")
        self._input, self._output = inputs[0]["index"], outputs[0]["index"]
        self._width = None
        self._preprocess = _preprocessor(params)

    def __call__(self, images: tf.Tensor) -> dict[str, np.ndarray]:
        """Logits of a batch of encoded images (tf.string ``[batch]``), image by image.

        Raises:
            tf.errors.InvalidArgumentError: an image TensorFlow cannot decode.
        """
        batch, widths = (t.numpy() for t in self._preprocess(images))
        outputs = []
        for image, width in zip(batch, widths):
            if width != self._width:  # a new shape: the interpreter re-plans its tensors
                self.interpreter.resize_tensor_input(self._input, [1, *image.shape[:1], int(width), image.shape[2]])
                self.interpreter.allocate_tensors()
                self._width = width
            self.interpreter.set_tensor(self._input, np.ascontiguousarray(image[None, :, :width]))
            self.interpreter.invoke()
            outputs.append(self.interpreter.get_tensor(self._output)[0])
        lengths = np.array([len(o) for o in outputs], np.int32)
        logits = np.zeros([len(outputs), max(lengths, default=0), outputs[0].shape[-1] if outputs else 0],
                          np.float32)
        for row, out in zip(logits, outputs):
            row[:len(out)] = out
        return {"logits": logits, "lengths": lengths}


class ONNXRuntime:
    """An ``.onnx`` file of ``tf-crnn convert`` in an ONNX Runtime session (CPU).

    Args:
        path: the file.
        params: the settings of its ``params.json`` (height, width bounds, channels).

    Raises:
        ImportError: ``onnxruntime`` is not installed.
        ModelFileError: the file is not an ONNX model, or not one of ``tf-crnn convert``
            (inputs ``images``, ``widths``; outputs ``logits``, ``lengths``).
    """

    INPUTS, OUTPUTS = ["images", "widths"], ["logits", "lengths"]

    def __init__(self, path: str, params: Params):
        try:
            import onnxruntime
        except ImportError:
            raise ImportError("running an .onnx model needs ONNX Runtime: pip install 'tf-crnn[deploy]'") from None
        self.path = path
        try:
            self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        except Exception as e:  # InvalidProtobuf, InvalidGraph, Fail, NoSuchFile: onnxruntime's own types
            raise ModelFileError(f"{path}: not an ONNX model ONNX Runtime can load ({_first_line(e)})") from None
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if sorted(inputs) != sorted(self.INPUTS) or sorted(outputs) != sorted(self.OUTPUTS):
            raise ModelFileError(f"{path}: not a tf-crnn ONNX model (inputs {inputs}, outputs {outputs}; "
                                 f"expected {self.INPUTS} and {self.OUTPUTS})")
        self._preprocess = _preprocessor(params)

    def __call__(self, images: tf.Tensor) -> dict[str, np.ndarray]:
        """Logits of a batch of encoded images (tf.string ``[batch]``) in one session run.

        Raises:
            tf.errors.InvalidArgumentError: an image TensorFlow cannot decode.
        """
        batch, widths = (t.numpy() for t in self._preprocess(images))
        logits, lengths = self.session.run(self.OUTPUTS, {"images": batch, "widths": widths})
        return {"logits": logits, "lengths": lengths}


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
