"""Compiled data sets (tf-crnn compile): shards round-trip, training and evaluation read them as the CSVs, damage
is a one-line error naming the shard, a killed training from shards resumes."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess

import numpy as np
import pytest
from conftest import (
    ROOT,
    checkpoint_epochs,
    tf_crnn,
    tiny_params,
    train_command,
    train_env,
    training_to_kill,
    wait_for,
    write_config,
)
from PIL import Image

from tf_crnn import compiled
from tf_crnn.alphabet import Alphabet
from tf_crnn.annotations import read_csvs, write_csv


@pytest.fixture(scope="module")
def compiled_digits(digits_data, tmp_path_factory):
    """``(train folder, eval folder)``: the digits data compiled, the training split in 20-image shards."""
    from tf_crnn.datasets.compile import compile_dataset

    root = tmp_path_factory.mktemp("compiled")
    train = compile_dataset([str(digits_data / "data" / "train" / "labels.csv")], str(root / "train"),
                            shard_images=20, progress=False)
    assert train["totals"]["shards"] == 4
    compile_dataset([str(digits_data / "data" / "eval" / "labels.csv")], str(root / "eval"), progress=False)
    return root / "train", root / "eval"


def copy_of(folder, tmp_path):
    target = tmp_path / folder.name
    shutil.copytree(folder, target)
    return target


def batches(entries, params, **kwargs):
    from tf_crnn.data import make_dataset

    return [{k: v.numpy() for k, v in b.items()} for b in make_dataset(entries, params, 16, **kwargs)]


# ---- the shards hold what the CSV gives -------------------------------------------------------

def test_compile_round_trips_images_labels_and_leaves_out_bad_rows(tmp_path):
    """A CSV of a plain PNG, a transparent PNG (stored converted), a JPEG, a missing file and an image listed twice:
    the compiled split decodes to the pixels and labels of the CSV split; bad rows stop or are left out, listed."""
    from tf_crnn.config import Params
    from tf_crnn.data import DataError, load_split
    from tf_crnn.datasets.compile import compile_dataset

    rng = np.random.default_rng(0)
    folder = tmp_path / "img"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 255, (32, 90), np.uint8)).save(folder / "grey.png")
    rgba = rng.integers(0, 255, (40, 120, 4), np.uint8)
    rgba[..., 3] = np.where(rgba[..., 3] > 100, 255, 0)  # transparency: TensorFlow cannot read it directly
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    Image.fromarray(rng.integers(0, 255, (30, 70, 3), np.uint8)).save(folder / "photo.jpg", quality=90)
    rows = [(folder / "grey.png", ["1", "2"]), (folder / "alpha.png", ["3", "4", "5"]),
            (folder / "photo.jpg", ["6"]), (folder / "alpha.png", ["3", "4", "5"])]  # a repeat: kept once
    good = tmp_path / "good.csv"
    write_csv(rows, good)
    bad = tmp_path / "bad.csv"
    write_csv(rows + [(folder / "missing.png", ["7"])], bad)

    params = tiny_params(tmp_path, csv_files_train=[str(good)], cache_images="off")
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    with pytest.raises(DataError, match=rf"{bad}:5: {folder / 'missing.png'}: missing image file"):
        compile_dataset([str(bad)], str(tmp_path / "refused"), progress=False)
    assert not compiled.is_compiled(tmp_path / "refused")
    manifest = compile_dataset([str(bad)], str(tmp_path / "c"), Params(on_bad_sample="skip"), progress=False)
    assert manifest["totals"] == {"rows": 5, "examples": 3, "left_out": 2, "shards": 1,
                                  "bytes": manifest["shards"][0]["bytes"]}
    assert manifest["sources"] == [{"path": str(bad), "sha256": hashlib.sha256(bad.read_bytes()).hexdigest()}]
    assert manifest["settings"]["unicode_normalization"] == "NFC" and manifest["settings"]["input_channels"] == 1
    for shard in manifest["shards"]:
        data = (tmp_path / "c" / shard["file"]).read_bytes()
        assert len(data) == shard["bytes"] and hashlib.sha256(data).hexdigest() == shard["sha256"]
    assert compiled.verify(tmp_path / "c") == []
    assert [r["symbols"] for r in compiled.iter_records(tmp_path / "c")] == [("1", "2"), ("3", "4", "5"), ("6",)]

    from_csv = load_split([str(good)], params, alphabet, "eval", progress=False)
    from_shards = load_split([str(tmp_path / "c")], params, alphabet, "eval", progress=False)
    # The rows keep the file:line of the CSV compiled (bad.csv, whose first lines are good.csv's).
    assert [(e.sample.image_path, e.sample.symbols, e.sample.line) for e in from_shards] == [
        (e.sample.image_path, e.sample.symbols, e.sample.line) for e in from_csv]
    assert {e.sample.csv_file for e in from_shards} == {str(bad)}
    assert [e.codes for e in from_shards] == [e.codes for e in from_csv]
    assert not from_csv[1].direct and all(e.record is not None for e in from_shards)
    a, b = batches(from_csv, params, training=False), batches(from_shards, params, training=False)
    assert len(a) == len(b) == 1
    for key in a[0]:
        np.testing.assert_array_equal(a[0][key], b[0][key], err_msg=key)


def test_shards_are_shuffled_by_the_seed_and_each_example_comes_once_per_epoch(digits_data, compiled_digits):
    from tf_crnn.data import load_split
    from tf_crnn.trainer import deterministic

    params = tiny_params(digits_data, cache_images="off")
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    entries = load_split([str(compiled_digits[0])], params, alphabet, "train", progress=False)

    def order(seed):
        with deterministic(seed):  # as a training with deterministic=True (the default): tf.data keeps its order
            found = batches(entries, params, training=True, seed=seed)
        return np.concatenate([b["index"] for b in found]).tolist()

    first = order(3)
    assert sorted(first) == list(range(64)) and first != list(range(64))
    assert order(3) == first and order(4) != first


# ---- training and evaluation -------------------------------------------------------------------

def test_training_from_shards_gives_the_csv_trainings_cer_and_its_model_scores_the_same(
        digits_data, compiled_digits, tmp_path):
    """Same seed, same data: the same eval CER from the CSVs and from the compiled folders (the decoded-image
    cache keeps file order in both); the exported model scores the same on the CSV and on the folder."""
    from tf_crnn import evaluation
    from tf_crnn.data import load_split
    from tf_crnn.decoding import Decoding
    from tf_crnn.trainer import Trainer, deterministic

    results = {}
    for name, sources in (("csv", [str(digits_data / "data" / s / "labels.csv") for s in ("train", "eval")]),
                          ("shards", [str(f) for f in compiled_digits])):
        params = tiny_params(digits_data, n_epochs=1, output_model_dir=str(tmp_path / name))
        alphabet = Alphabet.from_file(params.lookup_alphabet_file)
        with deterministic(0):
            trainer = Trainer(params, alphabet)
            train = load_split([sources[0]], params, alphabet, "train", progress=False)
            evaluated = load_split([sources[1]], params, alphabet, "eval", progress=False)
            results[name] = trainer.fit(train, evaluated, seed=0)[0].metrics
        export = trainer.export(str(tmp_path / name / "export"))
    assert results["shards"]["eval.cer"] == results["csv"]["eval.cer"]
    assert results["shards"]["train.loss"] == results["csv"]["train.loss"]

    scores = {}
    for name, source in (("csv", digits_data / "data" / "eval" / "labels.csv"), ("shards", compiled_digits[1])):
        prepared = evaluation.prepare(export, [str(source)], progress=False)
        assert len(prepared.samples) == 16
        scores[name] = evaluation.evaluate(prepared, Decoding(), progress=False).metrics
    assert scores["shards"] == scores["csv"]


def test_alphabet_build_and_validate_read_a_compiled_folder(digits_data, compiled_digits, tmp_path):
    csv = digits_data / "data" / "train" / "labels.csv"
    for source, out in ((csv, tmp_path / "from_csv.json"), (compiled_digits[0], tmp_path / "from_dir.json")):
        done = tf_crnn("alphabet", "build", str(source), "-o", str(out))
        assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "from_dir.json").read_text()) == json.loads((tmp_path / "from_csv.json").read_text())
    done = tf_crnn("validate", str(compiled_digits[0]), "--alphabet", str(ROOT / "data/alphabets/digits.json"),
                   "--report-dir", str(tmp_path / "report"), "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rows: 64" in done.stdout and done.stdout.rstrip().endswith("OK")


# ---- damage ------------------------------------------------------------------------------------

def test_a_truncated_shard_is_one_line_naming_it(digits_data, compiled_digits, tmp_path):
    from tf_crnn.data import load_split

    folder = copy_of(compiled_digits[0], tmp_path)
    shard = folder / "shard-00001.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-100])
    params = tiny_params(digits_data)
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    with pytest.raises(compiled.CompiledDataError) as error:
        load_split([str(folder)], params, alphabet, "train", progress=False)
    assert str(error.value) == (f"compiled data set {folder}: shard-00001.tfrecord has {shard.stat().st_size} bytes, "
                                f"the manifest says {shard.stat().st_size + 100} (truncated or changed); run tf-crnn "
                                "compile again")
    done = tf_crnn("alphabet", "build", str(folder), "-o", str(tmp_path / "a.json"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"tf-crnn alphabet build: error: {error.value}"


def test_a_corrupt_record_stops_the_training_naming_its_shard_and_validate_finds_it(digits_data, compiled_digits,
                                                                                     tmp_path):
    """Same size, one byte changed: the record's CRC fails while training reads it; the error names the shard."""
    from tf_crnn.data import load_split
    from tf_crnn.trainer import Trainer

    folder = copy_of(compiled_digits[0], tmp_path)
    shard = folder / "shard-00002.tfrecord"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    params = tiny_params(digits_data, n_epochs=1, output_model_dir=str(tmp_path / "out"))
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    train = load_split([str(folder)], params, alphabet, "train", progress=False)  # sizes agree: not caught here
    evaluated = load_split([str(compiled_digits[1])], params, alphabet, "eval", progress=False)
    with pytest.raises(compiled.CompiledDataError, match=r"shard-00002\.tfrecord does not have the SHA-256 the "
                                                         r"manifest records \(changed or corrupt\); run tf-crnn "
                                                         r"compile again"):
        Trainer(params, alphabet).fit(train, evaluated, seed=0)
    done = tf_crnn("validate", str(folder), "--alphabet", str(ROOT / "data/alphabets/digits.json"),
                   "--report-dir", str(tmp_path / "report"), "--no-progress")
    assert done.returncode == 1
    assert "ERROR 1 damaged file(s) of compiled data sets:" in done.stdout and "shard-00002.tfrecord" in done.stdout


