"""Hyperparameter sweeps: an Optuna study whose trials are trainings, each a run of ``crnn`` (``tf-crnn sweep``).

A search space maps config keys (:class:`tf_crnn.config.Params`) to Optuna
distributions, read from a JSON or YAML file::

    {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": true},
     "rnn_units": {"type": "categorical", "choices": [[64], [128, 128]]},
     "dropout": {"type": "float", "low": 0, "high": 0.3},
     "n_epochs": {"type": "int", "low": 2, "high": 6}}

``float`` and ``int`` take ``low``, ``high`` and optionally ``log`` / ``step``
(Optuna's ``FloatDistribution`` / ``IntDistribution``), ``categorical`` takes
``choices`` (any JSON values: lists travel through Optuna as JSON text, since
its storages hold scalar choices only).

Each trial is a normal training (:data:`tf_crnn.experiment.experiments.ex`, run
in this process) of the base config plus the trial's values, writing
``<output_model_dir>/sweep_<name>/trial_<k>``, with ``info.sweep = {"name",
"trial", "params"}``. The objective is the trial's best eval CER (minimized).
After each epoch the trial reports its eval CER to Optuna (its training runs
:class:`tf_crnn.experiment.epoch_callbacks.TrialPruning`, passed to that run
only); when the study's pruner (by default Optuna's ``MedianPruner``: stop a trial whose best CER so far
is worse than the median of the completed trials at the same epoch; Akiba et
al. 2019, "Optuna: A Next-generation Hyperparameter Optimization Framework",
KDD, arXiv 1907.10902) says so, the training stops after that epoch and its run
ends COMPLETED with ``info.sweep_pruned_at_epoch``; the trial is PRUNED.

The study lives in an Optuna storage, by default the SQLite file
``<output_model_dir>/sweep_<name>/optuna.sqlite3``, so running the same sweep
name again resumes it (Optuna numbers the new trials after the old ones).
Workers on many machines share a study through a PostgreSQL storage
(:func:`open_storage`): a trial whose worker stops beating is failed and run
again with its params by another worker (:func:`retry_of`), in a folder of its
own, and :class:`StudyBudget` caps the trials of the whole study.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd
import sqlalchemy
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from ..config import ConfigError, Params, type_problem
from ..tracking.runs import Database, shown_status
from ..tracking.urls import redact_url, scrub, url_secrets
from . import experiments
from .experiments import base_params

#: Config keys a search space may not vary, and why.
FIXED_KEYS = {
    "output_model_dir": "the sweep gives each trial <output_model_dir>/sweep_<name>/trial_<k>",
    "restore_model": "every trial is a new training",
    "overwrite_output": "it is not a hyperparameter (set it in the base config)",
    "mongo_url": "all trials of a sweep are recorded in one database",
    "mongo_db_name": "all trials of a sweep are recorded in one database",
}
#: Fields of a dimension by type, and those it must have.
SPEC_FIELDS = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"},
               "categorical": {"choices"}}
REQUIRED_FIELDS = {"float": {"low", "high"}, "int": {"low", "high"}, "categorical": {"choices"}}
#: The order of trial states in :func:`trials_table`: finished trials first.
STATE_ORDER = ("COMPLETE", "PRUNED", "RUNNING", "WAITING", "FAIL")
STORAGE_FILE = "optuna.sqlite3"  # inside the sweep's folder
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class SweepError(ConfigError):
    """A search space, sweep name or budget that cannot be used; the message names the file and key."""


# ---- search space -------------------------------------------------------------------

@dataclass(frozen=True)
class Dimension:
    """One searched config key and its Optuna distribution.

    ``json_choices``: the categorical choices are JSON text standing for lists or
    objects (Optuna's storages keep scalar choices only); :meth:`suggest` decodes them.
    """

    key: str
    distribution: BaseDistribution
    json_choices: bool = False

    def suggest(self, trial: optuna.Trial) -> Any:
        """The trial's value of this key (Optuna's ``suggest_*``), as the config takes it."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return self.decode(trial.suggest_categorical(self.key, d.choices))
        if isinstance(d, IntDistribution):
            return trial.suggest_int(self.key, d.low, d.high, step=d.step, log=d.log)
        return trial.suggest_float(self.key, d.low, d.high, step=d.step, log=d.log)

    def decode(self, choice: Any) -> Any:
        """A value in Optuna's representation as the config takes it (JSON text back to a list or object)."""
        return json.loads(choice) if self.json_choices else choice

    def encode(self, value: Any) -> Any:
        """A config value in Optuna's representation (``study.enqueue_trial({key: dim.encode(value)})``)."""
        return json.dumps(value) if self.json_choices else value

    def extremes(self) -> list:
        """The values a valid space must allow: every choice, or both ends of the range."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return [self.decode(c) for c in d.choices]
        return [d.low, d.high]


def read_space(path: str | os.PathLike) -> dict:
    """The raw search space of a ``.json``, ``.yaml`` or ``.yml`` file (a mapping of config key -> spec).

    Raises:
        SweepError: no such file, a syntax error (with line and column), or not a non-empty mapping.
    """
    try:
        with open(path, encoding="utf-8") as f:
            if str(path).lower().endswith((".yaml", ".yml")):
                raw = yaml.safe_load(f)
            else:
                raw = json.load(f)
    except FileNotFoundError:
        raise SweepError(f"search space file {path} not found") from None
    except json.JSONDecodeError as e:
        raise SweepError(f"search space {path} is not valid JSON: line {e.lineno}, column {e.colno}: {e.msg}") from None
    except yaml.YAMLError as e:
        raise SweepError(f"search space {path} is not valid YAML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SweepError(f"cannot read search space {path}: {e}") from None
    if not isinstance(raw, dict) or not raw:
        raise SweepError(f"search space {path} must be a non-empty mapping {{\"config_key\": {{\"type\": ...}}}}")
    return raw


def dimension(key: str, spec: Any) -> Dimension:
    """A :class:`Dimension` from its spec, with Optuna's own range checks.

    Raises:
        ValueError: not a spec of a known type, unknown or missing fields, a non-number bound,
            or a range Optuna refuses (low > high, log with low <= 0, log with step).
    """
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind not in SPEC_FIELDS:
        raise ValueError('must be an object with "type": "float", "int" or "categorical"')
    fields = {k: v for k, v in spec.items() if k != "type"}
    unknown, missing = set(fields) - SPEC_FIELDS[kind], REQUIRED_FIELDS[kind] - set(fields)
    if unknown or missing:
        raise ValueError(f'a "{kind}" dimension takes {", ".join(sorted(SPEC_FIELDS[kind]))}'
                         + (f"; unknown: {', '.join(sorted(unknown))}" if unknown else "")
                         + (f"; missing: {', '.join(sorted(missing))}" if missing else ""))
    if kind == "categorical":
        return categorical_dimension(key, fields["choices"])
    for end in ("low", "high"):
        problem = type_problem(fields[end], int if kind == "int" else float)
        if problem is not None:
            hint = " (YAML reads 1e-4 as text: write 1.0e-4)" if isinstance(fields[end], str) else ""
            raise ValueError(f"{end} must be {problem}, got {fields[end]!r}{hint}")
    distribution = IntDistribution if kind == "int" else FloatDistribution
    return Dimension(key, distribution(**fields))


def categorical_dimension(key: str, choices: Any) -> Dimension:
    """A categorical :class:`Dimension`; lists and objects among ``choices`` travel as JSON text."""
    if not isinstance(choices, list) or not choices:
        raise ValueError("choices must be a non-empty list")
    structured = any(not isinstance(c, (type(None), bool, int, float, str)) for c in choices)
    if not structured:
        return Dimension(key, CategoricalDistribution(choices))
    return Dimension(key, CategoricalDistribution([json.dumps(c) for c in choices]), json_choices=True)


def parse_space(raw: dict, base: dict, source: str) -> dict[str, Dimension]:
    """The checked dimensions of a raw search space, before any training.

    Every key must be a config key (:class:`Params`; the message suggests the closest
    one) that a sweep may vary (:data:`FIXED_KEYS`), every spec valid (:func:`dimension`),
    and the base config with each key set to each of its extremes (both ends of a
    range, every choice) a valid config (``dropout`` up to 1.5 is refused here).

    Args:
        base: the base config (:func:`tf_crnn.experiment.experiments.base_config`).
        source: the file, for messages.

    Raises:
        SweepError: naming ``source``, the key and the problem.
    """
    config = base_params(base).to_dict()
    try:  # Params names unknown keys with the closest known one
        Params.from_dict({**config, **{key: None for key in raw if key not in config}})
    except ConfigError as e:
        raise SweepError(f"search space {source}: {e}") from None
    space = {}
    for key, spec in raw.items():
        if key in FIXED_KEYS:
            raise SweepError(f"search space {source}: {key} cannot be searched: {FIXED_KEYS[key]}")
        try:
            space[key] = dimension(key, spec)
        except ValueError as e:
            raise SweepError(f"search space {source}, key {key!r}: {e}") from None
        for value in space[key].extremes():
            try:
                Params.from_dict({**config, key: value})
            except ConfigError as e:
                raise SweepError(f"search space {source}, key {key!r}: the value {value!r} is not a valid "
                                 f"setting: {e}") from None
    return space


def load_space(path: str | os.PathLike, base: dict) -> dict[str, Dimension]:
    """:func:`read_space` then :func:`parse_space`. Raises: SweepError."""
    return parse_space(read_space(path), base, str(path))


# ---- study --------------------------------------------------------------------------

def sweep_dir(output_model_dir: str, name: str) -> str:
    """``<output_model_dir>/sweep_<name>``: the trials' folders and the default storage."""
    return os.path.join(output_model_dir, f"sweep_{name}")


