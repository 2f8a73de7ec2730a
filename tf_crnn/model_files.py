"""The model files tf-crnn reads and writes: their formats, suffixes, and the companions of a converted file.

- ``saved_model``: a SavedModel folder (:mod:`tf_crnn.export` writes it), ``alphabet.json``,
  ``params.json`` and ``model.json`` (:data:`MODEL_INFO`: the dtype policy it computes in and the path of
  each saved variable, :func:`read_model_info`) inside;
- ``tflite`` / ``onnx``: one file ``NAME.tflite`` / ``NAME.onnx`` (:mod:`tf_crnn.convert` writes it),
  with ``NAME.alphabet.json`` and ``NAME.params.json`` beside it (:func:`companion_files`);
- ``pretrained``: a folder of weights without a graph, as the models shipped in :mod:`tf_crnn.pretrained` are
  stored (``scripts/package_pretrained.py`` writes one from an export): :data:`WEIGHTS` (every float variable
  of the CRNN by its variable path, stored as float16, :func:`write_weights` / :func:`read_weights`),
  ``params.json``, ``alphabet.json``, ``model.json`` (the stored variables' paths, shapes and the dtype they
  are loaded back to) and the model card (:data:`CARD_INFO`, :data:`CARD_TEXT`). The network is rebuilt from
  ``params.json`` and given these weights (:meth:`tf_crnn.loader.PredictionModel.crnn`).

The converter (:mod:`tf_crnn.convert`) and the loader (:mod:`tf_crnn.loader`) both read these names here.
This module imports nothing heavy (no TensorFlow), so the command line can use it cheaply.
"""
from __future__ import annotations

import json
import os

import numpy as np

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
#: A folder of weights without a graph (a shipped pretrained model).
PRETRAINED = "pretrained"
#: The weights file of a pretrained folder: a NumPy ``.npz`` archive, one array per variable path.
WEIGHTS = "weights.npz"
#: The dtype weights are stored in: half the bytes of float32, and a CRNN's weights lie well inside its range.
STORED_DTYPE = "float16"
#: A pretrained folder's machine-readable model card (JSON object; :mod:`tf_crnn.pretrained` lists its keys).
CARD_INFO = "card.json"
#: A pretrained folder's model card for people (Markdown; ``tf-crnn models show`` prints it).
CARD_TEXT = "MODEL_CARD.md"


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


def is_pretrained_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder of weights without a graph (holds :data:`WEIGHTS`)."""
    return os.path.isfile(os.path.join(os.fspath(path), WEIGHTS))


def write_weights(folder: str | os.PathLike, weights: dict[str, np.ndarray]) -> str:
    """Write ``weights`` (arrays by variable path, ``crnn/conv1/kernel``) into ``folder``/:data:`WEIGHTS` as
    :data:`STORED_DTYPE`, compressed.

    Returns:
        The file's path.

    Raises:
        ValueError: a float value outside float16's range (it would be stored as infinity).
    """
    stored = {}
    for path, value in weights.items():
        value = np.asarray(value)
        half = value.astype(STORED_DTYPE)
        if not np.isfinite(half).all() and np.isfinite(value).all():
            raise ValueError(f"{path} holds values beyond {STORED_DTYPE}'s range (largest {np.abs(value).max():g})")
        stored[path] = half
    target = os.path.join(os.fspath(folder), WEIGHTS)
    np.savez_compressed(target, **stored)
    return target


def read_weights(folder: str | os.PathLike, dtypes: dict[str, str]) -> dict[str, np.ndarray]:
    """The weights of a pretrained ``folder`` by variable path, each cast to its dtype in ``dtypes``.

    Args:
        dtypes: ``{path: dtype}``, what the training's variables were (``model.json``: ``float32``).

    Raises:
        ValueError: the file lacks a path of ``dtypes`` or holds one it does not name (named).
    """
    target = os.path.join(os.fspath(folder), WEIGHTS)
    with np.load(target) as archive:
        stored = set(archive.files)
        if stored != set(dtypes):
            missing, extra = sorted(set(dtypes) - stored), sorted(stored - set(dtypes))
            raise ValueError(f"{target} does not hold the variables {MODEL_INFO} lists (missing: {missing[:5]}, "
                             f"not listed: {extra[:5]}); package the model again")
        return {path: archive[path].astype(dtype) for path, dtype in dtypes.items()}
