"""The model files tf-crnn reads and writes: their formats, suffixes, and the companions of a converted file.

- ``saved_model``: a SavedModel folder (:mod:`tf_crnn.export` writes it), ``alphabet.json``,
  ``params.json`` and ``model.json`` (:data:`MODEL_INFO`: the dtype policy it computes in and the path of
  each saved variable, :func:`read_model_info`) inside;
- ``tflite`` / ``onnx``: one file ``NAME.tflite`` / ``NAME.onnx`` (:mod:`tf_crnn.convert` writes it),
  with ``NAME.alphabet.json`` and ``NAME.params.json`` beside it (:func:`companion_files`).

The converter (:mod:`tf_crnn.convert`) and the loader (:mod:`tf_crnn.loader`) both read these names here.
This module imports nothing heavy (no TensorFlow), so the command line can use it cheaply.
"""
from __future__ import annotations

import json
import os

from .config import DEPLOY_FORMAT_NAMES

#: A SavedModel folder (the ``export`` of a training).
SAVED_MODEL = "saved_model"
#: The file formats ``tf-crnn convert`` writes (:data:`tf_crnn.config.DeployFormat`).
TFLITE, ONNX = DEPLOY_FORMAT_NAMES
#: File name suffix of each file format.
SUFFIXES = {TFLITE: ".tflite", ONNX: ".onnx"}
#: The file of a SavedModel export that describes its network: ``{"dtype_policy": "float32" |
#: "mixed_float16" | "mixed_bfloat16", "variables": [{"path", "shape", "dtype"}, ...]}``, one entry per
#: variable of the SavedModel's ``variables`` list, in its order (how a loader names what it restores).
MODEL_INFO = "model.json"


def read_model_info(export_dir: str | os.PathLike) -> dict | None:
    """The :data:`MODEL_INFO` of a SavedModel export, or None for an export written before tf-crnn kept one.

    Raises:
        ValueError: the file exists but is not the JSON object described at :data:`MODEL_INFO` (named).
    """
    path = os.path.join(os.fspath(export_dir), MODEL_INFO)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); re-export the model") from None
    if not isinstance(info, dict) or not isinstance(info.get("variables"), list) or not all(
            isinstance(v, dict) and {"path", "shape"} <= set(v) for v in info["variables"]):
        raise ValueError(f"{path} does not list the export's variables (a 'variables' list of objects with "
                         "'path' and 'shape'); re-export the model")
    return info


def companion_files(model_file: str | os.PathLike) -> tuple[str, str]:
    """``out/NAME.tflite`` (or ``.onnx``) -> ``(out/NAME.alphabet.json, out/NAME.params.json)``."""
    stem = os.path.splitext(os.fspath(model_file))[0]
    return f"{stem}.alphabet.json", f"{stem}.params.json"


def format_of(path: str | os.PathLike) -> str | None:
    """``tflite`` / ``onnx`` from a file name's suffix (any case), else None."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    return next((name for name, s in SUFFIXES.items() if s == suffix), None)
