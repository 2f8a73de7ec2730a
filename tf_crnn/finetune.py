"""Fine-tuning: start a training from another training's weights (``init_from``).

A source is one of:

- an **export** folder (the SavedModel of :func:`tf_crnn.export.export_saved_model`, with
  ``params.json`` and ``alphabet.json``): its CRNN is rebuilt by
  :meth:`tf_crnn.loader.PredictionModel.crnn`. A source trained with ``ema_decay`` exported
  its averaged weights, so these are what it was evaluated with;
- a **checkpoint** folder (``output_model_dir/checkpoints``; its latest checkpoint) or one
  checkpoint (its prefix, ``.../checkpoints/ckpt-3``): the model's weights saved after that
  epoch (the trained weights, not the ``ema_decay`` average, which is optimizer state). The
  network and alphabet of that training are read from the ``export_best`` (else ``export``)
  folder beside ``checkpoints``, which every epoch's checkpoint has;
- a **run** of the training's database (``run:ID`` or the integer ID) reaches this module as
  its export folder: :func:`tf_crnn.experiment.sources.resolve_init_from` downloads its
  ``export.zip`` artifact (once, then cached) before the training starts, and names the run
  in the record (``origin``). Fine-tuning itself never opens the run database;
- a **shipped model** (``pretrained:NAME``, or its folder; :mod:`tf_crnn.pretrained`): its CRNN
  is rebuilt from its ``params.json`` and given its float16 weights, cast to float32.

The alphabet the new training uses is its ``lookup_alphabet_file`` (``init_alphabet=table``), or made
from the source's and the labels' symbols (``union``, ``new``: :func:`training_alphabet`, with the
source's alphabet read by :func:`source_alphabet` before the network is built).

:func:`copy_weights` puts the source's weights into the freshly built CRNN of the new
training, each weight by its variable path (``crnn/conv1/kernel``): every conv block, batch norm and
BiLSTM layer must have the same weights with the same shapes
(else :class:`FinetuneError` names the layer and both shapes); the output layer (``logits``,
a Dense of ``num_classes`` units) is remapped between the two alphabets by symbol: a symbol
of both keeps its kernel column and bias, the CTC blank (class 0) keeps its own, and symbols
the source did not have keep the new model's fresh initialisation.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from .alphabet import BLANK, Alphabet, AlphabetError, normalized_table
from .annotations import Sample
from .config import ConfigError, Params, load_config_file, recorded_unicode_normalization
from .model import WeightMismatch, assign_by_path, build_crnn, weight_paths
from .model_files import is_pretrained_folder
from .pretrained import PretrainedError, resolve
from .trainer import newest_checkpoint

log = logging.getLogger(__name__)

#: Folders beside ``checkpoints`` whose ``params.json`` / ``alphabet.json`` describe the checkpoints' training.
SETTINGS_FOLDERS = ("export_best", "export")
#: At most this many symbols are listed in the record of what was copied (the counts are always complete).
LISTED_SYMBOLS = 50


class FinetuneError(ConfigError):
    """``init_from`` cannot be used: no such source, or its network does not fit this training's."""


@dataclass
class Source:
    """A loaded ``init_from`` source.

    Attributes:
        model: the source's CRNN with its weights (float32).
        alphabet: the lookup table it was trained with.
        record: what the new run records about it (``run.info["init_from"]``): ``source``
            (``export``, ``checkpoint``, ``run`` or ``pretrained``), ``path`` and, as known, ``run_id``,
            ``database``, ``name`` (of a shipped model), ``train_run``, ``epoch``, ``config_sha256``.
    """

    model: keras.Model
    alphabet: Alphabet
    record: dict = field(default_factory=dict)


