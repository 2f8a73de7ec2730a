"""Augmentation on real images: every operation, the presets and the config key, the preview command, a training."""
from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_params
from PIL import Image, ImageDraw, ImageFont

from tf_crnn import augmentation, data, reports
from tf_crnn.alphabet import Alphabet
from tf_crnn.annotations import read_csv
from tf_crnn.cli import main as cli_main
from tf_crnn.config import (
    AUGMENTATION_OPERATION_NAMES,
    AUGMENTATION_PRESET_NAMES,
    AUGMENTATION_PRESETS,
    ConfigError,
    Params,
)

SEEDS = [tf.constant([s, 7], tf.int32) for s in range(4)]


def _render(text: str, size: int = 40) -> bytes:
    """PNG bytes of dark ``text`` on white paper (DejaVu Sans, from matplotlib), as tight as a line crop."""
    import matplotlib

    font = ImageFont.truetype(os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf",
                                           "DejaVuSans.ttf"), size)
    left, top, right, bottom = font.getbbox(text)
    im = Image.new("L", (right - left + 8, bottom - top + 8), 255)
    ImageDraw.Draw(im).text((4 - left, 4 - top), text, fill=20, font=font)
    buffer = io.BytesIO()
    im.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def word_and_line(digits_data):
    """A generated digit string (32 px high, as training resizes it) and a rendered 32 x ~900 px text line."""
    params = Params(input_shape=[32, 32], max_width=2048)
    word_file = read_csv(digits_data / "data" / "train" / "labels.csv")[0].image_path
    word, _ = data.preprocess_image(tf.io.read_file(str(word_file)), params)
    line, _ = data.preprocess_image(tf.constant(_render("Ein Beispiel einer langen Zeile: 0123456789 abc")), params)
    assert line.shape[1] > 20 * line.shape[0]
    return word, line


@pytest.mark.parametrize("name", AUGMENTATION_OPERATION_NAMES)
def test_operation_keeps_shape_dtype_range_changes_at_strength_and_is_identity_at_zero(name, word_and_line):
    op = augmentation.OPERATIONS[name].apply
    for image in word_and_line:
        for strength in (0.5, 1.0):
            outputs = [op(image, strength, seed) for seed in SEEDS]
            for out in outputs:
                assert out.shape == image.shape and out.dtype == tf.float32
                assert -1.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1.0
            changed = [float(tf.reduce_max(tf.abs(out - image))) > 0.05 for out in outputs]
            assert any(changed), f"{name} at strength {strength} left the image as it was for every seed"
        np.testing.assert_allclose(op(image, 0.0, SEEDS[0]).numpy(), tf.clip_by_value(image, -1, 1).numpy(),
                                   atol=1e-6)
        # Stateless: the same seed gives the same image, another seed another one.
        np.testing.assert_array_equal(op(image, 1.0, SEEDS[1]).numpy(), op(image, 1.0, SEEDS[1]).numpy())


def test_operations_are_those_config_lists():
    assert tuple(augmentation.OPERATIONS) == AUGMENTATION_OPERATION_NAMES
    assert {op.kind for op in augmentation.OPERATIONS.values()} == {"geometric", "degradation"}
    assert all(op.at_full_strength for op in augmentation.OPERATIONS.values())


def test_rotation_keeps_the_ends_of_a_long_line_inside_and_fills_with_the_background(word_and_line):
    _, line = word_and_line
    height, width = line.shape[0], line.shape[1]
    band = np.ones([height, width, 1], np.float32)  # white paper with a dark band across rows 12..19
    band[12:20] = -1.0
    for seed in SEEDS:
        rotated = augmentation.OPERATIONS["rotation"].apply(tf.constant(band), 1.0, seed).numpy()[..., 0]
        for column in (0, width - 1):
            dark = np.flatnonzero(rotated[:, column] < 0.0)
            # 0.1 * height = 3.2 px at most at the ends, plus a pixel of interpolation
            assert dark.size and dark.min() >= 12 - 4 and dark.max() <= 19 + 4, (seed, column, dark)
        # What comes in from outside is paper (1), not the padding value 0 nor a smear of the edge rows.
        assert rotated[0].min() > 0.9 and rotated[-1].min() > 0.9
    shifted = augmentation.OPERATIONS["baseline"].apply(tf.constant(band), 1.0, tf.constant([5, 5])).numpy()[..., 0]
    assert not np.array_equal(shifted, band[..., 0]) and shifted[[0, -1]].min() > 0.9


