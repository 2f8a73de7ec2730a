"""Convert a tf-crnn SavedModel export into a TFLite or ONNX model file: the library behind ``tf-crnn convert``.

The CRNN is rebuilt from the export's ``params.json`` with the export's weights, matched by variable
path (:meth:`tf_crnn.loader.PredictionModel.crnn`), in float32, and converted from a concrete function
that starts *after* image decoding: neither TFLite nor ONNX can decode PNG / JPEG bytes
in-graph, so their input is what :func:`tf_crnn.data.preprocess_image` (the training
pipeline's own function) makes of an image. :mod:`tf_crnn.runtimes` runs these files.

TFLite (``tf.lite.TFLiteConverter``, builtin ops only, run by LiteRT's interpreter):
    input ``images``: float32 ``[1, height, width, channels]``, values in [-1, 1], any width
    (resize the interpreter's input for each image); output ``logits``: float32
    ``[1, time, num_classes]`` (class 0 = CTC blank), ``time = ceil(width / prod(pool widths))``.
    The batch is fixed at 1: Keras 3's LSTM becomes a TFLite ``WHILE`` loop whose TensorList
    ops the converter lowers to builtin ops only when the batch size is static (with a dynamic
    batch they need the Flex delegate, SELECT_TF_OPS, which the LiteRT runtime lacks). One
    image per call means no padding, so no width input is needed: every column is valid.
    ``quantize``: ``none`` (float32), ``float16`` (float16 weights, float32 compute),
    ``dynamic`` (int8 weights, activations quantized on the fly), ``int8`` (int8 weights and
    activations calibrated on a representative data set; float32 input and output, so the
    caller feeds the same arrays as for every other format).

ONNX (tf2onnx, run by ONNX Runtime):
    inputs ``images``: float32 ``[batch, height, width, channels]`` in [-1, 1], right-padded
    to the widest image of the batch, and ``widths``: int32 ``[batch]``, each image's width
    before padding (the padded columns are masked out of the BiLSTMs, as in training);
    outputs ``logits``: float32 ``[batch, time, num_classes]`` and ``lengths``: int32
    ``[batch]`` valid time steps (as the SavedModel's ``logits`` signature). Batch and width
    are dynamic axes.

The converted file is checked against the trained model (:func:`transcription_change`): the CRNN in the
dtype policy the export records (``model.json``; a mixed-precision training computed its conv blocks in
bfloat16 or float16, the files compute in float32) transcribes the same images as the file, and the CER
between the two is reported. The images: int8's calibration images, else ``representative`` CSVs, else, for
a 16-bit export, the eval CSVs of its ``params.json`` where they exist on this machine.

Beside ``out/NAME.tflite`` (or ``.onnx``) go ``out/NAME.alphabet.json`` and
``out/NAME.params.json``, copies of the export's, so the file and its two companions are
all that is needed to run it (:func:`tf_crnn.model_files.companion_files`, where the formats and
their suffixes are named for this module and the loader alike).

This module imports TensorFlow only when it converts, so the command line can read its names cheaply.
"""
from __future__ import annotations

import json
import os
import random
import re
import tempfile
import time
import warnings
from dataclasses import dataclass

from ._util import atomic_write, filtered_stderr, write_json
from .config import DEPLOY_FORMAT_NAMES, QUANTIZATION_NAMES, one_of
from .model_files import ONNX, SUFFIXES, TFLITE, companion_files, format_of, is_pretrained_folder
from .pretrained import resolve

