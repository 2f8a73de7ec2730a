"""tf-crnn sweep: Optuna trials as runs of crnn, pruning by eval CER, refusal of a bad space, ranking; workers
sharing a study in a real PostgreSQL server (its own cluster, started by initdb and pg_ctl)."""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

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
    # Failed, and queued again with its params for the next trial to run (--retries, default 2).
    killed, retry = study.trials
    assert (killed.state, retry.state) == (optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING)
    assert sweep.retry_of(retry) == 0 and retry.params == killed.params


# ---- workers sharing a study in PostgreSQL ---------------------------------------------------------------------

PG_USER, PG_PASSWORD = "sweeper", "pg-s3cret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """A PostgreSQL cluster of its own in a temporary folder, listening on 127.0.0.1:``port`` only."""

    def __init__(self, bindir: Path, root: Path, as_user: list[str]):
        self.bindir, self.root, self.as_user, self.port = bindir, root, as_user, free_port()

    def run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self.as_user, str(self.bindir / tool), *args], capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"{tool} failed: {done.stdout}{done.stderr}"

    def start(self) -> None:
        (self.root / "pw").write_text(PG_PASSWORD)
        self.run("initdb", "-D", str(self.root / "data"), "-U", PG_USER, "--pwfile", str(self.root / "pw"),
                 "-A", "scram-sha-256", "-E", "UTF8", "--no-sync")
        self.run("pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "log"), "-w", "-t", "60", "-o",
                 f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off", "start")

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")

    def url(self, database: str, password: str = PG_PASSWORD, port: int | None = None) -> str:
        return f"postgresql://{PG_USER}:{password}@127.0.0.1:{port or self.port}/{database}"

    def execute(self, sql: str):
        """Run ``sql`` in database ``postgres`` as the cluster's superuser; the first row of its result, if any."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=PG_USER, password=PG_PASSWORD,
                             dbname="postgres", autocommit=True) as connection:
            cursor = connection.execute(sql)
            return cursor.fetchone() if cursor.description else None

    @property
    def version(self) -> int:
        """The server's major version."""
        return int(self.execute("SHOW server_version_num")[0]) // 10000

    def create_database(self, name: str) -> str:
        """A new database ``name`` owned by the test user (``createdb``): its URL, with the password."""
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def postgres_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/VERSION/bin`` with initdb (Debian's postgresql package), None without."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb") if p.parent.parent.name.isdigit()]
    return max(found, key=lambda bindir: int(bindir.parent.name), default=None)


@pytest.fixture(scope="module")
def postgres():
    """A real PostgreSQL server of its own (skipped, saying why, without Debian's postgresql package or psycopg)."""
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is not installed: pip install 'tf-crnn[postgres]'")
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): apt-get install postgresql")
    as_user, owner = [], None
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser to start PostgreSQL as the postgres user")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to start PostgreSQL as")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="tf_crnn_pg_"))  # not under pytest's tmp_path: its parents are root's only
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    server = Postgres(bindir, root, as_user)
    try:
        server.start()
        yield server
    finally:
        if (root / "data" / "postmaster.pid").exists():
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_storage_errors_name_the_url_without_its_password(postgres, tmp_path, digits_data, mongo_url, capsys):
    cases = [(postgres.url("postgres", password="wrong-pw"), "rejected the credentials"),
             (postgres.url("no_such_db"), 'database "no_such_db" does not exist'),
             (postgres.url("postgres", port=free_port()), "cannot reach the sweep storage"),
             (postgres.url("postgres").replace("postgresql://", "postgresql+pg8000://"),
              "needs the Python module pg8000, which is not installed: pip install"),
             (postgres.url("postgres").replace("postgresql://", "postgres://"), "is not a URL SQLAlchemy can open")]
    # A user who is not the database's owner may not create tables in its public schema (PostgreSQL 15 on).
    postgres.create_database("owned_by_sweeper")
    postgres.execute("CREATE ROLE guest LOGIN PASSWORD 'guest-pw'")
    if postgres.version >= 15:
        cases.append((postgres.url("owned_by_sweeper").replace(f"{PG_USER}:{PG_PASSWORD}", "guest:guest-pw"),
                      "may not create Optuna's tables there"))
    for url, expected in cases:
        with pytest.raises(sweep.SweepError) as caught:
            sweep.open_storage(url)
        message = str(caught.value)
        assert expected in message, message
        assert ":***@127.0.0.1" in message, message
        assert all(secret not in message for secret in (PG_PASSWORD, "wrong-pw", "guest-pw")), message
    # The command says the same in one line, exit 2, and the password appears nowhere.
    space_file = write_space(tmp_path, {"dropout": {"type": "float", "low": 0.0, "high": 0.2}})
    code = main(["sweep", str(space_file), "--trials", "1", "--storage", postgres.url("postgres", password="wrong-pw"),
                 "--config", str(write_base(tmp_path, digits_data, mongo_url))])
    out, err = capsys.readouterr()
    assert code == 2 and "rejected the credentials" in err and "Traceback" not in err, err
    assert "wrong-pw" not in out + err


def sweep_worker(name: str, space_file: Path, base: Path, url: str, log: Path, *args: str) -> subprocess.Popen:
    """One ``tf-crnn sweep`` worker process on study ``name`` in ``url``, its output in ``log``."""
    command = [sys.executable, "-m", "tf_crnn.cli", "sweep", str(space_file), "--name", name, "--storage", url,
               "--no-pruning", "--config", str(base), *args]
    with open(log, "wb") as out:
        return subprocess.Popen(command, cwd=ROOT, env=train_env(), stdout=out, stderr=subprocess.STDOUT)


