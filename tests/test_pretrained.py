"""The models shipped with tf-crnn (``pretrained:NAME``) and fine-tuning from them with ``init_alphabet``.

Each shipped model is loaded from the package and reads the real lines its card names as its test sample
(in the shared data folder) with the CER the card gives for them; a tiny Sacred training starts from each
shipped model on rendered digits (``init_alphabet=new``), and from ``pretrained:fraktur-19c`` on real
archiscribe lines whose labels have a symbol the model lacks (``β``).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pymongo
import pytest
from conftest import ROOT, SHARED_DATA, tf_crnn, tiny_params, train_tiny_export

from tf_crnn import finetune, pretrained
from tf_crnn.alphabet import Alphabet, AlphabetError
from tf_crnn.annotations import Sample, read_csvs
from tf_crnn.config import ConfigError, Params
from tf_crnn.experiment import sources
from tf_crnn.finetune import FinetuneError
from tf_crnn.loader import PredictionModel
from tf_crnn.model_files import CARD_INFO, CARD_TEXT, MODEL_INFO, PRETRAINED, WEIGHTS

#: What all shipped models may add to the installed package together.
BUDGET_BYTES = 25_000_000
FRAKTUR = "fraktur-19c"
ARCHISCRIBE = SHARED_DATA / "archiscribe"
DB_NAME = "tf_crnn_pretrained"
needs_archiscribe = pytest.mark.skipif(not ARCHISCRIBE.is_dir(), reason=f"{ARCHISCRIBE} not present")


def test_the_shipped_models_are_complete_and_within_the_budget():
    names = pretrained.names()
    assert {FRAKTUR, "latin-print", "words-en"} <= set(names)
    total = pretrained.folder_bytes(pretrained.MODELS_DIR)
    assert total < BUDGET_BYTES, f"tf_crnn/pretrained/ holds {total / 1e6:.1f} MB, over the 25 MB budget"
    for name in names:
        folder = pretrained.MODELS_DIR / name
        for file in (WEIGHTS, "params.json", "alphabet.json", MODEL_INFO, CARD_INFO, CARD_TEXT):
            assert (folder / file).is_file(), f"{name} lacks {file}"
        card = pretrained.card(name)
        assert card["name"] == name and card["summary"] and card["data_licence"] and card["attribution"]
        assert card["rebuild"]["commands"] and card["evaluations"]
        assert all(f"--model pretrained:{name}" in e["command"] for e in card["evaluations"])
        assert card["size_bytes"] == pytest.approx(pretrained.folder_bytes(folder), rel=0.01)
        assert card["alphabet_size"] == len(json.loads((folder / "alphabet.json").read_text(encoding="utf-8")))


def test_pip_install_brings_every_file_of_the_shipped_models():
    """Every file of every model folder matches the package data patterns of pyproject.toml."""
    import ast
    import fnmatch
    import re

    # The line of [tool.setuptools.package-data] (tomllib is Python 3.11+; tf-crnn runs on 3.10 too).
    found = re.search(r'^"tf_crnn\.pretrained" = (\[.*?\])', (ROOT / "pyproject.toml").read_text(encoding="utf-8"),
                      re.MULTILINE)
    patterns = ast.literal_eval(found.group(1))
    files = [p.relative_to(pretrained.MODELS_DIR).as_posix() for name in pretrained.names()
             for p in (pretrained.MODELS_DIR / name).iterdir()]
    assert files and all(any(fnmatch.fnmatch(f, pattern) for pattern in patterns) for f in files), files


def test_a_shipped_model_is_rebuilt_from_its_params_with_its_float16_weights_as_float32():
    model = PredictionModel.pretrained(FRAKTUR)
    assert model.format == PRETRAINED and PredictionModel(f"pretrained:{FRAKTUR}").export_dir == model.export_dir
    crnn, params = model.crnn()
    assert params.input_shape[0] == pretrained.card(FRAKTUR)["input_height"]
    stored = np.load(pretrained.MODELS_DIR / FRAKTUR / WEIGHTS)
    kernel = next(v for v in crnn.variables if v.path == "crnn/logits/kernel")
    assert stored["crnn/logits/kernel"].dtype == np.float16 and str(kernel.dtype) == "float32"
    np.testing.assert_array_equal(kernel.numpy(), stored["crnn/logits/kernel"].astype(np.float32))
    assert kernel.shape[-1] == model.alphabet.num_classes


def test_an_unknown_name_is_one_clear_line_naming_the_shipped_ones():
    with pytest.raises(pretrained.PretrainedError, match=f"no pretrained model 'nope'.*{FRAKTUR}"):
        PredictionModel.pretrained("nope")
    with pytest.raises(FinetuneError, match=f"init_from='pretrained:nope'.*{FRAKTUR}"):
        sources.resolve_init_from("pretrained:nope")
    with pytest.raises(ConfigError, match="pretrained:NAME"):
        Params(init_from="pretrained:")
    result = tf_crnn("predict", "--model", "pretrained:nope", "line.png")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"tf-crnn predict: error: no pretrained model 'nope': the shipped ones are {', '.join(pretrained.names())} "
        "(tf-crnn models list)"]


def test_models_list_and_show():
    listed = tf_crnn("models", "list")
    assert listed.returncode == 0, listed.stderr
    card = pretrained.card(FRAKTUR)
    assert f"{FRAKTUR}\n  {card['summary']}" in listed.stdout
    assert f"alphabet {card['alphabet_size']} symbols" in listed.stdout
    assert f"CER {100 * card['evaluations'][0]['cer']:.2f} %" in listed.stdout
    shown = tf_crnn("models", "show", FRAKTUR)
    assert shown.returncode == 0 and shown.stdout.startswith(f"# {FRAKTUR}")
    assert "CC-BY 4.0" in shown.stdout and "pretrained on 16,000 synthetic Fraktur lines" in shown.stdout


def sample_cer(name: str, tmp_path, model: str | None = None) -> tuple[float, int]:
    """Greedy CER of ``model`` (default: the shipped model ``name``) on the sample lines of ``name``'s card, as
    tf-crnn evaluate computes it."""
    from tf_crnn import evaluation
    from tf_crnn.decoding import default_decoding

    sample = pretrained.card(name)["sample"]
    missing = [folder for folder in sample["folders"] if not (SHARED_DATA / folder).exists()]
    if missing:
        pytest.skip(f"the sample of {name} is not in {SHARED_DATA}: {', '.join(missing)}")
    csv = pretrained.sample_csv(sample, SHARED_DATA, tmp_path)
    prepared = evaluation.prepare(model or f"pretrained:{name}", [csv], progress=False)
    result = evaluation.evaluate(prepared, default_decoding(prepared.model.params, "greedy"), progress=False)
    return result.metrics["exact"]["cer"], len(result.rows)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in pretrained.names() if "sample" in pretrained.card(n)])
def test_each_shipped_model_reads_its_sample_lines_as_its_card_says(name, tmp_path):
    card = pretrained.card(name)
    cer, lines = sample_cer(name, tmp_path)
    assert lines == card["sample"]["lines"]
    # The card's figure for these lines, measured when the model was packaged (another CPU may round a
    # logit differently and change a character or two), and not far from its figure on the whole eval set.
    assert cer == pytest.approx(card["sample"]["cer"], abs=0.0025)
    assert abs(cer - card["evaluations"][0]["cer"]) < 0.01


def test_union_and_new_alphabets():
    source = Alphabet({"a": 1, "b": 2, "ſ": 5})
    rows = [Sample("x.png", ("b", "β", "a"), "t.csv", 1), Sample("y.png", ("ϑ", "b"), "e.csv", 1)]
    union, record = finetune.training_alphabet("union", source, rows)
    # Every symbol of the source keeps its code; the new ones follow the largest, in code-point order.
    assert union.lookup == {"a": 1, "b": 2, "ſ": 5, "β": 6, "ϑ": 7}
    assert record == {"init_alphabet": "union", "symbols": 5, "source_symbols": 3, "added": 2, "removed": 0,
                      "added_symbols": ["β", "ϑ"], "removed_symbols": []}
    new, record = finetune.training_alphabet("new", source, rows)
    assert new.lookup == {"a": 1, "b": 2, "β": 3, "ϑ": 4}
    assert record["added_symbols"] == ["β", "ϑ"] and record["removed_symbols"] == ["ſ"]
    with pytest.raises(ConfigError, match="init_alphabet=union .* set init_from"):
        Params(init_alphabet="union")
    with pytest.raises(ConfigError, match="init_alphabet must be"):
        Params(init_alphabet="merge", init_from="x")


def book_with_beta(folder, count: int = 4):
    """``count`` real archiscribe lines (a book of an eval year) in ``folder/lines.csv``, the first label with a
    ``β`` the Fraktur model's alphabet lacks (the image need not show it)."""
    from tf_crnn.datasets.converters import prepare

    pairs = sorted((ARCHISCRIBE / "1812").glob("*.png"))[:count]
    lines = folder / "lines"
    lines.mkdir(parents=True)
    for i, image in enumerate(pairs):
        shutil.copy(image, lines / image.name)
        text = image.with_suffix(".txt").read_text(encoding="utf-8").strip()
        (lines / image.with_suffix(".txt").name).write_text(text + (" β" if i == 0 else ""), encoding="utf-8")
    prepare("gt-pairs", lines, folder / "lines.csv", progress=False)
    return str(folder / "lines.csv")


