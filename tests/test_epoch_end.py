"""The end of an epoch: its record first, the other callbacks isolated, the checkpoint last; a future Sacred.

Real faults on real tiny trainings against the SecantusDB server of the session: an ``export_best`` that
cannot be written, a checkpoint folder that cannot be written, a process killed with SIGKILL between an
epoch's record and its checkpoint.
"""
from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import time
from pathlib import Path

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
    write_config,
)

from tf_crnn.callbacks import Callback, EpochResult
from tf_crnn.experiment.experiments import METRIC_NAMES, ex


def _blocked(tmp_path: Path, name: str) -> Path:
    """A path under a regular file (``tmp_path/blocker``): nothing can be written there, whoever writes.

    Permission bits do not stop root, and TensorFlow's ``rmtree`` removes a plain file standing where its
    folder goes, so a folder of the training is made a symbolic link to this path instead.
    """
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file, not a folder")
    return blocker / name


def _history(out: Path) -> dict:
    return json.loads((out / "reports" / "history.json").read_text())


@pytest.mark.slow
def test_a_failing_best_export_is_a_recorded_warning_and_the_training_goes_on(digits_data, mongo_url, tmp_path,
                                                                             capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "export_best").symlink_to(_blocked(tmp_path, "export_best"))
    params = tiny_params(digits_data, output_model_dir=str(out), n_epochs=2)
    run = ex.run(config_updates={**params.to_dict(), "mongo_url": mongo_url, "mongo_db_name": "tf_crnn_cb_fail"},
                 options={"--capture": "sys"})
    err = capsys.readouterr().err

    assert run.status == "COMPLETED" and run.result["cer"] is not None
    # BestExport's export failed at each epoch (its best CER is kept only once an export is written, so
    # epoch 2 tried again): one warning line each, naming the callback and the error.
    warnings = [line for line in err.splitlines() if "callback best_export failed" in line]
    assert [w.split(": callback")[0] for w in warnings] == ["tf-crnn: WARNING: epoch 1", "tf-crnn: WARNING: epoch 2"]
    assert all("the training goes on (the epoch's metrics are recorded): " in w and "export_best" in w
               for w in warnings), warnings
    # The epochs are on record: history.json, the run's metrics in MongoDB, the failures in its info.
    for name in METRIC_NAMES:
        assert [epoch for epoch, _ in _history(out)[name]] == [1, 2], name
    db = pymongo.MongoClient(mongo_url)["tf_crnn_cb_fail"]
    doc = db.runs.find_one({"_id": run._id})
    assert doc["status"] == "COMPLETED"
    for name in METRIC_NAMES:
        assert metric_series(db, run._id)[name]["steps"] == [1, 2], name
    failures = doc["info"]["callback_failures"]
    assert [(f["epoch"], f["callback"]) for f in failures] == [(1, "best_export"), (2, "best_export")]
    assert all("export_best" in f["error"] and "\n" not in f["error"] for f in failures)
    assert failures[0]["error"] == warnings[0].split("are recorded): ", 1)[1]
    # Each epoch's checkpoint came after, and the training's own export at the end.
    assert checkpoint_epochs(out) == {1, 2}
    assert (out / "export" / "saved_model.pb").is_file()
    assert not (out / "export_best").exists()  # still the link to nowhere: nothing pretends to be the best model


@pytest.mark.slow
def test_a_stop_asked_for_by_early_stopping_holds_when_another_callback_failed(digits_data, tmp_path):
    from tf_crnn.alphabet import Alphabet
    from tf_crnn.data import load_split
    from tf_crnn.trainer import Trainer

    out = tmp_path / "out"
    out.mkdir()
    (out / "export_best").symlink_to(_blocked(tmp_path, "export_best"))
    # A negligible learning rate: epoch 1 improves on infinity, epoch 2 cannot improve by 0.5: stop after it.
    params = tiny_params(digits_data, output_model_dir=str(out), n_epochs=4, learning_rate=1e-9,
                         learning_decay_rate=1.0, early_stopping_patience=1, early_stopping_min_delta=0.5)
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    trainer = Trainer(params, alphabet)
    results = trainer.fit(load_split(params.csv_files_train, params, alphabet, "train", progress=False),
                          load_split(params.csv_files_eval, params, alphabet, "eval", progress=False), seed=0)
    assert [r.epoch for r in results] == [1, 2] and trainer.stop_training
    assert [[f["callback"] for f in r.callback_failures] for r in results] == [["best_export"], ["best_export"]]
    assert checkpoint_epochs(out) == {1, 2}


