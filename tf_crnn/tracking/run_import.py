"""Uploading a run's local record into MongoDB: ``tf-crnn db import-run OUTPUT/sacred_runs/N``.

When MongoDB does not answer during a run, tf-crnn's observer
(:mod:`tf_crnn.tracking.observer`) writes the whole run to
``output_model_dir/sacred_runs/<run id>`` in Sacred's FileStorageObserver format
(``run.json``, ``config.json``, ``info.json``, ``metrics.json``, ``cout.txt`` and the
artifacts); if the database is still gone at the end, MongoDB keeps an
incomplete run. :func:`import_run` writes that record into MongoDB in Sacred's
MongoObserver layout: it completes the run already there (the same start time,
host and experiment; its ``_id`` is kept) without storing a metric value or an
artifact twice, or creates it. A record whose run is complete in the database
is refused, so importing twice creates no duplicate.
"""
from __future__ import annotations

import datetime
import json
import mimetypes
import os
from dataclasses import dataclass, field

import gridfs
import pymongo
from pymongo.errors import PyMongoError
from sacred.observers import MongoObserver

from .observer import OBSERVER_TIMEOUT_S, REJECTED, artifact_name, storable, storable_run, stored_time, unstored
from .server import resolve_url
from .urls import DEFAULT_DB_NAME, ENV_URL, TrackingError, redact_url

FINAL_STATUSES = ("COMPLETED", "FAILED", "INTERRUPTED", "TIMEOUT")


class RunImportError(ValueError):
    """The folder holds no run record, or its run is complete in the database already."""


@dataclass
class LocalRun:
    """A run as Sacred's FileStorageObserver wrote it (:func:`read_local_run`).

    Attributes:
        folder: the run folder.
        run_id: the MongoDB ``_id`` the folder is named after (``<id>`` or ``<id>.<n>``), None if not a number.
        run: ``run.json`` (start, stop and heartbeat times as ISO strings, artifact names).
        config, info: ``config.json``, ``info.json``.
        metrics: ``metrics.json``: name -> ``steps``, ``values``, ``timestamps`` (datetimes).
        captured_out: ``cout.txt``.
        artifacts: artifact name -> file.
    """

    folder: str
    run_id: int | None
    run: dict
    config: dict
    info: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    captured_out: str = ""
    artifacts: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.run.get("status", "RUNNING")

    def time(self, key: str) -> datetime.datetime | None:
        """``start_time``, ``stop_time`` or ``heartbeat`` as a naive UTC datetime (None if absent)."""
        value = self.run.get(key)
        return datetime.datetime.fromisoformat(value) if value else None


def _read_json(path: str, default=None):
    if default is not None and not os.path.exists(path):
        return default
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise RunImportError(f"cannot read {path}: {e}") from None


def read_local_run(folder: str) -> LocalRun:
    """Read a FileStorageObserver run folder.

    Raises:
        RunImportError: no ``run.json`` / ``config.json`` (not a run folder), unreadable JSON, or a listed
            artifact file is missing.
    """
    folder = os.path.normpath(folder)
    if not os.path.isfile(os.path.join(folder, "run.json")):
        raise RunImportError(f"{folder} holds no run.json: not a run record (output_model_dir/sacred_runs/<run id>)")
    run = _read_json(os.path.join(folder, "run.json"))
    metrics = {name: {"steps": list(m["steps"]), "values": list(m["values"]),
                      "timestamps": [datetime.datetime.fromisoformat(t) for t in m["timestamps"]]}
               for name, m in _read_json(os.path.join(folder, "metrics.json"), {}).items()}
    artifacts = {artifact_name(local): os.path.join(folder, local) for local in run.get("artifacts", [])}
    missing = [path for path in artifacts.values() if not os.path.isfile(path)]
    if missing:
        raise RunImportError(f"{folder}: artifact file(s) listed in run.json are missing: {', '.join(missing)}")
    try:
        with open(os.path.join(folder, "cout.txt"), encoding="utf-8", errors="replace") as f:
            captured_out = f.read()
    except FileNotFoundError:
        captured_out = ""
    head = os.path.basename(folder).split(".")[0]
    return LocalRun(folder, int(head) if head.isdigit() else None, run,
                    _read_json(os.path.join(folder, "config.json")), _read_json(os.path.join(folder, "info.json"), {}),
                    metrics, captured_out, artifacts)


def target_database(local: LocalRun, url: str | None = None, db_name: str | None = None) -> tuple[str, str]:
    """The URL and database name to import ``local`` into, found as the training found them.

    ``url`` / ``db_name`` when given, else the run's ``mongo_url`` / ``mongo_db_name``,
    else ``$TF_CRNN_MONGO_URL``, else the embedded server (:func:`resolve_url`). A run URL
    whose password was stored as ``***`` is only used through ``$TF_CRNN_MONGO_URL`` when
    that is the same URL.

    Raises:
        RunImportError: the run's URL had a password, and neither ``url`` nor the environment gives it.
        TrackingError: the database cannot be reached.
    """
    db_name = db_name or local.config.get("mongo_db_name") or DEFAULT_DB_NAME
    configured = url or local.config.get("mongo_url")
    if configured and not url and redact_url(configured) == configured and ":***@" in configured:
        environment = os.environ.get(ENV_URL)
        if not environment or redact_url(environment) != configured:
            raise RunImportError(f"run {local.run_id} was recorded in {configured}, whose password is not stored: "
                                 f"give the URL with --url (or set ${ENV_URL})")
        configured = environment
    return resolve_url(configured, db_name=db_name), db_name


@dataclass
class ImportResult:
    """What :func:`import_run` did: the run's ``_id`` there, whether it was created, what was added."""

    run_id: int
    created: bool
    status: str
    metric_values: int
    artifacts: list[str]