def shipped_config(name: str, csv: str, out, mongo_url: str, **overrides) -> dict:
    """The shipped model ``name``'s network (its params.json), one tiny epoch on ``csv`` starting from it,
    recorded in MongoDB."""
    shipped = json.loads((pretrained.MODELS_DIR / name / "params.json").read_text(encoding="utf-8"))
    network = {k: shipped[k] for k in ("input_shape", "max_width", "input_channels", "cnn_features_list",
                                       "cnn_kernel_size", "cnn_pool_size", "cnn_batch_norm", "rnn_units")}
    return {**tiny_params(out, **network).to_dict(), "csv_files_train": [csv], "csv_files_eval": [csv],
            "output_model_dir": str(out / "out"), "lookup_alphabet_file": "", "n_epochs": 1, "steps_per_epoch": 1,
            "train_batch_size": 2, "eval_batch_size": 4, "augmentation": "none", "mixed_precision": "off",
            "data_fingerprint": "off", "learning_rate": 1e-9, "init_from": f"pretrained:{name}",
            "mongo_url": mongo_url, "mongo_db_name": DB_NAME, **overrides}


@pytest.mark.slow
@pytest.mark.parametrize("name", pretrained.names())
def test_every_shipped_model_fine_tunes_a_tiny_run(name, digits_data, mongo_url, tmp_path):
    """init_from=pretrained:NAME with init_alphabet=new on rendered digit strings: every layer but the output
    layer copied whole, the digits' output rows kept, the model's other symbols dropped."""
    from tf_crnn.experiment.experiments import ex

    shipped = PredictionModel.pretrained(name)
    csv = str(digits_data / "data" / "train" / "labels.csv")
    run = ex.run(config_updates=shipped_config(name, csv, tmp_path, mongo_url, init_alphabet="new"),
                 options={"--capture": "sys"})
    assert run.status == "COMPLETED"
    info = pymongo.MongoClient(mongo_url)[DB_NAME].runs.find_one({"_id": run._id})["info"]["init_from"]
    assert info["source"] == "pretrained" and info["name"] == name
    crnn, _ = shipped.crnn()
    assert info["copied"]["layers"] == [layer.name for layer in crnn.layers
                                        if layer.weights and layer is not crnn.classifier]
    digits = sorted({s for row in read_csvs([csv]) for s in row.symbols})
    assert info["alphabet"]["symbols"] == len(digits) and info["copied"]["shared_symbols"] == len(digits)
    assert info["alphabet"]["removed"] == len(shipped.alphabet) - len(digits)
    tuned = PredictionModel(tmp_path / "out" / "export")
    assert sorted(tuned.alphabet.lookup) == digits