def trial_dir(output_model_dir: str, name: str, number: int) -> str:
    """``<output_model_dir>/sweep_<name>/trial_<number>``: the ``output_model_dir`` of one trial."""
    return os.path.join(sweep_dir(output_model_dir, name), f"trial_{number}")


def default_storage(output_model_dir: str, name: str) -> str:
    """The SQLite URL of a sweep's study when no storage is given (the folder is created)."""
    folder = sweep_dir(output_model_dir, name)
    os.makedirs(folder, exist_ok=True)
    return f"sqlite:///{os.path.abspath(os.path.join(folder, STORAGE_FILE))}"


def check_name(name: str) -> str:
    """``name`` if it can name a study and a folder: letters, digits, ``.``, ``_``, ``-``. Raises: SweepError."""
    if not NAME_PATTERN.fullmatch(name or ""):
        raise SweepError(f"sweep name {name!r}: use letters, digits, '.', '_' and '-' (it names a folder)")
    return name


def median_pruner(startup_trials: int = 5, from_epoch: int = 1) -> optuna.pruners.MedianPruner:
    """Optuna's ``MedianPruner`` (Akiba et al. 2019) over epochs.

    Args:
        startup_trials: completed trials before any trial is pruned (Optuna's ``n_startup_trials``).
        from_epoch: the first epoch at which a trial may be pruned (1: from the first).
    """
    return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=from_epoch)


