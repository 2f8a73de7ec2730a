"""use_stn: the affine spatial transformer's sampler on hand-made images, its parameter count and setting,
and a tiny CRNN with it that trains, checkpoints, exports, predicts and converts to TFLite and ONNX."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_params

from tf_crnn.config import ConfigError, Params
from tf_crnn.stn import SpatialTransformer, parameter_count, sample


def batch():
    """Three random images of widths 20, 13 and 7 in one right-padded batch (padding 0, as the pipeline's)."""
    images = np.random.default_rng(0).uniform(-1, 1, [3, 8, 20, 1]).astype(np.float32)
    widths = np.array([20, 13, 7], np.int32)
    images[1, :, 13:] = 0
    images[2, :, 7:] = 0
    return images, widths


def affine(rows, n=3):
    return tf.constant(np.tile(np.array(rows, np.float32), [n, 1, 1]))


def test_sampler_identity_flip_and_batch_independence():
    images, widths = batch()
    assert np.abs(sample(images, widths, affine([[1, 0, 0], [0, 1, 0]])).numpy() - images).max() < 1e-5
    # x -> -x over each image's own width: a mirror image of its valid columns, padding stays 0.
    flipped = sample(images, widths, affine([[-1, 0, 0], [0, 1, 0]])).numpy()
    for i, w in enumerate(widths):
        assert np.abs(flipped[i, :, :w] - images[i, :, w - 1::-1]).max() < 1e-5
        assert not flipped[i, :, w:].any()
    # Half a pixel to the right on a 2-column ramp: the mean of neighbours (bilinear), the last column clamped.
    ramp = np.array([[[[0.0], [1.0], [3.0]]]], np.float32)  # 1 x 1 x 3 x 1
    shifted = sample(ramp, np.array([3]), tf.constant([[[1, 0, 0.5], [0, 1, 0]]], tf.float32)).numpy()
    assert shifted[0, 0, :, 0].tolist() == pytest.approx([0.5, 2.0, 3.0])
    # The same image alone or in a padded batch: the same output.
    theta = [[1.1, 0.1, 0.05], [-0.05, 0.9, 0.1]]
    together = sample(images, widths, affine(theta)).numpy()
    alone = sample(images[1:2, :, :13], widths[1:2], affine(theta, 1)).numpy()
    assert np.abs(alone[0] - together[1, :, :13]).max() < 1e-6


def test_sampler_gradient_reaches_theta_and_the_layer_starts_as_identity():
    images, widths = batch()
    theta = tf.Variable(affine([[0.9, 0, 0.1], [0, 0.9, 0]]))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(sample(images, widths, theta) ** 2)
    assert np.abs(tape.gradient(loss, theta).numpy()).max() > 0
    layer = SpatialTransformer()
    assert np.abs(layer(images, widths).numpy() - images).max() < 1e-5
    assert layer.count_params() == parameter_count(1)


def test_use_stn_setting_and_parameter_count():
    from tf_crnn.model import build_crnn
    from tf_crnn.model import parameter_count as crnn_parameter_count

    with pytest.raises(ConfigError, match="use_stn"):
        Params(use_stn="yes")
    params = tiny_params(Path("."), use_stn=True, input_channels=3)
    model = build_crnn(params, 11)
    assert crnn_parameter_count(params, 11) == model.count_params()
    assert model.count_params() - build_crnn(tiny_params(Path("."), input_channels=3), 11).count_params() \
        == parameter_count(3)


@pytest.mark.slow
def test_a_crnn_with_stn_trains_exports_predicts_and_converts(tmp_path):
    from tf_crnn.alphabet import Alphabet
    from tf_crnn.convert import convert
    from tf_crnn.data import load_split
    from tf_crnn.datasets.synthetic import generate_numbers
    from tf_crnn.loader import PredictionModel
    from tf_crnn.metrics import cer
    from tf_crnn.trainer import Trainer, deterministic

    generate_numbers(tmp_path / "data" / "train", 512, seed=1, min_length=2, max_length=5, workers=1, progress=False)
    generate_numbers(tmp_path / "data" / "eval", 16, seed=2, min_length=2, max_length=5, workers=1, progress=False)
    params = tiny_params(tmp_path, n_epochs=7, learning_rate=0.01, data_augmentation=False, mixed_precision="off",
                         use_stn=True)
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    with deterministic(1):
        trainer = Trainer(params, alphabet)
        results = trainer.fit(load_split(params.csv_files_train, params, alphabet, "train", progress=False),
                              load_split(params.csv_files_eval, params, alphabet, "eval", progress=False), seed=0)
    assert results[-1].metrics["eval.cer"] < 0.8
    # The localisation network has learnt something and is in the checkpoint.
    assert np.abs(trainer.model.stn.theta.kernel.numpy()).max() > 0
    # (under whichever path the trainer's checkpoint reaches it: the model's or the optimizer's)
    reader = tf.train.load_checkpoint(str(tmp_path / "output" / "checkpoints"))
    kernel = trainer.model.stn.theta.kernel.numpy()
    assert any(np.array_equal(reader.get_tensor(name), kernel)
               for name, shape in reader.get_variable_to_shape_map().items() if shape == list(kernel.shape))

    export = trainer.export(str(tmp_path / "output" / "export"))
    rows = [line.split(";") for line in Path(params.csv_files_eval[0]).read_text().splitlines()]
    paths = [str(Path(params.csv_files_eval[0]).parent / path) for path, _ in rows]
    expected = [p.text for p in PredictionModel(export).predict(paths, batch_size=1)]
    assert sum(bool(t) for t in expected) >= len(paths) // 2, expected
    assert PredictionModel(export).crnn()[0].stn is not None  # params.json carries use_stn

    for quantize in ("none", "int8"):
        path = convert(export, tmp_path / f"m_{quantize}.tflite", quantize=quantize, samples=16,
                       representative=params.csv_files_train if quantize == "int8" else None, progress=False).path
        texts = [p.text for p in PredictionModel(path).predict(paths)]
        if quantize == "none":
            assert texts == expected
        else:  # the sampler stays float32 in int8 (tf_crnn.convert.INT8_FLOAT_NODES): without that, all blank here
            assert cer([tuple(t) for t in expected], [tuple(t) for t in texts]) <= 0.1, (expected, texts)
    onnx = convert(export, tmp_path / "m.onnx", progress=False).path
    assert [p.text for p in PredictionModel(onnx).predict(paths, batch_size=1)] == expected
