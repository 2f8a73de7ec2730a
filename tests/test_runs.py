"""``tf-crnn runs`` on real runs: two tiny trainings recorded in a real SecantusDB server."""
from __future__ import annotations

import datetime
import json

import gridfs
import pymongo
import pytest
from conftest import tiny_params
from PIL import Image

from tf_crnn.cli import main as cli_main
from tf_crnn.tracking import runs

DB_NAME = "tf_crnn_runs"


@pytest.fixture(scope="module")
def two_runs(digits_data, mongo_server, tmp_path_factory):
    """Two tiny CRNNs trained as Sacred runs (1 and 2 epochs, different learning rates): their ids."""
    from tf_crnn.experiment.experiments import ex

    ids = []
    for epochs, rate in ((1, 3e-3), (2, 1e-3)):
        out = tmp_path_factory.mktemp("runs") / "out"
        params = tiny_params(digits_data, output_model_dir=str(out), n_epochs=epochs, learning_rate=rate)
        run = ex.run(config_updates={**params.to_dict(), "mongo_url": mongo_server.uri, "mongo_db_name": DB_NAME},
                     options={"--capture": "sys"})
        assert run.status == "COMPLETED"
        ids.append(run._id)
    return ids


def runs_cli(mongo_url, *args) -> int:
    return cli_main(["runs", *args[:1], "--url", mongo_url, "--db", DB_NAME, *args[1:]])


@pytest.mark.slow
def test_list_show_compare(two_runs, mongo_url, tmp_path, capsys):
    first, second = two_runs
    assert runs_cli(mongo_url, "list", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == [second, first]  # newest first
    assert all(r["status"] == "COMPLETED" and r["experiment"] == "crnn" for r in rows)
    assert all(0.0 <= r["best_cer"] <= r["last_cer"] + 1e-12 for r in rows)
    assert "learning_rate=0.001" in rows[0]["summary"]

    assert runs_cli(mongo_url, "list", "--where", "n_epochs=1", "--json") == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [first]

    assert runs_cli(mongo_url, "show", str(second)) == 0
    out = capsys.readouterr().out
    assert f"run {second} (crnn): COMPLETED" in out and "eval.cer" in out and "export.zip" in out
    assert "n_epochs = 2" in out

    plot = tmp_path / "curves.png"
    assert runs_cli(mongo_url, "compare", str(first), str(second), "--plot", str(plot)) == 0
    out = capsys.readouterr().out
    assert "learning_rate" in out and "n_epochs" in out and "eval.cer (best)" in out
    assert "lookup_alphabet_file" not in out  # equal in both runs: not a difference
    with Image.open(plot) as image:
        assert image.size[0] > 500

    assert runs_cli(mongo_url, "show", "999") == 2
    assert "no run 999 in database 'tf_crnn_runs'" in capsys.readouterr().err


@pytest.mark.slow
def test_download_loads_in_prediction_model(two_runs, mongo_url, digits_data, tmp_path, capsys):
    from tf_crnn.loader import PredictionModel

    assert runs_cli(mongo_url, "download", str(two_runs[1]), str(tmp_path / "run")) == 0
    assert "tf-crnn predict --model" in capsys.readouterr().out
    model = PredictionModel(tmp_path / "run" / "export")
    image = next((digits_data / "data" / "eval" / "images").glob("*.png"))
    prediction = model.predict([str(image)])[0]
    assert set(prediction.text) <= set("0123456789") and 0.0 <= prediction.score <= 1.0
    assert (tmp_path / "run" / "learning_curves.png").is_file() and (tmp_path / "run" / "config.json").is_file()


@pytest.mark.slow
def test_runs_export_the_old_name_of_download_still_downloads_and_says_so(two_runs, mongo_url, tmp_path, capsys):
    assert runs_cli(mongo_url, "export", str(two_runs[1]), str(tmp_path / "run")) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines()[0] == ("`tf-crnn runs export` is now `tf-crnn runs download`; the old name will "
                                            "go in a later release")
    assert (tmp_path / "run" / "export" / "saved_model.pb").is_file() and "tf-crnn predict --model" in captured.out


@pytest.mark.slow
def test_delete_leaves_no_orphans_and_keeps_shared_sources(two_runs, mongo_url, capsys):
    db = pymongo.MongoClient(mongo_url)[DB_NAME]
    first, second = two_runs
    doomed = db.runs.find_one({"_id": first})
    artifact_ids = [a["file_id"] for a in doomed["artifacts"]]
    shared = [file_id for _, file_id in db.runs.find_one({"_id": second})["experiment"]["sources"]]
    assert shared and artifact_ids

    assert runs_cli(mongo_url, "delete", str(first)) == 2  # no terminal to confirm: refused
    assert "--yes" in capsys.readouterr().err and db.runs.count_documents({"_id": first}) == 1
    assert runs_cli(mongo_url, "delete", str(first), "--yes") == 0
    assert db.runs.count_documents({"_id": first}) == 0 and db.metrics.count_documents({"run_id": first}) == 0
    assert db["fs.files"].count_documents({"_id": {"$in": artifact_ids}}) == 0
    assert db["fs.chunks"].count_documents({"files_id": {"$in": artifact_ids}}) == 0
    fs = gridfs.GridFS(db)
    assert all(fs.exists(file_id) for file_id in shared)  # the other run still needs its sources
    assert runs_cli(mongo_url, "delete", "12345", "--yes") == 2


def test_running_run_without_heartbeat_shows_as_probably_dead():
    now = datetime.datetime(2026, 1, 1, 12, 0, 0)
    fresh = {"status": "RUNNING", "heartbeat": now - datetime.timedelta(seconds=30)}
    stale = {"status": "RUNNING", "heartbeat": now - datetime.timedelta(minutes=5)}
    assert runs.shown_status(fresh, now) == "RUNNING"
    assert runs.shown_status(stale, now) == "PROBABLY_DEAD"
    assert runs.shown_status({"status": "FAILED"}, now) == "FAILED"


@pytest.mark.slow
def test_models_straight_from_the_record(two_runs, mongo_url, digits_data, tmp_path, capsys, monkeypatch):
    from tf_crnn.loader import PredictionModel

    monkeypatch.setenv("TF_CRNN_HOME", str(tmp_path / "home"))  # where the cache goes by default
    image = str(next((digits_data / "data" / "eval" / "images").glob("*.png")))
    model = PredictionModel.from_run(two_runs[1], url=mongo_url, db_name=DB_NAME)
    cached = tmp_path / "home" / "models" / DB_NAME
    assert model.export_dir.startswith(str(cached / f"{two_runs[1]}-"))
    stamp = (cached / model.export_dir.rsplit("/", 1)[-1] / "saved_model.pb").stat().st_mtime_ns
    again = PredictionModel.from_run(two_runs[1], url=mongo_url, db_name=DB_NAME)  # from the cache
    assert again.export_dir == model.export_dir
    assert (cached / model.export_dir.rsplit("/", 1)[-1] / "saved_model.pb").stat().st_mtime_ns == stamp
    expected = model.predict([image])[0].text

    assert cli_main(["predict", "--run", str(two_runs[1]), "--url", mongo_url, "--db", DB_NAME, image]) == 0
    assert capsys.readouterr().out.strip() == f"{image}\t{expected}\t{model.predict([image])[0].score:.4f}"
    with pytest.raises(runs.RunsError, match="no run 4242"):
        PredictionModel.from_run(4242, url=mongo_url, db_name=DB_NAME)
