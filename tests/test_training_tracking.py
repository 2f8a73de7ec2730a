"""Training for real: a tiny CRNN as a Sacred run in a real SecantusDB, export, PredictionModel, resume."""
import io
import json
import zipfile

import gridfs
import numpy as np
import pymongo
import pytest
from conftest import greedy_transcriptions, tiny_params

from tf_crnn.alphabet import Alphabet
from tf_crnn.data import batch_count, load_split, make_dataset
from tf_crnn.experiment.experiments import METRIC_NAMES, ex
from tf_crnn.loader import PredictionModel
from tf_crnn.tracking import provenance
from tf_crnn.tracking import urls as tracking
from tf_crnn.tracking.observer import ResilientMongoObserver
from tf_crnn.trainer import Trainer

pytestmark = pytest.mark.slow


def test_run_is_stored_with_metrics_and_artifacts(digits_data, mongo_url, tmp_path):
    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), n_epochs=2)
    run = ex.run(config_updates={**params.to_dict(), "mongo_url": mongo_url, "mongo_db_name": "tf_crnn_test"},
                 options={"--capture": "sys"})  # pytest owns the file descriptors
    assert run.status == "COMPLETED" and run._id is not None

    db = pymongo.MongoClient(mongo_url)["tf_crnn_test"]
    doc = db.runs.find_one({"_id": run._id})
    assert doc["experiment"]["name"] == "crnn" and doc["status"] == "COMPLETED"
    assert doc["config"]["n_epochs"] == 2 and doc["config"]["rnn_units"] == [16]
    assert doc["host"]["hostname"] and any(d.startswith("tensorflow") for d in doc["experiment"]["dependencies"])
    assert set(doc["result"]) >= {"loss", "char_accuracy", "sequence_accuracy", "cer", "wer"}
    assert 0.0 <= doc["result"]["cer"] and 0.0 <= doc["result"]["char_accuracy"] <= 1.0
    assert "run" in doc["captured_out"] and "\r" not in doc["captured_out"]

    series = {m["name"]: m for m in db.metrics.find({"run_id": run._id})}
    assert set(METRIC_NAMES) <= set(series)
    for name in METRIC_NAMES:
        assert series[name]["steps"] == [1, 2]
        assert all(np.isfinite(series[name]["values"]))
    # The result is the final evaluation of the last epoch's weights.
    assert doc["result"]["cer"] == pytest.approx(series["eval.cer"]["values"][-1])
    assert doc["result"]["loss"] == pytest.approx(series["eval.loss"]["values"][-1], rel=1e-4)

    fs = gridfs.GridFS(db)
    artifacts = {a["name"]: a["file_id"] for a in doc["artifacts"]}
    # What made the run (issue 11): environment.txt always, code.diff when the checkout has uncommitted changes.
    dirty = {"code.diff"} if (provenance.git_state() or {}).get("dirty") else set()
    assert set(artifacts) == {"alphabet.json", "config.json", "export.zip", "learning_curves.png",
                              "predictions.png", "confusions.png", "confusions.csv", "environment.txt"} | dirty
    assert fs.get(artifacts["predictions.png"]).read()[:8] == b"\x89PNG\r\n\x1a\n"
    stored = db["fs.files"].find({"_id": {"$in": list(artifacts.values())}})
    files = {f["filename"].rsplit("/", 1)[-1]: f for f in stored}
    assert files["learning_curves.png"]["contentType"] == "image/png"
    assert files["confusions.csv"]["contentType"] == "text/csv"
    table = Alphabet.from_file(params.lookup_alphabet_file).lookup
    assert json.loads(fs.get(artifacts["alphabet.json"]).read()) == table
    assert json.loads(fs.get(artifacts["config.json"]).read())["rnn_units"] == [16]
    with zipfile.ZipFile(io.BytesIO(fs.get(artifacts["export.zip"]).read())) as archive:
        names = archive.namelist()
    assert "saved_model.pb" in names and "alphabet.json" in names