def test_warping_by_a_product_of_matrices_is_warping_by_each_in_turn():
    ys, xs = np.mgrid[0:64, 0:200].astype(np.float32)
    blob = tf.constant((1.0 - 2.0 * np.exp(-((xs - 100) ** 2 / 400 + (ys - 32) ** 2 / 100)))[..., None])
    angle = np.radians(10.0)
    turn = tf.constant([[np.cos(angle), -np.sin(angle), 20.0], [np.sin(angle), np.cos(angle), -15.0], [0, 0, 1]],
                       tf.float32)
    move = tf.constant([[1.0, 0.0, 20.0], [0.0, 1.0, 8.0], [0.0, 0.0, 1.0]])
    in_turn = augmentation.warp(augmentation.warp(blob, turn), move).numpy()
    assert np.abs(augmentation.warp(blob, turn @ move).numpy() - in_turn).max() < 0.02
    assert np.abs(augmentation.warp(blob, move @ turn).numpy() - in_turn).max() > 0.3


def test_consecutive_affine_operations_are_resampled_once(word_and_line):
    _, line = word_and_line
    ops = [("rotation", 1.0), ("shear", 1.0), ("scale", 1.0), ("baseline", 1.0)]
    seed = tf.constant([3, 1])
    fused = augmentation.augment(line, ops, seed).numpy()
    one_by_one = line
    for (name, strength), op_seed in zip(ops, tf.unstack(tf.random.split(seed, len(ops)))):
        one_by_one = augmentation.OPERATIONS[name].apply(one_by_one, strength, op_seed)
    one_by_one = one_by_one.numpy()
    # the same geometry, less the blur of three more bilinear interpolations
    assert np.abs(fused - line.numpy()).mean() > 5 * np.abs(fused - one_by_one).mean()
    assert np.abs(np.diff(fused, axis=1)).sum() > 1.05 * np.abs(np.diff(one_by_one, axis=1)).sum()


def test_augment_applies_in_order_skips_zero_and_rejects_unknown(word_and_line):
    word, _ = word_and_line
    assert augmentation.augment(word, [("blur", 0.0), ("noise", 0)]) is word
    ops = [("rotation", 1.0), ("noise", 0.5)]
    first, second = augmentation.augment(word, ops, SEEDS[0]), augmentation.augment(word, ops, SEEDS[0])
    np.testing.assert_array_equal(first.numpy(), second.numpy())
    assert not np.array_equal(first.numpy(), augmentation.augment(word, ops[::-1], SEEDS[0]).numpy())
    with pytest.raises(ValueError, match="unknown augmentation operation 'blurr'"):
        augmentation.augment(word, [("blurr", 0.5)])
    with pytest.raises(ValueError, match="strength must be from 0 to 1"):
        augmentation.augment(word, [("blur", 1.5)])


def test_every_preset_runs_in_tf_data_on_images_of_any_width_keeping_height_and_channels(word_and_line):
    word, line = word_and_line
    images = [word, line, word[:, :5]]
    for preset in AUGMENTATION_PRESET_NAMES:
        ops = Params(augmentation=preset).augmentation_ops
        ds = tf.data.Dataset.from_generator(lambda: iter(images), output_signature=tf.TensorSpec([32, None, 1]))
        out = list(ds.map(lambda image, ops=ops: augmentation.augment(image, ops)))
        assert [tuple(o.shape) for o in out] == [tuple(i.shape) for i in images]
        if ops:
            assert all(-1.0 <= float(tf.reduce_min(o)) and float(tf.reduce_max(o)) <= 1.0 for o in out)
        else:  # none: the images as they come (preprocess_image's range, up to rounding: 1.0000005)
            assert all(np.array_equal(o.numpy(), i.numpy()) for o, i in zip(out, images))


def test_presets_and_the_older_data_augmentation_key():
    assert AUGMENTATION_PRESET_NAMES == ("none", "light", "default", "strong")
    for name in AUGMENTATION_PRESET_NAMES:
        assert Params(augmentation=name).augmentation_ops == AUGMENTATION_PRESETS[name]
        assert all(op in AUGMENTATION_OPERATION_NAMES and 0 < s <= 1 for op, s in AUGMENTATION_PRESETS[name])
    # Without the key: data_augmentation true is the light preset (what tf-crnn did before), false is none.
    assert Params().augmentation_ops == AUGMENTATION_PRESETS["light"]
    assert [op for op, _ in AUGMENTATION_PRESETS["light"]] == ["brightness", "contrast", "stroke_width", "noise"]
    assert Params(data_augmentation=False).augmentation_ops == ()
    assert Params(data_augmentation=False, augmentation="none").augmentation_ops == ()
    listed = Params(augmentation=[{"name": "shear", "strength": 0.25}, {"name": "blur", "strength": 1}])
    assert listed.augmentation_ops == (("shear", 0.25), ("blur", 1.0))
    assert Params.from_dict(json.loads(json.dumps(listed.to_dict()))).augmentation_ops == listed.augmentation_ops


