"""tf-crnn convert: TFLite (fp32 / fp16 / dynamic / int8) and ONNX files from a tiny trained CRNN, run by
PredictionModel, tf-crnn predict and tf-crnn evaluate like the SavedModel; the errors a user can make."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, tf_crnn, tiny_params

from tf_crnn import convert, model_files
from tf_crnn.cli import main as cli_main
from tf_crnn.metrics import cer

#: int8: the CER between the int8 model's and the SavedModel's transcriptions may be up to this (the other
#: formats must give the same transcriptions). Measured on the quick-start digits model (300 eval images):
#: 0.0006 (3 lines of 300 differ by one digit); the tiny model here is less sure of itself, hence the margin.
INT8_TOLERANCE = 0.10
TFLITE_FORMATS = ("none", "float16", "dynamic", "int8")


def train_tiny(out: Path, **overrides) -> tuple[Path, Path, Path]:
    """A tiny CRNN trained past the all-blank CTC plateau on 512 generated digit strings: its export, train and
    eval CSVs.

    512 images of 2-5 digits, 7 epochs at learning rate 0.01 (224 steps, 10-20 s on 2 cores): with 64 images
    the plateau outlasts twice that budget for some seeds. Seeded (:func:`tf_crnn.trainer.deterministic`).
    """
    from tf_crnn.alphabet import Alphabet
    from tf_crnn.data import load_split
    from tf_crnn.datasets.synthetic import generate_numbers
    from tf_crnn.trainer import Trainer, deterministic

    generate_numbers(out / "data" / "train", 512, seed=1, min_length=2, max_length=5, workers=1, progress=False)
    generate_numbers(out / "data" / "eval", 16, seed=2, min_length=2, max_length=5, workers=1, progress=False)
    params = tiny_params(out, n_epochs=7, learning_rate=0.01, data_augmentation=False, **overrides)
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    with deterministic(1):
        trainer = Trainer(params, alphabet)
        trainer.fit(load_split(params.csv_files_train, params, alphabet, "train", progress=False),
                    load_split(params.csv_files_eval, params, alphabet, "eval", progress=False), seed=0)
    return (Path(trainer.export(str(out / "output" / "export"))), Path(params.csv_files_train[0]),
            Path(params.csv_files_eval[0]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """:func:`train_tiny` in float32, as the converted models: with mixed precision (bfloat16 on CPUs that have
    it) the SavedModel's logits would differ from theirs by the 16-bit rounding (up to 0.06 here), not by the
    conversion."""
    return train_tiny(tmp_path_factory.mktemp("deploy"), mixed_precision="off")


@pytest.fixture(scope="module")
def converted(trained, tmp_path_factory) -> dict[str, Path]:
    """Every format, by its ``--quantize`` name (``onnx`` for ONNX), converted through ``tf_crnn.convert``."""
    export, train_csv, _ = trained
    out = tmp_path_factory.mktemp("converted")
    files = {}
    for quantize in TFLITE_FORMATS:
        files[quantize] = Path(convert.convert(export, out / f"digits_{quantize}.tflite", quantize=quantize,
                                              representative=[str(train_csv)] if quantize == "int8" else None,
                                              samples=32, progress=False).path)
    files["onnx"] = Path(convert.convert(export, out / "digits.onnx", progress=False).path)
    return files


def eval_images(eval_csv: Path) -> tuple[list[str], list[tuple[str, ...]]]:
    from tf_crnn.annotations import read_csv

    rows = read_csv(eval_csv)
    return [r.image_path for r in rows], [r.symbols for r in rows]


@pytest.mark.slow
def test_every_format_transcribes_as_the_saved_model(trained, converted):
    from tf_crnn.loader import PredictionModel

    export, _, eval_csv = trained
    paths, labels = eval_images(eval_csv)
    reference = PredictionModel(export)
    # TFLite runs one image at a time, unpadded: its reference is the SavedModel at batch size 1. ONNX, like
    # the SavedModel, pads a batch to its widest image; the conv features next to an image's right edge see
    # that padding, so the last steps' logits depend a little on the batch (as in training): same batches.
    batch = {"onnx": 5}
    expected, ref_logits = {}, {}
    for size in (1, 5):
        expected[size] = [p.text for p in reference.predict(paths, batch_size=size)]
        ref_logits[size] = {start: (logits, lengths) for start, logits, lengths in reference.iter_logits(paths, size)}
    # A model past the all-blank plateau, so that equal transcriptions mean something.
    assert sum(bool(t) for t in expected[1]) >= len(paths) // 2, f"the model did not learn: {expected[1]}"
    assert cer(labels, [tuple(t) for t in expected[1]]) < 0.8, expected[1]

    sizes = {name: path.stat().st_size for name, path in converted.items()}
    for name, path in converted.items():
        model = PredictionModel(path)
        assert model.format == path.suffix[1:] and model.logits_source.startswith(("TFLite", "ONNX"))
        # The two companion files make the model self-contained: copies of the export's.
        alphabet_file, params_file = model_files.companion_files(path)
        assert json.loads(Path(params_file).read_text()) == json.loads((export / "params.json").read_text())
        assert json.loads(Path(alphabet_file).read_text()) == json.loads((export / "alphabet.json").read_text())
        size = batch.get(name, 1)
        predictions = model.predict(paths, batch_size=5)  # for TFLite, 5 calls of one image
        texts = [p.text for p in predictions]
        assert all(0 <= p.score <= 1 and p.error is None for p in predictions)
        want = expected[size]
        if name == "int8":
            assert cer([tuple(t) for t in want], [tuple(t) for t in texts]) <= INT8_TOLERANCE, (want, texts)
        else:
            assert texts == want, name
        for start, logits, lengths in model.iter_logits(paths, size):
            want_logits, want_lengths = ref_logits[size][start]
            assert lengths.tolist() == want_lengths.tolist()
            valid = np.arange(logits.shape[1])[None, :] < lengths[:, None]  # steps past a length are padding
            error = np.abs(logits - want_logits[:, :logits.shape[1]])[valid].max()
            assert error < {"none": 1e-3, "onnx": 1e-3, "float16": 0.05, "dynamic": 0.5, "int8": 2.0}[name], name
    # Smaller files for the quantized models (the tiny model's graph is a large share of its size).
    assert sizes["float16"] < sizes["none"] and sizes["dynamic"] < sizes["float16"] and sizes["int8"] < sizes["none"]


@pytest.mark.slow
def test_int8_keeps_the_lstm_cell_state_in_float(trained, converted):
    """The LSTM cell state stays float32 in int8 (convert.INT8_FLOAT_NODES): quantized, a Fraktur line model's
    (range about +-250) lost every small update and read blanks only. Checks that Keras' op names still match
    the pattern (3 ops per LSTM direction) and that the matrix products stay int8 (same file size)."""
    export, _, _ = trained
    params = json.loads((export / "params.json").read_text())
    tensors = convert.tflite_tensors(converted["int8"].read_bytes())
    cell_state = [t for t in tensors if re.search(convert.LSTM_CELL_STATE_NODES, t["name"])]
    assert len({t["name"] for t in cell_state}) == 3 * 2 * len(params["rnn_units"]), [t["name"] for t in cell_state]
    assert all(t["dtype"] == np.float32 for t in cell_state), [(t["name"], t["dtype"]) for t in cell_state]
    matmuls = [t for t in tensors if re.search(r"lstm_cell[^/]*/MatMul", t["name"])]
    assert matmuls and any(t["dtype"] == np.int8 for t in matmuls)


@pytest.mark.slow
def test_transcription_change_tells_a_sound_conversion_from_a_damaged_one(trained):
    """What `tf-crnn convert` prints after int8: 0 for the model's own float32 TFLite file, above the warning
    threshold for a file whose network lost its training (an untrained CRNN of the same shape)."""
    from tf_crnn.loader import PredictionModel
    from tf_crnn.model import build_crnn

    export, train_csv, _ = trained
    source = PredictionModel(export)
    model, params = source.crnn()
    images = convert.representative_images([str(train_csv)], params, 8, progress=False)
    sound = convert.tflite_model(model, params, progress=False)
    assert convert.transcription_change(model, sound, images) == 0.0
    untrained = build_crnn(params, source.alphabet.num_classes)
    damaged = convert.tflite_model(untrained, params, progress=False)
    assert convert.transcription_change(model, damaged, images) > convert.INT8_CHANGE_WARNING


@pytest.mark.slow
def test_tflite_and_onnx_go_through_evaluate_and_predict(trained, converted, tmp_path, capsys):
    export, _, eval_csv = trained
    summaries = {}
    # The SavedModel at batch size 1 too: TFLite's batches are images one by one (see the test above).
    for name, model, size in (("saved_model", export, "32"), ("saved_model_1", export, "1"),
                              ("tflite", converted["none"], "32"), ("onnx", converted["onnx"], "32")):
        assert cli_main(["evaluate", "--model", str(model), "--csv", str(eval_csv), "--quiet",
                         "--batch-size", size, "--out", str(tmp_path / name)]) == 0
        assert "sequence_accuracy" in capsys.readouterr().out
        summaries[name] = json.loads((tmp_path / name / "labels.greedy.summary.json").read_text())
    assert summaries["tflite"]["logits_from"] == "TFLite file (LiteRT)"
    assert summaries["onnx"]["logits_from"] == "ONNX file (ONNX Runtime)"
    assert summaries["tflite"]["metrics"] == summaries["saved_model_1"]["metrics"]
    assert summaries["onnx"]["metrics"] == summaries["saved_model"]["metrics"]
    assert summaries["tflite"]["num_samples"] == summaries["onnx"]["num_samples"] == 16

    # Without --out, the files of a model file go to <folder>/evaluation/<file name>/.
    assert cli_main(["evaluate", "--model", str(converted["onnx"]), "--csv", str(eval_csv), "--quiet"]) == 0
    assert (converted["onnx"].parent / "evaluation" / "digits.onnx" / "labels.greedy.summary.json").is_file()

    # tf-crnn predict as a user runs it: same lines for the SavedModel and the TFLite file; beam search
    # with a lexicon of the eval labels gives lexicon words only.
    paths, labels = eval_images(eval_csv)
    lines = {}
    for name, model in (("saved_model", export), ("tflite", converted["dynamic"])):
        result = tf_crnn("predict", "--model", str(model), *paths[:6])
        assert result.returncode == 0, result.stderr[-2000:]
        lines[name] = [line.split("\t") for line in result.stdout.splitlines()]
        assert not result.stderr.strip(), result.stderr  # no TensorFlow or LiteRT chatter
    assert [row[:2] for row in lines["tflite"]] == [row[:2] for row in lines["saved_model"]]
    assert [row[0] for row in lines["tflite"]] == paths[:6]
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("\n".join("".join(label) for label in labels), encoding="utf-8")
    capsys.readouterr()
    assert cli_main(["predict", "--model", str(converted["onnx"]), "--decoding", "beam_search", "--beam-width",
                     "4", "--lexicon", str(lexicon), *paths]) == 0
    printed = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert len(printed) == 16 and {text for _, text, _ in printed} <= {"".join(label) for label in labels}


@pytest.mark.slow
def test_convert_cli_writes_int8_and_rejects_bad_input(trained, tmp_path, capsys):
    export, train_csv, _ = trained
    out = tmp_path / "out" / "m.tflite"
    assert cli_main(["convert", "--model", str(export), "--quantize", "int8", "--representative", str(train_csv),
                     "--samples", "8", "--quiet", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert f"wrote {out}" in printed and "calibrated on 8 image(s)" in printed
    # The int8 model's transcriptions checked against float32's on the calibration images: a figure, no warning.
    change = re.search(r"int8 against float32 on 8 calibration image\(s\): ([0-9.]+) % ", printed)
    assert change and float(change.group(1)) <= 100 * convert.INT8_CHANGE_WARNING and "warning" not in captured.err
    assert (tmp_path / "out" / "m.alphabet.json").is_file() and (tmp_path / "out" / "m.params.json").is_file()
    # --representative checks any conversion against the SavedModel: a float32 ONNX file reads as it does.
    assert cli_main(["convert", "--model", str(export), "--representative", str(train_csv), "--quiet",
                     "-o", str(tmp_path / "out" / "m.onnx")]) == 0
    assert ("ONNX float32 against the SavedModel (float32) on 16 representative image(s): 0.00 % of the "
            "transcriptions' symbols changed (CER)") in capsys.readouterr().out

    def refused(*args: str) -> str:
        assert cli_main(["convert", "--model", str(export), "--quiet", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("tf-crnn convert: error: ") and err.count("\n") == 1, err
        return err

    assert "give --representative CSV" in refused("--quantize", "int8", "-o", str(out))
    assert "is for TFLite" in refused("--quantize", "float16", "-o", str(tmp_path / "m.onnx"))
    assert "must end with .onnx" in refused("--format", "onnx", "-o", str(out))
    assert "cannot tell the format" in refused("-o", str(tmp_path / "m.bin"))
    assert "annotation CSV not found" in refused("--quantize", "int8", "--representative",
                                                 str(tmp_path / "nope.csv"), "-o", str(out))
    unreadable = tmp_path / "gone.csv"
    unreadable.write_text("gone.png;|1|2|\n", encoding="utf-8")
    assert "none of the 1 representative image(s) can be read" in refused(
        "--quantize", "int8", "--representative", str(unreadable), "-o", str(out))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert f"cannot write {blocker / 'm.tflite'}" in refused("-o", str(blocker / "m.tflite"))
    # The export folder's parent: a hint.
    assert cli_main(["convert", "--model", str(export.parent), "-o", str(out)]) == 2
    assert f"did you mean {export}?" in capsys.readouterr().err


def test_convert_cli_refuses_a_missing_export_before_loading_anything(tmp_path):
    result = tf_crnn("convert", "--model", str(tmp_path / "nope"), "-o", str(tmp_path / "m.tflite"))
    assert result.returncode == 2
    assert result.stderr == f"tf-crnn convert: error: no tf-crnn export at {tmp_path / 'nope'} (no such folder)\n"
    assert not (tmp_path / "m.tflite").exists()


@pytest.mark.slow
def test_export_the_old_name_of_convert_still_converts_and_says_so(trained, tmp_path, capsys):
    from tf_crnn.loader import PredictionModel

    export, _, _ = trained
    out = tmp_path / "m.onnx"
    assert cli_main(["export", "--model", str(export), "--quiet", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines()[0] == ("`tf-crnn export` is now `tf-crnn convert`; the old name will go in a "
                                            "later release")
    assert f"wrote {out}" in captured.out and "ONNX, float32" in captured.out
    assert PredictionModel(out).format == "onnx" and Path(model_files.companion_files(out)[1]).is_file()


@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_a_corrupt_model_file_is_named(tmp_path, capsys, suffix):
    from tf_crnn.loader import PredictionModel
    from tf_crnn.runtimes import ModelFileError

    model = tmp_path / f"broken{suffix}"
    model.write_bytes(b"\x00not a model" * 100)
    alphabet_file, params_file = model_files.companion_files(model)
    Path(params_file).write_text(json.dumps(tiny_params(tmp_path).to_dict()))
    Path(alphabet_file).write_text((ROOT / "data" / "alphabets" / "digits.json").read_text())
    with pytest.raises(ModelFileError, match=f"^{model}: not an? (TFLite|ONNX) model"):
        PredictionModel(model)
    assert cli_main(["predict", "--model", str(model), str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tf-crnn predict: error: {model}: not a") and err.count("\n") == 1

    Path(params_file).unlink()  # the companion files are part of the model
    with pytest.raises(FileNotFoundError, match=f"{params_file} is missing"):
        PredictionModel(model)


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_a_converter_failure_names_the_op(fmt):
    import tensorflow as tf

    class Unconvertible(tf.Module):
        """A "CRNN" whose graph has string ops neither TFLite builtins nor ONNX have."""

        pool_widths = [2, 2]

        def __call__(self, images, widths, training=False):
            text = tf.strings.regex_replace(tf.strings.as_string(images), "1", "22")
            return tf.cast(tf.strings.length(text), tf.float32)[:, 0]

    if fmt == "tflite":  # the converter stops at the first op (MLIR legalization)
        with pytest.raises(convert.DeployError, match=r"^the TFLite converter failed at op tf\.AsString"):
            convert.tflite_model(Unconvertible(), tiny_params(Path(".")), progress=False)
    else:  # tf2onnx keeps the op as it is; ONNX Runtime refuses it
        with pytest.raises(convert.DeployError, match=r"^ONNX Runtime cannot run the converted model at op "
                                                     r"StaticRegexReplace"):
            convert.onnx_model(Unconvertible(), tiny_params(Path(".")))


@pytest.mark.slow
def test_a_bfloat16_export_records_its_policy_and_convert_measures_the_change(tmp_path, capsys):
    """A model trained under mixed_bfloat16 computes its conv blocks in bfloat16; the converted files compute in
    float32. The export says so (model.json) and tf-crnn convert reports the CER between the SavedModel's and the
    file's transcriptions, on --representative images or, without them, on the eval CSVs of params.json."""
    from tf_crnn.loader import PredictionModel
    from tf_crnn.trainer import cpu_has_bfloat16

    if not cpu_has_bfloat16():
        pytest.skip("this CPU has no native bfloat16 (amx_bf16 / avx512_bf16 in /proc/cpuinfo): oneDNN would emulate "
                    "it, several times slower than float32, and the machines that train in bfloat16 have it")
    export, train_csv, eval_csv = train_tiny(tmp_path, mixed_precision="bfloat16")
    assert json.loads((export / "model.json").read_text())["dtype_policy"] == "mixed_bfloat16"
    saved_model = PredictionModel(export)
    assert saved_model.dtype_policy == "mixed_bfloat16"

    # ONNX, checked on 16 images drawn from --representative.
    onnx = tmp_path / "m.onnx"
    assert cli_main(["convert", "--model", str(export), "--representative", str(train_csv), "--quiet",
                     "-o", str(onnx)]) == 0
    printed = capsys.readouterr().out
    change = re.search(r"ONNX float32 against the SavedModel \(mixed_bfloat16\) on 16 representative image\(s\): "
                       r"([0-9.]+) % of the transcriptions' symbols changed \(CER\)", printed)
    assert change, printed
    # TFLite float32 without --representative: the eval CSVs of params.json (all 16 lines). The figure is the CER
    # between the SavedModel's transcriptions (one image per call, as TFLite runs) and the file's.
    done = convert.convert(export, tmp_path / "m.tflite", progress=False)
    assert (done.checked_on, done.checked, done.trained_policy) == ("eval", 16, "mixed_bfloat16")
    paths, _ = eval_images(eval_csv)
    reference = [tuple(p.text) for p in saved_model.predict(paths, batch_size=1)]
    assert sum(bool(t) for t in reference) >= len(paths) // 2, f"the model did not learn: {reference}"
    converted_texts = [tuple(p.text) for p in PredictionModel(done.path).predict(paths)]
    assert done.change == pytest.approx(cer(reference, converted_texts))
    assert done.change <= convert.INT8_CHANGE_WARNING