def test_callers_callbacks_run_for_their_run_only_and_early_stopping_is_recorded(digits_data, mongo_url, tmp_path):
    from tf_crnn.callbacks import Callback

    class Epochs(Callback):  # what a sweep's pruning sees: its own run, each epoch
        def __init__(self, run):
            self.run, self.seen = run, []

        def on_epoch_end(self, trainer, result):
            self.seen.append((self.run._id, result.epoch))

    made = []

    def make(run):
        made.append(Epochs(run))
        return made[-1]

    # min_delta 0.5 at lr 1e-9: epoch 1 improves on infinity, epoch 2 cannot improve by 0.5: stopped after it.
    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "stopped"), n_epochs=3, learning_rate=1e-9,
                         early_stopping_patience=1, early_stopping_min_delta=0.5)
    config = {**params.to_dict(), "mongo_url": mongo_url, "mongo_db_name": "tf_crnn_test"}
    run = ex.run(config_updates=config, options={"--capture": "sys"}, callbacks=[make])
    assert run.status == "COMPLETED" and ex.state is None  # the run's state ended with it
    assert run.info["early_stopping_epoch"] == 2
    assert len(made) == 1 and made[0].seen == [(run._id, 1), (run._id, 2)]

    plain = ex.run(config_updates={**config, "output_model_dir": str(tmp_path / "plain"), "n_epochs": 1,
                                   "early_stopping_patience": 0}, options={"--capture": "sys"})
    assert plain.status == "COMPLETED" and "early_stopping_epoch" not in plain.info
    assert len(made) == 1 and len(made[0].seen) == 2  # a later run does not get the earlier caller's callbacks


def test_password_in_url_never_stored(digits_data, mongo_url, tmp_path):
    from bson import json_util

    password = "pw-7f3a-never-stored"
    client = pymongo.MongoClient(mongo_url)
    client.admin.command("createUser", "trainer", pwd=password, roles=["root"])
    secret_url = mongo_url.replace("mongodb://", f"mongodb://trainer:{password}@")
    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), n_epochs=1)
    run = ex.run(config_updates={**params.to_dict(), "mongo_url": secret_url, "mongo_db_name": "tf_crnn_auth"},
                 options={"--capture": "sys"})
    db = client["tf_crnn_auth"]
    doc = db.runs.find_one({"_id": run._id})
    assert doc["config"]["mongo_url"] == secret_url.replace(password, "***")
    stored = json_util.dumps(list(db.runs.find()) + list(db.metrics.find()))
    fs = gridfs.GridFS(db)
    config_artifact = next(a["file_id"] for a in doc["artifacts"] if a["name"] == "config.json")
    stored += fs.get(config_artifact).read().decode("utf-8")
    stored += (tmp_path / "out" / "export" / "params.json").read_text()
    assert "trainer:***@" in stored and password not in stored


def test_sacred_mongo_option_selects_our_observer(digits_data, mongo_server, tmp_path, capsys):
    """``-m HOST:PORT:DB`` (Sacred's flag) gives one run, written by tf-crnn's observer, not two."""
    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), n_epochs=1)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(params.to_dict()))
    address = "{}:{}".format(*mongo_server.address)
    run = ex.run_commandline(["train.py", "with", str(config_file), "-m", f"{address}:tf_crnn_dash_m",
                              "--capture=sys"])
    assert run.status == "COMPLETED"
    runs = list(pymongo.MongoClient(f"mongodb://{address}/")["tf_crnn_dash_m"].runs.find())
    assert [r["_id"] for r in runs] == [run._id]
    assert runs[0]["config"]["mongo_url"] == f"mongodb://{address}/"
    assert runs[0]["config"]["mongo_db_name"] == "tf_crnn_dash_m"
    assert len(run.observers) == 1 and isinstance(run.observers[0], ResilientMongoObserver)
    with pytest.raises(SystemExit):  # Sacred's command line prints the error and exits 1
        ex.run_commandline(["train.py", "with", str(config_file), "-m", f"{address}:tf_crnn_dash_m.my_runs"])
    assert "tf-crnn takes -m [HOST:PORT:]DB_NAME only" in capsys.readouterr().err