#: Optuna's trial heartbeat, in seconds (``--heartbeat``): a running trial's process records one every HEARTBEAT_S; a
#: RUNNING trial without one for twice as long (its process was killed, its machine went away) is marked FAIL by the
#: next worker that opens the study or starts a trial, instead of staying RUNNING for ever.
HEARTBEAT_S = 60
#: How often a trial failed that way is queued again (``--retries``), with the same params, for any worker to run.
RETRIES = 2
#: Seconds a worker waits for a PostgreSQL server to answer before it gives up (libpq's default: for ever).
CONNECT_TIMEOUT_S = 10
#: Attempts at opening a storage whose tables another worker is creating at the same moment.
CREATE_ATTEMPTS = 4
#: The Python modules SQLAlchemy loads for a URL's database, and the pip requirement that brings each.
DRIVERS = {"psycopg": "'tf-crnn[postgres]' (psycopg 3, what postgresql:// URLs use)",
           "psycopg2": "psycopg2-binary (or write postgresql:// to use psycopg 3: 'tf-crnn[postgres]')",
           "pg8000": "pg8000", "MySQLdb": "mysqlclient", "pymysql": "PyMySQL"}


def open_storage(url: str, heartbeat: int = HEARTBEAT_S, grace_period: int | None = None,
                 retries: int = RETRIES) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage at ``url`` (SQLite, PostgreSQL, MySQL through SQLAlchemy) with heartbeats and retries.

    A RUNNING trial without a heartbeat for ``grace_period`` seconds is marked FAIL by the next worker that opens
    the study or starts a trial (Optuna's ``fail_stale_trials``; only one worker can make that change), and then
    queued again as a new WAITING trial with the same params (Optuna's ``RetryHeartbeatStaleTrialCallback``, the
    successor of ``RetryFailedTrialCallback``), at most ``retries`` times per original trial. A trial that fails
    with an error is not retried: it would fail again.

    Args:
        url: a SQLAlchemy URL; its password is never printed (:func:`tf_crnn.tracking.urls.redact_url`).
        heartbeat: seconds between a running trial's heartbeats; every worker of a study should use the same.
        grace_period: None: twice ``heartbeat``.
        retries: times a trial failed by the heartbeat is run again (0: never).

    Raises:
        SweepError: naming the URL (password as ``***``) and what to do: the URL's driver is not installed, the
            URL cannot be read, the server cannot be reached, rejects the credentials or lacks the database.
    """
    if heartbeat <= 0 or retries < 0:
        raise SweepError(f"the heartbeat must be > 0 s and the retries >= 0, got {heartbeat} s, {retries}")
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.9: known, not the user's concern
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=retries)
        for attempt in range(CREATE_ATTEMPTS):
            try:
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_options(url),
                                                  heartbeat_interval=heartbeat,
                                                  grace_period=grace_period or 2 * heartbeat,
                                                  heartbeat_stale_trial_callback=callback)
            except ImportError as e:  # Optuna's own message names no module: the cause does
                raise SweepError(missing_driver(url, e)) from None
            except sqlalchemy.exc.ArgumentError as e:
                raise SweepError(f"the sweep storage {redact_url(url)} is not a URL SQLAlchemy can open "
                                 f"({scrub(str(e), url_secrets(url))}): write e.g. sqlite:///sweeps.db or "
                                 f"postgresql://USER@HOST:5432/DATABASE") from None
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as e:
                # Workers started at once on an empty database race to create Optuna's tables: the loser's CREATE
                # TABLE fails on the winner's (PostgreSQL: duplicate key in pg_type), and the next attempt finds them.
                lost_race = any(words in str(e) for words in ("duplicate key", "already exists"))
                if not lost_race or attempt == CREATE_ATTEMPTS - 1:
                    raise SweepError(storage_problem(url, e)) from None
                time.sleep(0.5 * (attempt + 1))
            except sqlalchemy.exc.DBAPIError as e:
                raise SweepError(storage_problem(url, e)) from None


def engine_options(url: str) -> dict:
    """SQLAlchemy's ``create_engine`` options for ``url``: a connection time-out for PostgreSQL unless the URL sets
    one (an unanswering host would otherwise keep a worker waiting for minutes)."""
    if url.startswith("postgresql") and "connect_timeout" not in url:
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {}


def missing_driver(url: str, error: ImportError) -> str:
    """The message for a storage URL whose database driver is not installed (``error`` from Optuna or SQLAlchemy)."""
    module = getattr(error.__cause__, "name", None) or error.name or "?"
    package = DRIVERS.get(module.split(".")[0], f"the package that provides the Python module {module}")
    return (f"the sweep storage {redact_url(url)} needs the Python module {module}, which is not installed: "
            f"pip install {package}")


def storage_problem(url: str, error: Exception) -> str:
    """The message for a database that refused a storage URL: credentials, a missing database, no answer, or an
    SQLite file that cannot be opened."""
    shown = redact_url(url)
    text = scrub(str(getattr(error, "orig", error)), url_secrets(url)).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    if "password authentication failed" in text or "no password supplied" in text:
        return (f"the database at {shown} rejected the credentials ({first}): check the user name and password "
                f"(in the URL, or PGPASSWORD / ~/.pgpass for PostgreSQL)")
    if "permission denied" in text:
        return (f"the user of {shown} may not create Optuna's tables there ({first}): make it the database's owner "
                f"(createdb --owner USER DATABASE, or ALTER DATABASE DATABASE OWNER TO USER)")
    if "does not exist" in text and "database" in text:
        return (f"the database of {shown} does not exist ({first}): create it once, e.g. "
                f"createdb -h HOST -U USER DATABASE (PostgreSQL), then start the workers")
    if url.startswith("sqlite"):
        return f"cannot open the sweep storage {shown} ({first}): check that its folder exists and can be written"
    return (f"cannot reach the sweep storage at {shown} ({first}): start the database server, check the host and "
            f"port, and that the server accepts connections from this machine (PostgreSQL: listen_addresses, "
            f"pg_hba.conf)")


def open_study(name: str, output_model_dir: str, storage: str | None = None,
               pruner: optuna.pruners.BasePruner | None = None,
               sampler: optuna.samplers.BaseSampler | None = None, heartbeat: int = HEARTBEAT_S,
               grace_period: int | None = None, retries: int = RETRIES) -> optuna.Study:
    """Create or resume (same name, same storage) the study of a sweep, minimizing the best eval CER.

    Several processes, on one machine or many, may open the same study at once (a PostgreSQL storage for
    many machines) and share its trials. The storage is :func:`open_storage`'s: opening the study marks RUNNING
    trials whose last heartbeat is older than ``grace_period`` seconds FAIL and queues their retries, so a sweep
    killed with SIGKILL leaves no trial RUNNING once it is resumed or listed.

    Args:
        storage: an Optuna storage URL (``sqlite:///sweeps.db``, ``postgresql://...``); None:
            :func:`default_storage`.
        pruner: None: :func:`median_pruner` with Optuna's defaults.
        sampler: None: Optuna's default (TPE).
        heartbeat, grace_period, retries: as :func:`open_storage`.

    Raises:
        SweepError: a name that cannot name a folder; :func:`open_storage`.
    """
    check_name(name)
    rdb = open_storage(storage or default_storage(output_model_dir, name), heartbeat, grace_period, retries)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(study_name=name, storage=rdb, load_if_exists=True, direction="minimize",
                                    pruner=pruner or median_pruner(), sampler=sampler)
        optuna.storages.fail_stale_trials(study)
    return study


def retry_of(trial: optuna.trial.FrozenTrial) -> int | None:
    """The number of the trial that ``trial`` runs again after the heartbeat failed it (the first of a series of
    retries: Optuna's ``RetryHeartbeatStaleTrialCallback.retried_trial_number``), None for a trial that is not a
    retry."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


# ---- trials -------------------------------------------------------------------------

def check_budget(n_trials: int | None, timeout: float | None, total_trials: int | None = None) -> None:
    """Raise :class:`SweepError` unless a trial budget (>= 0; 0 runs none), a time budget (> 0 s), a budget of the
    whole study (>= 0) or several of them are given."""
    if n_trials is None and timeout is None and total_trials is None:
        raise SweepError("give a trial budget, a time budget or both (--trials N, --timeout SECONDS), or the "
                         "study's total (--total-trials N)")
    if any(n is not None and n < 0 for n in (n_trials, total_trials)) or (timeout is not None and timeout <= 0):
        raise SweepError(f"the trial budgets must be >= 0 and the time budget > 0 s, got {n_trials} trials, "
                         f"{total_trials} in total, {timeout} s")


class StudyBudget:
    """Stops a worker once the study has ``total`` trials COMPLETE, PRUNED or RUNNING, counting every worker's.

    Optuna's ``MaxTrialsCallback`` counts finished trials only, so each of W workers finishing a trial at once
    would start another and the study would end with up to W - 1 too many. Counting the trials other workers are
    running stops a worker as soon as the running ones fill the budget. A RUNNING trial whose heartbeat stopped
    is failed first (Optuna's ``fail_stale_trials``): it is not counted, and its retry (WAITING) is run by a worker
    that goes on. Two workers starting a trial in the same instant can still both start one.
    """

    COUNTED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING)

    def __init__(self, total: int):
        self.total = total

    def reached(self, study: optuna.Study) -> bool:
        """Whether the study's counted trials fill the budget (stale trials failed first)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        return len(study.get_trials(deepcopy=False, states=self.COUNTED)) >= self.total

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Optuna's callback after each trial of this worker: stop when :meth:`reached`."""
        if self.reached(study):
            study.stop()


@dataclass
class TrialProgress:
    """What a trial's training reported so far: its best eval CER, where it was pruned."""

    trial: optuna.Trial
    best_cer: float = math.inf
    pruned_at: int | None = None

    def callback(self, run):
        """The trial's callback for its training's run (:class:`~tf_crnn.experiment.epoch_callbacks.TrialPruning`).

        The factory :meth:`Sweep.objective` passes to :meth:`tf_crnn.experiment.experiments.CRNNExperiment.run`;
        it names the run in the trial (``user_attrs.run_id``) before the training can fail.
        """
        from .epoch_callbacks import TrialPruning  # a training is starting: TensorFlow is loaded anyway

        self.trial.set_user_attr("run_id", run._id)
        return TrialPruning(self, run)

    def on_epoch(self, result) -> bool:
        """Report one epoch's eval CER to Optuna; True (stop the training) when the pruner says so."""
        self.best_cer = min(self.best_cer, result.cer)
        self.trial.report(result.cer, result.epoch)
        if not self.trial.should_prune():
            return False
        self.pruned_at = result.epoch
        return True


class Sweep:
    """Runs the trials of a study as trainings of ``crnn`` in this process (see the module docstring).

    Args:
        study: from :func:`open_study`.
        space: from :func:`load_space`.
        base: the base config (:func:`tf_crnn.experiment.experiments.base_config`); each trial's ``output_model_dir`` is
            :func:`trial_dir` of the base's.
    """

    def __init__(self, study: optuna.Study, space: dict[str, Dimension], base: dict):
        self.study, self.space, self.base = study, space, base
        self.output_model_dir = base_params(base).output_model_dir

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def folder(self) -> str:
        return sweep_dir(self.output_model_dir, self.name)

    def run(self, n_trials: int | None = None, timeout: float | None = None, catch: tuple = (),
            on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
            total_trials: int | None = None) -> None:
        """Run trials until ``n_trials`` more have run, ``timeout`` seconds have passed or the study holds
        ``total_trials`` (Optuna's ``optimize``; :class:`StudyBudget`).

        ``n_trials=0`` runs none. No trial starts after ``timeout``; the running one finishes. Trials queued in the
        study (WAITING: retries of trials the heartbeat failed, ``enqueue_trial``) run first.

        Args:
            total_trials: the budget of the whole study, shared by every worker (None: no such budget).
            catch: exception types after which a failed trial (FAIL, its run FAILED) does not
                stop the sweep; any other error stops it after being recorded.
            on_trial: called with each finished trial (progress).

        Raises:
            SweepError: :func:`check_budget`.
            Exception: a trial's error not in ``catch`` (its run is FAILED, the trial FAIL).
        """
        check_budget(n_trials, timeout, total_trials)
        callbacks = [lambda study, frozen: on_trial(frozen)] if on_trial else []
        if total_trials is not None:
            budget = StudyBudget(total_trials)
            if budget.reached(self.study):
                return
            callbacks.append(budget)
        self.study.optimize(self.objective, n_trials=n_trials, timeout=timeout, catch=catch, callbacks=callbacks)

    def objective(self, trial: optuna.Trial) -> float:
        """Train with the trial's values; return its best eval CER. Raises optuna.TrialPruned when pruned.

        A retry (:func:`retry_of`) has the params of the trial it replaces and trains from scratch in its own
        folder: the failed trial's folder may still be written by its process (a worker cut off from the
        database but alive has its trial failed too), so it is never reused.
        """
        values = {key: dim.suggest(trial) for key, dim in self.space.items()}
        trial.set_user_attr("params", values)  # as the config took them (Optuna's params hold JSON text for lists)
        config = {**self.base, **values, "output_model_dir": trial_dir(self.output_model_dir, self.name, trial.number)}
        info = {"name": self.name, "trial": trial.number, "params": values}
        retried = retry_of(self.frozen(trial))
        if retried is not None:
            info["retry_of"] = retried
        progress = TrialProgress(trial)
        try:
            experiments.ex.run(config_updates=config, options={"--capture": "sys"}, info={"sweep": info},
                               callbacks=[progress.callback])
        except Exception as e:
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            raise
        if progress.pruned_at is not None:
            raise optuna.TrialPruned(f"best eval CER {progress.best_cer:.4f} after epoch {progress.pruned_at}")
        return progress.best_cer


    def frozen(self, trial: optuna.Trial) -> optuna.trial.FrozenTrial:
        """The stored state of a running trial (its system attributes: a live ``optuna.Trial`` shows none)."""
        return next(t for t in self.study.get_trials(deepcopy=False) if t.number == trial.number)


# ---- results ------------------------------------------------------------------------

def format_params(params: dict) -> str:
    """``key=value, ...`` for a table cell."""
    return ", ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value!r}"
                     for key, value in params.items())


def as_table(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    """``rows`` as a DataFrame whose ids and epochs stay integers beside missing ones; ``best_cer`` is a float."""
    frame = pd.DataFrame(rows, columns=columns, dtype=object)
    return frame.assign(best_cer=frame["best_cer"].astype(float))


def trial_row(trial: optuna.trial.FrozenTrial) -> dict:
    """One trial: number, run id, state, best eval CER (the best epoch so far for a pruned one),
    last reported epoch, config values, error (FAIL), the trial it retries (:func:`retry_of`)."""
    cers = trial.intermediate_values
    return {"trial": trial.number, "run": trial.user_attrs.get("run_id"), "state": trial.state.name,
            "best_cer": min(cers.values()) if cers else None, "epochs": max(cers) if cers else None,
            "params": trial.user_attrs.get("params", trial.params), "error": trial.user_attrs.get("error"),
            "retry_of": retry_of(trial)}


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """The trials ranked: COMPLETE by best eval CER, then PRUNED by best eval CER so far, then the others.

    Columns as :func:`trial_row`.
    """
    frame = as_table([trial_row(t) for t in study.get_trials(deepcopy=False)],
                     ["trial", "run", "state", "best_cer", "epochs", "params", "error", "retry_of"])
    order = frame["state"].map(lambda s: STATE_ORDER.index(s) if s in STATE_ORDER else len(STATE_ORDER))
    return (frame.assign(_order=order).sort_values(["_order", "best_cer", "trial"], na_position="last")
            .drop(columns="_order").reset_index(drop=True))


def best_trial(study: optuna.Study) -> dict | None:
    """:func:`trial_row` of the study's best COMPLETE trial (Optuna's ``best_trial``), None before one completes."""
    try:
        return trial_row(study.best_trial)
    except ValueError:  # Optuna: no trial is complete yet
        return None


def sweep_runs(database: Database, name: str) -> pd.DataFrame:
    """The runs of ``crnn`` that are trials of sweep ``name`` (``info.sweep.name``), by best eval CER.

    Columns: trial, id, status (:func:`tf_crnn.tracking.runs.shown_status`), best_cer (lowest
    ``eval.cer`` in the ``metrics`` collection), pruned_at_epoch, params. Runs without an eval
    CER come last.
    """
    rows = []
    for doc in database.db.runs.find({"experiment.name": experiments.EXPERIMENT_NAME, "info.sweep.name": name}):
        cer = [value for _, value in database.metrics(doc["_id"]).get("eval.cer", [])]
        info = doc.get("info", {})
        rows.append({"trial": info["sweep"].get("trial"), "id": doc["_id"], "status": shown_status(doc),
                     "best_cer": min(cer) if cer else None, "pruned_at_epoch": info.get("sweep_pruned_at_epoch"),
                     "params": info["sweep"].get("params", {})})
    frame = as_table(rows, ["trial", "id", "status", "best_cer", "pruned_at_epoch", "params"])
    return frame.sort_values(["best_cer", "trial"], na_position="last").reset_index(drop=True)
