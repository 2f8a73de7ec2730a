"""The pretrained models shipped inside tf-crnn: list them, find one by name, read its model card.

Each model is a folder ``tf_crnn/pretrained/<NAME>/`` installed with the package (nothing is downloaded),
in the ``pretrained`` format of :mod:`tf_crnn.model_files`: ``weights.npz`` (float16), ``params.json``,
``alphabet.json``, ``model.json``, ``card.json`` and ``MODEL_CARD.md``. ``scripts/package_pretrained.py``
makes such a folder from a training's export and measures the figures its card gives.

A model is named ``pretrained:NAME`` wherever a model folder is taken: ``init_from`` of a training,
``tf-crnn predict --model``, ``tf-crnn evaluate --model``, ``tf-crnn convert --model``,
:class:`tf_crnn.loader.PredictionModel`
(:func:`resolve`); ``tf-crnn models list`` / ``show NAME`` print the cards.

``card.json`` keys (written by the packaging script): ``name``, ``summary`` (one line), ``trained_on``,
``data_licence``, ``attribution``, ``initialised_from`` (random weights, or what it was fine-tuned from),
``rebuild`` (``commands``: the commands that rebuild it, ``config``: the training's config file),
``evaluations`` (list of ``{"set", "lines", "cer", "wer", "line_accuracy", "command"}``, measured with the
packaged float16 weights), ``float16_agreement`` (how often the packaged model's greedy transcription equals
the export's), ``input_height``, ``input_channels``, ``alphabet_size``, ``size_bytes``.

Imports nothing heavy (no TensorFlow): the command line lists models cheaply.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..model_files import CARD_INFO, CARD_TEXT, is_pretrained_folder

#: How a configuration or a command names a shipped model: ``pretrained:fraktur-19c``.
PREFIX = "pretrained:"
#: The folder holding one sub-folder per shipped model.
MODELS_DIR = Path(__file__).resolve().parent


class PretrainedError(ValueError):
    """No shipped model of that name, or a model folder without its card; the message lists the names."""


def names() -> list[str]:
    """The names of the shipped models, sorted (a hidden folder, ``.NAME.xyz``, is one being packaged)."""
    return sorted(p.name for p in MODELS_DIR.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and is_pretrained_folder(p))


def is_reference(value) -> bool:
    """Whether ``value`` names a shipped model (``pretrained:NAME``)."""
    return isinstance(value, str) and value.startswith(PREFIX)


def locate(name: str) -> str:
    """The folder of the shipped model ``name`` (``fraktur-19c``; a ``pretrained:`` prefix is allowed).

    Raises:
        PretrainedError: no shipped model of that name (the message lists those there are).
    """
    name = name[len(PREFIX):] if is_reference(name) else name
    available = names()
    if name not in available:
        listed = ", ".join(available) if available else "none"
        raise PretrainedError(f"no pretrained model {name!r}: the shipped ones are {listed} (tf-crnn models list)")
    return str(MODELS_DIR / name)


def resolve(model: str | os.PathLike) -> str:
    """The folder ``model`` names: a shipped model's for ``pretrained:NAME``, else ``model`` itself (a path).

    Raises:
        PretrainedError: ``pretrained:NAME`` with an unknown name.
    """
    return locate(model) if is_reference(model) else os.fspath(model)


def card(name: str) -> dict:
    """The machine-readable model card (``card.json``) of the shipped model ``name``.

    Raises:
        PretrainedError: unknown name, or a folder without a readable ``card.json``.
    """
    path = os.path.join(locate(name), CARD_INFO)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise PretrainedError(f"{path} cannot be read ({e}): the model {name!r} was not packaged completely") from None


def card_text(name: str) -> str:
    """The model card for people (``MODEL_CARD.md``) of the shipped model ``name``.

    Raises:
        PretrainedError: unknown name, or no ``MODEL_CARD.md``.
    """
    path = os.path.join(locate(name), CARD_TEXT)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise PretrainedError(f"{path} cannot be read ({e}): the model {name!r} was not packaged completely") from None


def folder_bytes(folder: str | os.PathLike) -> int:
    """Bytes of the files in ``folder`` and below (what a model adds to the installed package)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


#: Formats a card's test sample may be in (the real lines the tests read again).
SAMPLE_FORMATS = ("gt-pairs", "page", "iiit5k")


def sample_csv(sample: dict, shared_data: str | os.PathLike, folder: str | os.PathLike) -> str:
    """Write the CSV of a model card's test sample into ``folder`` and return its path.

    ``sample`` is the card's ``{"format", "folders"}`` (folders under ``shared_data``, read as
    ``tf-crnn prepare FORMAT`` reads them), with an optional ``"part"``: the data set's own part of that name
    only (``tf-crnn prepare FORMAT --group-by source --split-by-group each``, e.g. IIIT5K's ``test``).

    Raises:
        ValueError: a format not in :data:`SAMPLE_FORMATS`, no folders, or no part of that name.
        tf_crnn.datasets.converters.ConversionError: the folders cannot be read.
    """
    from ..datasets.converters import prepare  # TensorFlow-free, but not needed to list models

    if sample.get("format") not in SAMPLE_FORMATS or not sample.get("folders"):
        raise ValueError(f"a sample is {{\"format\": one of {', '.join(SAMPLE_FORMATS)}, \"folders\": [...]}}, "
                         f"got {sample}")
    csv = os.path.join(folder, "sample.csv")
    part = sample.get("part")
    prepare(sample["format"], [os.path.join(shared_data, f) for f in sample["folders"]], csv, progress=False,
            **({"group_by": "source", "split_by_group": "each"} if part else {}))
    if not part:
        return csv
    path = os.path.join(folder, f"sample.{part}.csv")
    if not os.path.exists(path):
        raise ValueError(f"the sample's folders {sample['folders']} have no part {part!r}")
    return path