def settings_sha256(settings: dict) -> str:
    """SHA-256 (hex) of a training's settings as canonical JSON (sorted keys): equal settings, equal hash."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def source_path(init_from: str | os.PathLike) -> str:
    """The absolute path ``init_from`` names (a shipped model's folder for ``pretrained:NAME``).

    Raises:
        FinetuneError: ``pretrained:NAME`` with a name tf-crnn does not ship (the message lists those there are).
    """
    try:
        return os.path.abspath(resolve(init_from))
    except PretrainedError as e:
        raise FinetuneError(f"init_from={init_from!r}: {e}") from None


def is_model_folder(path: str) -> bool:
    """Whether ``path`` is an export (``saved_model.pb``) or a shipped model's folder (weights without a graph)."""
    return os.path.isfile(os.path.join(path, "saved_model.pb")) or is_pretrained_folder(path)


def checkpoint_prefix(path: str) -> str | None:
    """The checkpoint ``path`` names: the newest of a checkpoint folder, or ``path`` itself; None if neither."""
    if os.path.isdir(path):
        return newest_checkpoint(path)
    return path if tf.io.gfile.exists(path + ".index") else None


def load_source(init_from: str | os.PathLike, origin: dict | None = None) -> Source:
    """Load the export folder, shipped model, checkpoint folder or checkpoint ``init_from`` names (see the module
    docstring).

    Args:
        init_from: an export folder, ``pretrained:NAME`` or a shipped model's folder, a checkpoint folder or a
            checkpoint prefix.
        origin: where that folder came from, recorded in place of ``{"source": "export"}`` (a run's export:
            ``{"source": "run", "run_id", "database"}``, :func:`tf_crnn.experiment.sources.resolve_init_from`).

    Raises:
        FinetuneError: nothing usable at that path, a checkpoint without the weights or settings of its network,
            an unknown shipped model.
    """
    from .loader import PredictionModel

    path = source_path(init_from)
    if is_model_folder(path):
        kind = "pretrained" if is_pretrained_folder(path) else "export"
        return _export_source(PredictionModel(path), origin or {"source": kind})
    prefix = checkpoint_prefix(path)
    if prefix is not None:
        return _checkpoint_source(prefix)
    output_folders = ("checkpoints", *SETTINGS_FOLDERS)
    if os.path.isdir(path) and any(os.path.isdir(os.path.join(path, name)) for name in output_folders):
        raise FinetuneError(f"init_from={init_from!r} is a training's output folder: name its export "
                            f"({os.path.join(path, 'export')}), its best export ({os.path.join(path, 'export_best')}) "
                            f"or its checkpoints ({os.path.join(path, 'checkpoints')})")
    raise FinetuneError(f"init_from={init_from!r}: {path} is neither an export folder (with saved_model.pb), nor a "
                        "checkpoint folder or checkpoint, nor a run ('run:ID'), nor a shipped model "
                        "('pretrained:NAME')")


def _export_source(export, record: dict) -> Source:
    try:
        model, _ = export.crnn()
    except ValueError as e:
        raise FinetuneError(f"init_from: {e}") from None
    record = {**record, "path": export.export_dir, "config_sha256": settings_sha256(export.params)}
    if record["source"] == "export" and export.train_run is not None:
        record["train_run"] = export.train_run
    return Source(model, export.alphabet, record)


def settings_folder(prefix: str) -> str:
    """The folder whose ``params.json`` and ``alphabet.json`` describe checkpoint ``prefix``'s training
    (:data:`SETTINGS_FOLDERS` beside its ``checkpoints``).

    Raises:
        FinetuneError: there is none.
    """
    output_dir = os.path.dirname(os.path.dirname(prefix))
    folder = next((os.path.join(output_dir, name) for name in SETTINGS_FOLDERS
                   if os.path.isfile(os.path.join(output_dir, name, "params.json"))
                   and os.path.isfile(os.path.join(output_dir, name, "alphabet.json"))), None)
    if folder is None:
        raise FinetuneError(f"init_from: checkpoint {prefix} has no params.json and alphabet.json beside it (looked in "
                            f"{' and '.join(os.path.join(output_dir, n) for n in SETTINGS_FOLDERS)}): without them "
                            "its network and alphabet are unknown; fine-tune from that training's export instead")
    return folder


def _checkpoint_source(prefix: str) -> Source:
    """The model weights of checkpoint ``prefix``, in a CRNN built from the settings beside its folder."""
    folder = settings_folder(prefix)
    settings = load_config_file(os.path.join(folder, "params.json"))
    params = Params.from_dict({k: v for k, v in settings.items() if k in Params.field_names()})
    alphabet = Alphabet.from_file(os.path.join(folder, "alphabet.json"), params.unicode_normalization)
    model = build_crnn(params, alphabet.num_classes)
    # NaN first: whatever the checkpoint does not hold stays NaN and is named below.
    weights = float_weights(model.variables)
    for variable in weights:
        variable.assign(tf.fill(variable.shape, float("nan")))
    tf.train.Checkpoint(model=model).restore(prefix).expect_partial()
    missing = sorted({layer_name(model, v) for v in weights if np.isnan(keras.ops.convert_to_numpy(v)).any()})
    if missing:
        raise FinetuneError(f"init_from: checkpoint {prefix} holds no weights for layer(s) {', '.join(missing)} of the "
                            f"network in {folder}/params.json (checkpoints of tf-crnn 0.4.0 written before "
                            f"2026-11-22 held only part of the model): fine-tune from {folder} instead")
    epoch = os.path.basename(prefix).rsplit("-", 1)[-1]
    record = {"source": "checkpoint", "path": prefix, "settings": folder, "config_sha256": settings_sha256(settings)}
    if epoch.isdigit():
        record["epoch"] = int(epoch)
    return Source(model, alphabet, record)


def float_weights(variables) -> list:
    """The float variables among ``variables`` (weights and batch-norm statistics; not random-seed states)."""
    return list(weight_paths(variables).values())


def weighted_layers(model) -> dict[str, keras.layers.Layer]:
    """The CRNN's layers that hold weights, by their (fixed) names: ``conv1``, ``bn2``, ``bilstm1``, ..., ``logits``."""
    layers = [*(layer for block in model.conv_blocks for layer in block), *model.rnns, model.classifier]
    return {layer.name: layer for layer in layers if layer.weights}


def layer_name(model, variable) -> str:
    """The name of the weighted layer of ``model`` that owns ``variable``."""
    for name, layer in weighted_layers(model).items():
        if any(variable is w for w in layer.weights):
            return name
    return variable.path


def _shapes(layer) -> list[tuple[int, ...]]:
    return [tuple(w.shape) for w in float_weights(layer.weights)]


def copy_weights(source: Source, model, alphabet: Alphabet) -> dict:
    """Put the source's weights into ``model`` (a CRNN for ``alphabet``), the output layer remapped by symbol.

    Args:
        source: from :func:`load_source`.
        model: the new training's :class:`tf_crnn.model.CRNN`, built (float32 weights).
        alphabet: the new training's lookup table.

    Returns:
        What was done, for the run's record: ``layers`` (names copied whole), ``shared_symbols``,
        ``new_symbols`` and ``dropped_symbols`` (counts), ``new`` / ``dropped`` (the symbols, at
        most :data:`LISTED_SYMBOLS` each).

    Raises:
        FinetuneError: a conv, batch-norm or BiLSTM layer that only one of the two networks has, or of
            other weight shapes (the message names the layer and both shapes), or an output layer of
            another input size.
    """
    ours, theirs = weighted_layers(model), weighted_layers(source.model)
    where = source.record.get("path", "the source")
    unmatched = [*(n for n in ours if n not in theirs), *(n for n in theirs if n not in ours)]
    if unmatched:
        name = unmatched[0]
        has, lacks = ("this training's network", where) if name in ours else (where, "this training's network")
        raise FinetuneError(f"init_from: layer {name} is in {has} but not in {lacks}: the networks differ "
                            "(cnn_features_list, cnn_batch_norm, rnn_units must match the source's)")
    for name in ours:
        if name != model.classifier.name and _shapes(ours[name]) != _shapes(theirs[name]):
            raise FinetuneError(f"init_from: layer {name} has weight shapes {_shapes(theirs[name])} in {where} but "
                                f"{_shapes(ours[name])} in this training's network: the networks differ (conv "
                                "blocks, input height and channels, rnn_units must match the source's)")
    copied = [name for name in ours if name != model.classifier.name]
    # By variable path (crnn/bilstm1/forward_lstm1/lstm_cell/kernel), never by the order of a layer's weights.
    try:
        assign_by_path(*(weight_paths(w for name in copied for w in layers[name].weights) for layers in (ours, theirs)),
                       where)
    except WeightMismatch as e:
        raise FinetuneError(f"init_from: {e}") from None
    return {"layers": copied, **_remap_classifier(source, model.classifier, alphabet)}


def _remap_classifier(source: Source, classifier, alphabet: Alphabet) -> dict:
    """The output layer: the blank's and every shared symbol's kernel column and bias from the source."""
    old_kernel, old_bias = (keras.ops.convert_to_numpy(w) for w in (source.model.classifier.kernel,
                                                                    source.model.classifier.bias))
    kernel, bias = (keras.ops.convert_to_numpy(w).copy() for w in (classifier.kernel, classifier.bias))
    if old_kernel.shape[0] != kernel.shape[0]:
        raise FinetuneError(f"init_from: layer {classifier.name} takes {old_kernel.shape[0]} features in "
                            f"{source.record.get('path', 'the source')} but {kernel.shape[0]} in this training's "
                            "network")
    pairs = [(BLANK, BLANK)] + [(code, source.alphabet.lookup[symbol]) for symbol, code in alphabet.lookup.items()
                                if symbol in source.alphabet.lookup]
    new_codes, old_codes = (np.array(codes, dtype=np.int64) for codes in zip(*pairs))
    kernel[:, new_codes] = old_kernel[:, old_codes]
    bias[new_codes] = old_bias[old_codes]
    classifier.kernel.assign(kernel)
    classifier.bias.assign(bias)
    new = [s for s in alphabet.lookup if s not in source.alphabet.lookup]
    dropped = [s for s in source.alphabet.lookup if s not in alphabet.lookup]
    return {"shared_symbols": len(pairs) - 1, "new_symbols": len(new), "dropped_symbols": len(dropped),
            "new": new[:LISTED_SYMBOLS], "dropped": dropped[:LISTED_SYMBOLS]}


def source_alphabet(init_from: str | os.PathLike, normalization: str | None = None) -> Alphabet:
    """The alphabet ``init_from`` was trained with, read without loading its weights (for ``init_alphabet``).

    Args:
        init_from: as :func:`load_source` (a run resolved to its export folder before).
        normalization: the new training's ``unicode_normalization`` (the symbols are put in that form); None: as
            the source has them.

    Raises:
        FinetuneError: as :func:`load_source`; a source whose ``alphabet.json`` / ``params.json`` cannot be read.
    """
    path = source_path(init_from)
    folder = path if is_model_folder(path) else None
    if folder is None:
        prefix = checkpoint_prefix(path)
        if prefix is None:
            load_source(path)  # raises the error that names what init_from is not
        folder = settings_folder(prefix)
    try:
        form = recorded_unicode_normalization(load_config_file(os.path.join(folder, "params.json")))
        return in_form(Alphabet.from_file(os.path.join(folder, "alphabet.json"), form), normalization, folder)
    except (ConfigError, OSError, AlphabetError) as e:
        raise FinetuneError(f"init_from={init_from!r}: {e}") from None


def in_form(alphabet: Alphabet, normalization: str | None, where: str) -> Alphabet:
    """``alphabet`` with its symbols in Unicode ``normalization`` (None: unchanged).

    Raises:
        FinetuneError: two of its symbols are one in that form (names ``where``).
    """
    if normalization is None:
        return alphabet
    try:
        return Alphabet(normalized_table(alphabet.lookup, normalization))
    except AlphabetError as e:
        raise FinetuneError(f"init_from: the alphabet of {where}: {e}") from None


def training_alphabet(choice: str, source: Alphabet, samples: list[Sample]) -> tuple[Alphabet, dict]:
    """The alphabet of a fine-tuning with ``init_alphabet`` ``union`` or ``new`` (:class:`tf_crnn.config.Params`).

    Args:
        choice: ``union``: ``source`` plus the label symbols it lacks (numbered after its codes, in code-point
            order: :meth:`tf_crnn.alphabet.Alphabet.extended`); ``new``: the label symbols only, in code-point order.
        source: the alphabet of ``init_from`` (:func:`source_alphabet`).
        samples: every row of the training's train and eval CSVs (an eval symbol the table lacked would stop the
            training; it gets an output row that the training never sees, so it is counted as the error it is).

    Returns:
        The alphabet, and the record for ``run.info["init_from"]["alphabet"]``: ``init_alphabet``, ``symbols``
        (its size), ``source_symbols``, ``added`` / ``removed`` (counts against the source) and ``added_symbols`` /
        ``removed_symbols`` (at most :data:`LISTED_SYMBOLS` each).

    Raises:
        ValueError: ``choice`` is not ``union`` or ``new``.
        AlphabetError: ``new`` with labels that have no symbol at all.
    """
    if choice == "union":
        alphabet, _ = source.extended(s for sample in samples for s in sample.symbols)
    elif choice == "new":
        alphabet, _ = Alphabet.build(samples)
    else:
        raise ValueError(f"init_alphabet must be 'union' or 'new' here, got {choice!r}")
    added = sorted(set(alphabet.lookup) - set(source.lookup))
    removed = sorted(set(source.lookup) - set(alphabet.lookup))
    return alphabet, {"init_alphabet": choice, "symbols": len(alphabet), "source_symbols": len(source),
                      "added": len(added), "removed": len(removed), "added_symbols": added[:LISTED_SYMBOLS],
                      "removed_symbols": removed[:LISTED_SYMBOLS]}


def unknown_symbols_hint(error: AlphabetError, init_from) -> AlphabetError:
    """``error`` (label symbols the lookup table lacks) with how a fine-tuning from ``init_from`` gets past it."""
    return AlphabetError(f"{error}\nOr, as this training starts from init_from={init_from!r}: set "
                         "init_alphabet=union to extend that model's alphabet with the labels' symbols (their output "
                         "weights start fresh, the other symbols keep theirs).")


def initialize(model, alphabet: Alphabet, init_from: str | os.PathLike, origin: dict | None = None,
               normalization: str | None = None) -> dict:
    """Fine-tuning's start: load ``init_from`` (:func:`load_source`) and copy it into ``model`` (:func:`copy_weights`).

    Args:
        model, alphabet: the new training's CRNN and lookup table.
        init_from, origin: as :func:`load_source` (a folder or checkpoint; a run is resolved to its export
            folder before, by :func:`tf_crnn.experiment.sources.resolve_init_from`).
        normalization: the new training's ``unicode_normalization``: the source's symbols are put in that form
            before the output layer is remapped by symbol (an NFD-trained source keeps its ``ü`` in an NFC
            training); None: as the source has them.

    Returns:
        The record for ``run.info["init_from"]``: the source's record plus ``copied`` (what
        :func:`copy_weights` returns).

    Raises:
        FinetuneError: as :func:`load_source` and :func:`copy_weights`; two source symbols that are one in
            ``normalization``.
    """
    source = load_source(init_from, origin)
    source.alphabet = in_form(source.alphabet, normalization, source.record.get("path", init_from))
    record = {**source.record, "copied": copy_weights(source, model, alphabet)}
    log.info("%s", describe(record))
    return record


def not_applied(init_from, resumed_epoch: int) -> dict:
    """The record of a resumed fine-tuning (``restore_model``): its checkpoint of epoch ``resumed_epoch`` wins.

    The checkpoint holds the fine-tuned weights already, so ``init_from`` (as the config names it, a folder or
    a run) is not loaded. Returns ``{"init_from": ..., "applied": False, "resumed_from_epoch": N}``.
    """
    record = {"init_from": init_from, "applied": False, "resumed_from_epoch": int(resumed_epoch)}
    log.info("%s", describe(record))
    return record


def describe(record: dict) -> str:
    """One line on what :func:`initialize` did, from its record (for the run's output)."""
    if not record.get("applied", True):
        return (f"init_from={record['init_from']!r} not loaded: restore_model=True resumes the epoch "
                f"{record['resumed_from_epoch']} checkpoint, which continues from the fine-tuned weights")
    copied = record["copied"]
    if record["source"] == "run":
        what = f"run {record['run_id']}'s export"
    elif record["source"] == "pretrained":
        what = f"pretrained model {record.get('name', record['path'])}"
    else:
        what = f"{record['source']} {record['path']}"
    line = (f"weights from {what}: layers {', '.join(copied['layers'])} copied; output layer remapped: "
            f"{copied['shared_symbols']} symbol(s) shared, {copied['new_symbols']} new, "
            f"{copied['dropped_symbols']} dropped")
    return line + (f"; {describe_alphabet(record['alphabet'])}" if record.get("alphabet") else "")


def describe_alphabet(record: dict) -> str:
    """What ``init_alphabet`` made, from :func:`training_alphabet`'s record, for the run's output."""
    def listed(symbols: list[str], count: int) -> str:
        return f" ({' '.join(symbols)}{' ...' if count > len(symbols) else ''})" if symbols else ""

    added, removed = (listed(record[f"{k}_symbols"], record[k]) for k in ("added", "removed"))
    return (f"init_alphabet={record['init_alphabet']}: {record['symbols']} symbols, those of init_from "
            f"({record['source_symbols']}) with {record['added']} added{added} and {record['removed']} "
            f"removed{removed}")