@pytest.mark.slow
@needs_archiscribe
def test_fine_tuning_from_a_shipped_model_with_a_union_alphabet(mongo_url, tmp_path):
    from tf_crnn.experiment.experiments import ex

    csv = book_with_beta(tmp_path)
    config = shipped_config(FRAKTUR, csv, tmp_path, mongo_url, init_alphabet="union")
    run = ex.run(config_updates=config, options={"--capture": "sys"})
    assert run.status == "COMPLETED"
    record = pymongo.MongoClient(mongo_url)[DB_NAME].runs.find_one({"_id": run._id})
    info = record["info"]["init_from"]
    shipped = PredictionModel.pretrained(FRAKTUR)
    assert info["source"] == "pretrained" and info["name"] == FRAKTUR and info["path"] == shipped.export_dir
    assert info["alphabet"] == {"init_alphabet": "union", "symbols": len(shipped.alphabet) + 1,
                                "source_symbols": len(shipped.alphabet), "added": 1, "removed": 0,
                                "added_symbols": ["β"], "removed_symbols": []}
    assert info["copied"]["new"] == ["β"] and info["copied"]["shared_symbols"] == len(shipped.alphabet)
    assert (f"run {run._id}: init_alphabet=union: {len(shipped.alphabet) + 1} symbols, those of init_from "
            f"({len(shipped.alphabet)}) with 1 added (β) and 0 removed") in record["captured_out"]
    assert f"weights from pretrained model {FRAKTUR}" in record["captured_out"]
    assert record["info"]["data"]["alphabet"] == {"path": None, "md5": None}

    # The export holds the extended table: every shipped symbol under its own code, β after them.
    tuned = PredictionModel(tmp_path / "out" / "export")
    assert tuned.alphabet.lookup == {**shipped.alphabet.lookup, "β": max(shipped.alphabet.lookup.values()) + 1}
    # One step at learning rate 1e-9: the shared symbols' output weights are the shipped ones; β's are fresh.
    (ours, _), (theirs, _) = tuned.crnn(), shipped.crnn()
    kernel, old_kernel = (next(v.numpy() for v in m.variables if v.path == "crnn/logits/kernel")
                          for m in (ours, theirs))
    np.testing.assert_allclose(kernel[:, :old_kernel.shape[1]], old_kernel, atol=1e-5)
    assert not np.allclose(kernel[:, tuned.alphabet.lookup["β"]], 0)