def import_run(local: LocalRun, url: str, db_name: str) -> ImportResult:
    """Write ``local`` into database ``db_name`` at ``url`` as one run with all its metrics and artifacts.

    The run already there (same start time, host and experiment name; the one with
    ``local.run_id`` first) is completed: metric values not stored yet (by timestamp),
    missing artifacts, and the record's final status, stop time, result, info and
    captured output. Without one, the run is created, with ``local.run_id`` as ``_id``
    unless another run has it. ``info.imported_from`` names the folder. An interrupted
    import can be run again: it adds what is still missing.

    Raises:
        RunImportError: the run is complete in the database already: nothing to import.
        TrackingError: the database stopped answering (run the command again).
    """
    try:
        with pymongo.MongoClient(url, serverSelectionTimeoutMS=int(OBSERVER_TIMEOUT_S * 1000)) as client:
            return _import(local, client[db_name], url)
    except PyMongoError as e:
        raise TrackingError(f"importing {local.folder} into {redact_url(url)} stopped ({type(e).__name__}: {e}); "
                            f"run the command again, it adds what is still missing") from None


def _same_run(runs, local: LocalRun) -> dict | None:
    query = {"start_time": stored_time(local.time("start_time")),
             "host.hostname": local.run.get("host", {}).get("hostname"),
             "experiment.name": local.run.get("experiment", {}).get("name")}
    found = list(runs.find(query))
    return next((d for d in found if d["_id"] == local.run_id), found[0] if found else None)


def _new_document(local: LocalRun, runs) -> dict:
    """The run document Sacred's MongoObserver would have written at the start (sources are not kept locally)."""
    free = local.run_id is not None and runs.find_one({"_id": local.run_id}, {"_id": 1}) is None
    info = {k: v for k, v in local.info.items() if k != "metrics"}  # metric ids of another database: rebuilt
    return {"_id": local.run_id if free else None, "experiment": {**local.run.get("experiment", {}), "sources": []},
            "format": MongoObserver.VERSION, "command": local.run.get("command"), "host": local.run.get("host", {}),
            "start_time": local.time("start_time"), "config": local.config, "meta": local.run.get("meta", {}),
            "status": "RUNNING", "resources": [], "artifacts": [], "captured_out": "", "info": info,
            "heartbeat": None}


def _ending(local: LocalRun, doc: dict) -> dict:
    """The fields of ``doc`` the record brings: its end (if it has one), last heartbeat, info, captured output."""
    update = {}
    if local.status in FINAL_STATUSES:
        update.update(status=local.status, stop_time=local.time("stop_time"), result=local.run.get("result"))
        if "fail_trace" in local.run:
            update["fail_trace"] = local.run["fail_trace"]
    beat = local.time("heartbeat")
    if beat is not None and (doc.get("heartbeat") is None or stored_time(beat) >= doc["heartbeat"]):
        metric_ids = doc.get("info", {}).get("metrics", [])
        update.update(heartbeat=beat, captured_out=local.captured_out,
                      info={**doc.get("info", {}), **local.info, "metrics": metric_ids})
    return update


def _import(local: LocalRun, db, url: str) -> ImportResult:
    writer = MongoObserver.create_from(db.runs, gridfs.GridFS(db), metrics_collection=db.metrics)
    existing = _same_run(db.runs, local)
    doc = existing if existing is not None else _new_document(local, db.runs)
    missing_metrics = {}
    for name, series in local.metrics.items():
        stored = db.metrics.find_one({"run_id": doc["_id"], "name": name}, {"timestamps": 1}) if existing else None
        rest = unstored(series, (stored or {}).get("timestamps", []))
        if rest["steps"]:
            missing_metrics[name] = rest
    present = {a["name"] for a in doc.get("artifacts", [])}
    missing_artifacts = [name for name in local.artifacts if name not in present]
    ending = _ending(local, doc)
    if existing is not None and not missing_metrics and not missing_artifacts and \
            ending.get("status", existing["status"]) == existing["status"]:
        raise RunImportError(f"run {existing['_id']} is complete in {redact_url(url)} database '{db.name}' "
                             f"already ({existing['status']}, every metric value and artifact of {local.folder}): "
                             f"nothing imported")
    full_output = os.path.join(os.path.abspath(local.folder), "cout.txt")
    if existing is None:
        writer.run_entry = doc
        try:
            writer.insert()  # the record's _id, or the next free one
        except REJECTED:  # what the observer could not store (a 64-bit overflow, 16 MB): the same way it stores it
            writer.run_entry = doc = storable_run(doc, full_output)
            writer.insert()
    writer.run_entry = doc
    doc.setdefault("info", {})
    for name, series in missing_metrics.items():  # Sacred's layout; new metric documents go into info.metrics
        try:
            writer.log_metrics({name: series}, doc["info"])
        except REJECTED:  # a value BSON cannot encode (nothing of this metric was written): its text
            writer.log_metrics({name: dict(series, values=storable(series["values"]))}, doc["info"])
    for name in missing_artifacts:
        writer.artifact_event(name, local.artifacts[name], content_type=mimetypes.guess_type(name)[0])
    doc.update(_ending(local, doc))
    doc["info"]["imported_from"] = os.path.abspath(local.folder)
    try:
        db.runs.update_one({"_id": doc["_id"]}, {"$set": doc})
    except REJECTED:
        db.runs.update_one({"_id": doc["_id"]}, {"$set": storable_run(doc, full_output)})
    return ImportResult(doc["_id"], existing is None, doc["status"],
                        sum(len(s["steps"]) for s in missing_metrics.values()), missing_artifacts)
