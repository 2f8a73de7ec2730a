"""Run records of an output folder: ``run.json``, resuming and closing dead runs, output folder checks.

``output_model_dir/run.json`` names the Sacred run writing the folder (id,
database, host, pid). When a training resumes, :func:`record_run` links the
new run to the one it continues and closes that one if it died without
saying so (:func:`close_dead_run`). Before a training starts,
:func:`check_output_dir` checks that the folder can take its output and
:func:`check_new_training` that it does not hold another training's
checkpoints (the lock against two live trainings is :mod:`tf_crnn.tracking.output_lock`).
"""
from __future__ import annotations

import datetime
import errno
import json
import math
import os
import shutil
import socket
import tempfile

import pymongo
from pymongo.errors import PyMongoError

from .._util import pid_alive, warn, write_json
from ..cluster import is_chief
from ..config import ConfigError
from .observer import OBSERVER_TIMEOUT_S
from .urls import redact_url

RUN_FILE = "run.json"      # in output_model_dir: the Sacred run writing this folder (chief only)
STALE_AFTER_S = 60.0       # a RUNNING run without heartbeat for this long is taken as dead when resuming


def check_output_dir(path: str, need_bytes: int = 0) -> None:
    """Fail early, with a message saying what to do, if ``path`` cannot take a training's output.

    Creates ``path`` if needed, writes and removes a probe file (the real test:
    permissions, read-only mounts, quotas) and compares the free space with
    ``need_bytes``.

    Raises:
        OSError: the folder cannot be created or written, or holds too little free space.
    """
    path = os.path.abspath(path)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".tf_crnn_write_test_") as probe:
            probe.write(b"x" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as e:
        raise OSError(e.errno, f"output_model_dir {path} is not writable ({e.strerror or e}): checkpoints, "
                               f"exports and reports go there. Choose another output_model_dir or fix its "
                               f"permissions / mount") from None
    free = shutil.disk_usage(path).free
    if free < need_bytes:
        raise OSError(errno.ENOSPC, f"output_model_dir {path} has {free / 2**20:.0f} MB free, but this training "
                                    f"writes about {need_bytes / 2**20:.0f} MB (checkpoints with optimizer state, "
                                    f"exports, reports). Free some space, lower keep_checkpoints or choose another "
                                    f"output_model_dir")


def previous_training(output_dir: str, names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` (sub-folders a training writes: checkpoints, exports) hold something in ``output_dir``."""
    found = []
    for name in names:
        try:
            if os.listdir(os.path.join(output_dir, name)):
                found.append(name)
        except OSError:  # absent (or not a folder): nothing of an earlier training there
            pass
    return found


def check_new_training(output_dir: str, written: tuple[str, ...], restore_model: bool, overwrite_output: bool) -> None:
    """Refuse to start a training over another one's outputs in ``output_dir``.

    ``written``: the sub-folders whose content marks an earlier training (checkpoints,
    exports). A training that continues it (``restore_model``) or replaces it
    (``overwrite_output``, see :func:`clear_previous_training`) may start.

    Raises:
        ConfigError: the folder holds an earlier training's outputs and neither flag is set (both at
            once is refused by :meth:`Params.validate`). The message names the run (from ``run.json``)
            and the choices.
    """
    found = [] if restore_model or overwrite_output else previous_training(output_dir, written)
    if not found:
        return
    record = read_run_file(output_dir) or {}
    whose = f"run {record['run_id']}" if record.get("run_id") is not None else "an earlier training"
    what = " and ".join(filter(None, [", ".join(found[:-1]), found[-1]]))
    raise ConfigError(f"output_model_dir {os.path.abspath(output_dir)} holds the {what} of {whose}. "
                      f"Continue that training with restore_model=True, replace it with overwrite_output=True, or "
                      f"choose another output_model_dir")


def clear_previous_training(output_dir: str, names: tuple[str, ...]) -> list[str]:
    """Remove the sub-folders ``names`` of ``output_dir`` (an earlier training's outputs); return those removed.

    Raises:
        OSError: a folder cannot be removed.
    """
    removed = []
    for name in names:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
            removed.append(name)
    return removed


def read_run_file(output_dir: str) -> dict | None:
    """What :func:`write_run_file` left in ``output_dir`` (None if nothing readable)."""
    try:
        with open(os.path.join(output_dir, RUN_FILE), encoding="utf-8") as f:
            record = json.load(f)
        return record if isinstance(record, dict) else None
    except (OSError, ValueError):
        return None


def write_run_file(output_dir: str, run_id, url: str | None, db_name: str, resumed_from=None) -> dict:
    """Record in ``output_dir/run.json`` which Sacred run writes this folder (host, pid, database)."""
    record = {"run_id": run_id, "mongo_url": redact_url(url), "mongo_db_name": db_name,
              "host": socket.gethostname(), "pid": os.getpid(),
              "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "resumed_from_run": resumed_from}
    write_json(os.path.join(output_dir, RUN_FILE), record)
    return record


def close_dead_run(url: str, db_name: str, run_id, resumed_by, record: dict | None = None,
                   stale_after_s: float = STALE_AFTER_S) -> str | None:
    """Mark run ``run_id`` INTERRUPTED if it is still RUNNING but dead; return its status afterwards.

    Dead means: its process (``record``: host and pid from ``run.json``) ran on
    this host and is gone, or its last heartbeat (start time if none) is older
    than ``stale_after_s``. Sacred writes a heartbeat every 10 s; Omniboard
    shows a RUNNING run without one for 120 s as PROBABLY_DEAD. A run that may
    still be alive is left as it is. The update sets ``status``, ``stop_time``
    (its last heartbeat) and ``info.resumed_by`` and only applies if the run
    did not write a heartbeat in between.
    """
    with pymongo.MongoClient(url, serverSelectionTimeoutMS=int(OBSERVER_TIMEOUT_S * 1000)) as client:
        runs = client[db_name]["runs"]
        doc = runs.find_one({"_id": run_id}, {"status": 1, "heartbeat": 1, "start_time": 1, "host": 1})
        if doc is None:
            return None
        link = {"info.resumed_by": resumed_by} if resumed_by is not None else {}
        if doc.get("status") != "RUNNING":
            if link:
                runs.update_one({"_id": run_id}, {"$set": link})
            return doc.get("status")
        last = doc.get("heartbeat") or doc.get("start_time")
        age = (datetime.datetime.utcnow() - last).total_seconds() if last else math.inf
        process_gone = bool(record) and record.get("host") == socket.gethostname() and \
            record.get("pid") != os.getpid() and not pid_alive(int(record.get("pid", -1)))
        if not process_gone and age <= stale_after_s:
            return "RUNNING"
        result = runs.update_one({"_id": run_id, "status": "RUNNING", "heartbeat": doc.get("heartbeat")},
                                 {"$set": {"status": "INTERRUPTED", "stop_time": last, **link}})
        return "INTERRUPTED" if result.modified_count else runs.find_one({"_id": run_id})["status"]


def record_run(run, output_dir: str, url: str | None, db_name: str, restored_epoch: int | None):
    """Write ``output_dir/run.json`` for this run; when resuming, link it to the run it continues.

    ``restored_epoch``: the epoch of the restored checkpoint (None when not
    resuming, 0 when there was no checkpoint). When a checkpoint was restored,
    the run named by the old ``run.json`` goes into ``run.info`` as
    ``resumed_from_run``. When resuming, that previous run, if it is still
    RUNNING in the same database but dead (:func:`close_dead_run`), is marked
    INTERRUPTED (with ``info.resumed_by``). Only the chief writes; returns the
    id of the resumed run or None.
    """
    if not is_chief():
        return None
    previous = read_run_file(output_dir) if restored_epoch is not None else None
    previous_id = previous.get("run_id") if previous else None
    if previous_id == run._id:
        previous_id = None
    resumed_from = previous_id if restored_epoch else None
    same_db = previous is not None and url is not None and previous.get("mongo_url") == redact_url(url) \
        and previous.get("mongo_db_name") == db_name
    if resumed_from is not None:
        run.info["resumed_from_run"] = resumed_from
        if not same_db:
            run.info["resumed_from_database"] = f"{previous.get('mongo_url')} {previous.get('mongo_db_name')}"
    if previous_id is not None and same_db and run._id is not None:
        try:
            status = close_dead_run(url, db_name, previous_id, run._id if resumed_from is not None else None, previous)
            run.info["previous_run_status"] = status
            if status == "RUNNING":
                warn(f"run {previous_id}, which wrote {output_dir} before, is still RUNNING in MongoDB with a "
                      f"heartbeat less than {STALE_AFTER_S:.0f} s old: if it is alive, two trainings now write "
                      f"the same folder")
        except PyMongoError as e:
            warn(f"could not check run {previous_id} in MongoDB: {type(e).__name__}")
    os.makedirs(output_dir, exist_ok=True)
    write_run_file(output_dir, run._id, url, db_name, resumed_from)
    return resumed_from
