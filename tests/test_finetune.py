"""Fine-tuning (``init_from``, ``freeze_conv_epochs``) from an export, a checkpoint and a run, on real tiny trainings.

The source is trained on alphabet A (the digits and ``#``); the fine-tuning uses
alphabet B: the same digits under other codes, without ``#``, with ``x`` and ``y``.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pymongo
import pytest
from conftest import tiny_params

from tf_crnn import finetune
from tf_crnn.alphabet import Alphabet
from tf_crnn.config import ConfigError, Params
from tf_crnn.data import load_split
from tf_crnn.experiment import sources
from tf_crnn.finetune import FinetuneError
from tf_crnn.loader import PredictionModel
from tf_crnn.model import build_crnn
from tf_crnn.trainer import Trainer

DIGITS = "0123456789"
ALPHABET_A = {**{d: i + 1 for i, d in enumerate(DIGITS)}, "#": 11}
ALPHABET_B = {"x": 1, **{d: i + 2 for i, d in enumerate(reversed(DIGITS))}, "y": 12}
DB_NAME = "tf_crnn_finetune"


def _alphabet_file(folder, name, table) -> str:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(table))
    return str(path)


@pytest.fixture(scope="module")
def source(digits_data, tmp_path_factory):
    """A training on alphabet A: one epoch of 2 steps; its output folder (export, export_best, checkpoints)."""
    root = tmp_path_factory.mktemp("source")
    params = tiny_params(digits_data, output_model_dir=str(root / "out"), n_epochs=1, steps_per_epoch=2,
                         lookup_alphabet_file=_alphabet_file(root, "a", ALPHABET_A), learning_rate=1e-2)
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    trainer = Trainer(params, alphabet)
    trainer.fit(load_split(params.csv_files_train, params, alphabet, "train", progress=False),
                load_split(params.csv_files_eval, params, alphabet, "eval", progress=False), seed=0)
    trainer.export(str(root / "out" / "export"))
    return root / "out"


def _target(digits_data, tmp_path, **overrides):
    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "out"),
                         lookup_alphabet_file=_alphabet_file(tmp_path, "b", ALPHABET_B), **overrides)
    return params, Alphabet.from_file(params.lookup_alphabet_file)


def _layer_values(model) -> dict[str, list[np.ndarray]]:
    return {name: [np.array(w.numpy()) for w in finetune.float_weights(layer.weights)]
            for name, layer in finetune.weighted_layers(model).items()}


def _check_copied(model, source_model, fresh_kernel, fresh_bias):
    ours, theirs = _layer_values(model), _layer_values(source_model)
    for name in ("conv1", "conv2", "bn2", "bilstm1"):
        assert all(np.array_equal(a, b) for a, b in zip(ours[name], theirs[name])), name
    kernel, bias = ours["logits"]
    old_kernel, old_bias = theirs["logits"]
    assert kernel.shape == (32, 13) and old_kernel.shape == (32, 12)
    for symbol in ["<blank>", *DIGITS]:  # the blank (class 0) and every shared symbol keep their column and bias
        new, old = (0, 0) if symbol == "<blank>" else (ALPHABET_B[symbol], ALPHABET_A[symbol])
        np.testing.assert_array_equal(kernel[:, new], old_kernel[:, old])
        assert bias[new] == old_bias[old]
    for symbol in ("x", "y"):  # new symbols: the fresh initialisation of the new network
        np.testing.assert_array_equal(kernel[:, ALPHABET_B[symbol]], fresh_kernel[:, ALPHABET_B[symbol]])
        assert bias[ALPHABET_B[symbol]] == fresh_bias[ALPHABET_B[symbol]]


@pytest.mark.slow
def test_export_and_checkpoint_sources_keep_the_shared_symbols_output_weights(source, digits_data, tmp_path):
    params, alphabet = _target(digits_data, tmp_path)
    source_model, _ = PredictionModel(source / "export").crnn()

    model = build_crnn(params, alphabet.num_classes)
    fresh_kernel, fresh_bias = (np.array(w.numpy()) for w in (model.classifier.kernel, model.classifier.bias))
    record = finetune.initialize(model, alphabet, str(source / "export"))
    _check_copied(model, source_model, fresh_kernel, fresh_bias)
    assert record["source"] == "export" and record["path"] == str(source / "export")
    assert len(record["config_sha256"]) == 64
    copied = record["copied"]
    assert copied["layers"] == ["conv1", "conv2", "bn2", "bilstm1"]
    assert (copied["shared_symbols"], copied["new"], copied["dropped"]) == (10, ["x", "y"], ["#"])

    # The checkpoint of the same (last) epoch holds the same weights; its settings come from export_best.
    from_checkpoint = build_crnn(params, alphabet.num_classes)
    from_checkpoint.classifier.kernel.assign(fresh_kernel)
    from_checkpoint.classifier.bias.assign(fresh_bias)
    record = finetune.initialize(from_checkpoint, alphabet, str(source / "checkpoints"))
    assert record["source"] == "checkpoint" and record["epoch"] == 1
    assert record["path"].endswith("ckpt-1") and record["settings"] == str(source / "export_best")
    _check_copied(from_checkpoint, source_model, fresh_kernel, fresh_bias)
    assert finetune.load_source(str(source / "checkpoints" / "ckpt-1")).record["epoch"] == 1


@pytest.mark.slow
def test_another_network_is_refused_naming_the_layer_and_both_shapes(source, digits_data, tmp_path):
    def refused(**overrides):
        params, alphabet = _target(digits_data, tmp_path, **overrides)
        with pytest.raises(FinetuneError) as error:
            finetune.initialize(build_crnn(params, alphabet.num_classes), alphabet, str(source / "export"))
        return str(error.value)

    message = refused(cnn_features_list=[16, 16])
    assert "layer conv1 has weight shapes [(3, 3, 1, 8), (8,)] in" in message
    assert "but [(3, 3, 1, 16), (16,)] in this training's network" in message
    assert "layer bilstm1 has weight shapes" in refused(rnn_units=[24])
    assert "layer bn1 is in this training's network but not in" in refused(cnn_batch_norm=[True, True])


@pytest.mark.slow
def test_the_output_layer_is_remapped_in_the_new_trainings_unicode_form(source, digits_data, tmp_path):
    # The source export relabelled: its "#" (code 11) becomes an NFD "u" + U+0308, and the export says NFD.
    nfd = tmp_path / "nfd_export"
    shutil.copytree(source / "export", nfd)
    (nfd / "alphabet.json").write_text(json.dumps({**{d: ALPHABET_A[d] for d in DIGITS}, "u\u0308": 11}))
    recorded = json.loads((nfd / "params.json").read_text())
    (nfd / "params.json").write_text(json.dumps({**recorded, "unicode_normalization": "NFD"}))
    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "out"),
                         lookup_alphabet_file=_alphabet_file(tmp_path, "b_u", {**ALPHABET_B, "\u00fc": 13}))
    alphabet = Alphabet.from_file(params.lookup_alphabet_file, params.unicode_normalization)  # NFC
    old_kernel = np.array(PredictionModel(nfd).crnn()[0].classifier.kernel.numpy())

    model = build_crnn(params, alphabet.num_classes)
    record = finetune.initialize(model, alphabet, str(nfd), normalization="NFC")
    assert record["copied"]["shared_symbols"] == 11 and record["copied"]["new"] == ["x", "y"]
    np.testing.assert_array_equal(model.classifier.kernel.numpy()[:, 13], old_kernel[:, 11])
    # Compared as written, the two forms of the letter are two symbols: it starts fresh.
    record = finetune.initialize(build_crnn(params, alphabet.num_classes), alphabet, str(nfd), normalization="none")
    assert record["copied"]["shared_symbols"] == 10 and "\u00fc" in record["copied"]["new"]


@pytest.mark.slow
def test_sources_that_cannot_be_used_are_named(source, tmp_path):
    with pytest.raises(FinetuneError, match="is neither an export folder"):
        finetune.load_source(str(tmp_path))
    with pytest.raises(FinetuneError, match="is a training's output folder: name its export"):
        finetune.load_source(str(source))
    alone = tmp_path / "copied" / "checkpoints"
    shutil.copytree(source / "checkpoints", alone)
    with pytest.raises(FinetuneError, match="has no params.json and alphabet.json beside it"):
        finetune.load_source(str(alone))
    assert isinstance(FinetuneError("x"), ConfigError)  # one line for the user, no traceback


def test_init_from_settings_are_checked():
    assert sources.run_reference(12) == 12 and sources.run_reference("run:12") == 12
    assert sources.run_reference("output/x/export") is None and sources.run_reference("run:abc") == "abc"
    with pytest.raises(ConfigError, match="freeze_conv_epochs keeps the conv blocks as init_from gave them"):
        Params(freeze_conv_epochs=1)
    with pytest.raises(ConfigError, match="init_from must be a run id >= 1"):
        Params(init_from=0)
    with pytest.raises(ConfigError, match="init_from must be a string or an integer or null, got 1.5"):
        Params(init_from=1.5)


@pytest.mark.slow
def test_freeze_conv_epochs_keeps_the_conv_blocks_for_the_frozen_epochs_only(source, digits_data, tmp_path):
    from tf_crnn.callbacks import Callback

    class LayerValues(Callback):  # the weights after each epoch
        def on_epoch_end(self, trainer, result):
            after.append(_layer_values(trainer.model))

    params, alphabet = _target(digits_data, tmp_path, init_from=str(source / "export"), freeze_conv_epochs=1,
                               n_epochs=2, steps_per_epoch=2, learning_rate=1e-2)
    trainer = Trainer(params, alphabet)
    finetune.initialize(trainer.model, alphabet, params.init_from)
    start = _layer_values(trainer.model)
    after = []
    trainer.fit(load_split(params.csv_files_train, params, alphabet, "train", progress=False),
                load_split(params.csv_files_eval, params, alphabet, "eval", progress=False), seed=0,
                callbacks=[LayerValues()])

    def same(a, b, name):
        return all(np.array_equal(x, y) for x, y in zip(a[name], b[name]))

    conv = ("conv1", "conv2", "bn2")  # bn2 with its moving statistics: a frozen batch norm uses them as they are
    assert all(same(after[0], start, name) for name in conv)
    assert not same(after[0], start, "bilstm1") and not same(after[0], start, "logits")
    assert not any(same(after[1], after[0], name) for name in conv)
    assert all(layer.trainable for block in trainer.model.conv_blocks for layer in block)


@pytest.mark.slow
def test_a_run_id_fetches_the_runs_export_and_the_new_run_records_it(digits_data, mongo_url, tmp_path,
                                                                      monkeypatch):
    from tf_crnn.experiment.experiments import ex

    monkeypatch.setenv("TF_CRNN_HOME", str(tmp_path / "home"))  # the download cache

    def train(out, **overrides):
        params = tiny_params(digits_data, output_model_dir=str(out), n_epochs=1, steps_per_epoch=2)
        run = ex.run(config_updates={**params.to_dict(), "mongo_url": mongo_url, "mongo_db_name": DB_NAME,
                                     **overrides}, options={"--capture": "sys"})
        assert run.status == "COMPLETED"
        return pymongo.MongoClient(mongo_url)[DB_NAME].runs.find_one({"_id": run._id})

    first = train(tmp_path / "first", lookup_alphabet_file=_alphabet_file(tmp_path, "a", ALPHABET_A))
    b_file = _alphabet_file(tmp_path, "b", ALPHABET_B)
    tuned = train(tmp_path / "tuned", lookup_alphabet_file=b_file, init_from=first["_id"], freeze_conv_epochs=1)
    info = tuned["info"]["init_from"]
    assert info["source"] == "run" and info["run_id"] == first["_id"] and info["database"] == DB_NAME
    assert info["path"].startswith(str(tmp_path / "home" / "models"))
    assert info["copied"]["shared_symbols"] == 10 and info["copied"]["new"] == ["x", "y"]
    assert (f"run {tuned['_id']}: weights from run {first['_id']}'s export: layers conv1, conv2, bn2, bilstm1 "
            "copied; output layer remapped: 10 symbol(s) shared, 2 new, 1 dropped") in tuned["captured_out"]
    # Frozen during its only epoch: the fine-tuned export's conv blocks are the first run's.
    ours, theirs = (_layer_values(PredictionModel(path).crnn()[0])
                    for path in (tmp_path / "tuned" / "export", info["path"]))
    assert all(np.array_equal(a, b) for name in ("conv1", "conv2", "bn2") for a, b in zip(ours[name], theirs[name]))
    assert sources.resolve_init_from(f"run:{first['_id']}", mongo_url, DB_NAME).path == info["path"]  # cached

    # Resumed: the checkpoint wins, init_from is not loaded again.
    resumed = train(tmp_path / "tuned", lookup_alphabet_file=b_file, init_from=first["_id"], freeze_conv_epochs=1,
                    n_epochs=2, restore_model=True)
    assert resumed["info"]["init_from"] == {"init_from": first["_id"], "applied": False, "resumed_from_epoch": 1}
    assert (f"init_from={first['_id']} not loaded: restore_model=True resumes the epoch 1 checkpoint"
            in resumed["captured_out"])

    with pytest.raises(FinetuneError, match="no run 999999"):
        sources.resolve_init_from(999999, mongo_url, DB_NAME)