@pytest.mark.slow
def test_a_checkpoint_that_cannot_be_written_stops_the_training_with_its_epoch_recorded(digits_data, mongo_url,
                                                                                         tmp_path, capsys):
    from tf_crnn.cli.train import run_training

    out = tmp_path / "out"
    out.mkdir()
    (out / "checkpoints").symlink_to(_blocked(tmp_path, "checkpoints"))
    config = write_config(tmp_path, digits_data, output_model_dir=str(out), n_epochs=3, mongo_url=mongo_url,
                          mongo_db_name="tf_crnn_ckpt_fail")
    code = run_training(["train.py", "with", str(config), "--capture=sys"])  # in this process, as tf-crnn train
    err = capsys.readouterr().err

    assert code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"tf-crnn train: error: the checkpoint of epoch 1 could not be written to "
                           f"{out / 'checkpoints'} ("), last
    assert last.endswith("the training stopped with the metrics of epochs up to 1 recorded. Fix the cause (free "
                         "space, permissions) and continue from the last checkpoint with restore_model=True"), last
    # Epoch 1 is on record, and nothing after it: the training stopped there.
    db = pymongo.MongoClient(mongo_url)["tf_crnn_ckpt_fail"]
    doc = db.runs.find_one()
    assert doc["status"] == "FAILED" and "CheckpointError" in doc["fail_trace"][-1]
    for name in METRIC_NAMES:
        assert metric_series(db, doc["_id"])[name]["steps"] == [1], name
        assert [epoch for epoch, _ in _history(out)[name]] == [1], name


def test_an_epoch_trained_again_replaces_its_record_and_is_not_logged_twice(mongo_url, tmp_path, capsys):
    """:class:`SacredEpochLog` given epochs 1-2 carried over, then epoch 2 again: once in each record."""
    from sacred import Experiment
    from sacred.observers import MongoObserver

    from tf_crnn.experiment.epoch_callbacks import SacredEpochLog, carry_over_history

    experiment = Experiment("epochs_once", save_git_info=False)
    experiment.observers.append(MongoObserver(url=mongo_url, db_name="tf_crnn_epochs_once"))
    names = ("train.loss", "eval.cer")

    @experiment.main
    def main(_run):
        history = {name: [(1, 0.9), (2, 0.8)] for name in names}
        assert carry_over_history(_run, history) == [1, 2]
        log = SacredEpochLog(_run, history, str(tmp_path), n_epochs=3)
        for epoch, value in ((2, 0.5), (3, 0.4)):
            log.on_epoch_end(None, EpochResult(epoch, {name: value for name in names}, 10.0, 1.0))
        return _run.info["epochs"]

    run = experiment.run(options={"--capture": "sys"})
    assert [e["epoch"] for e in run.result] == [2, 3]
    # history.json: epoch 2 replaced by the epoch trained again (the values the checkpoints continue).
    stored = json.loads((tmp_path / "history.json").read_text())
    assert all(stored[name] == [[1, 0.9], [2, 0.5], [3, 0.4]] for name in names), stored
    # The run: Sacred's metrics are append-only, so epoch 2 keeps its carried-over value, once; said so.
    series = metric_series(pymongo.MongoClient(mongo_url)["tf_crnn_epochs_once"], run._id)
    assert all(series[name]["steps"] == [1, 2, 3] and series[name]["values"] == [0.9, 0.8, 0.4] for name in names)
    assert f"epoch 2 is in run {run._id}'s metrics already" in capsys.readouterr().err


# ---- a kill between an epoch's record and its checkpoint --------------------------------------------

def _recorded_epochs(out: Path) -> list[int]:
    try:
        return [epoch for epoch, _ in _history(out)["eval.cer"]]
    except (OSError, ValueError, KeyError):
        return []


def _kill_between_record_and_checkpoint(proc: subprocess.Popen, out: Path, timeout_s: float = 600) -> int:
    """SIGKILL ``proc`` at an epoch k >= 2 whose record (``history.json``) is written and its checkpoint not.

    Each time ``history.json`` shows a new epoch the process is frozen (SIGSTOP) and the checkpoints are
    looked at: without epoch k's, it is killed in exactly that state; with it, it goes on (SIGCONT) and the
    next epoch is tried. Returns k.
    """
    deadline, seen = time.monotonic() + timeout_s, 0
    while time.monotonic() < deadline and proc.poll() is None:
        epochs = _recorded_epochs(out)
        if epochs and epochs[-1] > seen:
            os.kill(proc.pid, signal.SIGSTOP)
            seen = epochs[-1]
            if seen >= 2 and seen not in checkpoint_epochs(out):
                os.kill(proc.pid, signal.SIGKILL)
                return seen
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.005)
    raise AssertionError(f"no epoch was caught between its record and its checkpoint (last seen: {seen}, "
                         f"exit code {proc.poll()})")


