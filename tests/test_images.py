"""Every image format decodes the same way in the check, training, validate, predict and evaluate.

Files are written here with Pillow in the modes TensorFlow's decoder misreads or rejects for a
1-channel model (palette and animated GIF, 8- and 32-bit BMP, CMYK JPEG, WebP, 8- and 16-bit TIFF,
transparent RGBA PNG, 16-bit PNG, LA PNG), all of the same digit image.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import greedy_transcriptions, tiny_params
from PIL import Image

from tf_crnn import images
from tf_crnn.alphabet import Alphabet
from tf_crnn.annotations import read_csvs, write_csv
from tf_crnn.cli import main as cli_main
from tf_crnn.data import DataError, check_images, load_split, make_dataset, scan_samples
from tf_crnn.loader import PredictionModel
from tf_crnn.trainer import Trainer

LABEL = tuple("7901")  # the label of digits_data's first training image
LOSSY = {"cmyk.jpg", "rgb.jpg"}  # decoded pixels differ by JPEG's loss, not by the conversion


def reference(digits_data: Path) -> Image.Image:
    """A rendered digit string, greyscale (dark text on a light background)."""
    with Image.open(digits_data / "data" / "train" / "images" / "000000.png") as im:
        return im.convert("L")


def write_formats(base: Image.Image, folder: Path) -> dict[str, Path]:
    """``base`` saved in every mode that used to stop training; name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    grey = np.asarray(base)
    ink = (255 - grey).astype(np.uint8)
    zeros = np.zeros_like(grey)
    rgb = base.convert("RGB")
    files = {
        "reference.png": base,
        "palette.gif": base.convert("P"),
        "palette.bmp": base.convert("P"),
        "rgba32.bmp": rgb.convert("RGBA"),
        "cmyk.jpg": rgb.convert("CMYK"),
        "lossless.webp": rgb,
        "grey8.tiff": base,
        "grey16.tiff": Image.fromarray(grey.astype(np.uint16) * 257),
        "grey16.png": Image.fromarray(grey.astype(np.uint16) * 257),
        # Black ink whose background is transparent black: TensorFlow alone would see a black image.
        "transparent.png": Image.fromarray(np.dstack([zeros, zeros, zeros, ink]), "RGBA"),
        "la.png": Image.fromarray(np.dstack([zeros, ink]), "LA"),
        "rgb.jpg": rgb,
    }
    paths = {}
    for name, im in files.items():
        options = {"quality": 95} if name.endswith(".jpg") else {"lossless": True} if name.endswith(".webp") else {}
        im.save(folder / name, **options)
        paths[name] = folder / name
    inverted = Image.fromarray(ink).convert("P")
    base.convert("P").save(folder / "animated.gif", save_all=True, append_images=[inverted], duration=100, loop=0)
    paths["animated.gif"] = folder / "animated.gif"
    return paths


@pytest.fixture(scope="module")
def formats(digits_data, tmp_path_factory) -> tuple[Image.Image, dict[str, Path]]:
    base = reference(digits_data)
    return base, write_formats(base, tmp_path_factory.mktemp("formats"))


def broken_files(folder: Path, good: Path) -> dict[str, Path]:
    """A file Pillow cannot read, and a PNG Pillow reads but TensorFlow rejects (cut before IEND)."""
    corrupt, cut = folder / "corrupt.png", folder / "cut.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    cut.write_bytes(good.read_bytes()[:-12])
    return {"corrupt": corrupt, "cut": cut, "missing": folder / "missing.png"}


# ---- the conversion (Pillow only) -----------------------------------------------------------

def test_every_format_converts_to_the_reference_pixels(formats):
    base, paths = formats
    expected = np.asarray(base, np.int16)
    for name, path in paths.items():
        for channels, mode in ((1, "L"), (3, "RGB")):
            with images.open_image(path) as im:
                converted = images.to_model_mode(im, channels)
            assert converted.mode == mode and converted.size == base.size, name
            diff = np.abs(np.asarray(converted, np.int16).reshape(expected.shape[0], expected.shape[1], -1)
                          - expected[..., None])
            if name in LOSSY:
                assert diff.mean() < 3, (name, diff.mean())
            else:  # lossless: the same pixels, up to alpha compositing's rounding
                assert diff.max() <= 1, (name, channels, diff.max())


