"""The runs in a database: list, show, compare, export and delete them (``tf-crnn runs``).

Works on Sacred's MongoDB layout: ``runs`` (one document per run), ``metrics``
(one document per run and metric: ``steps``, ``values``, ``timestamps``) and
GridFS (``fs.files`` / ``fs.chunks``: artifacts, and source files shared
between runs). Tables are pandas DataFrames; :mod:`tf_crnn.cli.runs` prints them.
"""
from __future__ import annotations

import datetime
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass

import gridfs
import pandas as pd
import pymongo

from .urls import DEFAULT_DB_NAME

#: A RUNNING run whose last heartbeat is older than this is shown as PROBABLY_DEAD (Omniboard's rule).
DEAD_AFTER_S = 120.0
#: Config keys shown in the ``runs list`` summary column.
SUMMARY_KEYS = ("input_shape", "n_epochs", "train_batch_size", "learning_rate", "rnn_units")


class RunsError(ValueError):
    """A run that does not exist, or an operation a run does not allow; the message names the run."""


@dataclass
class Database:
    """A connected MongoDB database holding Sacred runs."""

    client: pymongo.MongoClient
    db: pymongo.database.Database

    @classmethod
    def connect(cls, url: str, db_name: str = DEFAULT_DB_NAME) -> "Database":
        client = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000)
        return cls(client, client[db_name])

    def close(self) -> None:
        self.client.close()

    def run(self, run_id) -> dict:
        """The run document ``run_id``.

        Raises:
            RunsError: no such run.
        """
        doc = self.db.runs.find_one({"_id": run_id})
        if doc is None:
            raise RunsError(f"no run {run_id!r} in database '{self.db.name}'")
        return doc

    def metrics(self, run_id) -> dict[str, list[tuple[int, float]]]:
        """Every metric of a run: ``{name: [(step, value), ...]}`` sorted by step."""
        return {m["name"]: sorted(zip(m["steps"], m["values"]))
                for m in self.db.metrics.find({"run_id": run_id}, {"name": 1, "steps": 1, "values": 1})}


def shown_status(doc: dict, now: datetime.datetime | None = None) -> str:
    """The run's status, with a RUNNING run whose heartbeat is older than :data:`DEAD_AFTER_S` as PROBABLY_DEAD."""
    status = doc.get("status", "?")
    if status != "RUNNING":
        return status
    last = doc.get("heartbeat") or doc.get("start_time")
    now = now or datetime.datetime.utcnow()
    return "PROBABLY_DEAD" if last is None or (now - last).total_seconds() > DEAD_AFTER_S else status


def _best(series: list[tuple[int, float]], pick) -> float | None:
    return pick(v for _, v in series) if series else None


def list_runs(database: Database, status: str | None = None, experiment: str | None = None,
              where: dict | None = None, sort: str | None = None, limit: int | None = 20) -> pd.DataFrame:
    """One row per run, newest first (or by ``sort``), at most ``limit`` rows (None: all).

    Columns: id, experiment, status (:func:`shown_status`), start (UTC), minutes,
    best_cer, last_cer, best_sequence_accuracy (from ``eval.cer`` /
    ``eval.sequence_accuracy``), host, summary (a few config keys).

    Args:
        status: keep runs with this shown status (``COMPLETED``, ``PROBABLY_DEAD``, ...).
        experiment: keep runs of this Sacred experiment (``crnn``, ``crnn-evaluate``).
        where: keep runs whose ``config[key] == value`` for every item.
        sort: a column to sort by: ``best_cer`` / ``last_cer`` ascending, others descending.
    """
    query = {"experiment.name": experiment} if experiment else {}
    for key, value in (where or {}).items():
        query[f"config.{key}"] = value
    # Only the fields a row shows (a run document also holds up to ~220k characters of captured output);
    # without a status filter or a sort, only the newest `limit` runs are read at all.
    fields = {k: 1 for k in ("experiment.name", "status", "start_time", "stop_time", "heartbeat", "config",
                             "host.hostname")}
    cursor = database.db.runs.find(query, fields, sort=[("_id", -1)])
    if limit and not status and not sort:
        cursor = cursor.limit(limit)
    rows = []
    for doc in cursor:
        metrics = database.metrics(doc["_id"])
        cer, seq = metrics.get("eval.cer", []), metrics.get("eval.sequence_accuracy", [])
        start, stop = doc.get("start_time"), doc.get("stop_time") or doc.get("heartbeat")
        config = doc.get("config", {})
        rows.append({
            "id": doc["_id"], "experiment": doc.get("experiment", {}).get("name"), "status": shown_status(doc),
            "start": start.strftime("%Y-%m-%d %H:%M") if start else None,
            "minutes": round((stop - start).total_seconds() / 60, 1) if start and stop else None,
            "best_cer": _best(cer, min), "last_cer": cer[-1][1] if cer else None,
            "best_sequence_accuracy": _best(seq, max), "host": doc.get("host", {}).get("hostname"),
            "summary": ", ".join(f"{k}={config[k]}" for k in SUMMARY_KEYS if k in config),
        })
    frame = pd.DataFrame(rows, columns=["id", "experiment", "status", "start", "minutes", "best_cer", "last_cer",
                                        "best_sequence_accuracy", "host", "summary"])
    if status:
        frame = frame[frame["status"] == status]
    if sort:
        if sort not in frame.columns:
            raise RunsError(f"cannot sort by {sort!r}: use one of {', '.join(frame.columns)}")
        frame = frame.sort_values(sort, ascending=sort in ("best_cer", "last_cer"), na_position="last")
    return frame.head(limit) if limit else frame


