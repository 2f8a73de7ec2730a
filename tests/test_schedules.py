"""Learning-rate schedules (values at chosen steps) and weight averaging (EMA) on real tiny trainings."""
from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_params

from tf_crnn import config
from tf_crnn.alphabet import Alphabet
from tf_crnn.config import ConfigError, Params
from tf_crnn.data import load_split, make_dataset
from tf_crnn.loader import PredictionModel
from tf_crnn.schedules import SCHEDULES, make_schedule
from tf_crnn.trainer import Trainer


def _rates(schedule, steps) -> list[float]:
    return [float(schedule(step)) for step in steps]


def test_exponential_is_todays_formula_times_the_scale():
    params = Params(learning_rate=2e-3, learning_decay_rate=0.9, learning_decay_steps=100, warmup_steps=10)
    scale = tf.Variable(1.0)
    schedule = make_schedule(params, scale)
    steps = [0, 1, 4, 9, 10, 55, 1000, 5000]

    def formula(step):  # tf-crnn's schedule before learning_rate_schedule existed
        return 2e-3 * min(1.0, (step + 1) / 10) * 0.9 ** (step / 100)

    assert _rates(schedule, steps) == pytest.approx([formula(s) for s in steps], rel=1e-5)
    scale.assign(0.25)  # what ReduceLROnPlateau does
    assert _rates(schedule, steps) == pytest.approx([0.25 * formula(s) for s in steps], rel=1e-5)
    schedule.set_total_steps(7)  # its shape does not depend on the training's length
    assert _rates(schedule, steps) == pytest.approx([0.25 * formula(s) for s in steps], rel=1e-5)


def test_cosine_warms_up_then_ends_at_the_floor_and_follows_the_training_length():
    params = Params(learning_rate_schedule="cosine", learning_rate=1e-3, warmup_steps=10,
                    learning_rate_final_fraction=0.1)
    scale = tf.Variable(1.0)
    schedule = make_schedule(params, scale, total_steps=110)
    # Linear warm-up 0 -> 1e-3 over 10 steps, then half a cosine over 100 steps down to 1e-4, then flat.
    assert _rates(schedule, [0, 5, 10, 35, 60, 110, 111, 1000]) == pytest.approx(
        [0.0, 5e-4, 1e-3, 1e-4 + 9e-4 * (1 + math.cos(math.pi / 4)) / 2, 5.5e-4, 1e-4, 1e-4, 1e-4], rel=1e-5)
    # A resume with twice the epochs: the rest of the curve stretches to the new end.
    schedule.set_total_steps(210)
    assert _rates(schedule, [110, 210]) == pytest.approx([5.5e-4, 1e-4], rel=1e-5)
    scale.assign(0.5)
    assert _rates(schedule, [210]) == pytest.approx([5e-5], rel=1e-5)


def test_one_cycle_rises_to_its_maximum_at_the_end_of_the_warm_up_then_anneals_low():
    params = Params(learning_rate_schedule="one_cycle", learning_rate=1e-3, learning_rate_final_fraction=0.01)
    schedule = make_schedule(params, total_steps=100)  # warmup_steps 0: the rise is 30 % of the training
    rates = _rates(schedule, range(120))
    assert int(np.argmax(rates)) == 30 and rates[30] == pytest.approx(1e-3, rel=1e-6)
    assert rates[0] == pytest.approx(1e-3 / 25, rel=1e-6) and rates[15] == pytest.approx((1e-3 / 25 + 1e-3) / 2)
    assert np.all(np.diff(rates[:31]) > 0) and np.all(np.diff(rates[30:101]) < 0)
    assert rates[100] == pytest.approx(1e-5, rel=1e-5) and rates[119] == pytest.approx(1e-5, rel=1e-5)
    explicit = make_schedule(Params(learning_rate_schedule="one_cycle", learning_rate=1e-3, warmup_steps=20),
                             total_steps=100)
    assert int(np.argmax(_rates(explicit, range(100)))) == 20


def test_schedule_and_ema_settings_are_checked():
    assert tuple(SCHEDULES) == config.LEARNING_RATE_SCHEDULE_NAMES == ("exponential", "cosine", "one_cycle")
    assert Params().learning_rate_schedule == "exponential" and Params().ema_decay == 0.0
    with pytest.raises(ConfigError, match="learning_rate_schedule must be 'exponential', 'cosine' or 'one_cycle', "
                                          "got 'linear'"):
        Params(learning_rate_schedule="linear")
    with pytest.raises(ConfigError, match=r"learning_rate_final_fraction must be in \[0, 1\]"):
        Params(learning_rate_final_fraction=1.5)
    for bad in (1.0, -0.1):
        with pytest.raises(ConfigError, match=r"ema_decay must be in \[0, 1\)"):
            Params(ema_decay=bad)


