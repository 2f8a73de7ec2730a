"""The model files tf-crnn reads and writes: their formats, suffixes, and the companions of a converted file.

- ``saved_model``: a SavedModel folder (:mod:`tf_crnn.export` writes it), ``alphabet.json`` and
  ``params.json`` inside;
- ``tflite`` / ``onnx``: one file ``NAME.tflite`` / ``NAME.onnx`` (:mod:`tf_crnn.convert` writes it),
  with ``NAME.alphabet.json`` and ``NAME.params.json`` beside it (:func:`companion_files`).

The converter (:mod:`tf_crnn.convert`) and the loader (:mod:`tf_crnn.loader`) both read these names here.
This module imports nothing heavy (no TensorFlow), so the command line can use it cheaply.
"""
from __future__ import annotations

import os

from .config import DEPLOY_FORMAT_NAMES

#: A SavedModel folder (the ``export`` of a training).
SAVED_MODEL = "saved_model"
#: The file formats ``tf-crnn convert`` writes (:data:`tf_crnn.config.DeployFormat`).
TFLITE, ONNX = DEPLOY_FORMAT_NAMES
#: File name suffix of each file format.
SUFFIXES = {TFLITE: ".tflite", ONNX: ".onnx"}


def companion_files(model_file: str | os.PathLike) -> tuple[str, str]:
    """``out/NAME.tflite`` (or ``.onnx``) -> ``(out/NAME.alphabet.json, out/NAME.params.json)``."""
    stem = os.path.splitext(os.fspath(model_file))[0]
    return f"{stem}.alphabet.json", f"{stem}.params.json"


def format_of(path: str | os.PathLike) -> str | None:
    """``tflite`` / ``onnx`` from a file name's suffix (any case), else None."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    return next((name for name, s in SUFFIXES.items() if s == suffix), None)
