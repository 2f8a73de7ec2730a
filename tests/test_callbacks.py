"""The trainer's callbacks on real tiny trainings: early stopping and learning-rate reduction on plateau.

A learning rate of 1e-9 keeps the weights (and so the eval CER) where they
start: after the first epoch no epoch improves, which makes the plateau rules
fire at known epochs.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import ROOT, tiny_params

from tf_crnn import callbacks
from tf_crnn.alphabet import Alphabet
from tf_crnn.config import ConfigError, Params
from tf_crnn.data import load_split
from tf_crnn.model import build_crnn, parameter_count
from tf_crnn.trainer import Trainer

# A constant, negligible learning rate and no batch norm (whose moving statistics would change the model anyway).
FROZEN = dict(learning_rate=1e-9, learning_decay_rate=1.0, cnn_batch_norm=[False, False])
#: A checkpoint written by tf-crnn 0.4.0 (best_cer then the trainer's) and what that training reached.
CHECKPOINT_0_4 = ROOT / "tests" / "data" / "checkpoint_0_4"


def _splits(params):
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    return (alphabet, load_split(params.csv_files_train, params, alphabet, "train", progress=False),
            load_split(params.csv_files_eval, params, alphabet, "eval", progress=False))


@pytest.mark.slow
def test_early_stopping_stops_after_patience_and_resumes_counting(digits_data, tmp_path):
    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), n_epochs=10,
                         early_stopping_patience=2, **FROZEN)
    alphabet, train, evaluation = _splits(params)
    trainer = Trainer(params, alphabet)
    results = trainer.fit(train, evaluation, seed=0)
    cers = [r.metrics["eval.cer"] for r in results]
    # epoch 1 sets the best CER, epochs 2 and 3 do not improve on it: stop after epoch 3.
    assert [r.epoch for r in results] == [1, 2, 3] and trainer.stop_training
    assert cers[1] >= cers[0] and cers[2] >= cers[0]
    assert (tmp_path / "out" / "checkpoints" / "ckpt-3.index").is_file()

    # Stopped at epoch 2 of patience 3 (one epoch without improvement so far) ...
    out = tmp_path / "resume"
    first = Trainer(tiny_params(digits_data, output_model_dir=str(out), n_epochs=2, early_stopping_patience=3,
                                **FROZEN), alphabet)
    assert [r.epoch for r in first.fit(train, evaluation, seed=0)] == [1, 2] and not first.stop_training
    # ... a resumed training restores that count: two more epochs without improvement stop it (epoch 4),
    # where a fresh count would have trained to epoch 6.
    resumed = Trainer(tiny_params(digits_data, output_model_dir=str(out), n_epochs=10, early_stopping_patience=3,
                                  **FROZEN), alphabet)
    assert resumed.restore() == 2
    assert [r.epoch for r in resumed.fit(train, evaluation, seed=0)] == [3, 4] and resumed.stop_training


@pytest.mark.slow
def test_reduce_lr_on_plateau_lowers_the_learning_rate_and_keeps_it_on_resume(digits_data, tmp_path):
    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), n_epochs=3,
                         lr_plateau_patience=1, lr_plateau_factor=0.5, **FROZEN)
    alphabet, train, evaluation = _splits(params)
    trainer = Trainer(params, alphabet)
    results = trainer.fit(train, evaluation, seed=0)
    # Epoch 1 improves on nothing-yet; epochs 2 and 3 do not improve: halved after each, so epoch 3
    # trains at half the rate and the next epoch would train at a quarter.
    assert [r.learning_rate for r in results] == pytest.approx([1e-9, 1e-9, 5e-10], rel=1e-5)
    assert float(trainer.lr_scale.numpy()) == pytest.approx(0.25)

    resumed = Trainer(tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), n_epochs=4,
                                  lr_plateau_patience=1, lr_plateau_factor=0.5, lr_plateau_min_lr=2e-10, **FROZEN),
                      alphabet)
    assert resumed.restore() == 3
    assert float(resumed.lr_scale.numpy()) == pytest.approx(0.25)
    # Epoch 4 trains at the restored quarter rate; halving again would give 1.25e-10: lr_plateau_min_lr
    # holds it at 2e-10.
    assert resumed.fit(train, evaluation, seed=0)[-1].learning_rate == pytest.approx(2.5e-10, rel=1e-5)
    assert resumed.learning_rate() == pytest.approx(2e-10, rel=1e-5)


@pytest.mark.slow
def test_default_config_checkpoint_has_no_callback_state(digits_data, tmp_path):
    """Without early stopping or plateau reduction the checkpoint holds what earlier versions wrote."""
    import tensorflow as tf

    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), n_epochs=1)
    alphabet, train, evaluation = _splits(params)
    Trainer(params, alphabet).fit(train, evaluation, seed=0)
    names = {name.split("/")[0] for name, _ in tf.train.list_variables(str(tmp_path / "out" / "checkpoints"))}
    assert names == {"model", "optimizer", "epoch", "best_cer", "save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH"}


@pytest.mark.slow
def test_a_checkpoint_of_0_4_resumes(digits_data, tmp_path):
    """The best CER moved from the trainer into BestExport under the same checkpoint name: old checkpoints resume.

    The fixture and the script that wrote it are in tests/data/checkpoint_0_4 (30 epochs on the digits of
    conftest's ``digits_data``, same generator and seeds).
    """
    import tensorflow as tf

    expected = json.loads((CHECKPOINT_0_4 / "expected.json").read_text())
    out = tmp_path / "out"
    shutil.copytree(CHECKPOINT_0_4 / "checkpoints", out / "checkpoints")
    settings = {**expected["settings"], "learning_rate": 1e-9, "learning_decay_rate": 1.0}
    params = tiny_params(digits_data, output_model_dir=str(out), n_epochs=expected["epoch"] + 1, **settings)
    alphabet, train, evaluation = _splits(params)
    trainer = Trainer(params, alphabet)
    stopping = next(cb for cb in trainer.callbacks if isinstance(cb, callbacks.EarlyStopping))
    assert trainer.restore() == expected["epoch"] == 30
    assert float(trainer.best_export.best_cer.numpy()) == expected["best_cer"] < min(expected["eval_cer"][-3:])
    assert int(stopping.wait.numpy()) == expected["early_stopping"]["wait"] == 3
    assert float(trainer.lr_scale.numpy()) == expected["lr_scale"]

    # One more epoch at a negligible learning rate: its eval CER is the last epoch's, above the restored
    # best, so nothing is exported to export_best (a best CER restarting from infinity would export).
    [result] = trainer.fit(train, evaluation, seed=0)
    assert result.cer == pytest.approx(expected["eval_cer"][-1]) and result.cer > expected["best_cer"]
    assert not (out / "export_best").exists()
    assert int(stopping.wait.numpy()) == expected["early_stopping"]["wait"] + 1
    # The new checkpoint keeps the old layout: best_cer at its top.
    saved = tf.train.load_variable(str(out / "checkpoints" / "ckpt-31"), "best_cer/.ATTRIBUTES/VARIABLE_VALUE")
    assert float(saved) == expected["best_cer"]


def test_callbacks_see_the_trainer_through_the_training_protocol(tmp_path):
    """Trainer has every member of callbacks.Training; the best CER is BestExport's, not the trainer's."""
    params = tiny_params(tmp_path, output_model_dir=str(tmp_path / "out"))
    trainer = Trainer(params, Alphabet.from_file(params.lookup_alphabet_file))
    assert isinstance(trainer, callbacks.Training)
    assert not hasattr(trainer, "best_cer") and trainer.best_export in trainer.callbacks
    assert trainer.checkpoint.best_cer is trainer.best_export.best_cer


def test_plateau_settings_are_checked():
    with pytest.raises(ConfigError, match="lr_plateau_factor must be in"):
        Params(lr_plateau_factor=1.5)
    with pytest.raises(ConfigError, match="early_stopping_patience and lr_plateau_patience must be >= 0"):
        Params(early_stopping_patience=-1)
    with pytest.raises(ConfigError, match="optimizer must be 'adam', 'adamw', 'rmsprop' or 'sgd', got 'adagrad'"):
        Params(optimizer="adagrad")


@pytest.mark.parametrize("overrides", [
    {},  # Shi et al.'s CRNN
    dict(input_shape=[48, 100], input_channels=3, rnn_units=[64, 32]),
    dict(cnn_features_list=[8, 16], cnn_kernel_size=[3, 5], cnn_pool_size=[[2, 2], [3, 1]],
         cnn_batch_norm=[True, False], rnn_units=[16]),
])
def test_parameter_count_is_the_models(overrides):
    params = Params(**overrides)
    classes = Alphabet.from_file(ROOT / "data" / "alphabets" / "digits.json").num_classes
    assert parameter_count(params, classes) == build_crnn(params, classes).count_params()


def test_choice_lists_match_what_uses_them():
    """Each choice list is defined once in config; the code that implements the choices covers it exactly."""
    from tf_crnn import config
    from tf_crnn.datasets.formats import READERS
    from tf_crnn.trainer import OPTIMIZERS

    assert tuple(OPTIMIZERS) == config.OPTIMIZER_NAMES
    assert tuple(READERS) == config.PREPARE_FORMAT_NAMES
    assert json.loads(json.dumps(Params().to_dict()))["optimizer"] in config.OPTIMIZER_NAMES
    assert np.all([name in config.STRATEGY_NAMES for name in ("auto", "multi_worker")])