#: What each ``quantize`` choice does to a TFLite model.
QUANTIZATIONS = {
    "none": "float32 weights and compute",
    "float16": "float16 weights, float32 compute",
    "dynamic": "int8 weights, activations quantized on the fly (dynamic range)",
    "int8": "int8 weights and activations (calibrated), float32 input and output",
}
assert tuple(QUANTIZATIONS) == QUANTIZATION_NAMES, "config.Quantization and QUANTIZATIONS name the same choices"
#: TFLite ops kept in float32 by ``int8``: the quantizer quantizes them, but LiteRT has no int8 kernel for them
#: ("Type 'INT8' is not supported by reverse_sequence"). REVERSE_SEQUENCE is the BiLSTM's per-image reversal
#: (:func:`tf_crnn.model.bidirectional`); it moves values without arithmetic, so float costs no accuracy.
INT8_FLOAT_OPS = ("REVERSE_SEQUENCE",)
#: Tensors (regular expressions searched in their names, in every subgraph) whose ops stay float32 in ``int8``;
#: everything else, the LSTMs' matrix products and gates included, is int8, so the file size does not change:
#: - the spatial transformer's sampler (``use_stn``): its pixel coordinates (up to max_width) need more than
#:   8 bits (:data:`tf_crnn.stn.SAMPLER_SCOPE`, checked in :func:`tflite_model`; not imported here, it loads
#:   TensorFlow);
#: - the LSTM cell state, the ops of Keras' ``LSTMCell`` named ``mul`` (f * c_prev), ``add``
#:   (c = f * c_prev + i * g) and ``Tanh_1`` (tanh(c)), inside each LSTM's WHILE loop: a line model's cell state
#:   grows along the line (calibrated range up to about ±250 on Fraktur lines, an int8 step of about 2), so
#:   quantized it lost every small update and the Fraktur recipe's model read blanks only (CER 100 %; found by
#:   comparing each tensor of the int8 and float32 models on one line).
LSTM_CELL_STATE_NODES = r"lstm_cell[^/]*/(mul|add|Tanh_1)$"
INT8_FLOAT_NODES = (r"/sampler/", LSTM_CELL_STATE_NODES)
#: How many images :func:`convert` transcribes with the converted file and the trained model (int8's first
#: calibration images, or drawn from the representative CSVs).
INT8_CHECK_IMAGES = 16
#: Above this CER between those transcriptions, ``tf-crnn convert`` warns (a quantization that broke the model,
#: as quantizing the LSTM cell state did, shows as 100 %; a sound one as a few tenths of a percent).
INT8_CHANGE_WARNING = 0.05
#: What the TFLite converter and LiteRT print on stderr for every conversion (kept off the terminal).
CONVERTER_NOISE = ("fully_quantize:", "Created TensorFlow Lite XNNPACK delegate")