def test_only_plain_png_and_jpeg_go_to_tensorflow_as_they_are(formats, tmp_path):
    _, paths = formats
    opaque = tmp_path / "opaque_rgba.png"
    Image.open(paths["reference.png"]).convert("RGBA").save(opaque)
    direct = {name for name, path in {**paths, "opaque_rgba.png": opaque}.items()
              if images.inspect_image(str(path), 1).direct}
    assert direct == {"reference.png", "rgb.jpg", "opaque_rgba.png"}


def test_numpy_and_pil_inputs_are_checked():
    with pytest.raises(TypeError, match="uint8 or float"):
        images.from_array(np.zeros((4, 4), np.int32))
    with pytest.raises(ValueError, match="shape"):
        images.from_array(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        images.from_array(np.full((4, 4), 2.0))
    assert np.array_equal(np.asarray(images.from_array(np.full((2, 3, 1), 0.5))), np.full((2, 3), 128))
    with pytest.raises(TypeError, match="a path"):
        images.model_input(12, 1)


# ---- the check and the training pipeline ---------------------------------------------------------

def _csv(rows: list[tuple[Path, tuple[str, ...]]], path: Path) -> Path:
    write_csv([(str(p), label) for p, label in rows], path)
    return path


@pytest.mark.parametrize("channels", [1, 3])
def test_pipeline_gives_every_format_the_reference_pixels(formats, digits_data, tmp_path, channels):
    _, paths = formats
    csv = _csv([(p, LABEL) for p in paths.values()], tmp_path / "all.csv")
    params = tiny_params(digits_data, input_channels=channels)
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    entries = load_split([str(csv)], params, alphabet, "train", progress=False)
    assert len(entries) == len(paths)
    assert {Path(e.sample.image_path).name for e in entries if e.direct} == {"reference.png", "rgb.jpg"}
    decoded = {}
    for batch in make_dataset(entries, params, 4, training=False):
        for i, image in zip(batch["index"].numpy(), batch["images"].numpy()):
            decoded[Path(entries[i].sample.image_path).name] = image
    reference_image = decoded["reference.png"]
    assert reference_image.shape[-1] == channels and reference_image.std() > 0.1  # text, not a flat image
    for name, image in decoded.items():
        diff = np.abs(image - reference_image)
        # Pixels in [-1, 1]: one grey level is 2 / 255.
        assert diff.mean() < (0.03 if name in LOSSY else 0.002), (name, diff.mean())


def test_unusable_images_are_named_and_skipped(formats, digits_data, tmp_path, caplog):
    _, paths = formats
    bad = broken_files(tmp_path, paths["reference.png"])
    csv = _csv([(paths["reference.png"], LABEL), (bad["corrupt"], LABEL), (bad["cut"], LABEL),
                (paths["palette.gif"], LABEL), (bad["missing"], LABEL)], tmp_path / "set.csv")
    params = tiny_params(digits_data)
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    with pytest.raises(DataError) as error:
        load_split([str(csv)], params, alphabet, "train", progress=False)
    message = str(error.value)
    assert "3 unusable row(s)" in message
    assert f"{csv}:2: {bad['corrupt']}: cannot decode image" in message
    assert f"{csv}:3: {bad['cut']}: cannot decode image (TensorFlow: Invalid PNG data" in message
    assert f"{csv}:5: {bad['missing']}: missing image file" in message
    assert "Graph execution" not in message and f"{csv}:4" not in message

    skipping = tiny_params(digits_data, on_bad_sample="skip")
    with caplog.at_level(logging.WARNING, logger="tf_crnn.data"):
        entries = load_split([str(csv)], skipping, alphabet, "train", progress=False)
    assert [(e.sample.line, e.direct) for e in entries] == [(1, True), (4, False)]
    assert f"{csv}:3: {bad['cut']}" in caplog.text and "skipping 3 unusable row(s)" in caplog.text
    # The skipped rows never reach the pipeline: one pass over the rest works.
    assert sum(len(b["index"]) for b in make_dataset(entries, skipping, 4, training=True, seed=0)) == 2


def test_degenerate_images_are_counted_and_validate_warns(formats, digits_data, tmp_path, caplog):
    from tf_crnn.datasets.validate import validate

    _, paths = formats
    Image.new("RGB", (100, 32), (40, 90, 200)).save(tmp_path / "flat.png")
    Image.new("RGBA", (100, 32), (0, 0, 0, 0)).save(tmp_path / "invisible.png")  # blank once on white
    Image.open(paths["reference.png"]).resize((2000, 32)).save(tmp_path / "wide.tiff")
    csv = _csv([(paths["reference.png"], LABEL), (tmp_path / "flat.png", ("1",)),
                (tmp_path / "invisible.png", ("2",)), (tmp_path / "wide.tiff", ("3",))], tmp_path / "d.csv")
    params = tiny_params(digits_data)  # max_width 256 at height 32
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    report = scan_samples(read_csvs([str(csv)]), params, alphabet, progress=False)
    assert [(s.line, kind) for s, kind, _ in report.degenerate] == [(2, "blank"), (3, "blank"), (4, "squeezed")]
    assert "squeezed 7.8x to max_width 256" in report.warnings[2]
    assert len(report.entries) == 4  # kept

    with caplog.at_level(logging.WARNING, logger="tf_crnn.data"):
        assert len(load_split([str(csv)], params, alphabet, "train", progress=False)) == 4
    assert "3 of 4 usable image(s) degenerate (2 blank, 1 squeezed)" in caplog.text
    assert f"{csv}:4: {tmp_path / 'wide.tiff'}: squeezed" in caplog.text

    checked = validate([csv], alphabet, params, report_dir=tmp_path / "report", progress=False)
    assert checked.ok and checked.degenerate == report.warnings
    assert "WARNING 3 degenerate image(s)" in checked.format()


def test_validate_rejects_what_training_would_reject(formats, tmp_path):
    from tf_crnn.datasets.validate import validate

    _, paths = formats
    bad = broken_files(tmp_path, paths["reference.png"])
    csv = _csv([(p, LABEL) for p in paths.values()] + [(bad["cut"], LABEL)], tmp_path / "v.csv")
    checked = validate([csv], Alphabet.from_symbols("0123456789"), report_dir=tmp_path / "r", progress=False)
    size = bad["cut"].stat().st_size
    assert checked.errors == 1 and checked.bad_images == [
        f"{csv}:{len(paths) + 1}: {bad['cut']}: cannot decode image (TensorFlow: Invalid PNG data, size {size})"]
    assert check_images([str(bad["cut"])], 3, progress=False)[0].startswith("cannot decode image (TensorFlow")


# ---- training, export, prediction ---------------------------------------------------------------

@pytest.fixture(scope="module")
def mixed_training(formats, digits_data, tmp_path_factory):
    """A tiny CRNN trained one epoch on the digits plus every format; its trainer, export and eval entries."""
    _, paths = formats
    out = tmp_path_factory.mktemp("mixed")
    formats_csv = _csv([(p, LABEL) for p in paths.values()], out / "formats.csv")
    params = tiny_params(digits_data, output_model_dir=str(out / "model"), n_epochs=1,
                         csv_files_train=[str(digits_data / "data" / "train" / "labels.csv"), str(formats_csv)],
                         csv_files_eval=[str(formats_csv)])
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    train = load_split(params.csv_files_train, params, alphabet, "train", progress=False)
    evaluation = load_split(params.csv_files_eval, params, alphabet, "eval", progress=False)
    trainer = Trainer(params, alphabet)
    results = trainer.fit(train, evaluation, seed=0)
    assert [r.epoch for r in results] == [1] and np.isfinite(results[0].metrics["train.loss"])
    return trainer, trainer.export(str(out / "export")), evaluation


@pytest.mark.slow
def test_export_predicts_every_format_as_training_saw_it(mixed_training):
    trainer, export_dir, evaluation = mixed_training
    expected = greedy_transcriptions(trainer, evaluation)
    paths = [e.sample.image_path for e in evaluation]
    predictions = PredictionModel(export_dir).predict(paths)
    assert [p.error for p in predictions] == [None] * len(paths)
    assert [p.text for p in predictions] == [expected[p] for p in paths]


@pytest.mark.slow
def test_predict_accepts_paths_bytes_arrays_and_pil_images(mixed_training, formats):
    _, export_dir, _ = mixed_training
    base, paths = formats
    model = PredictionModel(export_dir)
    path = paths["reference.png"]
    grey = np.asarray(base)
    inputs = {
        "str": str(path), "PathLike": path, "list": [str(path)], "bytes": path.read_bytes(),
        "uint8 HxW": grey, "uint8 HxWx1": grey[..., None], "float HxW": grey / 255.0,
        "uint8 HxWx3": np.repeat(grey[..., None], 3, axis=2), "PIL": base, "NxHxWxC": grey[None, ..., None],
    }
    [want] = model.predict(str(path))
    assert want.error is None and want.alternatives[0] == (want.text, want.score)
    for kind, value in inputs.items():
        [got] = model.predict(value)
        assert (got.text, got.error) == (want.text, None), kind
        assert got.score == pytest.approx(want.score, rel=1e-5), kind
    # A transparent PNG read as PIL image or as a file gives what its flat twin gives.
    with Image.open(paths["transparent.png"]) as im:
        assert model.predict([im, paths["transparent.png"]])[0].text == model.predict(paths["la.png"])[0].text

    for bad, match in ((12, "expected an image or a list of images"), ({"a": 1}, "got dict"),
                       ([str(path), 3.5], "image 1 is a float"), (np.zeros((4, 4), np.int64), "uint8 or float")):
        with pytest.raises(TypeError, match=match):
            model.predict(bad)
    with pytest.raises(ValueError, match="shape"):
        model.predict(np.zeros((3, 4, 4, 4, 2), np.uint8))
    for size in (0, -3):
        with pytest.raises(ValueError, match="batch_size must be >= 1"):
            model.predict([path], batch_size=size)
    with pytest.raises(TypeError, match="batch_size"):
        model.predict([path], batch_size=2.5)


@pytest.mark.slow
def test_predict_reports_bad_images_and_transcribes_the_rest(mixed_training, formats, tmp_path, capsys):
    _, export_dir, _ = mixed_training
    _, paths = formats
    bad = broken_files(tmp_path, paths["reference.png"])
    model = PredictionModel(export_dir)
    good = [paths["reference.png"], paths["palette.gif"], paths["cmyk.jpg"]]
    batch = [good[0], bad["corrupt"], good[1], bad["cut"], bad["missing"], good[2]]
    results = model.predict(batch, batch_size=4)  # the TensorFlow failure shares a batch with good images
    alone = model.predict(good)
    assert [r.text for r in (results[0], results[2], results[5])] == [r.text for r in alone]
    assert [r.error for r in (results[0], results[2], results[5])] == [None] * 3
    assert results[1].error == "cannot decode image (OSError: Truncated File Read)"
    assert results[3].error.startswith("cannot decode image (TensorFlow: Invalid PNG data")
    assert results[4].error == "missing image file" and results[4].text == "" and results[4].score == 0.0
    with pytest.raises(ValueError, match=f"{bad['cut']}: cannot decode image .TensorFlow"):
        model.predict([good[0], bad["cut"]], strict=True)
    with pytest.raises(FileNotFoundError, match=f"{bad['missing']}: missing image file"):
        model.predict([bad["missing"]], strict=True)
    with pytest.raises(ValueError, match=f"{bad['cut']}: cannot decode image"):
        list(model.iter_logits([good[0], bad["cut"]]))

    argv = ["predict", "--model", export_dir] + [str(p) for p in batch]
    assert cli_main(argv) == 0
    captured = capsys.readouterr()
    assert [line.split("\t")[0] for line in captured.out.splitlines()] == [str(p) for p in good]
    assert f"tf-crnn predict: {bad['cut']}: cannot decode image (TensorFlow: Invalid PNG data" in captured.err
    assert f"tf-crnn predict: {bad['missing']}: missing image file" in captured.err
    assert "Graph execution" not in captured.err
    assert cli_main(argv[:3] + ["--strict"] + argv[3:]) == 1
    assert "3 of 6 image(s) could not be read (--strict)" in capsys.readouterr().err
    assert cli_main(["predict", "--model", export_dir, str(bad["corrupt"]), str(bad["missing"])]) == 2
    assert "error: none of the 2 image(s) could be read" in capsys.readouterr().err
    assert cli_main(["predict", "--model", export_dir, "--batch-size", "0", str(good[0])]) == 2
    err = capsys.readouterr().err
    assert err == "tf-crnn predict: error: --batch-size must be >= 1, got 0\n"
