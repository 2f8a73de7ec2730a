"""tf-crnn sweep: Optuna trials as runs of crnn, pruning by eval CER, refusal of a bad space, ranking."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import optuna
import pymongo
import pytest
from conftest import ROOT, metric_series, tiny_params, train_env, wait_for

from tf_crnn.cli import main
from tf_crnn.experiment import experiments, sweep
from tf_crnn.tracking.runs import Database

DB_NAME = "tf_crnn_sweep"
# lr 3e-3 and 1e-9 are enqueued; dropout is sampled for the third trial.
SPACE = {"learning_rate": {"type": "float", "low": 1e-9, "high": 1e-2, "log": True},
         "dropout": {"type": "float", "low": 0.0, "high": 0.2}}


def write_base(tmp_path, digits_data, mongo_url, **overrides):
    path = tmp_path / "base.json"
    values = {**tiny_params(digits_data, output_model_dir=str(tmp_path / "out"), **overrides).to_dict(),
              "mongo_url": mongo_url, "mongo_db_name": DB_NAME}
    path.write_text(json.dumps(values))
    return path


def write_space(tmp_path, space, name="space.json"):
    path = tmp_path / name
    path.write_text(json.dumps(space))
    return path


@pytest.mark.parametrize("space, expected", [
    ({"lerning_rate": {"type": "float", "low": 1e-4, "high": 1e-2}}, "'lerning_rate' (did you mean 'learning_rate'?)"),
    ({"dropout": {"type": "float", "low": 0.0, "high": 1.5}}, "key 'dropout': the value 1.5 is not a valid setting"),
    ({"learning_rate": {"type": "float", "low": 1e-2, "high": 1e-4}}, "key 'learning_rate': `low <= high` must hold"),
    ({"rnn_units": {"type": "categorical", "choices": []}}, "key 'rnn_units': choices must be a non-empty list"),
    ({"output_model_dir": {"type": "categorical", "choices": ["a"]}}, "output_model_dir cannot be searched"),
])
def test_bad_space_is_refused_before_any_training(tmp_path, digits_data, mongo_url, capsys, space, expected):
    space_file = write_space(tmp_path, space)
    code = main(["sweep", str(space_file), "--trials", "1", "--config",
                 str(write_base(tmp_path, digits_data, mongo_url))])
    err = capsys.readouterr().err
    assert code == 2
    assert f"search space {space_file}" in err and expected in err, err
    assert not (tmp_path / "out").exists()  # no study, no trial folder


def test_yaml_space_and_list_choices(tmp_path):
    space_file = tmp_path / "space.yaml"
    space_file.write_text("rnn_units: {type: categorical, choices: [[16], [8, 8]]}\n"
                          "learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n")
    space = sweep.load_space(space_file, {})
    study = optuna.create_study()
    study.enqueue_trial({"rnn_units": space["rnn_units"].encode([8, 8])})
    trial = study.ask()
    assert space["rnn_units"].suggest(trial) == [8, 8]  # Optuna stores the list choice as JSON text
    assert 1e-4 <= space["learning_rate"].suggest(trial) <= 1e-2
    space_file.write_text("learning_rate: {type: float, low: 1e-4, high: 1.0e-2}\n")
    with pytest.raises(sweep.SweepError, match="write 1.0e-4"):
        sweep.load_space(space_file, {})


def test_trials_table_ranks_completed_trials_by_best_cer_then_pruned_ones():
    study = optuna.create_study(direction="minimize")
    distributions = {"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2)}
    for state, cers in ((optuna.trial.TrialState.COMPLETE, {1: 0.7, 2: 0.5}),
                        (optuna.trial.TrialState.PRUNED, {1: 0.4}),
                        (optuna.trial.TrialState.FAIL, {}),
                        (optuna.trial.TrialState.COMPLETE, {1: 0.3, 2: 0.2, 3: 0.25})):
        value = min(cers.values()) if state == optuna.trial.TrialState.COMPLETE else None
        study.add_trial(optuna.trial.create_trial(state=state, value=value, params={"learning_rate": 1e-3},
                                                  distributions=distributions, intermediate_values=cers))
    table = sweep.trials_table(study)
    assert table["trial"].tolist() == [3, 0, 1, 2]
    assert table["best_cer"].tolist()[:3] == [0.2, 0.5, 0.4]
    assert sweep.best_trial(study)["trial"] == 3


@pytest.mark.slow
def test_sweep_records_trials_as_runs_and_prunes_a_trial_behind_the_median(tmp_path, digits_data, mongo_url,
                                                                           capsys):
    base = write_base(tmp_path, digits_data, mongo_url, n_epochs=3)
    space_file = write_space(tmp_path, SPACE)
    # The first two trials are fixed (Optuna's enqueue_trial, on the study the command then resumes). With seed 1,
    # lr 3e-3 collapses to the all-blank prediction within the first epoch (eval CER 1.0 at every epoch), while
    # lr 1e-9 keeps the untrained network's noise (CER 1.08 at epoch 1, above 1: insertions). With one completed
    # trial the MedianPruner judges the second one, which is worse than the median at epoch 1: pruned there.
    study = sweep.open_study("lr", str(tmp_path / "out"))
    study.enqueue_trial({"learning_rate": 3e-3, "dropout": 0.0})
    study.enqueue_trial({"learning_rate": 1e-9, "dropout": 0.0})
    code = main(["sweep", str(space_file), "--name", "lr", "--trials", "3", "--startup-trials", "1",
                 "--sampler-seed", "0", "--json", "--config", str(base), "--set", "seed=1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)  # stdout holds the JSON alone; trainings and progress went to stderr
    trials = {t["trial"]: t for t in summary["trials"]}
    assert sorted(trials) == [0, 1, 2]
    assert trials[0]["state"] == "COMPLETE" and trials[0]["epochs"] == 3
    assert trials[1]["best_cer"] > trials[0]["best_cer"], "precondition: the lr 1e-9 trial is behind at epoch 1"
    assert trials[1]["state"] == "PRUNED" and trials[1]["epochs"] == 1
    assert "trial 1: PRUNED after epoch 1" in err
    assert [line.split(":")[0] for line in err.splitlines() if line.startswith("trial ")] == \
        ["trial 0", "trial 1", "trial 2"]  # one progress line per finished trial
    assert summary["best"]["state"] == "COMPLETE"
    assert experiments.ex.state is None  # the last trial's run state (its callbacks, lock, observer) ended with it

    db = pymongo.MongoClient(mongo_url)[DB_NAME]
    runs = {r["info"]["sweep"]["trial"]: r for r in db.runs.find({"info.sweep.name": "lr"})}
    assert sorted(runs) == [0, 1, 2]
    for number, run in runs.items():
        assert run["experiment"]["name"] == "crnn" and run["status"] == "COMPLETED"
        assert run["_id"] == trials[number]["run"]
        assert run["info"]["sweep"]["params"] == trials[number]["params"]
        assert run["config"]["output_model_dir"] == str(tmp_path / "out" / "sweep_lr" / f"trial_{number}")
        assert (tmp_path / "out" / "sweep_lr" / f"trial_{number}" / "export").is_dir()
    assert runs[1]["info"]["sweep_pruned_at_epoch"] == 1 and "sweep_pruned_at_epoch" not in runs[0]["info"]
    assert metric_series(db, runs[1]["_id"])["eval.cer"]["steps"] == [1]  # the training stopped there
    assert metric_series(db, runs[0]["_id"])["eval.cer"]["steps"] == [1, 2, 3]

    database = Database.connect(mongo_url, DB_NAME)
    try:
        ranked = sweep.sweep_runs(database, "lr")
    finally:
        database.close()
    assert sorted(ranked["trial"]) == [0, 1, 2]
    assert ranked["best_cer"].is_monotonic_increasing
    assert ranked.set_index("trial").loc[1, "pruned_at_epoch"] == 1

    # The same name resumes the study; --trials 0 only prints it, ranked, as a table.
    code = main(["sweep", str(space_file), "--name", "lr", "--trials", "0", "--config", str(base)])
    out = capsys.readouterr().out
    assert code == 0 and "(3 earlier trials)" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    states = [row[2] for row in rows]
    assert states.index("PRUNED") > states.index("COMPLETE")
    completed = [float(row[3]) for row in rows if row[2] == "COMPLETE"]
    assert completed == sorted(completed)
    assert f"best: trial {summary['best']['trial']}: COMPLETE" in out


def test_keep_going_goes_past_failing_trials_and_exits_1_naming_them(tmp_path, digits_data, mongo_url, capsys):
    # A corrupt image with on_bad_sample=error: every trial's training stops while loading its data.
    train = tmp_path / "train.csv"
    folder = digits_data / "data" / "train"
    rows = "".join(f"{folder / line}\n" for line in (folder / "labels.csv").read_text(encoding="utf-8").splitlines())
    (tmp_path / "broken.png").write_bytes(b"not a PNG")
    train.write_text(rows + f"{tmp_path / 'broken.png'};1|2\n", encoding="utf-8")
    base = write_base(tmp_path, digits_data, mongo_url, csv_files_train=[str(train)], on_bad_sample="error")
    space_file = write_space(tmp_path, {"dropout": {"type": "float", "low": 0.0, "high": 0.2}})
    code = main(["sweep", str(space_file), "--name", "broken", "--trials", "2", "--keep-going",
                 "--sampler-seed", "0", "--config", str(base)])
    out, err = capsys.readouterr()
    assert code == 1, err[-2000:]
    assert out.count(": FAIL (") == 2  # both trials ran: the first failure did not stop the sweep
    assert "tf-crnn sweep: 2 of 2 trials of this call failed: trial 0 (run " in err
    assert "broken.png" in err and "Traceback" not in err
    study = sweep.open_study("broken", str(tmp_path / "out"))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2


def test_a_trial_whose_sweep_was_killed_is_marked_fail_when_the_study_is_opened(tmp_path, digits_data, mongo_url):
    base = write_base(tmp_path, digits_data, mongo_url, n_epochs=200)  # runs until killed
    space_file = write_space(tmp_path, {"dropout": {"type": "float", "low": 0.0, "high": 0.2}})
    storage = sweep.default_storage(str(tmp_path / "out"), "killed")
    command = [sys.executable, "-m", "tf_crnn.cli", "sweep", str(space_file), "--name", "killed", "--trials", "1",
               "--config", str(base)]
    process = subprocess.Popen(command, cwd=ROOT, env=train_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def running() -> bool:
            try:
                trials = optuna.load_study(study_name="killed", storage=storage).trials
            except KeyError:  # the study does not exist yet
                return False
            if [t.state for t in trials] != [optuna.trial.TrialState.RUNNING]:
                return False
            # Optuna skips a RUNNING trial that has no heartbeat yet (its thread writes the first one just after
            # the trial starts): killed before that, the trial could not be told stale and the test would race.
            with sqlite3.connect(storage.removeprefix("sqlite:///")) as connection:
                return connection.execute("SELECT COUNT(*) FROM trial_heartbeats").fetchone()[0] == 1

        wait_for(running, 120, "the trial to run and record its first heartbeat")
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
    assert process.returncode == -signal.SIGKILL
    # Resumed (or listed) within the grace period, it may still be running elsewhere: left as it is.
    assert [t.state for t in sweep.open_study("killed", str(tmp_path / "out")).trials] == \
        [optuna.trial.TrialState.RUNNING]
    time.sleep(4)  # > grace period + 1 s: SQLite's now() has whole seconds
    study = sweep.open_study("killed", str(tmp_path / "out"), grace_period=2)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL]