def epoch_table(metrics: dict[str, list[tuple[int, float]]]) -> pd.DataFrame:
    """Metrics as a table: one row per step (epoch), one column per metric."""
    frame = pd.DataFrame({name: dict(series) for name, series in metrics.items()})
    frame.index.name = "epoch"
    return frame.sort_index()


def artifacts(database: Database, doc: dict) -> pd.DataFrame:
    """The run's artifacts: name, size in bytes, GridFS file id."""
    rows = []
    for artifact in doc.get("artifacts", []):
        meta = database.db["fs.files"].find_one({"_id": artifact["file_id"]}, {"length": 1})
        rows.append({"name": artifact["name"], "bytes": meta["length"] if meta else None,
                     "file_id": artifact["file_id"]})
    return pd.DataFrame(rows, columns=["name", "bytes", "file_id"])


def show_run(database: Database, run_id) -> dict:
    """Everything about one run: status, config, per-epoch metrics, artifacts, code / data / environment.

    Returns:
        ``{"id", "experiment", "status", "start", "stop", "host", "config", "result", "info",
        "metrics" (DataFrame), "artifacts" (DataFrame), "repositories", "sources", "dependencies"}``.

    Raises:
        RunsError: no such run.
    """
    doc = database.run(run_id)
    experiment = doc.get("experiment", {})
    return {
        "id": doc["_id"], "experiment": experiment.get("name"), "status": shown_status(doc),
        "start": doc.get("start_time"), "stop": doc.get("stop_time"), "host": doc.get("host", {}),
        "config": doc.get("config", {}), "result": doc.get("result"), "info": doc.get("info", {}),
        "metrics": epoch_table(database.metrics(run_id)), "artifacts": artifacts(database, doc),
        "repositories": experiment.get("repositories", []),
        "sources": [name for name, _ in experiment.get("sources", [])],
        "dependencies": experiment.get("dependencies", []),
    }


