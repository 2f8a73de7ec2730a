"""Duplicate rows: an image listed twice in one split (same or different label), and in both splits.

Real CSVs over the real PNGs of the ``digits_data`` fixture; the leak between the splits is checked in a real
Sacred run against the SecantusDB server, which also records the lock file the environment matches.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pymongo
import pytest
from conftest import tf_crnn, tiny_params

from tf_crnn.alphabet import Alphabet
from tf_crnn.annotations import find_duplicate_rows, read_csv, write_csv


def _rows(digits_data: Path, split: str):
    return read_csv(digits_data / "data" / split / "labels.csv")


def _write(path: Path, rows) -> Path:
    write_csv([(r.image_path, r.symbols) for r in rows], path)
    return path


def _other_label(symbols: tuple[str, ...]) -> tuple[str, ...]:
    return (("1" if symbols[0] != "1" else "2"),) + symbols[1:]


def test_a_row_repeated_with_its_label_is_kept_once_with_a_warning(digits_data, tmp_path, caplog):
    from tf_crnn.data import load_split

    rows = _rows(digits_data, "eval")
    csv = _write(tmp_path / "eval.csv", [*rows, rows[2], rows[5]])  # lines 17 and 18 repeat lines 3 and 6
    params = tiny_params(digits_data, csv_files_eval=[str(csv)])
    with caplog.at_level(logging.WARNING, logger="tf_crnn.data"):
        entries = load_split(params.csv_files_eval, params, Alphabet.from_file(params.lookup_alphabet_file), "eval",
                             progress=False)
    assert len(entries) == 16 and len({e.sample.image_path for e in entries}) == 16
    assert [e.sample.line for e in entries] == list(range(1, 17))  # the first row of each image is the one kept
    assert "eval split: 2 repeated row(s) (same image, same label) kept once" in caplog.text
    assert f"{csv}:17 == {csv}:3 ({rows[2].image_path})" in caplog.text
    assert f"{csv}:18 == {csv}:6" in caplog.text


def test_an_image_with_two_labels_is_an_error_or_left_out(digits_data, tmp_path, caplog):
    from tf_crnn.data import DataError, load_split

    rows = _rows(digits_data, "train")
    other = _other_label(rows[4].symbols)
    csv = tmp_path / "train.csv"
    write_csv([*((r.image_path, r.symbols) for r in rows), (rows[4].image_path, other)], csv)
    params = tiny_params(digits_data, csv_files_train=[str(csv)])
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    with pytest.raises(DataError) as e:
        load_split(params.csv_files_train, params, alphabet, "train", progress=False)
    message = str(e.value)
    assert "train split: 1 image(s) listed with different labels" in message and "ambiguous" in message
    assert f"{rows[4].image_path}: {csv}:5 {rows[4].text!r}, {csv}:65 {''.join(other)!r}" in message
    assert "on_bad_sample=skip" in message

    params = tiny_params(digits_data, csv_files_train=[str(csv)], on_bad_sample="skip")
    with caplog.at_level(logging.WARNING, logger="tf_crnn.data"):
        entries = load_split(params.csv_files_train, params, alphabet, "train", progress=False)
    assert len(entries) == 63 and rows[4].image_path not in {e.sample.image_path for e in entries}
    assert "leaving out 1 image(s) listed with different labels (on_bad_sample=skip)" in caplog.text


def test_find_duplicate_rows_keeps_file_order(digits_data):
    rows = _rows(digits_data, "eval")
    found = find_duplicate_rows([rows[0], rows[1], rows[0], rows[2], rows[1]])
    assert found.unique == [rows[0], rows[1], rows[2]]
    assert found.repeated == [(rows[0], rows[0]), (rows[1], rows[1])] and not found.conflicting


def test_validate_reports_conflicts_as_errors_and_the_leak_as_a_warning(digits_data, tmp_path):
    rows = _rows(digits_data, "train")
    train = tmp_path / "train.csv"
    write_csv([*((r.image_path, r.symbols) for r in rows[:10]), (rows[0].image_path, rows[0].symbols),
               (rows[1].image_path, _other_label(rows[1].symbols))], train)
    evaluation = _write(tmp_path / "eval.csv", [*_rows(digits_data, "eval"), rows[7], rows[8]])
    table = str(Path(tiny_params(digits_data).lookup_alphabet_file))
    result = tf_crnn("validate", str(train), "--alphabet", table, "--eval", str(evaluation), "--no-progress",
                     "--report-dir", str(tmp_path / "report"))
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "ERROR 1 image(s) listed with different labels" in out and f"{train}:2 " in out and f"{train}:12 " in out
    assert "WARNING 2 image path(s) listed more than once" in out
    assert "WARNING 2 image(s) are in the eval CSVs too" in out and rows[7].image_path in out
    assert "FAILED: 1 error(s)" in out


@pytest.mark.slow
def test_a_run_records_the_leak_and_the_lock(digits_data, mongo_url, tmp_path):
    from tf_crnn.experiment.experiments import ex
    from tf_crnn.tracking import provenance

    train = _rows(digits_data, "train")
    evaluation = _write(tmp_path / "eval.csv", [*_rows(digits_data, "eval"), *train[:3]])
    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), n_epochs=1,
                         csv_files_eval=[str(evaluation)])
    run = ex.run(config_updates={**params.to_dict(), "mongo_url": mongo_url, "mongo_db_name": "tf_crnn_test"},
                 options={"--capture": "sys"})
    assert run.status == "COMPLETED"
    doc = pymongo.MongoClient(mongo_url)["tf_crnn_test"].runs.find_one({"_id": run._id})
    assert doc["info"]["train_eval_overlap"] == 3
    # The environment the tests run in was installed from a lock of requirements/: the run names it.
    expected = provenance.installed_lock()
    assert doc["info"]["lock"] == expected and expected["lock"].startswith("requirements/")