@pytest.mark.parametrize("value, message", [
    ("strnog", ("augmentation must be 'none', 'light', 'default' or 'strong' or a list of objects or null, "
                "got 'strnog'")),
    (3, "augmentation must be 'none', 'light', 'default' or 'strong' or a list of objects or null, got 3"),
    (["blur"], 'augmentation[0] must be {"name": OPERATION, "strength": NUMBER}, got \'blur\''),
    ([{"name": "blur"}], 'augmentation[0] must be {"name": OPERATION, "strength": NUMBER}'),
    ([{"name": "blur", "strength": 0.5}, {"name": "rotaton", "strength": 0.5}],
     "augmentation[1]: unknown operation 'rotaton' (did you mean 'rotation'?); the operations are 'rotation', "),
    ([{"name": "blur", "strength": 1.5}], "augmentation[0] (blur): strength must be a number from 0 (off) to 1"),
    ([{"name": "blur", "strength": "0.5"}], "augmentation[0] (blur): strength must be a number from 0 (off) to 1"),
    ([{"name": "blur", "strength": 0.5}, {"name": "blur", "strength": 0.2}], "augmentation names 'blur' twice"),
])
def test_bad_augmentation_config_names_the_key(value, message):
    with pytest.raises(ConfigError) as caught:
        Params(augmentation=value)
    assert message in str(caught.value)


def test_data_augmentation_false_with_an_augmentation_is_refused():
    with pytest.raises(ConfigError, match="data_augmentation=false turns augmentation off but augmentation='strong'"):
        Params(data_augmentation=False, augmentation="strong")


def test_evaluation_batches_are_never_augmented(digits_data):
    batches = {}
    for preset in ("none", "strong"):
        params = tiny_params(digits_data, augmentation=preset)
        alphabet = Alphabet.from_file(params.lookup_alphabet_file)
        entries = data.load_split(params.csv_files_eval, params, alphabet, "eval", progress=False)
        batches[preset] = [b["images"].numpy() for b in data.make_dataset(entries, params, 8, training=False)]
    assert len(batches["none"]) == len(batches["strong"])
    for plain, strong in zip(batches["none"], batches["strong"]):
        np.testing.assert_array_equal(plain, strong)


def test_deterministic_runs_augment_their_batches_alike(digits_data):
    from tf_crnn.trainer import deterministic

    params = tiny_params(digits_data, augmentation="strong")
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    entries = data.load_split(params.csv_files_train, params, alphabet, "train", progress=False)

    def run() -> list:
        with deterministic(5):
            return [b["images"].numpy() for b in data.make_dataset(entries, params, 16, training=True, seed=5)]

    first, second = run(), run()
    assert len(first) == len(second)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_contact_sheet_places_each_image_side_by_side_or_stacked(tmp_path):
    black, grey = np.zeros([32, 50, 1], np.uint8), np.full([32, 50, 1], 128, np.uint8)
    path = reports.contact_sheet([("a", [black, grey, grey]), ("b", [grey, grey, black])], str(tmp_path / "s.png"),
                                 "t", labels=["original", "augmented 1", "augmented 2"])
    with Image.open(path) as sheet:
        # side by side, enlarged 2x: cells of 100 + 6 px; title 30 px, column labels 16, a row 16 + 64 + 6
        assert sheet.format == "PNG" and sheet.size == (6 + 3 * 106, 46 + 2 * 86)
        assert sheet.getpixel((6, 46 + 15)) == (0, 0, 0) and sheet.getpixel((6 + 106, 46 + 15)) == (128, 128, 128)
        assert sheet.getpixel((6 + 2 * 106 + 99, 46 + 86 + 15 + 63)) == (0, 0, 0)
    wide = np.zeros([32, 1000, 3], np.uint8)
    with Image.open(reports.contact_sheet([("a", [wide, wide])], str(tmp_path / "w.png"), "t",
                                          labels=["original", "augmented 1"])) as sheet:
        assert sheet.size == (90 + 1006, 30 + 16 + 2 * 38)  # one under the other, not enlarged