@pytest.mark.slow
def test_a_kill_between_an_epochs_record_and_its_checkpoint_records_that_epoch_once_after_the_resume(
        digits_data, mongo_url, tmp_path):
    out = tmp_path / "out"
    db_name = "tf_crnn_record_then_kill"
    config = write_config(tmp_path, digits_data, output_model_dir=str(out), n_epochs=40, mongo_url=mongo_url,
                          mongo_db_name=db_name)
    with training_to_kill(config, tmp_path / "first.log") as first:
        killed_at = _kill_between_record_and_checkpoint(first, out)
    assert first.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-3000:]
    assert _recorded_epochs(out) == list(range(1, killed_at + 1))
    assert max(checkpoint_epochs(out)) == killed_at - 1
    db = pymongo.MongoClient(mongo_url)[db_name]
    old_id = json.loads((out / "run.json").read_text())["run_id"]
    for name in METRIC_NAMES:  # the killed run recorded epoch k before its checkpoint
        assert metric_series(db, old_id)[name]["steps"] == list(range(1, killed_at + 1)), name

    second = subprocess.run(train_command(config, "restore_model=True", f"n_epochs={killed_at + 1}"), cwd=ROOT,
                            env=train_env(), capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    new_id = json.loads((out / "run.json").read_text())["run_id"]
    assert f"resumes run {old_id} from its epoch {killed_at - 1} checkpoint" in second.stdout
    new = db.runs.find_one({"_id": new_id})
    assert new["status"] == "COMPLETED" and new["info"]["resumed_from_epoch"] == killed_at - 1
    # Epoch k was trained again: once in history.json and once in the run, with the values of the training
    # the checkpoints continue.
    history = _history(out)
    series = metric_series(db, new_id)
    for name in METRIC_NAMES:
        assert [epoch for epoch, _ in history[name]] == list(range(1, killed_at + 2)), name
        assert series[name]["steps"] == list(range(1, killed_at + 2)), name
        assert [value for _, value in history[name]] == pytest.approx(series[name]["values"]), name
    assert [e["epoch"] for e in new["info"]["epochs"]] == [killed_at, killed_at + 1]
    assert checkpoint_epochs(out) >= {killed_at, killed_at + 1}


# ---- a Sacred without the private API tf-crnn uses ----------------------------------------------------

class _RenamedMetricsQueue:
    """Sacred 0.8's metrics queue with its reader under another name: no ``get_last_metrics``."""

    def __init__(self):
        from sacred.metrics_logger import MetricsLogger

        self._logger = MetricsLogger()

    def log_scalar_metric(self, metric_name, value, step=None):
        self._logger.log_scalar_metric(metric_name, value, step)

    def read_new_metrics(self):
        return self._logger.get_last_metrics()


def _future_sacred_run():
    """A Sacred ``Run`` as a future Sacred might have it: ``_metrics`` is an object without ``get_last_metrics``.

    This simulates a Sacred release whose private internals moved, honestly: the run still logs scalars and
    its heartbeat still hands them to the observers (Sacred 0.8.7's ``_emit_heartbeat``, reading the
    renamed queue), only the private method tf-crnn drains for its per-epoch writes is gone.
    """
    from sacred.metrics_logger import linearize_metrics
    from sacred.run import Run

    class FutureRun(Run):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._metrics = _RenamedMetricsQueue()

        def _emit_heartbeat(self):  # Sacred 0.8.7's, reading the renamed queue
            beat_time = datetime.datetime.utcnow()
            self._get_captured_output()
            metrics_by_name = linearize_metrics(self._metrics.read_new_metrics())
            for observer in self.observers:
                self._safe_call(observer, "log_metrics", metrics_by_name=metrics_by_name, info=self.info)
                self._safe_call(observer, "heartbeat_event", info=self.info, captured_out=self.captured_out,
                                beat_time=beat_time, result=self.result)

    return FutureRun


class _MetricsInDatabase(Callback):
    """At each epoch's end (after the epoch is recorded): how many of the run's metric values MongoDB has."""

    name = "metrics_in_database"

    def __init__(self, run, mongo_url: str, db_name: str):
        self.run, self.db = run, pymongo.MongoClient(mongo_url)[db_name]
        self.counts: list[int] = []

    def on_epoch_end(self, trainer, result):
        self.counts.append(sum(len(m["steps"]) for m in metric_series(self.db, self.run._id).values()))


@pytest.mark.slow
def test_without_sacreds_private_metrics_api_the_heartbeat_records_every_epoch(digits_data, mongo_url, tmp_path,
                                                                             monkeypatch, capsys):
    import sacred.initialize

    monkeypatch.setattr(sacred.initialize, "Run", _future_sacred_run())
    db_name = "tf_crnn_future_sacred"
    params = tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), n_epochs=2)
    probes = []

    def probe(run):
        probes.append(_MetricsInDatabase(run, mongo_url, db_name))
        return probes[-1]

    run = ex.run(config_updates={**params.to_dict(), "mongo_url": mongo_url, "mongo_db_name": db_name},
                 options={"--capture": "sys", "--beat-interval": 3600.0}, callbacks=[probe])
    err = capsys.readouterr().err

    assert run.status == "COMPLETED" and not hasattr(run._metrics, "get_last_metrics")
    assert err.count("this Sacred version has no run._metrics.get_last_metrics") == 1
    assert probes[0].counts == [0, 0]  # no immediate write: the heartbeat's (one an hour) is the only one
    # The last heartbeat, at the run's end, handed every epoch's metrics to the observer.
    series = metric_series(pymongo.MongoClient(mongo_url)[db_name], run._id)
    for name in (*METRIC_NAMES, "train.images_per_second"):
        assert series[name]["steps"] == [1, 2], name
    assert [value for _, value in _history(tmp_path / "out")["eval.cer"]] == pytest.approx(series["eval.cer"]["values"])