def compare_runs(database: Database, run_ids: list) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Config keys that differ between the runs, their final and best eval metrics, and their curves.

    Returns:
        ``(config_differences, metrics, histories)``: config keys x runs (only keys whose
        values differ), metric summaries x runs (last and best of each ``eval.*`` and
        ``train.loss``), and ``{run id: {metric: [(epoch, value)]}}`` for plotting.

    Raises:
        RunsError: fewer than two runs, or one does not exist.
    """
    if len(run_ids) < 2:
        raise RunsError("compare needs at least two run ids")
    docs = [database.run(run_id) for run_id in run_ids]
    keys = sorted({k for d in docs for k in d.get("config", {})})
    differing = {k: [repr(d.get("config", {}).get(k, "—")) for d in docs] for k in keys
                 if len({repr(d.get("config", {}).get(k)) for d in docs}) > 1}
    config = pd.DataFrame(differing, index=[str(d["_id"]) for d in docs]).T
    histories = {d["_id"]: database.metrics(d["_id"]) for d in docs}
    summary = {}
    for run_id, metrics in histories.items():
        column = {}
        for name, series in sorted(metrics.items()):
            if name.startswith("eval.") or name == "train.loss":
                lower_is_better = name in ("eval.cer", "eval.wer", "eval.loss", "train.loss")
                column[f"{name} (last)"] = series[-1][1]
                column[f"{name} (best)"] = _best(series, min if lower_is_better else max)
        summary[str(run_id)] = column
    return config, pd.DataFrame(summary), histories


def download_run(database: Database, run_id, out_dir: str) -> list[str]:
    """Download every artifact of a run into ``out_dir``; ``export.zip`` is also unpacked to ``out_dir/export``.

    Returns:
        the paths written.

    Raises:
        RunsError: no such run, or it has no artifacts.
    """
    doc = database.run(run_id)
    if not doc.get("artifacts"):
        raise RunsError(f"run {run_id} has no artifacts (it may not have finished)")
    fs = gridfs.GridFS(database.db)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for artifact in doc["artifacts"]:
        path = os.path.join(out_dir, os.path.basename(artifact["name"]))
        with open(path, "wb") as f:
            f.write(fs.get(artifact["file_id"]).read())
        written.append(path)
        if artifact["name"] == "export.zip":
            target = os.path.join(out_dir, "export")
            with zipfile.ZipFile(path) as archive:
                archive.extractall(target)
            written.append(target)
    return written


def delete_runs(database: Database, run_ids: list) -> dict:
    """Delete runs with their metrics and GridFS files; source files other runs still use are kept.

    Returns:
        counts: ``{"runs", "metrics", "files"}`` deleted.

    Raises:
        RunsError: a run does not exist (nothing is deleted then).
    """
    docs = [database.run(run_id) for run_id in run_ids]
    ids = [d["_id"] for d in docs]
    files = {a["file_id"] for d in docs for a in d.get("artifacts", [])}
    sources = {file_id for d in docs for _, file_id in d.get("experiment", {}).get("sources", [])}
    still_used = {file_id for other in database.db.runs.find({"_id": {"$nin": ids}}, {"experiment.sources": 1})
                  for _, file_id in other.get("experiment", {}).get("sources", [])}
    fs = gridfs.GridFS(database.db)
    for file_id in files | (sources - still_used):
        fs.delete(file_id)
    metrics = database.db.metrics.delete_many({"run_id": {"$in": ids}}).deleted_count
    runs = database.db.runs.delete_many({"_id": {"$in": ids}}).deleted_count
    return {"runs": runs, "metrics": metrics, "files": len(files | (sources - still_used))}


def rerun_config(doc: dict, url: str, db_name: str, output_model_dir: str | None = None) -> dict:
    """The config to repeat a recorded run: its own, seed included, into ``url`` / ``db_name``.

    The recorded ``mongo_url`` has its password as ``***``, so the database is the one
    the run is read from. ``output_model_dir`` defaults to ``<recorded>_rerun_of_<id>``
    (the recorded folder holds that run's checkpoints); ``restore_model`` and
    ``overwrite_output`` are off: a re-run starts from scratch.
    """
    config = dict(doc.get("config", {}))
    default_dir = f"{config.get('output_model_dir', 'output')}_rerun_of_{doc['_id']}"
    config.update(mongo_url=url, mongo_db_name=db_name, restore_model=False, overwrite_output=False,
                  output_model_dir=output_model_dir or default_dir)
    return config


def rerun_params(config: dict):
    """The :class:`tf_crnn.config.Params` of a re-run's config (:func:`rerun_config`; Sacred's ``generate_data``
    left out)."""
    from ..config import Params

    return Params.from_dict({k: v for k, v in config.items() if k != "generate_data"})


def rerun_problems(doc: dict, config: dict, environment: dict | None = None) -> list[str]:
    """Why running ``config`` now would not repeat the recorded run: one line per difference.

    Checks that the run was trained with ``deterministic=True`` (without it TensorFlow's ops run in any
    order and a re-run gives other numbers), and compares the environment (:func:`provenance.changed_environment`:
    Python, TensorFlow, Keras, CUDA, cuDNN, devices, native bfloat16, the dtype policy ``mixed_precision``
    chose), the code (git commit recorded in ``info.code`` against the checkout's, uncommitted changes
    then or now) and the data (:func:`provenance.changed_data`: every CSV's and the alphabet's MD5, row
    counts, image fingerprints).

    Args:
        doc: the recorded run; config: :func:`rerun_config`.
        environment: this machine's, as a training records it
            (:func:`tf_crnn.experiment.experiments.environment_of`); None: not compared.
    """
    from . import provenance

    lines = []
    if not doc.get("config", {}).get("deterministic", False):
        lines.append("deterministic: the run was trained with deterministic=False (TensorFlow's ops in any order, "
                     "seeded or not): a re-run gives other numbers; repeat runs trained with deterministic=True")
    info = doc.get("info", {})
    if environment is not None:
        # Runs recorded before the environment held the dtype policy have it beside (info.dtype_policy).
        recorded = {**({"dtype_policy": info["dtype_policy"]} if "dtype_policy" in info else {}),
                    **info.get("environment", {})}
        lines += provenance.changed_environment(recorded, environment)
    code, now = info.get("code"), provenance.git_state()
    if code and now:
        if code["commit"] != now["commit"]:
            lines.append(f"code: recorded commit {code['commit']}, now {now['commit']}")
        if code["dirty"]:
            lines.append("code: the run was made with uncommitted changes (its code.diff artifact holds them)")
        if now["dirty"]:
            lines.append("code: the checkout has uncommitted changes now (git diff HEAD)")
    if not info.get("data"):
        return lines + ["data: the run records no data description (recorded before tf-crnn kept one)"]
    return lines + provenance.changed_data(info["data"], provenance.describe_training_data(rerun_params(config),
                                                                                              progress=False))


def compare_results(old: dict, new: dict) -> pd.DataFrame:
    """Two runs' final eval metrics (their ``result``) side by side, with the difference."""
    names = sorted(set(old.get("result") or {}) | set(new.get("result") or {}))
    frame = pd.DataFrame({f"run {old['_id']}": [(old.get("result") or {}).get(n) for n in names],
                          f"run {new['_id']}": [(new.get("result") or {}).get(n) for n in names]}, index=names)
    frame["difference"] = frame.iloc[:, 1] - frame.iloc[:, 0]
    return frame