def test_redact_url():
    url = "mongodb://trainer:s3cr3t@127.0.0.1:27017/?authSource=admin"
    assert tracking.redact_url(url) == "mongodb://trainer:***@127.0.0.1:27017/?authSource=admin"
    assert tracking.host_port(url) == "127.0.0.1:27017"
    assert tracking.redact_url("mongodb://127.0.0.1:27017/") == "mongodb://127.0.0.1:27017/"


def test_unreachable_database_is_a_clear_error():
    with pytest.raises(tracking.TrackingError, match=r"cannot reach MongoDB at mongodb://u:\*\*\*@127.0.0.1:9/"):
        tracking.ping("mongodb://u:pw@127.0.0.1:9/", timeout_s=0.5)


def test_export_predicts_like_the_trained_model_and_resume_continues(digits_data, tmp_path):
    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), n_epochs=2)
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    train = load_split(params.csv_files_train, params, alphabet, "train", progress=False)
    evaluation = load_split(params.csv_files_eval, params, alphabet, "eval", progress=False)
    trainer = Trainer(params, alphabet)
    results = trainer.fit(train, evaluation, seed=0)
    assert [r.epoch for r in results] == [1, 2]
    assert results[-1].metrics["train.loss"] < results[0].metrics["train.loss"] * 1.5
    export_dir = trainer.export(str(tmp_path / "export"))

    # The in-memory model's greedy transcription of the eval images ...
    expected = greedy_transcriptions(trainer, evaluation)
    # ... is what the SavedModel returns from the encoded files.
    paths = [e.sample.image_path for e in evaluation]
    predictions = PredictionModel(export_dir).predict(paths)
    assert [p.text for p in predictions] == [expected[p] for p in paths]
    assert all(0.0 <= p.score <= 1.0 and set(p.text) <= set("0123456789") for p in predictions)

    # Resume: a new Trainer picks up weights, optimizer state and epoch count.
    step_before = int(trainer.optimizer.iterations.numpy())
    resumed = Trainer(tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), n_epochs=3), alphabet)
    assert resumed.restore() == 2
    assert int(resumed.optimizer.iterations.numpy()) == step_before
    np.testing.assert_allclose(resumed.model.classifier.kernel.numpy(), trainer.model.classifier.kernel.numpy())
    assert [r.epoch for r in resumed.fit(train, evaluation, seed=0)] == [3]


def test_prediction_model_names_bad_images(digits_data, tmp_path):
    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), n_epochs=1)
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    export_dir = Trainer(params, alphabet).export(str(tmp_path / "export"))
    model = PredictionModel(export_dir)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    # Reported in the prediction by default, raised with strict=True.
    assert [p.error for p in model.predict([bad, tmp_path / "nope.png"])] == [
        "cannot decode image (not a format Pillow can read)", "missing image file"]
    with pytest.raises(ValueError, match=".*bad.png: cannot decode image"):
        model.predict([bad], strict=True)
    with pytest.raises(FileNotFoundError, match="nope.png"):
        model.predict([tmp_path / "nope.png"], strict=True)
    with pytest.raises(FileNotFoundError, match="no SavedModel"):
        PredictionModel(tmp_path)


@pytest.mark.parametrize("option", [{"jit_compile": True}, {"mixed_precision": "float16"}])
def test_xla_and_mixed_precision_training_steps_train(digits_data, tmp_path, option):
    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), n_epochs=1, **option)
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    train = load_split(params.csv_files_train, params, alphabet, "train", progress=False)
    trainer = Trainer(params, alphabet)
    before = trainer.model.classifier.kernel.numpy().copy()
    loss, seen = trainer.train_epoch(make_dataset(train, params, 16, training=True, seed=0), batch_count(train, 16))
    assert seen == len(train) and np.isfinite(loss) and loss > 0
    assert not np.allclose(before, trainer.model.classifier.kernel.numpy())
    if "mixed_precision" in option:
        assert trainer.model.conv_blocks[0][0].compute_dtype == "float16"
        assert trainer.model.classifier.kernel.dtype == "float32"
        prediction = PredictionModel(trainer.export(str(tmp_path / "export"))).predict([train[0].sample.image_path])
        assert 0.0 <= prediction[0].score <= 1.0
