"""Faults during training: a killed process, a database that goes away, an output folder that cannot be written."""
from __future__ import annotations

import datetime
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import gridfs
import pymongo
import pytest
from conftest import (
    ROOT,
    checkpoint_epochs,
    metric_series,
    tiny_params,
    train_command,
    train_env,
    training_to_kill,
    wait_for,
    write_config,
)

from tf_crnn._util import free_port
from tf_crnn.experiment.experiments import METRIC_NAMES, ex
from tf_crnn.tracking import observer as observers
from tf_crnn.tracking import provenance, run_records
from tf_crnn.tracking.observer import ResilientMongoObserver

# ---- a killed training resumes --------------------------------------------------------------

@pytest.mark.slow
def test_killed_training_keeps_its_epochs_and_the_resumed_run_covers_the_whole_training(digits_data, mongo_url,
                                                                                         tmp_path):
    out = tmp_path / "out"
    config = write_config(tmp_path, digits_data, output_model_dir=str(out), n_epochs=30,
                          mongo_url=mongo_url, mongo_db_name="tf_crnn_resume")
    history_file = out / "reports" / "history.json"

    def logged_epochs() -> list[int]:
        try:
            return [epoch for epoch, _ in json.loads(history_file.read_text())["eval.cer"]]
        except (OSError, ValueError, KeyError):
            return []

    with training_to_kill(config, tmp_path / "first.log") as first:
        wait_for(lambda: len(logged_epochs()) >= 2 or first.poll() is not None, 240, "epoch 2's log")
        os.kill(first.pid, signal.SIGKILL)  # no clean shutdown, no final Sacred event
    assert first.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-3000:]
    # Per epoch: metrics to MongoDB, then history.json, then the checkpoint (a checkpoint means a logged epoch).
    logged = logged_epochs()
    checkpointed = max(checkpoint_epochs(out))
    assert logged == list(range(1, len(logged) + 1)) and len(logged) >= 2
    assert checkpointed in (logged[-1] - 1, logged[-1])
    record = json.loads((out / "run.json").read_text())
    old_id = record["run_id"]
    assert record["pid"] == first.pid and record["mongo_db_name"] == "tf_crnn_resume"

    db = pymongo.MongoClient(mongo_url)["tf_crnn_resume"]
    old = db.runs.find_one({"_id": old_id})
    assert old["status"] == "RUNNING" and old["heartbeat"] is None  # nobody told MongoDB; no heartbeat either
    old_series = metric_series(db, old_id)
    for name in METRIC_NAMES:  # every logged epoch (the kill may have come between MongoDB and history.json)
        assert old_series[name]["steps"] in (logged, logged + [logged[-1] + 1]), name

    second = subprocess.run(train_command(config, "restore_model=True", f"n_epochs={checkpointed + 1}"), cwd=ROOT,
                            env=train_env(), capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"taking over the lock of {out} from run {old_id}, pid {first.pid}" in second.stderr
    new_id = json.loads((out / "run.json").read_text())["run_id"]
    assert new_id != old_id
    assert f"resumes run {old_id} from its epoch {checkpointed} checkpoint" in second.stdout

    new = db.runs.find_one({"_id": new_id})
    assert new["status"] == "COMPLETED"
    assert new["info"]["resumed_from_run"] == old_id
    assert new["info"]["resumed_from_epoch"] == checkpointed
    assert new["info"]["resumed_from_step"] > 0  # the optimizer's step counter came back with the checkpoint
    # The new run's metrics cover the whole training: the epochs before the checkpoint carried over, marked.
    assert new["info"]["carried_over_epochs"] == list(range(1, checkpointed + 1))
    new_series = metric_series(db, new_id)
    for name in METRIC_NAMES:
        assert new_series[name]["steps"] == list(range(1, checkpointed + 2)), name
        assert new_series[name]["values"][:checkpointed] == pytest.approx(old_series[name]["values"][:checkpointed])
    # So do the learning curves (history.json).
    history = json.loads(history_file.read_text())
    for name in METRIC_NAMES:
        assert [epoch for epoch, _ in history[name]] == new_series[name]["steps"]
        assert [value for _, value in history[name]] == pytest.approx(new_series[name]["values"])

    # Same host and its process is gone: the killed run is closed at once, linked to its successor.
    old = db.runs.find_one({"_id": old_id})
    assert old["status"] == "INTERRUPTED" and old["info"]["resumed_by"] == new_id
    assert new["info"]["previous_run_status"] == "INTERRUPTED"
    assert checkpointed + 1 in checkpoint_epochs(out)


def test_close_dead_run_follows_the_heartbeat_rule(mongo_url):
    db = pymongo.MongoClient(mongo_url)["tf_crnn_close"]
    now = datetime.datetime.utcnow()
    db.runs.insert_many([
        {"_id": 1, "status": "RUNNING", "start_time": now - datetime.timedelta(hours=1),
         "heartbeat": now - datetime.timedelta(seconds=300)},
        {"_id": 2, "status": "RUNNING", "start_time": now, "heartbeat": now},
        {"_id": 3, "status": "COMPLETED", "start_time": now, "heartbeat": now},
        {"_id": 4, "status": "RUNNING", "start_time": now, "heartbeat": None},
    ])
    other_host = {"host": "elsewhere", "pid": 1}
    # Stale heartbeat (> 60 s): dead, whatever the host.
    assert run_records.close_dead_run(mongo_url, "tf_crnn_close", 1, 9, other_host) == "INTERRUPTED"
    doc = db.runs.find_one({"_id": 1})
    assert doc["info"]["resumed_by"] == 9 and doc["stop_time"] == doc["heartbeat"]
    # Fresh heartbeat on another machine: may be alive, left alone.
    assert run_records.close_dead_run(mongo_url, "tf_crnn_close", 2, 9, other_host) == "RUNNING"
    assert db.runs.find_one({"_id": 2})["status"] == "RUNNING"
    # Finished runs keep their status.
    assert run_records.close_dead_run(mongo_url, "tf_crnn_close", 3, 9, other_host) == "COMPLETED"
    # Fresh, but its process on this host is gone (a pid that cannot exist).
    gone = {"host": socket.gethostname(), "pid": 2**22 + 12345}
    assert run_records.close_dead_run(mongo_url, "tf_crnn_close", 4, None, gone) == "INTERRUPTED"
    assert "resumed_by" not in db.runs.find_one({"_id": 4}).get("info", {})


# ---- the database goes away during the run ---------------------------------------------------

class _Database:
    """A SecantusDB server that can be stopped and started again on the same port and storage."""

    def __init__(self, storage: Path):
        from secantus import SecantusDBServer

        self._cls, self.port, self.storage = SecantusDBServer, free_port(), storage
        self.server = None
        self.start()
        self.url = f"mongodb://127.0.0.1:{self.port}/"

    def start(self):
        self.server = self._cls(host="127.0.0.1", port=self.port, storage_path=str(self.storage),
                                replica_set_name=None)
        self.server.start()

    def stop(self):
        if self.server is not None:
            self.server.stop()
            self.server = None


def _our_observer():
    return next(o for o in ex.observers if isinstance(o, ResilientMongoObserver))


@pytest.fixture
def fast_failing_db(monkeypatch):
    # A down database is noticed after 1 s instead of 5 s; the end of the run waits at most 30 s for it.
    monkeypatch.setattr(observers, "OBSERVER_TIMEOUT_S", 1.0)
    monkeypatch.setattr(observers, "FINAL_WAIT_S", 30.0)


def _train_logging_to(database, digits_data, out, n_epochs):
    """A tiny training logging to ``database`` with 1 s heartbeats (so outages meet a heartbeat)."""
    params = tiny_params(digits_data, output_model_dir=str(out), n_epochs=n_epochs)
    return ex.run(config_updates={**params.to_dict(), "mongo_url": database.url, "mongo_db_name": "gone"},
                  options={"--capture": "sys", "--beat-interval": 1.0})


@pytest.mark.slow
def test_database_gone_mid_run_loses_no_metric_nor_artifact(digits_data, tmp_path, fast_failing_db, capsys):
    database = _Database(tmp_path / "db")
    out = tmp_path / "out"
    timeline = {}

    def outage():
        try:
            wait_for(lambda: 1 in checkpoint_epochs(out), 240, "epoch 1's checkpoint")
            database.stop()
            timeline["stopped"] = time.monotonic()
            wait_for(lambda: _our_observer().down_since is not None, 60, "the observer to notice")
            # Keep it down until epoch 2's metrics have met the dead database at a heartbeat.
            wait_for(lambda: 2 in checkpoint_epochs(out), 240, "epoch 2's checkpoint")
            time.sleep(2.5)
            database.start()
            timeline["restarted"] = time.monotonic()
        except Exception as e:  # reported by the assertions below
            timeline["error"] = repr(e)
            database.stop()
            database.start()

    watcher = threading.Thread(target=outage, daemon=True)
    watcher.start()
    try:
        run = _train_logging_to(database, digits_data, out, n_epochs=4)
        watcher.join(60)
        observer = _our_observer()
        assert "error" not in timeline, timeline
        assert run.status == "COMPLETED" and observer.outages >= 1

        db = pymongo.MongoClient(database.url)["gone"]
        doc = db.runs.find_one({"_id": run._id})
        assert doc["status"] == "COMPLETED" and doc["result"]
        series = metric_series(db, run._id)
        for name in METRIC_NAMES:
            assert series[name]["steps"] == [1, 2, 3, 4], name  # every epoch once, in order
        assert {"alphabet.json", "config.json", "export.zip"} <= {a["name"] for a in doc["artifacts"]}
        assert "did not answer" in doc["captured_out"] and "answers again" in doc["captured_out"]

        # From the outage on, the run was also written by Sacred's FileStorageObserver.
        local = Path(observer.fallback.dir)
        assert local.parent == out / observers.FALLBACK_DIR and local.name == str(run._id)
        metrics = json.loads((local / "metrics.json").read_text())
        assert all(metrics[name]["steps"] == [1, 2, 3, 4] for name in METRIC_NAMES)
        assert json.loads((local / "run.json").read_text())["status"] == "COMPLETED"
        assert (local / "export.zip").is_file() and (local / "artifact_config.json").is_file()
        err = capsys.readouterr().err
        assert f"also being written to {local}" in err and "writing the local copy" not in err
    finally:
        database.stop()


@pytest.mark.slow
def test_database_gone_until_the_end_fails_the_command_and_import_run_completes_the_run(
        digits_data, tmp_path, fast_failing_db, monkeypatch, capsys):
    from tf_crnn.cli.train import run_training

    monkeypatch.setattr(observers, "FINAL_WAIT_S", 2.0)
    database = _Database(tmp_path / "db")
    out = tmp_path / "out"
    config = write_config(tmp_path, digits_data, output_model_dir=str(out), n_epochs=2, mongo_url=database.url,
                          mongo_db_name="gone")

    def outage():
        wait_for(lambda: 1 in checkpoint_epochs(out), 240, "epoch 1's checkpoint")
        database.stop()

    watcher = threading.Thread(target=outage, daemon=True)
    watcher.start()
    try:
        # The command line of train.py / tf-crnn train, in this process (pytest owns the file descriptors).
        code = run_training(["train.py", "with", str(config), "--capture=sys", "--beat-interval=1"])
        run = ex.current_run
        assert run.status == "COMPLETED"  # the training itself never noticed ...
        local = out / observers.FALLBACK_DIR / str(run._id)
        metrics = json.loads((local / "metrics.json").read_text())
        assert all(metrics[name]["steps"] == [1, 2] for name in METRIC_NAMES)
        stored = json.loads((local / "run.json").read_text())
        assert stored["status"] == "COMPLETED" and stored["result"]["cer"] == run.result["cer"]
        assert {"alphabet.json", "artifact_config.json", "export.zip"} <= set(stored["artifacts"])
        assert (local / "export.zip").is_file()
        err = capsys.readouterr().err
        assert err.count(f"Its complete record is in {local}") == 1 and "writing the local copy" not in err
        # ... but the command fails, naming the one command that completes the run in MongoDB.
        assert code == 2
        assert (f"tf-crnn train: error: run {run._id} is incomplete in MongoDB at {database.url}" in err
                and err.rstrip().endswith(f"upload its local record with:  tf-crnn db import-run {local}")), err[-2000:]
        # Sacred's own last resort as well: the run document, pickled.
        pickled = list((out / observers.FAILURE_DIR).glob("sacred_mongo_fail_*.pickle"))
        assert len(pickled) == 1 and pickle.loads(pickled[0].read_bytes())["status"] == "COMPLETED"

        database.start()
        db = pymongo.MongoClient(database.url)["gone"]
        assert db.runs.find_one({"_id": run._id})["status"] == "RUNNING"
        # What reached MongoDB before the outage depends on timing (epoch 1's values, perhaps one of epoch 2's
        # sent by a heartbeat while the server was shutting down): the import adds exactly the rest.
        local_values = sum(len(m["steps"]) for m in metrics.values())
        stored_values = sum(len(m["steps"]) for m in metric_series(db, run._id).values())
        assert stored_values < local_values
        import_run = [sys.executable, "-m", "tf_crnn.cli", "db", "import-run", str(local)]
        first = subprocess.run(import_run, cwd=ROOT, env=train_env(), capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr[-2000:]
        assert f"completed in run {run._id} (COMPLETED)" in first.stdout
        assert f"{local_values - stored_values} metric values and 7 artifacts added" in first.stdout, first.stdout
        assert db.runs.count_documents({}) == 1
        doc = db.runs.find_one({"_id": run._id})
        assert doc["status"] == "COMPLETED" and doc["result"]["cer"] == pytest.approx(run.result["cer"])
        assert doc["stop_time"] is not None and doc["info"]["imported_from"] == str(local)
        # environment.txt (and code.diff from a checkout with uncommitted changes) went in before the outage.
        dirty = {"code.diff"} if (provenance.git_state() or {}).get("dirty") else set()
        assert {a["name"] for a in doc["artifacts"]} == {
            "alphabet.json", "config.json", "export.zip", "learning_curves.png", "predictions.png",
            "confusions.png", "confusions.csv", "environment.txt"} | dirty
        assert json.loads(gridfs.GridFS(db).get(next(a["file_id"] for a in doc["artifacts"]
                                                     if a["name"] == "config.json")).read())["n_epochs"] == 2
        series = metric_series(db, run._id)
        for name in (*METRIC_NAMES, "train.images_per_second"):
            assert series[name]["steps"] == [1, 2], name
            assert series[name]["values"] == pytest.approx(metrics[name]["values"]), name

        again = subprocess.run(import_run, cwd=ROOT, env=train_env(), capture_output=True, text=True, timeout=120)
        assert again.returncode == 2 and "Traceback" not in again.stderr
        assert f"run {run._id} is complete in {database.url} database 'gone' already" in again.stderr
        assert db.runs.count_documents({}) == 1 and metric_series(db, run._id)["eval.cer"]["steps"] == [1, 2]
    finally:
        watcher.join(5)
        database.stop()


# ---- an output folder that cannot take the training ------------------------------------------

def test_read_only_output_folder_is_a_clear_error_before_training(digits_data, mongo_url, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    config = write_config(tmp_path, digits_data, output_model_dir=str(locked / "out"),
                          mongo_url=mongo_url, mongo_db_name="tf_crnn_readonly")
    cmd = train_command(config)
    if os.geteuid() == 0:  # root writes through permission bits: a read-only bind mount in a private namespace
        if not shutil.which("unshare"):
            pytest.skip("running as root without unshare: cannot make a folder read-only")
        probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip(f"running as root and unshare -m is not allowed here: {probe.stderr.decode()[:200]}")
        script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(locked), *cmd]
    else:
        locked.chmod(0o555)
    try:
        result = subprocess.run(cmd, cwd=ROOT, env=train_env(), capture_output=True, text=True, timeout=120)
    finally:
        locked.chmod(0o755)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"output_model_dir {locked / 'out'} is not writable" in output, output[-2000:]
    assert "epoch 1" not in output and "checking train images" not in output  # before any data is read
    assert pymongo.MongoClient(mongo_url)["tf_crnn_readonly"].runs.count_documents({}) == 0  # no run recorded


def test_full_disk_is_a_clear_error_before_training(digits_data, mongo_url, tmp_path, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(run_records.shutil, "disk_usage",
                        lambda path: real(path)._replace(free=10 * 2**20))  # 10 MB left
    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "out"),
                         cnn_features_list=[64, 128], rnn_units=[256])  # about 1.3 M weights: > 10 MB to write
    with pytest.raises(OSError, match=r"has 10 MB free, but this training writes about \d+ MB"):
        ex.run(config_updates={**params.to_dict(), "mongo_url": mongo_url, "mongo_db_name": "tf_crnn_full"},
               options={"--capture": "sys"})
    assert pymongo.MongoClient(mongo_url)["tf_crnn_full"].runs.count_documents({}) == 0


def test_output_estimate_covers_checkpoints_and_exports():
    from tf_crnn.config import Params
    from tf_crnn.experiment.experiments import output_bytes_estimate

    default = output_bytes_estimate(Params(lookup_alphabet_file=str(ROOT / "data/alphabets/digits.json"))
                                             .to_dict())
    # Shi et al.'s CRNN has about 8.7 M weights: 4 checkpoints with Adam state + 3 exports is > 500 MB.
    assert 450 * 2**20 < default < 900 * 2**20


def test_atomic_writes_get_the_permissions_open_gives(tmp_path):
    import stat

    from tf_crnn._util import current_umask, write_json

    path = write_json(tmp_path / "params.json", {"a": 1})
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    assert stat.S_IMODE(os.stat(path).st_mode) == stat.S_IMODE(os.stat(plain).st_mode) == 0o666 & ~current_umask()