def cached_export(database: Database, run_id, cache_root: str | os.PathLike) -> str:
    """The SavedModel of a run's ``export.zip`` artifact, downloaded and unpacked once.

    Cached as ``cache_root/<database>/<run id>-<GridFS file id>/`` (a new artifact of the
    same run gets a new folder); unpacked into a temporary folder first and renamed, so a
    half-written cache is never used.

    Returns:
        the export folder.

    Raises:
        RunsError: no such run, or it has no ``export.zip``.
    """
    doc = database.run(run_id)
    artifact = next((a for a in doc.get("artifacts", []) if a["name"] == "export.zip"), None)
    if artifact is None:
        raise RunsError(f"run {run_id} has no export.zip artifact (it did not finish, or is not a training run)")
    target = os.path.join(os.fspath(cache_root), database.db.name, f"{doc['_id']}-{artifact['file_id']}")
    if os.path.isfile(os.path.join(target, "saved_model.pb")):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    staging = tempfile.mkdtemp(dir=os.path.dirname(target), prefix=".download-")
    try:
        archive = os.path.join(staging, "export.zip")
        with open(archive, "wb") as f:
            f.write(gridfs.GridFS(database.db).get(artifact["file_id"]).read())
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(os.path.join(staging, "export"))
        try:
            os.replace(os.path.join(staging, "export"), target)
        except OSError:  # another process cached it first
            if not os.path.isfile(os.path.join(target, "saved_model.pb")):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def download_export(run_id, url: str | None = None, db_name: str | None = None,
                    cache_dir: str | os.PathLike | None = None) -> str:
    """A recorded training run's export folder: its ``export.zip`` artifact, downloaded once (:func:`cached_export`).

    Args:
        run_id: the run's ``_id``.
        url, db_name: the database, resolved as training resolves it (``$TF_CRNN_MONGO_URL``, else the
            embedded server); ``tf_crnn`` by default.
        cache_dir: where downloads are kept (default ``$TF_CRNN_HOME/models``).

    Raises:
        RunsError: no such run, or it has no ``export.zip``.
        tf_crnn.tracking.urls.TrackingError: the database cannot be reached.
    """
    from .server import home_dir, resolve_url

    db_name = db_name or DEFAULT_DB_NAME
    database = Database.connect(resolve_url(url, db_name=db_name), db_name)
    try:
        return cached_export(database, run_id, cache_dir or home_dir() / "models")
    finally:
        database.close()
