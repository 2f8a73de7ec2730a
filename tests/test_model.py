"""The CRNN itself: the unmasked BiLSTM path, whole-model checkpoints, and 16-bit compute (bfloat16 / float16)."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_params

from tf_crnn.alphabet import Alphabet
from tf_crnn.config import Params
from tf_crnn.data import batch_count, load_split, make_dataset
from tf_crnn.loader import PredictionModel
from tf_crnn.model import bidirectional, build_crnn, ctc_loss, ctc_loss_kernel, sequence_lengths, uses_hoisted_lstm
from tf_crnn.trainer import CheckpointMismatch, Trainer, cpu_has_bfloat16, mixed_precision_policy

SMALL = dict(input_shape=[32, 64], max_width=400, input_channels=1, cnn_features_list=[16, 32],
             cnn_kernel_size=[3, 3], cnn_pool_size=[[2, 2], [16, 1]], cnn_batch_norm=[False, True],
             rnn_units=[32, 24], dropout=0.0)


def masked_reference(model, images, widths):
    """The CRNN's logits computed the way Keras masks a Bidirectional LSTM (tf-crnn 0.4.0's path before 2026-11-22)."""
    x = images
    for block in model.conv_blocks:
        for layer in block:
            x = layer(x, training=False) if isinstance(layer, keras.layers.BatchNormalization) else layer(x)
    shape = tf.shape(x)
    x = tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [shape[0], shape[2], x.shape[1] * x.shape[3]])
    mask = tf.sequence_mask(sequence_lengths(widths, model.pool_widths), shape[2])
    for dropout, rnn in zip(model.dropouts, model.rnns):
        x = rnn(dropout(x), mask=mask)
    return model.classifier(x).numpy()


def test_unmasked_bilstm_gives_the_masked_logits_on_padded_batches():
    model = build_crnn(Params(**SMALL), 11)
    widths = tf.constant([64, 200, 133, 400, 65], tf.int32)
    images = tf.random.stateless_uniform([5, 32, 400, 1], seed=[1, 2], minval=-1.0, maxval=1.0)
    images = tf.where(tf.sequence_mask(widths, 400)[:, None, :, None], images, 0.0)  # padded as batches are
    ours = model(images, widths).numpy()
    reference = masked_reference(model, images, widths)
    lengths = sequence_lengths(widths, model.pool_widths).numpy()
    assert len(set(lengths)) == 5  # every sample padded differently
    for i, length in enumerate(lengths):
        # Same float32 operations on the valid steps, in the same order: equal up to 1e-5 (seen: exactly equal).
        np.testing.assert_allclose(ours[i, :length], reference[i, :length], atol=1e-5)
    # The padded steps are where the two differ (the backward LSTM's padding is not masked): the test can tell.
    assert not np.allclose(ours[1, lengths[1]:], reference[1, lengths[1]:], atol=1e-5)


def test_the_hoisted_lstm_of_training_gives_keras_outputs_and_gradients_on_padded_batches():
    model = build_crnn(Params(**SMALL), 11)
    rnn = model.rnns[0]
    assert uses_hoisted_lstm(rnn.forward_layer) and uses_hoisted_lstm(rnn.backward_layer)
    x = tf.random.stateless_uniform([4, 30, 32], seed=[3, 4], minval=-1.0, maxval=1.0)
    lengths = tf.constant([30, 7, 19, 1], tf.int32)
    upstream = tf.random.stateless_normal([4, 30, 64], seed=[5, 6])

    def outputs_and_gradients(training):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = bidirectional(rnn, x, lengths, training)  # dropout-free layers: training changes the path only
            loss = tf.reduce_sum(y * upstream)
        return [y, *tape.gradient(loss, [x, *rnn.trainable_variables])]

    keras_path, hoisted = outputs_and_gradients(False), outputs_and_gradients(True)
    assert len(keras_path) == 8  # outputs, input gradient, 3 weights per direction
    for ours, reference in zip(hoisted, keras_path):
        # Same float32 operations, the input products summed in another order: equal to 1e-4 (seen: 2e-6).
        np.testing.assert_allclose(ours.numpy(), reference.numpy(), atol=1e-4)
    # And the test can tell the two directions apart: a wrong reversal would not pass.
    assert not np.allclose(hoisted[0][:, :, :32], hoisted[0][:, :, 32:], atol=1e-3)


def test_under_bfloat16_the_hoisted_lstm_projects_in_bfloat16_and_keeps_the_recurrence_float32():
    model = build_crnn(Params(**SMALL), 11, dtype_policy="mixed_bfloat16")
    assert model.projection_dtype == "bfloat16" and model.rnns[0].forward_layer.compute_dtype == "float32"
    rnn = model.rnns[0]
    x = tf.random.stateless_uniform([4, 30, 32], seed=[3, 4], minval=-1.0, maxval=1.0)
    lengths = tf.constant([30, 7, 19, 1], tf.int32)
    reference = bidirectional(rnn, x, lengths, False).numpy()  # Keras' float32 LSTM
    exact = bidirectional(rnn, x, lengths, True).numpy()
    ours = bidirectional(rnn, x, lengths, True, model.projection_dtype)
    assert ours.dtype == tf.float32
    error = np.abs(ours.numpy() - reference).max()
    # bfloat16 keeps 8 bits of mantissa: products rounded to about 0.4 %, outputs off by about 1e-3 (seen: 2e-3).
    assert 1e-5 < error < 2e-2, error
    assert np.abs(exact - reference).max() < 1e-4  # the difference is the projection's dtype, nothing else


def test_the_ctc_kernel_gives_the_dense_ctc_loss_and_gradient_and_zero_for_impossible_labels():
    logits = tf.random.stateless_normal([4, 12, 7], seed=[7, 8])
    labels = tf.constant([[1, 2, 3, 0, 0], [6, 6, 6, 6, 6], [2, 0, 0, 0, 0], [4, 4, 5, 1, 2]], tf.int32)
    label_lengths = tf.constant([3, 5, 1, 5], tf.int32)
    logit_lengths = tf.constant([12, 8, 3, 6], tf.int32)  # sample 1 needs 9 steps (repeats need blanks): impossible

    def loss_and_gradient(fn):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = fn(labels, label_lengths, logits, logit_lengths)
            total = tf.reduce_sum(tf.where(tf.math.is_finite(loss), loss, 0.0))
        return loss.numpy(), tape.gradient(total, logits).numpy()

    def dense(*args):
        return tf.nn.ctc_loss(args[0], args[2], args[1], args[3], logits_time_major=False, blank_index=0)

    (ours, our_grad), (reference, reference_grad) = loss_and_gradient(ctc_loss_kernel), loss_and_gradient(dense)
    feasible = [0, 2, 3]
    np.testing.assert_allclose(ours[feasible], reference[feasible], rtol=1e-5)
    np.testing.assert_allclose(our_grad[feasible], reference_grad[feasible], atol=1e-5)
    assert np.abs(our_grad[feasible]).max() > 0.01  # real gradients were compared
    assert not np.isfinite(ours[1]) and np.all(our_grad[1] == 0)  # no path: inf, no gradient
    assert ctc_loss(labels, label_lengths, logits, logit_lengths).numpy()[1] == 0.0  # and the loss reads 0


def small_trainer(tmp_path, **overrides) -> Trainer:
    params = Params(**{**SMALL, "mixed_precision": "off", **overrides}, lookup_alphabet_file=str(tmp_path / "a.json"),
                    output_model_dir=str(tmp_path / "out"))
    (tmp_path / "a.json").write_text(json.dumps({str(d): d + 1 for d in range(10)}))
    return Trainer(params, Alphabet.from_file(params.lookup_alphabet_file))


def test_checkpoint_holds_every_weight_and_batch_norm_statistic(tmp_path):
    first = small_trainer(tmp_path)
    bn = first.model.conv_blocks[1][1]
    bn.moving_mean.assign(np.linspace(-1, 1, 32).astype(np.float32))  # as a training leaves them, not as built
    bn.moving_variance.assign(np.linspace(0.5, 2, 32).astype(np.float32))
    path = first.manager.save()
    assert any("bn2/moving_mean" in name for name, _ in tf.train.list_variables(path))
    second = small_trainer(tmp_path)
    second.restore()
    weights = [v for v in first.model.variables if "seed_generator" not in v.path]  # dropout RNG state aside
    assert len(weights) == len(first.model.trainable_variables) + 2
    for a, b in zip(weights, [v for v in second.model.variables if "seed_generator" not in v.path]):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_restore_takes_a_checkpoint_written_after_the_record_of_the_checkpoints(tmp_path, caplog):
    # kill -9 between the two writes of CheckpointManager.save: ckpt-2 is complete, the record still names ckpt-1.
    first = small_trainer(tmp_path)
    for epoch in (1, 2):
        first.epoch.assign(epoch)
        first.manager.save()
    folder = tmp_path / "out" / "checkpoints"
    record = (folder / "checkpoint").read_text()
    (folder / "checkpoint").write_text(record.replace("ckpt-2", "ckpt-1"))
    assert tf.train.latest_checkpoint(str(folder)).endswith("ckpt-1")
    assert small_trainer(tmp_path).restore() == 2
    assert "ckpt-2 is newer than the checkpoint record names" in caplog.text
    # The record intact: no warning, the recorded checkpoint.
    (folder / "checkpoint").write_text(record)
    caplog.clear()
    assert small_trainer(tmp_path).restore() == 2 and "newer than" not in caplog.text


def test_checkpoints_of_old_versions_restore_with_a_warning_and_other_networks_are_refused(tmp_path, caplog):
    trainer = small_trainer(tmp_path)
    # What tf-crnn 0.4.0 wrote before 2026-11-22: Keras' layer lists were invisible to tf.train.Checkpoint; the
    # trainable weights were saved as the optimizer's, the batch-norm statistics not at all.
    old = tf.train.Checkpoint(model=tf.train.Checkpoint(classifier=trainer.model.classifier),
                              optimizer=tf.train.Checkpoint(_trainable_variables=list(trainer.model.trainable_variables)),
                              epoch=trainer.epoch)
    trainer.epoch.assign(3)
    old.save(str(tmp_path / "out" / "checkpoints" / "ckpt"))
    again = small_trainer(tmp_path)
    assert again.restore() == 3
    assert "did not save the batch-norm moving statistics" in caplog.text
    np.testing.assert_array_equal(again.model.conv_blocks[0][0].kernel.numpy(),
                                  trainer.model.conv_blocks[0][0].kernel.numpy())
    trainer.manager.save()  # a 0.5 checkpoint, restored into a different network
    other = small_trainer(tmp_path, cnn_features_list=[16, 48])
    with pytest.raises(CheckpointMismatch, match="network differs"):
        other.restore()


def test_mixed_precision_choice(monkeypatch):
    assert mixed_precision_policy(Params(mixed_precision="off")) is None
    assert mixed_precision_policy(Params(mixed_precision="bfloat16")) == "mixed_bfloat16"
    assert mixed_precision_policy(Params(mixed_precision="float16")) == "mixed_float16"
    assert mixed_precision_policy(Params(mixed_precision="on")) == "mixed_bfloat16"  # no GPU here
    flags = open("/proc/cpuinfo").read()
    assert cpu_has_bfloat16() == ("amx_bf16" in flags or "avx512_bf16" in flags)
    assert mixed_precision_policy(Params(mixed_precision="auto")) == ("mixed_bfloat16" if cpu_has_bfloat16() else None)


@pytest.mark.slow
def test_bfloat16_training_trains_and_exports_float32(digits_data, tmp_path):
    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), n_epochs=1, mixed_precision="bfloat16")
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    train = load_split(params.csv_files_train, params, alphabet, "train", progress=False)
    trainer = Trainer(params, alphabet)
    assert trainer.model.conv_blocks[0][0].compute_dtype == "bfloat16"
    assert trainer.model.classifier.kernel.dtype == "float32"
    assert trainer.model.conv_blocks[0][0].kernel.dtype == "float32"
    before = trainer.model.conv_blocks[0][0].kernel.numpy().copy()
    loss, seen = trainer.train_epoch(make_dataset(train, params, 16, training=True, seed=0), batch_count(train, 16))
    assert seen == len(train) and np.isfinite(loss) and loss > 0
    assert not np.allclose(before, trainer.model.conv_blocks[0][0].kernel.numpy())
    export = trainer.export(str(tmp_path / "export"))
    loaded = tf.saved_model.load(export)
    for name in ("serving_default", "logits"):
        signature = loaded.signatures[name]
        assert signature.structured_input_signature[1]["images"].dtype == tf.string
    outputs = loaded.signatures["logits"].structured_outputs
    assert outputs["logits"].dtype == tf.float32 and outputs["lengths"].dtype == tf.int32
    assert loaded.signatures["serving_default"].structured_outputs["score"].dtype == tf.float32
    prediction = PredictionModel(export).predict([train[0].sample.image_path])[0]
    assert prediction.error is None and 0.0 <= prediction.score <= 1.0


def test_a_step_with_a_non_finite_gradient_is_applied_as_zero_gradients(tmp_path):
    trainer = small_trainer(tmp_path)
    widths = np.array([64, 64], np.int32)
    batch = {"images": np.zeros([2, 32, 64, 1], np.float32), "widths": widths,
             "labels": np.array([[1, 2], [3, 0]], np.int32), "label_lengths": np.array([2, 1], np.int32),
             "index": np.arange(2, dtype=np.int32)}
    step = tf.function(trainer.distributed_train_step)
    step(batch)
    assert int(trainer.skipped_steps.numpy()) == 0
    before = [v.numpy().copy() for v in trainer.model.trainable_variables]
    batch["images"][0, 0, 0, 0] = np.nan  # a NaN pixel: NaN activations, NaN gradients everywhere
    step(batch)
    assert int(trainer.skipped_steps.numpy()) == 1
    after = trainer.model.trainable_variables
    assert all(np.isfinite(v.numpy()).all() for v in after)
    # Adam with a zero gradient moves by its momentum only: the weights change a little but stay finite.
    assert max(np.abs(a.numpy() - b).max() for a, b in zip(after, before)) < 10 * trainer.learning_rate() + 1e-6


def test_a_bfloat16_checkpoint_resumes_in_float32(tmp_path):
    first = small_trainer(tmp_path, mixed_precision="bfloat16")
    assert first.dtype_policy == "mixed_bfloat16"
    first.manager.save()
    second = small_trainer(tmp_path)
    assert second.dtype_policy is None
    second.restore()
    for a, b in zip(first.model.trainable_variables, second.model.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
