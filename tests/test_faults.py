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

import pymongo
import pytest

from tf_crnn.tracking import observer as observers, run_records
from tf_crnn.tracking.observer import ResilientMongoObserver
from tf_crnn.tracking.experiments import METRIC_NAMES, ex

from conftest import ROOT, tiny_params



def _config_file(tmp_path: Path, digits_data: Path, **overrides) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(tiny_params(digits_data, **overrides).to_dict()))
    return path


def _wait_for(condition, timeout_s: float, what: str, poll_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def _checkpoints(out: Path) -> set[int]:
    return {int(p.name.split("-")[1].split(".")[0]) for p in (out / "checkpoints").glob("ckpt-*.index")}


def _series(db, run_id) -> dict:
    return {m["name"]: m for m in db.metrics.find({"run_id": run_id})}


def _train_cmd(config: Path, *updates: str) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "with", str(config), *updates]


def _env() -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    for key in ("TF_CONFIG", "TF_CRNN_NO_OBSERVER"):
        env.pop(key, None)
    return env


# ---- a killed training resumes --------------------------------------------------------------

@pytest.mark.slow
def test_killed_training_resumes_from_its_checkpoint_and_names_the_run_it_continues(digits_data, mongo_url, tmp_path):
    out = tmp_path / "out"
    config = _config_file(tmp_path, digits_data, output_model_dir=str(out), n_epochs=3,
                          mongo_url=mongo_url, mongo_db_name="tf_crnn_resume")
    log = open(tmp_path / "first.log", "wb")
    first = subprocess.Popen(_train_cmd(config), cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        # history.json is written after epoch 1's checkpoint and Sacred metrics.
        _wait_for(lambda: (out / "reports" / "history.json").exists() or first.poll() is not None, 240,
                  "epoch 1's checkpoint and history")
        os.kill(first.pid, signal.SIGKILL)  # mid-epoch 2: no clean shutdown, no final Sacred event
    finally:
        if first.poll() is None:
            first.kill()
        first.wait()
        log.close()
    assert first.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-3000:]
    assert _checkpoints(out) == {1}, "the kill must land in epoch 2"
    record = json.loads((out / "run.json").read_text())
    old_id = record["run_id"]
    assert record["pid"] == first.pid and record["mongo_db_name"] == "tf_crnn_resume"

    db = pymongo.MongoClient(mongo_url)["tf_crnn_resume"]
    assert db.runs.find_one({"_id": old_id})["status"] == "RUNNING"  # nobody told MongoDB

    second = subprocess.run(_train_cmd(config, "restore_model=True"), cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    new_id = json.loads((out / "run.json").read_text())["run_id"]
    assert new_id != old_id
    assert f"resumes run {old_id} from its epoch 1 checkpoint" in second.stdout

    new = db.runs.find_one({"_id": new_id})
    assert new["status"] == "COMPLETED"
    assert new["info"]["resumed_from_run"] == old_id
    assert new["info"]["resumed_from_epoch"] == 1
    assert new["info"]["resumed_from_step"] > 0  # the optimizer's step counter came back with the checkpoint
    for name in METRIC_NAMES:
        assert _series(db, new_id)[name]["steps"] == [2, 3]
    for name, series in _series(db, old_id).items():  # whatever the killed run managed to store
        assert set(series["steps"]) <= {1}
    # The learning curves of the resumed training span both runs.
    history = json.loads((out / "reports" / "history.json").read_text())
    for name in METRIC_NAMES:
        assert [epoch for epoch, _ in history[name]] == [1, 2, 3]
        assert [v for epoch, v in history[name] if epoch > 1] == pytest.approx(_series(db, new_id)[name]["values"])

    # Same host and its process is gone: the killed run is closed at once, linked to its successor.
    old = db.runs.find_one({"_id": old_id})
    assert old["status"] == "INTERRUPTED" and old["info"]["resumed_by"] == new_id
    assert new["info"]["previous_run_status"] == "INTERRUPTED"
    assert _checkpoints(out) >= {2, 3}


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

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Database:
    """A SecantusDB server that can be stopped and started again on the same port and storage."""

    def __init__(self, storage: Path):
        from secantus import SecantusDBServer

        self._cls, self.port, self.storage = SecantusDBServer, _free_port(), storage
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
            _wait_for(lambda: 1 in _checkpoints(out), 240, "epoch 1's checkpoint")
            database.stop()
            timeline["stopped"] = time.monotonic()
            _wait_for(lambda: _our_observer().down_since is not None, 60, "the observer to notice")
            # Keep it down until epoch 2's metrics have met the dead database at a heartbeat.
            _wait_for(lambda: 2 in _checkpoints(out), 240, "epoch 2's checkpoint")
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
        series = _series(db, run._id)
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
def test_database_gone_until_the_end_leaves_a_complete_local_record(digits_data, tmp_path, fast_failing_db,
                                                                      monkeypatch, capsys):
    monkeypatch.setattr(observers, "FINAL_WAIT_S", 2.0)
    database = _Database(tmp_path / "db")
    out = tmp_path / "out"

    def outage():
        _wait_for(lambda: 1 in _checkpoints(out), 240, "epoch 1's checkpoint")
        database.stop()

    watcher = threading.Thread(target=outage, daemon=True)
    watcher.start()
    try:
        run = _train_logging_to(database, digits_data, out, n_epochs=2)
        assert run.status == "COMPLETED"  # the training itself never noticed
        local = out / observers.FALLBACK_DIR / str(run._id)
        metrics = json.loads((local / "metrics.json").read_text())
        assert all(metrics[name]["steps"] == [1, 2] for name in METRIC_NAMES)
        stored = json.loads((local / "run.json").read_text())
        assert stored["status"] == "COMPLETED" and stored["result"]["cer"] == run.result["cer"]
        assert {"alphabet.json", "artifact_config.json", "export.zip"} <= set(stored["artifacts"])
        assert (local / "export.zip").is_file()
        err = capsys.readouterr().err
        assert err.count(f"Its complete record is in {local}") == 1 and "writing the local copy" not in err
        # Sacred's own last resort as well: the run document, pickled.
        pickled = list((out / observers.FAILURE_DIR).glob("sacred_mongo_fail_*.pickle"))
        assert len(pickled) == 1 and pickle.loads(pickled[0].read_bytes())["status"] == "COMPLETED"
    finally:
        watcher.join(5)
        database.stop()


# ---- an output folder that cannot take the training ------------------------------------------

def test_read_only_output_folder_is_a_clear_error_before_training(digits_data, mongo_url, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    config = _config_file(tmp_path, digits_data, output_model_dir=str(locked / "out"),
                          mongo_url=mongo_url, mongo_db_name="tf_crnn_readonly")
    cmd = _train_cmd(config)
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
        result = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
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
    from tf_crnn.tracking.experiments import output_bytes_estimate

    default = output_bytes_estimate(Params(lookup_alphabet_file=str(ROOT / "data/alphabets/digits.json"))
                                             .to_dict())
    # Shi et al.'s CRNN has about 8.7 M weights: 4 checkpoints with Adam state + 3 exports is > 500 MB.
    assert 450 * 2**20 < default < 900 * 2**20
