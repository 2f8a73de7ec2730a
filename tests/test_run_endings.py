"""How a training ends: stop signals, a folder another training holds or held, the user's own mistakes.

Real training processes (``python train.py`` / ``tf-crnn train``) against the SecantusDB server of the session.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pymongo
import pytest
from conftest import (
    ROOT,
    checkpoint_epochs,
    metric_series,
    tiny_params,
    train_command,
    train_env,
    wait_for,
    write_config,
)

from tf_crnn import interrupts
from tf_crnn.config import ConfigError
from tf_crnn.experiment.experiments import METRIC_NAMES, ex
from tf_crnn.tracking import output_lock


def _user_env(**extra) -> dict:
    """A training's environment as a user has it: TensorFlow's start-up logs left to tf-crnn to hide."""
    env = train_env(**extra)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def _epochs_in_mongodb(db) -> list[int]:
    doc = db.metrics.find_one({"name": "eval.cer"})
    return doc["steps"] if doc else []


# ---- stop signals --------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("entry, stop, code", [("train.py", signal.SIGTERM, 143), ("tf-crnn", signal.SIGINT, 130)])
def test_a_stop_signal_ends_the_run_interrupted_with_its_finished_epochs(digits_data, mongo_url, tmp_path,
                                                                         entry, stop, code):
    out, db_name = tmp_path / "out", f"tf_crnn_stop_{stop.name.lower()}"
    config = write_config(tmp_path, digits_data, output_model_dir=str(out), n_epochs=500, mongo_url=mongo_url,
                          mongo_db_name=db_name)
    cmd = train_command(config) if entry == "train.py" else \
        [sys.executable, "-m", "tf_crnn.cli", "train", "with", str(config)]
    db = pymongo.MongoClient(mongo_url)[db_name]
    stderr = open(tmp_path / "stderr.log", "w+")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=train_env(), stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_for(lambda: _epochs_in_mongodb(db) or proc.poll() is not None, 240, "epoch 1's metrics in MongoDB",
                 poll_s=0.5)
        run_id = db.runs.find_one()["_id"]
        if stop == signal.SIGTERM:
            # Meanwhile a second training into the same folder is refused, naming the one that holds it.
            second = subprocess.run(train_command(config, "restore_model=True"), cwd=ROOT, env=train_env(),
                                    capture_output=True, text=True, timeout=180)
            assert second.returncode == 2, second.stderr[-2000:]
            assert f"is in use by run {run_id}, pid {proc.pid} on host" in second.stderr
            assert "Traceback" not in second.stderr and db.runs.count_documents({}) == 1
        proc.send_signal(stop)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr.seek(0)
        err = stderr.read()
        stderr.close()
    assert proc.returncode == code, err[-3000:]
    assert "Traceback" not in err, err[-3000:]

    doc = db.runs.find_one({"_id": run_id})
    assert doc["status"] == "INTERRUPTED" and doc["info"]["interrupted_by"] == stop.name
    # Every finished epoch is checkpointed and has its metrics in MongoDB; nothing after it.
    last = max(checkpoint_epochs(out))
    for name in METRIC_NAMES:
        assert metric_series(db, run_id)[name]["steps"] == list(range(1, last + 1)), name
    assert (f"tf-crnn train: interrupted by {stop.name}: run {run_id} is INTERRUPTED in MongoDB after epoch {last}, "
            f"whose checkpoint is in {out / 'checkpoints'}: continue with restore_model=True") in err
    assert (out / output_lock.LOCK_FILE).read_text() == ""  # released


def test_a_signal_during_a_deferred_block_waits_for_its_end():
    done = []
    with interrupts.stop_on_signals():
        with pytest.raises(interrupts.Interrupted) as caught:
            with interrupts.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("checkpoint written")
        assert caught.value.exit_code == 143 and caught.value.signal_name == "SIGTERM"
        with pytest.raises(interrupts.Interrupted):  # outside a deferred block: at once
            os.kill(os.getpid(), signal.SIGINT)
            done.append("never")
    assert done == ["checkpoint written"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored


# ---- the output folder -----------------------------------------------------------------------------

def test_lock_is_exclusive_and_a_dead_holders_lock_is_taken_over(tmp_path, capsys):
    lock = output_lock.acquire(str(tmp_path))
    lock.set_run(7)
    with pytest.raises(output_lock.OutputInUseError, match=rf"is in use by run 7, pid {os.getpid()} on host"):
        output_lock.acquire(str(tmp_path))
    lock.release()
    output_lock.acquire(str(tmp_path)).release()
    assert "taking over" not in capsys.readouterr().err  # released properly: nothing to take over

    # A holder killed with -9 keeps nothing locked: its record is taken over, with a warning.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from tf_crnn.tracking import output_lock; "
                               "output_lock.acquire(sys.argv[1]).set_run(5); print('locked', flush=True); "
                               "time.sleep(600)", str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(output_lock.OutputInUseError, match=rf"run 5, pid {holder.pid}"):
            output_lock.acquire(str(tmp_path))
    finally:
        holder.kill()
        holder.wait()
    output_lock.acquire(str(tmp_path)).release()
    assert f"taking over the lock of {tmp_path} from run 5, pid {holder.pid}" in capsys.readouterr().err


@pytest.mark.slow
def test_a_used_output_folder_needs_restore_model_or_overwrite_output(digits_data, mongo_url, tmp_path):
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "ckpt-4.index").write_bytes(b"an earlier training")
    (out / "export").mkdir()
    (out / "run.json").write_text(json.dumps({"run_id": 41}))
    db_name = "tf_crnn_used"
    config = write_config(tmp_path, digits_data, output_model_dir=str(out), n_epochs=1, mongo_url=mongo_url,
                          mongo_db_name=db_name)

    refused = subprocess.run(train_command(config), cwd=ROOT, env=train_env(), capture_output=True, text=True,
                             timeout=180)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == (
        f"tf-crnn train: error: output_model_dir {out} holds the checkpoints of run 41. Continue that training "
        f"with restore_model=True, replace it with overwrite_output=True, or choose another output_model_dir")
    db = pymongo.MongoClient(mongo_url)[db_name]
    assert db.runs.count_documents({}) == 0  # refused before any run was recorded

    with pytest.raises(ConfigError, match="set only one of them"):
        ex.run(config_updates={**tiny_params(digits_data, output_model_dir=str(out)).to_dict(),
                               "restore_model": True, "overwrite_output": True}, options={"--capture": "sys"})

    params = tiny_params(digits_data, output_model_dir=str(out), n_epochs=1, overwrite_output=True,
                         mongo_url=mongo_url, mongo_db_name=db_name)
    run = ex.run(config_updates=params.to_dict(), options={"--capture": "sys"})
    assert run.status == "COMPLETED"
    assert checkpoint_epochs(out) == {1}  # the earlier training's checkpoint is gone, not mixed in
    assert json.loads((out / "run.json").read_text())["run_id"] == run._id


# ---- the user's mistakes -------------------------------------------------------------------------

def test_a_config_error_is_one_line_with_exit_code_2(digits_data, mongo_url, tmp_path):
    config = write_config(tmp_path, digits_data, output_model_dir=str(tmp_path / "out"), mongo_url=mongo_url,
                          mongo_db_name="tf_crnn_config_error")
    result = subprocess.run(train_command(config, "n_epochs=0"), cwd=ROOT, env=_user_env(), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "tf-crnn train: error: n_epochs and batch sizes must be >= 1"
    debug = subprocess.run(train_command(config, "n_epochs=0"), cwd=ROOT, env=_user_env(TF_CRNN_DEBUG="1"),
                           capture_output=True, text=True, timeout=120)
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert debug.stderr.strip().endswith("tf-crnn train: error: n_epochs and batch sizes must be >= 1")


@pytest.mark.slow
def test_missing_data_fails_the_run_with_its_trace_and_prints_one_line(digits_data, mongo_url, tmp_path):
    db_name = "tf_crnn_data_error"
    missing = tmp_path / "nowhere" / "labels.csv"
    config = write_config(tmp_path, digits_data, output_model_dir=str(tmp_path / "out"), mongo_url=mongo_url,
                          mongo_db_name=db_name, csv_files_train=[str(missing)])
    result = subprocess.run([sys.executable, "-m", "tf_crnn.cli", "train", "with", str(config)], cwd=ROOT,
                            env=train_env(), capture_output=True, text=True, timeout=180)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"tf-crnn train: error: annotation CSV not found: {missing}"
    run = pymongo.MongoClient(mongo_url)[db_name].runs.find_one()
    assert run["status"] == "FAILED" and "annotation CSV not found" in run["fail_trace"][-1]
    # Sacred's -d shows the traceback.
    debug = subprocess.run(train_command(config, "-d"), cwd=ROOT, env=train_env(), capture_output=True, text=True,
                           timeout=180)
    assert debug.returncode == 2 and "Traceback" in debug.stderr


# ---- a run's local record into MongoDB ---------------------------------------------------------------

def test_import_run_creates_a_run_from_a_file_storage_record_once(mongo_url, tmp_path):
    from sacred import Experiment
    from sacred.observers import FileStorageObserver

    from tf_crnn.tracking.run_import import RunImportError, import_run, read_local_run, target_database

    experiment = Experiment("crnn", save_git_info=False)
    experiment.observers.append(FileStorageObserver(str(tmp_path / "runs"), copy_sources=False))
    experiment.add_config({"mongo_url": mongo_url, "mongo_db_name": "tf_crnn_import"})
    artifact = tmp_path / "alphabet.json"
    artifact.write_text('{"0": 1}')

    @experiment.main
    def main(_run):
        for epoch in (1, 2):
            _run.log_scalar("eval.cer", 1.0 / epoch, epoch)
        _run.add_artifact(str(artifact), "alphabet.json")
        return {"cer": 0.5}

    run = experiment.run(options={"--capture": "sys"})
    folder = tmp_path / "runs" / str(run._id)
    db = pymongo.MongoClient(mongo_url)["tf_crnn_import"]
    db.runs.insert_one({"_id": int(run._id), "experiment": {"name": "another"}, "status": "COMPLETED"})

    local = read_local_run(str(folder))
    url, db_name = target_database(local)  # the run's own mongo_url and mongo_db_name
    assert (url, db_name) == (mongo_url, "tf_crnn_import")
    result = import_run(local, url, db_name)
    # Its id belongs to another run there: created under the next free one.
    assert result.created and result.run_id == int(run._id) + 1
    assert (result.metric_values, result.artifacts, result.status) == (2, ["alphabet.json"], "COMPLETED")
    doc = db.runs.find_one({"_id": result.run_id})
    assert doc["experiment"]["name"] == "crnn" and doc["result"] == {"cer": 0.5} and doc["config"]["mongo_url"]
    assert [m["name"] for m in doc["info"]["metrics"]] == ["eval.cer"]
    assert metric_series(db, result.run_id)["eval.cer"]["values"] == [1.0, 0.5]
    with pytest.raises(RunImportError, match=rf"run {result.run_id} is complete in .* already"):
        import_run(read_local_run(str(folder)), url, db_name)
    assert db.runs.count_documents({}) == 2
