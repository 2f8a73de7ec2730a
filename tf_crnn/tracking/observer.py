"""The Sacred MongoDB observer of tf-crnn: passwords redacted, outages buffered, nothing lost.

:class:`ResilientMongoObserver` extends Sacred's ``MongoObserver``;
:func:`mongo_observer` builds one for a URL. See docs/guide/faults.md,
"Database gone during a run".
"""
from __future__ import annotations

import copy
import os
import shutil
import sys
import tempfile
import threading
import time

from bson.errors import BSONError
from sacred.observers import FileStorageObserver, MongoObserver
from sacred.serializer import flatten

from .._util import warn
from .urls import DEFAULT_DB_NAME, redact_url, scrub, url_secrets

# How long one database operation of the observer may wait for the server before
# the observer counts the database as gone (pymongo's default is 30 s).
OBSERVER_TIMEOUT_S = 5.0
# At the end of a run, how long to keep retrying to write what is still buffered.
FINAL_WAIT_S = 60.0
FALLBACK_DIR = "sacred_runs"          # in output_model_dir: Sacred FileStorageObserver copy, only after an outage
FAILURE_DIR = "sacred_failed_runs"    # in output_model_dir: Sacred's pickled run document when the last save fails


#: What MongoDB (or the BSON encoder before it) refuses in a document, where a retry cannot help: a value BSON
#: cannot encode (``InvalidDocument``; an int past 64 bits raises ``OverflowError``), a document over 16 MB
#: (``DocumentTooLarge``, an ``InvalidDocument``). The observer then stores :func:`storable` copies.
REJECTED = (BSONError, OverflowError)
#: Captured output kept in the MongoDB run document when the whole would be too large (the tail; all of it
#: stays in the local copy's cout.txt).
CAPTURED_OUT_KEPT = 1_000_000
_INT64 = (-2 ** 63, 2 ** 63 - 1)