def _splits(params):
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    return (alphabet, load_split(params.csv_files_train, params, alphabet, "train", progress=False),
            load_split(params.csv_files_eval, params, alphabet, "eval", progress=False))


def _values(variables) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in variables]


@pytest.mark.slow
def test_cosine_training_ends_at_its_floor(digits_data, tmp_path):
    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), n_epochs=2, steps_per_epoch=2,
                         learning_rate_schedule="cosine", warmup_steps=1, learning_rate_final_fraction=0.1)
    alphabet, train, evaluation = _splits(params)
    trainer = Trainer(params, alphabet)
    results = trainer.fit(train, evaluation, seed=0)
    # 2 epochs of 2 steps: warm-up step 0, then cosine over steps 1..4; the rate of step 2 after epoch 1.
    assert results[0].learning_rate == pytest.approx(3e-3 * (0.1 + 0.9 * (1 + math.cos(math.pi / 3)) / 2), rel=1e-5)
    assert int(trainer.optimizer.iterations.numpy()) == 4
    assert results[1].learning_rate == pytest.approx(3e-4, rel=1e-5)


@pytest.mark.slow
def test_ema_weights_follow_the_formula_and_are_what_evaluation_and_export_use(digits_data, tmp_path):
    decay = 0.6
    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), ema_decay=decay, learning_rate=1e-2)
    alphabet, train, evaluation = _splits(params)
    trainer = Trainer(params, alphabet)
    dataset = make_dataset(train, params, params.train_batch_size, training=True, seed=0)
    raw = []
    for _ in range(3):  # three single steps, the weights after each
        trainer.train_epoch(dataset, 4, steps=1)
        raw.append(_values(trainer.trained_variables))
    # Keras' average: the first step sets it, every later one moves it by (1 - decay).
    expected = raw[0]
    for weights in raw[1:]:
        expected = [decay * a + (1 - decay) * w for a, w in zip(expected, weights)]
    with trainer.averaged_weights():
        averaged = _values(trainer.trained_variables)
        raw_copy = Trainer(tiny_params(digits_data, output_model_dir=str(tmp_path / "copy")), alphabet)
        raw_copy.model.set_weights(trainer.model.get_weights())  # a model holding the averaged weights
    for a, e, w in zip(averaged, expected, raw[-1]):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-7)
        assert not np.array_equal(a, w)
    # Training goes on from its own weights, put back bit for bit.
    assert all(np.array_equal(a, b) for a, b in zip(_values(trainer.trained_variables), raw[-1]))

    # Evaluation: the averaged weights' metrics (those of a plain model given them), not the raw weights'.
    metrics, _ = trainer.evaluate(evaluation)
    assert metrics["loss"] == pytest.approx(raw_copy.evaluate(evaluation)[0]["loss"], rel=1e-6)
    raw_copy.model.set_weights(trainer.model.get_weights())
    assert metrics["loss"] != pytest.approx(raw_copy.evaluate(evaluation)[0]["loss"], rel=1e-6)

    # Export: the SavedModel holds the averaged weights.
    exported, _ = PredictionModel(trainer.export(str(tmp_path / "export"))).crnn()
    for a, e in zip(_values(exported.trainable_variables), averaged):
        np.testing.assert_array_equal(a, e)


@pytest.mark.slow
def test_ema_checkpoint_resumes_both_weights_and_refuses_another_ema_setting(digits_data, tmp_path):
    out = str(tmp_path / "out")
    params = tiny_params(digits_data, output_model_dir=out, n_epochs=1, steps_per_epoch=3, ema_decay=0.9)
    alphabet, train, evaluation = _splits(params)
    first = Trainer(params, alphabet)
    first.fit(train, evaluation, seed=0)
    with first.averaged_weights():
        averaged = _values(first.trained_variables)
    names = {name.split("/")[0] for name, _ in tf.train.list_variables(str(tmp_path / "out" / "checkpoints"))}
    assert "ema_decay" in names

    resumed = Trainer(tiny_params(digits_data, output_model_dir=out, n_epochs=2, steps_per_epoch=3, ema_decay=0.9),
                      alphabet)
    assert resumed.restore() == 1
    assert all(np.array_equal(a, b) for a, b in zip(_values(resumed.trained_variables),
                                                     _values(first.trained_variables)))
    with resumed.averaged_weights():
        assert all(np.array_equal(a, b) for a, b in zip(_values(resumed.trained_variables), averaged))
    assert not all(np.array_equal(a, b) for a, b in zip(_values(resumed.trained_variables), averaged))

    with pytest.raises(ConfigError, match="written with weight averaging .* this training has ema_decay=0.0"):
        Trainer(tiny_params(digits_data, output_model_dir=out, n_epochs=2), alphabet).restore()