# ---- a killed training from shards resumes ------------------------------------------------------

@pytest.mark.slow
def test_a_training_from_shards_killed_mid_epoch_resumes_and_records_the_manifest(digits_data, compiled_digits,
                                                                                  mongo_url, tmp_path):
    import pymongo

    out = tmp_path / "out"
    config = write_config(tmp_path, digits_data, output_model_dir=str(out), n_epochs=30, cache_images="off",
                          csv_files_train=[str(compiled_digits[0])], csv_files_eval=[str(compiled_digits[1])],
                          mongo_url=mongo_url, mongo_db_name="tf_crnn_compiled")
    with training_to_kill(config, tmp_path / "first.log") as first:
        wait_for(lambda: len(checkpoint_epochs(out) if (out / "checkpoints").is_dir() else ()) >= 2
                 or first.poll() is not None, 240, "epoch 2's checkpoint")
        os.kill(first.pid, signal.SIGKILL)
    assert first.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-3000:]
    checkpointed = max(checkpoint_epochs(out))
    second = subprocess.run(train_command(config, "restore_model=True", f"n_epochs={checkpointed + 1}"), cwd=ROOT,
                            env=train_env(), capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"from its epoch {checkpointed} checkpoint" in second.stdout
    assert checkpointed + 1 in checkpoint_epochs(out)

    new_id = json.loads((out / "run.json").read_text())["run_id"]
    run = pymongo.MongoClient(mongo_url)["tf_crnn_compiled"].runs.find_one({"_id": new_id})
    assert run["status"] == "COMPLETED" and run["info"]["resumed_from_epoch"] == checkpointed
    recorded = run["info"]["data"]["train"]
    manifest = compiled_digits[0] / compiled.MANIFEST
    assert recorded["csv_files"][0]["manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert recorded["csv_files"][0]["examples"] == 64 and recorded["rows"] == 64
    assert recorded["images_fingerprint"] == compiled.fingerprint([str(compiled_digits[0])])


def test_csvs_and_compiled_folders_are_not_mixed_in_a_split(digits_data, compiled_digits):
    from tf_crnn.data import DataError, load_split

    params = tiny_params(digits_data)
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    csv = str(digits_data / "data" / "eval" / "labels.csv")
    with pytest.raises(DataError, match="cannot be mixed: compile the CSVs too, or list only CSVs"):
        load_split([str(compiled_digits[0]), csv], params, alphabet, "train", progress=False)
    assert len(read_csvs([csv])) == 16


def test_a_runs_indexes_read_each_folder_once_and_check_the_settings_every_time(compiled_digits, tmp_path):
    """A run reads a folder's index for its rows and again for its images' facts: compiled.Indexes reads it once
    (the same examples come back); its manifest is checked on every call: other settings or a changed index are
    refused."""
    folder = copy_of(compiled_digits[1], tmp_path)
    indexes = compiled.Indexes()
    rows = compiled.read_rows([str(folder)], indexes=indexes)
    examples = indexes.examples(folder, "NFC", 1)
    assert [e.sample for e in examples] == rows and indexes.examples(str(folder) + "/") is examples
    with pytest.raises(compiled.CompiledDataError, match="compiled for 1 input channel"):
        indexes.examples(folder, channels=3)
    (folder / compiled.INDEX).write_text("not json\n", encoding="utf-8")
    for reader in (indexes, compiled.Indexes()):  # the manifest is checked on every call: a changed index is refused
        with pytest.raises(compiled.CompiledDataError, match="index.jsonl has 9 bytes"):
            reader.examples(folder)