def storable(value):
    """``value`` (nested dicts, lists, scalars) with what BSON cannot encode replaced by its text.

    Ints outside 64 bits become strings (``"1180591620717411303424"``); dict keys become strings. The rest is
    kept as it is: Sacred has already flattened objects to JSON-like values (``sacred.serializer.flatten``).
    """
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if _INT64[0] <= value <= _INT64[1] else str(value)
    if isinstance(value, dict):
        return {str(k): storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    return value


def storable_run(entry: dict, full_output_at: str) -> dict:
    """A copy of run document ``entry`` that MongoDB accepts: :func:`storable` values, and the captured output cut
    to its last :data:`CAPTURED_OUT_KEPT` characters (a run document over 16 MB is its output, nearly always), with
    a first line saying that the whole is at ``full_output_at``."""
    entry = storable(entry)
    out = entry.get("captured_out") or ""
    if len(out) > CAPTURED_OUT_KEPT:
        entry["captured_out"] = (f"[tf-crnn: the first {len(out) - CAPTURED_OUT_KEPT} characters of the output are "
                                 f"only in {full_output_at}]\n" + out[-CAPTURED_OUT_KEPT:])
    return entry


#: Files of Sacred's FileStorageObserver run folder; an artifact of the same name is kept as ``artifact_<name>``.
FILE_STORAGE_FILES = ("run.json", "config.json", "cout.txt", "metrics.json", "info.json")


def stored_time(ts):
    """A datetime truncated to milliseconds and without time zone, as MongoDB stores and returns it."""
    return ts.replace(microsecond=ts.microsecond // 1000 * 1000, tzinfo=None) if hasattr(ts, "microsecond") else ts


def unstored(series: dict, stored_timestamps) -> dict:
    """The values of a metric ``series`` (``steps``, ``values``, ``timestamps``) not among ``stored_timestamps``.

    A value is identified by its timestamp (Sacred's, at ``log_scalar``), compared as
    MongoDB stores it (:func:`stored_time`): what a write that may have landed, or an
    earlier import, stored already is left out.
    """
    stored = {stored_time(t) for t in stored_timestamps}
    keep = [i for i, t in enumerate(series["timestamps"]) if stored_time(t) not in stored]
    return {key: [series[key][i] for i in keep] for key in ("steps", "values", "timestamps")}


def local_artifact_name(name: str) -> str:
    """The file name of artifact ``name`` in a FileStorageObserver run folder (see :data:`FILE_STORAGE_FILES`)."""
    return f"artifact_{name}" if name in FILE_STORAGE_FILES else name


def artifact_name(local_name: str) -> str:
    """The artifact name of a file written by :func:`local_artifact_name` (its inverse)."""
    original = local_name.removeprefix("artifact_")
    return original if original in FILE_STORAGE_FILES else local_name


class ResilientMongoObserver(MongoObserver):
    """Sacred's MongoObserver that survives a database outage and never stores the URL's password.

    Sacred's own observer drops the metrics of a heartbeat whose write
    fails and, after the first exception, is never called again: every
    later metric and artifact of the run is lost. This one

    * keeps every metric value not yet acknowledged by MongoDB and pushes it
      at the next heartbeat (values whose write may have landed are checked
      against the stored series first, so none is stored twice);
    * keeps artifacts whose upload failed (a copy, since the file may be a
      temporary one) and uploads them when the database answers again;
    * from the first failure on, also writes the whole run with Sacred's
      ``FileStorageObserver`` to ``fallback_dir/<run id>`` and says so;
    * at the end, retries for ``final_wait_s`` before giving up, then
      leaves Sacred's pickled run document in ``failure_dir`` as well and sets
      :attr:`incomplete`; ``tf-crnn db import-run`` (:mod:`tf_crnn.tracking.run_import`)
      uploads :attr:`local_record` later.

    Metrics reach it at each heartbeat and, from tf-crnn's training, after each
    epoch as well. A write waits at most ``timeout_s`` for the database (during an
    outage, the end of an epoch waits that long); only the end of the run waits
    longer (``final_wait_s``).
    """

    def __init__(self, url, db_name, failure_dir=None, fallback_dir=None, secrets=(),
                 timeout_s=None, final_wait_s=None):
        timeout_ms = int(1000 * (OBSERVER_TIMEOUT_S if timeout_s is None else timeout_s))
        options = {}
        lower = url.lower()
        for key, value in (("serverSelectionTimeoutMS", timeout_ms), ("connectTimeoutMS", timeout_ms),
                           ("socketTimeoutMS", max(60_000, timeout_ms))):
            if key.lower() not in lower:  # options in the URL win
                options[key] = value
        super().__init__(url=url, db_name=db_name, failure_dir=failure_dir, **options)
        self.shown_url = redact_url(url)
        self.secrets = tuple(secrets)
        self.fallback_dir = fallback_dir
        self.final_wait_s = FINAL_WAIT_S if final_wait_s is None else final_wait_s
        self.fallback = None          # the FileStorageObserver, once the database failed
        self.down_since = None        # time.monotonic() of the current outage
        self.outages = 0
        self._lock = threading.RLock()
        self._pending: dict[str, dict[str, list]] = {}   # metric values MongoDB has not acknowledged
        self._uncertain: set[str] = set()                # metrics whose last push may have landed
        self._pending_artifacts: list[tuple] = []        # (name, file, metadata, content_type)
        self._history: dict[str, dict[str, list]] = {}   # every metric value (replayed into the fallback)
        self._info = {}
        self._start_args = None
        self._last_beat = None
        self._beat_failed = False
        self._closed = False     # a final event was handled
        self.incomplete = False  # the final event gave up: MongoDB lacks part of the run (see local_record)
        self._late = False       # metrics arrived after it (Sacred's last heartbeat)
        self._spool = None
        self._rejections: set[str] = set()  # kinds of refused values already reported

    # -- Sacred events --
    def started_event(self, ex_info, command, host_info, start_time, config, meta_info, _id):
        config, meta_info = scrub(config, self.secrets), scrub(meta_info, self.secrets)
        self._start_args = copy.deepcopy(dict(ex_info=ex_info, command=command, host_info=host_info,
                                              start_time=start_time, config=config, meta_info=meta_info))
        try:
            return super().started_event(ex_info, command, host_info, start_time, config, meta_info, _id)
        except REJECTED as e:  # a config value BSON cannot encode: store its text, and say so (with the run's id)
            _id = super().started_event(ex_info, command, host_info, start_time, storable(config),
                                        storable(meta_info), _id)
            self._note_rejected(e, "the config")
            return _id

    def queued_event(self, ex_info, command, host_info, queue_time, config, meta_info, _id):
        return super().queued_event(ex_info, command, host_info, queue_time,
                                    scrub(config, self.secrets), scrub(meta_info, self.secrets), _id)

    def log_metrics(self, metrics_by_name, info):
        with self._lock:
            self._late = self._closed
            self._info = info
            for name, series in metrics_by_name.items():
                for store in (self._pending, self._history):
                    kept = store.setdefault(name, {"steps": [], "values": [], "timestamps": []})
                    for key in kept:
                        kept[key].extend(series[key])
            if self.fallback is not None:
                self._fallback_call("log_metrics", metrics_by_name=metrics_by_name, info={})
            self._beat_failed = not self._flush_metrics()

    def heartbeat_event(self, info, captured_out, beat_time, result):
        info, captured_out = scrub(info, self.secrets), scrub(captured_out, self.secrets)
        with self._lock:
            self.run_entry["info"] = flatten(info)
            self.run_entry["captured_out"] = captured_out
            self.run_entry["heartbeat"] = beat_time
            self.run_entry["result"] = flatten(result)
            self._last_beat = dict(info=info, captured_out=captured_out, beat_time=beat_time, result=result)
            if self.fallback is not None:
                self._fallback_call("heartbeat_event", **self._last_beat)
            if self._beat_failed:  # the database just failed this beat: don't wait on it twice
                self._beat_failed = False
                return
            self._flush()

    def artifact_event(self, name, filename, metadata=None, content_type=None):
        args = dict(name=name, filename=filename, metadata=metadata, content_type=content_type)
        with self._lock:
            local = dict(args, name=local_artifact_name(name))
            had_fallback = self.fallback is not None
            if had_fallback:
                self._fallback_call("artifact_event", **local)
            if self.down_since is None:
                try:
                    super().artifact_event(name, filename, metadata, content_type)
                    return
                except Exception as e:  # every failure of the write: Sacred would drop this observer
                    self._write_failed(e, f"artifact {name}")
            if not had_fallback and self.fallback is not None:
                self._fallback_call("artifact_event", **local)
            self._pending_artifacts.append((name, self._keep_copy(name, filename), metadata, content_type))

    def completed_event(self, stop_time, result):
        with self._lock:
            self.run_entry.update(stop_time=stop_time, result=flatten(result), status="COMPLETED")
            self._final(lambda fb: fb.completed_event(stop_time=stop_time, result=result))

    def interrupted_event(self, interrupt_time, status):
        with self._lock:
            self.run_entry.update(stop_time=interrupt_time, status=status)
            self._final(lambda fb: fb.interrupted_event(interrupt_time=interrupt_time, status=status))

    def failed_event(self, fail_time, fail_trace):
        fail_trace = scrub(fail_trace, self.secrets)
        with self._lock:
            self.run_entry.update(stop_time=fail_time, status="FAILED", fail_trace=fail_trace)
            self._final(lambda fb: fb.failed_event(fail_time=fail_time, fail_trace=fail_trace))

    def join(self):
        # Sacred's last heartbeat may come after the final event: one more try for what it left
        # (while the database is down, the local copy has it already).
        with self._lock:
            if self._late and (self._pending or self._pending_artifacts) and not self._flush():
                warn(f"the last metrics of run {self.run_entry['_id']} are only in {self.fallback.dir}"
                      if self.fallback is not None else
                      f"the last metrics of run {self.run_entry['_id']} could not be stored")
            self._late = False

    @property
    def local_record(self) -> str | None:
        """The folder of the run's FileStorageObserver copy (written from the first outage on), or None."""
        return self.fallback.dir if self.fallback is not None else None

    # -- writing --
    def _flush_metrics(self) -> bool:
        try:
            for name in list(self._pending):
                series = self._pending[name]
                if name in self._uncertain:
                    series = self._not_yet_stored(name, series)
                if series["steps"]:
                    self._uncertain.add(name)
                    self._log_metric(name, series)
                self._uncertain.discard(name)
                del self._pending[name]
            return True
        except Exception as e:  # every failure of a write: Sacred would drop this observer for good
            self._write_failed(e, "metrics")
            return False

    def _log_metric(self, name, series) -> None:
        """Store one metric's new values; values BSON cannot encode are stored as their text (and said once)."""
        try:
            MongoObserver.log_metrics(self, {name: series}, self._info)
        except REJECTED as e:
            self._note_rejected(e, f"metric {name}")
            self._info = storable(self._info)
            MongoObserver.log_metrics(self, {name: dict(series, values=storable(series["values"]))}, self._info)

    def _not_yet_stored(self, name, series):
        """The values of ``series`` whose timestamp is not in the stored series yet."""
        doc = self.metrics.find_one({"run_id": self.run_entry["_id"], "name": name}, {"timestamps": 1})
        return unstored(series, (doc or {}).get("timestamps", []))

    def _flush(self) -> bool:
        """Write buffered metrics, buffered artifacts and the run document; whether all went through."""
        if not self._flush_metrics():
            return False
        try:
            while self._pending_artifacts:
                name, filename, metadata, content_type = self._pending_artifacts[0]
                MongoObserver.artifact_event(self, name, filename, metadata, content_type)
                self._pending_artifacts.pop(0)
            if self._info:
                self.run_entry["info"] = flatten(scrub(self._info, self.secrets))
            self._save_run_entry()
        except Exception as e:  # every failure of a write: Sacred would drop this observer for good
            self._write_failed(e, "the run")
            return False
        if self._closed:
            self.incomplete = False  # a late retry (join) stored what the final wait could not
        if self.down_since is not None:
            print(f"tf-crnn: MongoDB at {self.shown_url} answers again after "
                  f"{time.monotonic() - self.down_since:.0f} s: everything buffered is now stored in run "
                  f"{self.run_entry['_id']}" + (f" (the local copy {self.fallback.dir} is no longer needed)"
                                                if self.fallback is not None else ""), file=sys.stderr, flush=True)
            self.down_since = None
        return True

    def _save_run_entry(self) -> None:
        """Write the run document; what MongoDB refuses in it is stored as text or trimmed (and said once)."""
        try:
            self.runs.update_one({"_id": self.run_entry["_id"]}, {"$set": self.run_entry}, upsert=True)
            return
        except REJECTED as e:
            self._note_rejected(e, "the run document")
        where = f"{self.fallback.dir}/cout.txt" if self.fallback is not None else "the run's console"
        entry = storable_run(self.run_entry, where)
        self.runs.update_one({"_id": entry["_id"]}, {"$set": entry}, upsert=True)

    def _write_failed(self, error: Exception, what: str) -> None:
        """A write to MongoDB failed: an outage (buffer, local copy) or a refused value (local copy, said once)."""
        if isinstance(error, REJECTED):
            self._note_rejected(error, what)
            self._went_down(error)  # retried with storable values at the next write; the local copy has all
        else:
            self._went_down(error)

    def _note_rejected(self, error: Exception, what: str) -> None:
        """Say once per kind of refusal that MongoDB refused part of the run, and keep the whole in the local copy."""
        kind = type(error).__name__
        self._start_fallback()
        if kind in self._rejections:
            return
        self._rejections.add(kind)
        where = self.fallback.dir if self.fallback is not None else "nowhere (no local copy could be written)"
        warn(f"MongoDB at {self.shown_url} refused {what} of run {self.run_entry.get('_id')} ({kind}: "
             f"{str(error)[:200]}): tf-crnn stores it there as text or trimmed; the whole record is in {where}")

    def _final(self, fallback_event) -> None:
        self._closed = True
        deadline = time.monotonic() + self.final_wait_s
        while not self._flush():
            if time.monotonic() >= deadline:
                break
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
        else:
            if fallback_event is not None and self.fallback is not None:
                self._fallback_call(fallback_event)
            return
        if fallback_event is not None and self.fallback is not None:
            self._fallback_call(fallback_event)
        self.incomplete = True
        lost = sum(len(s["steps"]) for s in self._pending.values())
        where = (f"{self.fallback.dir} (Sacred FileStorageObserver files; once the database answers, "
                 f"`tf-crnn db import-run {self.fallback.dir}` uploads it)") if self.fallback is not None else "nowhere"
        warn(f"MongoDB at {self.shown_url} is still unreachable after {self.final_wait_s:.0f} s: run "
              f"{self.run_entry['_id']} is incomplete there ({lost} metric values and "
              f"{len(self._pending_artifacts)} artifacts not stored). Its complete record is in {where}.")
        if self.failure_dir:
            # Sacred's own last resort: one more try, then the run document pickled in failure_dir.
            MongoObserver.final_save(self, attempts=1)

    def _went_down(self, error: Exception) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.outages += 1
            warn(f"MongoDB at {self.shown_url} did not answer ({type(error).__name__}); training goes on, "
                  f"metrics and artifacts are kept and written when it answers again.")
        self._start_fallback()

    def _start_fallback(self) -> None:
        if self.fallback is not None or not self.fallback_dir or self._start_args is None:
            return
        run_id = self.run_entry["_id"]
        try:
            os.makedirs(self.fallback_dir, exist_ok=True)
            name, n = str(run_id), 1
            while os.path.exists(os.path.join(self.fallback_dir, name)):
                n += 1
                name = f"{run_id}.{n}"
            fallback = FileStorageObserver(self.fallback_dir, copy_sources=False)
            fallback.started_event(**copy.deepcopy(self._start_args), _id=name)
            if self._history:
                fallback.log_metrics(self._history, {})
            if self._last_beat is not None:
                fallback.heartbeat_event(**self._last_beat)
        except OSError as e:
            warn(f"cannot write the local copy of run {run_id} to {self.fallback_dir}: {e}")
            return
        self.fallback = fallback
        warn(f"run {run_id} is also being written to {fallback.dir} (Sacred FileStorageObserver: run.json, "
              f"config.json, metrics.json, cout.txt, artifacts) until MongoDB has everything.")

    def _fallback_call(self, event, **kwargs) -> None:
        try:
            if callable(event):
                event(self.fallback)
            else:
                getattr(self.fallback, event)(**kwargs)
        except Exception as e:  # a full disk must not stop the training either
            warn(f"writing the local copy in {self.fallback.dir} failed: {type(e).__name__}: {e}")

    def _keep_copy(self, name: str, filename: str) -> str:
        """A copy of an artifact that outlives ``filename`` (often a temporary file)."""
        if self.fallback is not None and self.fallback.dir:
            kept = os.path.join(self.fallback.dir, local_artifact_name(name))
            if os.path.isfile(kept):
                return kept
        try:
            if self._spool is None:
                self._spool = tempfile.mkdtemp(prefix="tf_crnn_pending_artifacts_")
            kept = os.path.join(self._spool, f"{len(self._pending_artifacts)}_{os.path.basename(name)}")
            shutil.copyfile(filename, kept)
            return kept
        except OSError as e:  # a full disk: upload from where the file is, if it is still there then
            warn(f"cannot keep a copy of artifact {name} until MongoDB answers ({e}); it will be uploaded from "
                 f"{filename} if that file still exists then")
            return filename


def mongo_observer(url: str, db_name: str = DEFAULT_DB_NAME, failure_dir: str | None = None,
                   fallback_dir: str | None = None, timeout_s: float | None = None,
                   final_wait_s: float | None = None) -> ResilientMongoObserver:
    """A Sacred MongoObserver writing to ``db_name`` (runs, metrics, GridFS artifacts).

    The password of ``url`` is replaced by ``***`` in everything the observer
    stores: the config, Sacred's meta info (which repeats the config updates
    and command line), the info dict, ``captured_out`` and a failure's trace.

    A database outage during the run neither stops the training nor loses a
    metric or an artifact: they are buffered and written when the database
    answers again, and from the first failure on the run is also written to
    ``fallback_dir/<run id>`` by Sacred's FileStorageObserver (see
    :class:`ResilientMongoObserver`). ``failure_dir`` is Sacred's own: the pickled
    run document when its last save fails.
    """
    return ResilientMongoObserver(url, db_name, failure_dir=failure_dir, fallback_dir=fallback_dir,
                                  secrets=url_secrets(url), timeout_s=timeout_s, final_wait_s=final_wait_s)