class DeployError(ValueError):
    """A conversion that cannot be done as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Converted:
    """What :func:`convert` wrote.

    Attributes:
        path: the model file.
        format: ``tflite`` or ``onnx``.
        quantize: the TFLite quantization (``none`` for ONNX).
        size: bytes of the model file.
        alphabet_file, params_file: its companions (:func:`tf_crnn.model_files.companion_files`).
        representative_images: images the int8 calibration used (0 otherwise).
        seconds: wall time of the conversion.
        change: the CER (fraction) of the converted file's greedy transcriptions (class codes) against
            the trained model's (the CRNN in the export's dtype policy, :attr:`trained_policy`), on
            :data:`INT8_CHECK_IMAGES` images (:attr:`checked_on`); None when no image was at hand (see
            :func:`convert`). Above :data:`INT8_CHANGE_WARNING` the conversion has damaged the model
            (``tf-crnn convert`` warns).
        checked: how many images ``change`` covers (0 when None).
        checked_on: ``calibration`` (int8's images), ``representative`` (the ``representative`` CSVs) or
            ``eval`` (the eval CSVs of the export's ``params.json``); None when not checked.
        trained_policy: the dtype policy the export computes in (``float32``, ``mixed_bfloat16``,
            ``mixed_float16``; ``model.json``); the converted file computes in float32 (or int8).
    """

    path: str
    format: str
    quantize: str
    size: int
    alphabet_file: str
    params_file: str
    representative_images: int = 0
    seconds: float = 0.0
    change: float | None = None
    checked: int = 0
    checked_on: str | None = None
    trained_policy: str = "float32"

    @property
    def int8_change(self) -> float | None:
        """:attr:`change` of an ``int8`` conversion, else None (the name before 0.5)."""
        return self.change if self.quantize == "int8" else None

    @property
    def int8_checked(self) -> int:
        """:attr:`checked` of an ``int8`` conversion, else 0 (the name before 0.5)."""
        return self.checked if self.quantize == "int8" else 0


def check_request(output: str, format: str | None, quantize: str, representative: list[str] | None,
                  samples: int) -> str:
    """The format to write, after checking the options of :func:`convert` (no file is read).

    Raises:
        DeployError: unknown format or quantization, a format that contradicts the output's suffix,
            ``int8`` without representative data, a quantization for ONNX, ``samples`` < 1.
    """
    suffix_format = format_of(output)
    if format is None:
        if suffix_format is None:
            raise DeployError(f"cannot tell the format from {output}: name it *.tflite or *.onnx, or give --format")
        format = suffix_format
    if format not in DEPLOY_FORMAT_NAMES:
        raise DeployError(f"unknown format {format!r}; use {one_of(DEPLOY_FORMAT_NAMES)}")
    if suffix_format != format:
        raise DeployError(f"the output of --format {format} must end with {SUFFIXES[format]}, got {output}")
    if quantize not in QUANTIZATION_NAMES:
        raise DeployError(f"unknown quantization {quantize!r}; use {one_of(QUANTIZATION_NAMES)}")
    if format == ONNX and quantize != "none":
        raise DeployError(f"--quantize {quantize} is for TFLite; ONNX models are written in float32")
    if quantize == "int8" and not representative:
        raise DeployError("--quantize int8 calibrates on representative images: give --representative CSV "
                          "(for example the training CSV)")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise DeployError(f"--samples must be a positive integer, got {samples!r}")
    return format


def check_export(export_dir: str) -> None:
    """Raise :class:`DeployError` unless ``export_dir`` is a tf-crnn SavedModel export or a shipped model's folder
    (a hint if its parent was an export)."""
    if is_pretrained_folder(export_dir):
        return
    if os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
        missing = [f for f in ("params.json", "alphabet.json") if not os.path.isfile(os.path.join(export_dir, f))]
        if missing:
            raise DeployError(f"{export_dir} lacks {' and '.join(missing)}, which a conversion needs; "
                              "re-export it with this version of tf-crnn")
        return
    hint = ""
    if os.path.isfile(os.path.join(export_dir, "export", "saved_model.pb")):
        hint = f" (did you mean {os.path.join(export_dir, 'export')}?)"
    what = "folder without saved_model.pb" if os.path.isdir(export_dir) else "no such folder"
    raise DeployError(f"no tf-crnn export at {export_dir} ({what}){hint}")


def check_writable(path: str) -> None:
    """Raise OSError (naming ``path`` and the reason) unless a file can be written at ``path``."""
    folder = os.path.dirname(os.path.abspath(path)) or "."
    try:
        if os.path.isdir(path):
            raise IsADirectoryError(f"{path} is a folder")
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise OSError(f"cannot write {path}: {e.strerror or e}") from None


def convert(export_dir: str | os.PathLike, output: str | os.PathLike, format: str | None = None,
            quantize: str = "none", representative: list[str] | None = None, samples: int = 200,
            seed: int = 0, progress: bool = True) -> Converted:
    """Convert a SavedModel export to a TFLite or ONNX file with its two companion files.

    Args:
        export_dir: the export folder (``output_model_dir/export``: ``saved_model.pb``,
            ``params.json``, ``alphabet.json``), or a shipped model: ``pretrained:NAME`` or its folder
            (:mod:`tf_crnn.pretrained`; its float16-stored weights are converted as float32).
        output: the model file to write, ``*.tflite`` or ``*.onnx``; its folder is created.
        format: ``tflite`` or ``onnx``; None: from ``output``'s suffix.
        quantize: TFLite only, one of :data:`QUANTIZATIONS`.
        representative: annotated CSVs (training format; labels unused) whose images calibrate
            ``int8`` (required for it) and check the converted file against the trained model.
        samples: how many rows (at most) of ``representative`` are drawn for ``int8``, at random with
            ``seed`` (:data:`INT8_CHECK_IMAGES` of them for the check alone).
        progress: tqdm bars for the representative images.

    Returns:
        A :class:`Converted`, with the CER between the file's and the trained model's transcriptions
        (``change``) when images were at hand: int8's calibration images, else ``representative``,
        else, for an export trained in 16 bits, the eval CSVs its ``params.json`` names if they all exist.
        The files are written atomically (a previous file stays whole if anything fails).

    Raises:
        tf_crnn.pretrained.PretrainedError: ``pretrained:NAME`` with a name tf-crnn does not ship.
        DeployError: bad options, no export at ``export_dir``, no readable representative image,
            or the converter failed (the message names the op it stopped at, when it says).
        OSError: ``output`` cannot be written (named, with the reason).
        FileNotFoundError / tf_crnn.annotations.AnnotationError: a representative CSV is missing or malformed.
        ImportError: tf2onnx missing for ONNX (``pip install 'tf-crnn[deploy]'``).
    """
    started = time.perf_counter()
    export_dir, output = os.path.abspath(resolve(export_dir)), os.path.abspath(os.fspath(output))
    format = check_request(output, format, quantize, representative, samples)
    check_export(export_dir)
    check_writable(output)

    from .loader import PredictionModel

    source = PredictionModel(export_dir)
    model, params = source.crnn()
    policy = source.dtype_policy
    calibration = None
    if quantize == "int8":
        calibration = representative_images(representative, params, samples, seed, progress)
    content = tflite_model(model, params, quantize, calibration, progress) if format == TFLITE else \
        onnx_model(model, params)
    checked_on, check_csvs = check_source(calibration, representative, policy, source.params)
    change, checked = None, []
    if checked_on is not None:
        try:
            checked = calibration[:INT8_CHECK_IMAGES] if calibration else representative_images(
                check_csvs, params, INT8_CHECK_IMAGES, seed, progress)
        except (OSError, ValueError):  # DeployError, AnnotationError
            if checked_on != "eval":
                raise
            checked_on = None  # the training's eval CSVs were only a default: no check then
    if checked:
        # The trained model: the export's CRNN in the dtype policy it was trained and evaluated in.
        trained = source.crnn(trained_precision=True)[0] if policy != "float32" else model
        change = transcription_change(trained, content, checked, format)
    with atomic_write(output, binary=True) as f:
        f.write(content)
    alphabet_file, params_file = companion_files(output)
    for source_file, target in (("alphabet.json", alphabet_file), ("params.json", params_file)):
        with open(os.path.join(export_dir, source_file), encoding="utf-8") as f:
            write_json(target, json.load(f))
    return Converted(output, format, quantize, len(content), alphabet_file, params_file,
                     len(calibration or []), time.perf_counter() - started, change, len(checked), checked_on, policy)


def check_source(calibration: list | None, representative: list[str] | None, policy: str,
                 settings: dict) -> tuple[str | None, list[str]]:
    """Which images check a conversion (see :func:`convert`): ``(checked_on, CSVs to draw from)``.

    Args:
        calibration: int8's calibration images, if any.
        representative: the ``representative`` CSVs, if given.
        policy: the export's dtype policy; settings: its ``params.json``.

    Returns:
        ``("calibration", [])``, ``("representative", CSVs)``, ``("eval", the eval CSVs of params.json)``
        for a 16-bit export whose eval CSVs all exist, else ``(None, [])``: nothing to check on.
    """
    if calibration:
        return "calibration", []
    if representative:
        return "representative", list(representative)
    eval_csvs = settings.get("csv_files_eval") or []
    if policy != "float32" and eval_csvs and all(os.path.isfile(f) for f in eval_csvs):
        return "eval", list(eval_csvs)
    return None, []


def representative_images(csv_files: list[str], params, samples: int = 200, seed: int = 0,
                          progress: bool = True) -> list:
    """Up to ``samples`` images drawn at random (``seed``) from annotated CSVs, as the model's input.

    Each image goes through :func:`tf_crnn.images.model_input` and :func:`tf_crnn.data.preprocess_image`,
    what training and :class:`tf_crnn.loader.PredictionModel` do; images that cannot be read are left out.

    Returns:
        float32 arrays ``[1, height, width, channels]`` in [-1, 1].

    Raises:
        FileNotFoundError / AnnotationError: a CSV is missing or malformed (file and line named).
        DeployError: no row, or no readable image among those drawn.
    """
    import tensorflow as tf
    from tqdm import tqdm

    from .annotations import read_csvs
    from .data import preprocess_image
    from .images import ImageError, model_input

    rows = read_csvs(csv_files, params.csv_delimiter, params.string_split_delimiter, params.unicode_normalization)
    if not rows:
        raise DeployError(f"no rows in {', '.join(csv_files)}")
    drawn = random.Random(seed).sample(rows, min(samples, len(rows)))
    preprocess = tf.function(lambda encoded: preprocess_image(encoded, params)[0],
                             input_signature=[tf.TensorSpec([], tf.string)])
    arrays, unreadable = [], []
    for sample in tqdm(drawn, desc="representative images", unit="img", disable=not progress):
        try:
            arrays.append(preprocess(tf.constant(model_input(sample.image_path, params.input_channels)))
                          .numpy()[None])
        except (OSError, ImageError, tf.errors.InvalidArgumentError) as e:
            unreadable.append(f"{sample.where()}: {sample.image_path}: {getattr(e, 'message', e)}")
    if not arrays:
        raise DeployError(f"none of the {len(drawn)} representative image(s) can be read, e.g. {unreadable[0]}")
    return arrays


def tflite_model(model, params, quantize: str = "none", calibration: list | None = None,
                 progress: bool = True) -> bytes:
    """The TFLite flatbuffer of a CRNN (see the module docstring for its input and output).

    Args:
        model: a float32 :class:`tf_crnn.model.CRNN`.
        params: its settings (height, channels).
        quantize: one of :data:`QUANTIZATIONS`.
        calibration: for ``int8``, the representative inputs (:func:`representative_images`).

    Raises:
        DeployError: the converter failed (naming the op it stopped at, when it says).
    """
    import numpy as np
    import tensorflow as tf
    from tqdm import tqdm

    from .stn import SAMPLER_SCOPE

    assert f"/{SAMPLER_SCOPE}/" in INT8_FLOAT_NODES, "INT8_FLOAT_NODES names the sampler's scope"

    @tf.function(input_signature=[tf.TensorSpec([1, params.height, None, params.input_channels], tf.float32,
                                                name="images")])
    def logits(images):
        # One image, no padding: every column is valid.
        return {"logits": tf.cast(model(images, tf.shape(images)[2:3], training=False), tf.float32)}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([logits.get_concrete_function()], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    # The converter prints what it did to stderr; the calibration's progress bar goes to the real stderr.
    bar_stream = os.fdopen(os.dup(2), "w") if progress else None
    try:
        with warnings.catch_warnings(), filtered_stderr(CONVERTER_NOISE):
            warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected")  # float32 input
            warnings.filterwarnings("ignore", r"\s*Warning: tf.lite.Interpreter is deprecated")  # the debugger's
            if quantize != "int8":
                content = converter.convert()
            else:
                def dataset():
                    for image in tqdm(calibration, desc="int8 calibration", unit="img", disable=not progress,
                                      file=bar_stream):
                        yield [image]

                converter.representative_dataset = dataset
                # The quantization debugger is TensorFlow's way to leave some ops in float (selective quantization).
                options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(INT8_FLOAT_OPS))
                debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=dataset,
                                                                     debug_options=options)
                float_nodes = sorted({t["name"] for t in tflite_tensors(debugger.calibrated_model)
                                      if any(re.search(pattern, t["name"]) for pattern in INT8_FLOAT_NODES)})
                if float_nodes:
                    debugger.options = tf.lite.experimental.QuantizationDebugOptions(
                        denylisted_ops=list(INT8_FLOAT_OPS), denylisted_nodes=float_nodes)
                content = debugger.get_nondebug_quantized_model()
            check_tflite_runs(content, calibration[0] if calibration else
                              np.zeros([1, params.height, params.min_width, params.input_channels], np.float32))
    except DeployError:
        raise
    except Exception as e:  # ConverterError, or ValueError / RuntimeError from the quantizer
        raise DeployError(f"the TFLite converter failed{converter_failure(str(e))}") from None
    finally:
        if bar_stream is not None:
            bar_stream.close()
    return content


def tflite_tensors(content: bytes) -> list[dict]:
    """LiteRT's details (name, dtype, quantization...) of every tensor of a TFLite model, all subgraphs
    (the main graph and, for each LSTM, its WHILE loop's condition and body)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    tensors, subgraph = [], 0
    while True:
        try:
            tensors += interpreter.get_tensor_details(subgraph_index=subgraph)
        except ValueError:  # "subgraph_index is out of range"
            return tensors
        subgraph += 1


def check_tflite_runs(content: bytes, image) -> None:
    """Run a converted model once in LiteRT on ``image`` (float32 ``[1, height, width, channels]``).

    The converter can emit an op LiteRT has no kernel for in that type; this finds it before
    the file is written.

    Raises:
        DeployError: LiteRT cannot run the model (naming the op when it says).
    """
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:  # no runtime to check with (tf-crnn[deploy] installs it)
        return
    tflite_logits(content, [image])


def tflite_logits(content: bytes, images: list) -> list:
    """The logits of a TFLite CRNN (batch 1) for each image, run by LiteRT.

    Args:
        content: the flatbuffer (:func:`tflite_model`).
        images: float32 arrays ``[1, height, width, channels]`` in [-1, 1], any widths.

    Returns:
        float32 arrays ``[1, time, num_classes]``, one per image.

    Raises:
        DeployError: LiteRT cannot run the model (naming the op when it says).
    """
    from .runtimes import litert_interpreter

    out = []
    try:
        interpreter = litert_interpreter(model_content=content)
        index = interpreter.get_input_details()[0]["index"]
        output = interpreter.get_output_details()[0]["index"]
        for image in images:
            interpreter.resize_tensor_input(index, image.shape)
            interpreter.allocate_tensors()
            interpreter.set_tensor(index, image)
            interpreter.invoke()
            out.append(interpreter.get_tensor(output).copy())
    except Exception as e:
        op = re.search(r"\(([A-Z_0-9]+)\) failed to prepare", str(e))
        raise DeployError(f"LiteRT cannot run the converted model{' at op ' + op.group(1) if op else ''}: "
                          f"{str(e).strip().splitlines()[0]}") from None
    return out


def transcription_change(model, content: bytes, images: list, format: str = TFLITE) -> float:
    """CER of a converted model's greedy transcriptions against a CRNN's, on ``images``.

    Transcriptions are compared as CTC class codes (greedy: argmax per step, repeats merged,
    blanks dropped), the CRNN's taken as the reference, so no alphabet is needed.

    Args:
        model: the :class:`tf_crnn.model.CRNN` the file was converted from, in the dtype policy it was
            trained in (float32, or 16-bit compute: what its SavedModel computes).
        content: the TFLite flatbuffer or the ONNX model (``format``).
        images: float32 arrays ``[1, height, width, channels]`` in [-1, 1].
        format: ``tflite`` or ``onnx``.

    Returns:
        edit distance sum / reference length sum (:func:`tf_crnn.metrics.cer`); 1.0 for a model
        that reads blanks where the reference reads text.

    Raises:
        DeployError: LiteRT / ONNX Runtime cannot run the model.
    """
    import tensorflow as tf

    from .decoding import ctc_decode
    from .metrics import cer

    def codes(logits) -> tuple[int, ...]:
        decoded, _ = ctc_decode(tf.convert_to_tensor(logits), tf.shape(logits)[1:2])
        return tuple(int(c) for c in decoded.numpy()[0, 0] if c)

    converted = [codes(logits) for logits in (tflite_logits if format == TFLITE else onnx_logits)(content, images)]
    reference = [codes(tf.cast(model(image, tf.shape(image)[2:3], training=False), tf.float32)) for image in images]
    return cer(reference, converted)


def onnx_model(model, params, opset: int | None = None) -> bytes:
    """The ONNX model of a CRNN (see the module docstring for its inputs and outputs), by tf2onnx.

    Args:
        model: a float32 :class:`tf_crnn.model.CRNN`.
        params: its settings (height, channels).
        opset: the ONNX opset; None: tf2onnx's default.

    Raises:
        ImportError: tf2onnx is not installed.
        DeployError: tf2onnx failed, or ONNX Runtime cannot run its model (naming the op, when they say).
    """
    import logging

    import tensorflow as tf

    from .model import sequence_lengths

    try:
        import tf2onnx
    except ImportError:
        raise ImportError("ONNX conversion needs tf2onnx: pip install 'tf-crnn[deploy]'") from None
    # tf2onnx logs an op it cannot convert and writes it into the model anyway: ONNX Runtime names it below.
    logging.getLogger("tf2onnx").setLevel(logging.CRITICAL)
    specs = [tf.TensorSpec([None, params.height, None, params.input_channels], tf.float32, name="images"),
             tf.TensorSpec([None], tf.int32, name="widths")]

    @tf.function(input_signature=specs)
    def logits(images, widths):
        out = model(images, widths, training=False)
        return {"logits": tf.cast(out, tf.float32), "lengths": sequence_lengths(widths, model.pool_widths)}

    try:
        proto, _ = tf2onnx.convert.from_function(logits, input_signature=specs, opset=opset)
    except Exception as e:  # tf2onnx raises several types, with the unsupported ops in the message
        raise DeployError(f"tf2onnx failed{converter_failure(str(e))}") from None
    content = proto.SerializeToString()
    check_onnx_runs(content, params)
    return content


def check_onnx_runs(content: bytes, params) -> None:
    """Run a converted model once in ONNX Runtime on a blank image of ``params.min_width`` columns.

    tf2onnx writes ops it cannot convert into the model as they are; this finds them before the file is written.

    Raises:
        DeployError: ONNX Runtime cannot load or run the model (naming the op when it says).
    """
    import numpy as np

    try:
        import onnxruntime
    except ImportError:  # no runtime to check with (tf-crnn[deploy] installs it)
        return
    width = params.min_width
    try:
        session = onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
        session.run(None, {"images": np.zeros([1, params.height, width, params.input_channels], np.float32),
                           "widths": np.array([width], np.int32)})
    except Exception as e:
        op = re.search(r"No Op registered for (\w+)", str(e))
        raise DeployError(f"ONNX Runtime cannot run the converted model{' at op ' + op.group(1) if op else ''}: "
                          f"{str(e).strip().splitlines()[0][:300]}") from None


def onnx_logits(content: bytes, images: list) -> list:
    """The logits of an ONNX CRNN for each image (one per call, unpadded), run by ONNX Runtime.

    Args:
        content: the ONNX model (:func:`onnx_model`).
        images: float32 arrays ``[1, height, width, channels]`` in [-1, 1], any widths.

    Returns:
        float32 arrays ``[1, time, num_classes]``, one per image.

    Raises:
        ImportError: ONNX Runtime is not installed (``tf-crnn[deploy]``).
        DeployError: ONNX Runtime cannot run the model.
    """
    import numpy as np

    try:
        import onnxruntime
    except ImportError:
        raise ImportError("checking an ONNX model needs ONNX Runtime: pip install 'tf-crnn[deploy]'") from None
    try:
        session = onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
        return [session.run(["logits"], {"images": image, "widths": np.array([image.shape[2]], np.int32)})[0]
                for image in images]
    except Exception as e:
        raise DeployError(f"ONNX Runtime cannot run the converted model: {str(e).strip().splitlines()[0][:300]}"
                          ) from None


def converter_failure(message: str) -> str:
    """``" at op tf.X: first error line"`` from a converter's error message (or just the first line).

    The TFLite converter (MLIR) reports ``loc(...): error: 'tf.X' op ...``; tf2onnx
    ``... unsupported ops: Counter({'X': 1})``.
    """
    ops = list(dict.fromkeys(re.findall(r"'((?:tf|tfl)\.\w+)' op", message)))
    ops += [op for op in re.findall(r"'(\w+)': \d+", message.split("unsupported ops", 1)[-1])
            if "unsupported ops" in message and op not in ops]
    errors = [line.split("error:", 1)[1].strip() for line in message.splitlines() if "error:" in line]
    first = errors[0] if errors else next((line.strip() for line in message.splitlines() if line.strip()),
                                          "no message")
    return (f" at op {', '.join(ops[:5])}" if ops else "") + f": {first[:500]}"