def finished_trials(log: Path) -> list[int]:
    """The trial numbers of a worker's progress lines (``trial 3: COMPLETE, ...``)."""
    return [int(line.split(":")[0].split()[1]) for line in log.read_text().splitlines()
            if line.startswith("trial ") and ": " in line]


@pytest.mark.slow
def test_two_workers_share_one_study_in_postgresql_and_run_the_total_once(postgres, tmp_path, digits_data,
                                                                          mongo_url):
    url = postgres.create_database("two_workers")
    base = write_base(tmp_path, digits_data, mongo_url, n_epochs=1)
    space_file = write_space(tmp_path, SPACE)
    # Each worker may run 3 trials, the study 4 in all: without the shared budget they would run 6, and neither
    # can run all 4 alone, so both take part.
    logs = [tmp_path / "worker_a.log", tmp_path / "worker_b.log"]
    workers = [sweep_worker("shared", space_file, base, url, log, "--trials", "3", "--total-trials", "4")
               for log in logs]
    try:
        codes = [worker.wait(600) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert codes == [0, 0], "\n".join(log.read_text()[-3000:] for log in logs)
    assert "pg-s3cret" not in "".join(log.read_text() for log in logs)  # "study in postgresql://sweeper:***@..."

    study = optuna.load_study(study_name="shared", storage=url)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert len({json.dumps(t.params, sort_keys=True) for t in study.trials}) == 4  # no params set twice
    ran = [finished_trials(log) for log in logs]
    assert all(ran) and not set(ran[0]) & set(ran[1]) and sorted(ran[0] + ran[1]) == [0, 1, 2, 3], ran

    runs = list(pymongo.MongoClient(mongo_url)[DB_NAME].runs.find({"info.sweep.name": "shared"}))
    assert sorted(run["info"]["sweep"]["trial"] for run in runs) == [0, 1, 2, 3]  # one run per trial
    assert {run["status"] for run in runs} == {"COMPLETED"}
    assert {run["_id"] for run in runs} == {t.user_attrs["run_id"] for t in study.trials}


@pytest.mark.slow
def test_a_killed_workers_trial_is_failed_by_the_heartbeat_and_retried_by_another(postgres, tmp_path, digits_data,
                                                                                  mongo_url):
    import psycopg

    url = postgres.create_database("killed_worker")
    space_file = write_space(tmp_path, SPACE)
    long_base = write_base(tmp_path, digits_data, mongo_url, n_epochs=200)  # runs until killed
    killed = sweep_worker("retried", space_file, long_base, url, tmp_path / "killed.log", "--trials", "1",
                          "--heartbeat", "1")
    try:
        def training() -> bool:  # the trial runs, has beaten once and its training has a run
            with psycopg.connect(url) as connection:
                beats = connection.execute("SELECT COUNT(*) FROM trial_heartbeats").fetchone()[0] \
                    if connection.execute("SELECT to_regclass('trial_heartbeats')").fetchone()[0] else 0
            if not beats:
                return False
            trials = optuna.load_study(study_name="retried", storage=url).trials
            return [t.state for t in trials] == [optuna.trial.TrialState.RUNNING] and "run_id" in trials[0].user_attrs

        wait_for(training, 180, "the first worker's trial to start training", poll_s=0.5)
    finally:
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(30)
    assert killed.returncode == -signal.SIGKILL
    time.sleep(3)  # > the grace period (twice the 1 s heartbeat): the trial is stale now

    # A later worker (1 epoch per trial) fails the stale trial, queues it again and runs it.
    short_base = tmp_path / "short.json"
    short_base.write_text(json.dumps({**json.loads(long_base.read_text()), "n_epochs": 1}))
    log = tmp_path / "later.log"
    later = sweep_worker("retried", space_file, short_base, url, log, "--trials", "1", "--heartbeat", "1")
    assert later.wait(600) == 0, log.read_text()[-3000:]

    first, retry = optuna.load_study(study_name="retried", storage=url).trials  # one retry, not two
    assert first.state == optuna.trial.TrialState.FAIL and retry.state == optuna.trial.TrialState.COMPLETE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == 0
    assert retry.params == first.params
    assert "trial 1: COMPLETE (retry of trial 0)" in log.read_text()

    # Two runs: the killed one (killed before its first Sacred heartbeat, which would have written its info) and
    # the retry's, which trained from scratch in its own folder; the killed trial's folder is left as it was.
    db = pymongo.MongoClient(mongo_url)[DB_NAME]
    killed_run, retry_run = (db.runs.find_one({"_id": t.user_attrs["run_id"]}) for t in (first, retry))
    assert killed_run["_id"] != retry_run["_id"] and retry_run["status"] == "COMPLETED"
    assert retry_run["info"]["sweep"] == {"name": "retried", "trial": 1, "params": first.user_attrs["params"],
                                          "retry_of": 0}
    trials = tmp_path / "out" / "sweep_retried"
    assert killed_run["config"]["output_model_dir"] == str(trials / "trial_0")
    assert retry_run["config"]["output_model_dir"] == str(trials / "trial_1")
    assert (trials / "trial_1" / "export").is_dir()
    assert (trials / "trial_0").is_dir() and not (trials / "trial_0" / "export").exists()


def test_help_states_the_library_defaults_and_bad_heartbeats_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # the CLI repeats them in words: it does not load Optuna
    assert f"(default {sweep.HEARTBEAT_S};" in text and f"(default {sweep.RETRIES})" in text
    with pytest.raises(sweep.SweepError, match="the heartbeat must be > 0 s and the retries >= 0, got 0 s, 2"):
        sweep.open_storage("sqlite://", heartbeat=0)
    with pytest.raises(sweep.SweepError, match="--total-trials N"):
        sweep.check_budget(None, None, None)
    with pytest.raises(sweep.SweepError, match="-1 in total"):
        sweep.check_budget(None, None, -1)
