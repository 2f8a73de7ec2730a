"""The one ``tf-crnn`` command as a user runs it: real processes, their exit codes, what they print."""
from __future__ import annotations

import json

import pymongo
import pytest
from conftest import tf_crnn, tiny_params


@pytest.mark.slow
def test_train_is_the_sacred_command_line_and_hides_tensorflow_logs(digits_data, mongo_url, tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), n_epochs=1)
                                 .to_dict()), encoding="utf-8")
    result = tf_crnn("train", "with", str(config), "train_batch_size=32", f"mongo_url={mongo_url}",
                     "mongo_db_name=tf_crnn_cli")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list(pymongo.MongoClient(mongo_url)["tf_crnn_cli"].runs.find())
    assert len(runs) == 1 and runs[0]["status"] == "COMPLETED"
    assert runs[0]["experiment"]["name"] == "crnn" and runs[0]["config"]["train_batch_size"] == 32
    assert (tmp_path / "out" / "export" / "saved_model.pb").is_file()
    assert f"run {runs[0]['_id']} stored in" in result.stdout
    # TensorFlow's C++ start-up lines are kept off the terminal.
    for noise in ("oneDNN custom operations", "cpu_feature_guard", "absl::InitializeLog"):
        assert noise not in result.stderr, result.stderr[:2000]


def test_train_print_config_takes_sacred_arguments():
    result = tf_crnn("train", "print_config", "with", "config_template.json", "n_epochs=3", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "n_epochs = 3" in result.stdout and "early_stopping_patience = 0" in result.stdout


def test_errors_are_one_line_with_exit_code_2_and_debug_shows_tensorflow_logs(tmp_path):
    missing = tmp_path / "no_model"
    result = tf_crnn("predict", "--model", str(missing), "x.png", timeout=120)
    assert result.returncode == 2
    assert f"tf-crnn predict: error: no SavedModel in {missing}" in result.stderr
    assert "Traceback" not in result.stderr and "oneDNN custom operations" not in result.stderr
    debug = tf_crnn("--debug", "predict", "--model", str(missing), "x.png", timeout=120)
    assert debug.returncode == 2 and "oneDNN custom operations" in debug.stderr
    # A level the user chose is left alone.
    chosen = tf_crnn("predict", "--model", str(missing), "x.png", timeout=120, TF_CPP_MIN_LOG_LEVEL="0")
    assert "oneDNN custom operations" in chosen.stderr


def test_one_mapping_from_errors_to_exit_codes():
    from tf_crnn.cli import errors
    from tf_crnn.datasets.converters import ConversionError

    calls = []

    @errors.handles("demo")
    def handler(error):
        calls.append(error)
        raise error

    assert handler(ConversionError("rows.csv:3: no label")) == errors.EXIT_DATA
    assert handler(FileNotFoundError("nope.csv")) == errors.EXIT_USAGE
    assert handler(KeyboardInterrupt()) == errors.EXIT_INTERRUPTED
    with pytest.raises(ZeroDivisionError):  # a bug, not the user's to fix: the traceback stays
        handler(ZeroDivisionError())
    assert len(calls) == 4


def test_cluster_reads_tf_config_once(monkeypatch):
    from tf_crnn import cluster

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cluster.is_chief() and cluster.worker_count() == 1
    two = {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(two))
    assert not cluster.is_chief() and cluster.worker_count() == 2
    monkeypatch.setenv("TF_CONFIG", json.dumps({**two, "cluster": {**two["cluster"], "chief": ["c:1"]},
                                                "task": {"type": "chief", "index": 0}}))
    assert cluster.is_chief() and cluster.worker_count() == 3
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        cluster.is_chief()