def test_preview_command_writes_the_sheet_of_the_training_pipeline(digits_data, tmp_path, capsys):
    csv = digits_data / "data" / "eval" / "labels.csv"
    out = tmp_path / "sheet.png"
    code = cli_main(["augment", "--preview", str(csv), "-o", str(out), "--rows", "3", "--versions", "2",
                     "--preset", "strong"])
    assert code == 0, capsys.readouterr().err
    assert "3 image(s), original + 2 augmented version(s) each (rotation 1" in capsys.readouterr().out
    params = Params(input_shape=[32, 100])  # the default config's height and minimum width
    samples = read_csv(csv)
    entries = data.scan_samples(samples, params, Alphabet.build(samples)[0], progress=False).entries
    with Image.open(out) as sheet:
        assert sheet.format == "PNG" and sheet.mode == "RGB"
        widest = max(e.width for e in entries)
        # three images side by side, enlarged 2x (nearest) when that fits in 1800 px; three rows of them
        zoom = 2 if 3 * (2 * widest + 6) + 6 <= 1800 else 1
        assert 6 + 3 * (zoom * widest + 6) <= sheet.width <= 1800  # wider only for a long title
        assert sheet.height == 46 + 3 * (16 + zoom * 32 + 6)


@pytest.mark.parametrize("args, message", [
    (["--preview", "{tmp}/missing.csv", "-o", "{tmp}/s.png"], "annotation CSV not found: {tmp}/missing.csv"),
    (["--preview", "{csv}", "-o", "{tmp}/no/such/folder/s.png"], "folder {tmp}/no/such/folder does not exist"),
    (["--preview", "{csv}", "-o", "{tmp}"], "-o {tmp} is a folder"),
    (["--preview", "{csv}", "-o", "{tmp}/s.png", "--op", "blr=0.5"],
     "--op: augmentation[0]: unknown operation 'blr' (did you mean 'blur'?)"),
    (["--preview", "{csv}", "-o", "{tmp}/s.png", "--op", "blur"], "--op takes NAME=STRENGTH"),
    (["--preview", "{csv}", "-o", "{tmp}/s.png", "--op", "blur=2"],
     "--op: augmentation[0] (blur): strength must be a number from 0 (off) to 1"),
    (["--preview", "{csv}", "-o", "{tmp}/s.png", "--rows", "0"], "--rows and --versions must be >= 1"),
])
def test_preview_command_errors_are_one_line(args, message, digits_data, tmp_path, capsys):
    csv = digits_data / "data" / "eval" / "labels.csv"
    fill = {"tmp": str(tmp_path), "csv": str(csv)}
    assert cli_main(["augment", *(a.format(**fill) for a in args)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tf-crnn augment: error: ") and err.count("\n") == 1
    assert message.format(**fill) in err
    assert not (tmp_path / "s.png").exists()


@pytest.mark.slow
def test_a_tiny_training_with_the_strong_preset_runs(digits_data, tmp_path):
    from tf_crnn.trainer import Trainer

    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), n_epochs=1, steps_per_epoch=3,
                         augmentation="strong")
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    train = data.load_split(params.csv_files_train, params, alphabet, "train", progress=False)
    evaluation = data.load_split(params.csv_files_eval, params, alphabet, "eval", progress=False)
    [result] = Trainer(params, alphabet).fit(train, evaluation, seed=0)
    assert result.epoch == 1 and np.isfinite(result.metrics["train.loss"]) and result.images_per_second > 0


@pytest.mark.slow
def test_steps_per_epoch_beyond_one_pass_goes_on_into_further_passes(digits_data, tmp_path):
    from tf_crnn.trainer import Trainer

    # 64 training images in batches of 16 are 4 batches a pass; 10 steps are 2.5 passes, 160 images.
    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), n_epochs=1, steps_per_epoch=10)
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    train = data.load_split(params.csv_files_train, params, alphabet, "train", progress=False)
    evaluation = data.load_split(params.csv_files_eval, params, alphabet, "eval", progress=False)
    trainer = Trainer(params, alphabet)
    [result] = trainer.fit(train, evaluation, seed=0)
    assert int(trainer.optimizer.iterations.numpy()) == 10
    assert result.epoch == 1 and np.isfinite(result.metrics["train.loss"])