@needs_archiscribe
def test_a_label_symbol_outside_the_table_suggests_init_alphabet_union(mongo_url, tmp_path):
    from tf_crnn.experiment.experiments import ex

    csv = book_with_beta(tmp_path, count=2)
    table = str(pretrained.MODELS_DIR / FRAKTUR / "alphabet.json")
    config = shipped_config(FRAKTUR, csv, tmp_path, mongo_url, lookup_alphabet_file=table)
    with pytest.raises(AlphabetError, match=r"(?s)not in the alphabet.*init_from='pretrained:fraktur-19c': set "
                                            r"init_alphabet=union"):
        ex.run(config_updates=config, options={"--capture": "sys"})


@pytest.mark.slow
def test_the_packaging_script_makes_a_folder_that_transcribes_as_the_export(digits_data, tmp_path):
    export = train_tiny_export(digits_data, tmp_path, mixed_precision="off")  # float32 both: float16 storage apart
    card, info = tmp_path / "card.md", tmp_path / "info.json"
    card.write_text("## Tiny\n\nDigits, for the test.\n", encoding="utf-8")
    eval_csv = str(digits_data / "data" / "eval" / "labels.csv")
    info.write_text(json.dumps({
        "summary": "tiny digits", "trained_on": "64 rendered digit strings", "data_licence": "generated",
        "attribution": "tf-crnn", "initialised_from": "random weights",
        "rebuild": {"config": "tests/conftest.py", "commands": ["pytest"]},
        "evaluations": [{"set": "16 rendered digit strings", "csv": eval_csv}]}), encoding="utf-8")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "package_pretrained.py"), export, "digits",
                             "--card", str(card), "--card-info", str(info), "--out-dir", str(tmp_path / "shipped"),
                             "--check", eval_csv, "--max-disagreement", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "shipped" / "digits"
    packaged, original = PredictionModel(folder), PredictionModel(export)
    written = json.loads((folder / CARD_INFO).read_text(encoding="utf-8"))
    agreement = written["float16_agreement"]
    assert agreement["lines"] == 32  # the 16 eval lines, then the same 16 as --check images
    assert f"float16 agreement: {agreement['equal_lines']} of 32 lines equal" in result.stdout
    images = [s.image_path for s in read_csvs([eval_csv])]
    texts = [[p.text for p in m.predict(images)] for m in (original, packaged)]
    assert len(texts[0]) == 16 and agreement["equal_lines"] == 2 * sum(a == b for a, b in zip(*texts))
    # The same network with the same weights, but for float16's rounding of each weight (3 significant digits).
    (logits, lengths), (packaged_logits, packaged_lengths) = (m.logits_of([m.encode(i) for i in images])
                                                              for m in (original, packaged))
    np.testing.assert_array_equal(lengths, packaged_lengths)
    np.testing.assert_allclose(packaged_logits, logits, rtol=0.02, atol=0.02)
    evaluation = written["evaluations"][0]
    assert evaluation["command"] == f"tf-crnn evaluate --model pretrained:digits --csv {eval_csv}"
    assert 0 <= evaluation["cer"] and evaluation["lines"] == 16
    assert (folder / CARD_TEXT).read_text(encoding="utf-8").endswith("Digits, for the test.\n")
    stored = np.load(folder / WEIGHTS)
    assert {stored[k].dtype for k in stored.files} == {np.dtype("float16")}


@pytest.mark.slow
@needs_archiscribe
def test_convert_takes_a_shipped_model_and_the_onnx_file_reads_its_sample_as_the_card_says(tmp_path, capsys):
    from tf_crnn.cli import main as cli

    onnx = tmp_path / "fraktur.onnx"
    assert cli(["convert", "--model", f"pretrained:{FRAKTUR}", "-o", str(onnx)]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "fraktur.alphabet.json").read_text()) == json.loads(
        (pretrained.MODELS_DIR / FRAKTUR / "alphabet.json").read_text())
    sample = pretrained.card(FRAKTUR)["sample"]
    cer, lines = sample_cer(FRAKTUR, tmp_path, model=str(onnx))
    assert lines == sample["lines"]
    assert cer == pytest.approx(sample["cer"], abs=0.005)  # float32 of float16 weights
    assert cli(["convert", "--model", "pretrained:no-such-model", "-o", str(tmp_path / "x.onnx")]) == 2
    assert "no pretrained model 'no-such-model'" in capsys.readouterr().err
