"""Where runs go: the MongoDB URL, the embedded SecantusDB server, Sacred observers.

Resolution order of the database URL:

1. ``mongo_url`` in the run's config;
2. the environment variable ``TF_CRNN_MONGO_URL``;
3. the embedded server: SecantusDB (PyPI ``SecantusDB``, MongoDB wire protocol
   over WiredTiger) started on 127.0.0.1 with its data in
   ``$TF_CRNN_HOME/db`` (``~/.tf_crnn/db`` by default) and reused by later runs.

Passwords in URLs are replaced by ``***`` (:func:`redact_url`) wherever a URL
is stored or printed.
"""
from __future__ import annotations

import copy
import datetime
import errno
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pymongo
from pymongo.errors import PyMongoError

ENV_URL = "TF_CRNN_MONGO_URL"
ENV_HOME = "TF_CRNN_HOME"
ENV_PORT = "TF_CRNN_DB_PORT"
DEFAULT_PORT = 27117
DEFAULT_DB_NAME = "tf_crnn"


class TrackingError(RuntimeError):
    """The database cannot be reached or the embedded server cannot start."""


# ---- URLs ---------------------------------------------------------------------

def redact_url(url: str | None) -> str | None:
    """``mongodb://user:secret@host/db`` -> ``mongodb://user:***@host/db``; other URLs unchanged."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{quote(unquote(parts.username or ''), safe='')}:***@{host}"))


def host_port(url: str) -> str:
    """``host:port`` of the first host of a MongoDB URL (what Omniboard's ``-m`` wants)."""
    netloc = urlsplit(url).netloc.rsplit("@", 1)[-1].split(",")[0]
    return netloc if ":" in netloc else f"{netloc}:27017"


def ping(url: str, timeout_s: float = 3.0) -> None:
    """Raise :class:`TrackingError` unless a MongoDB server answers at ``url``."""
    try:
        with pymongo.MongoClient(url, serverSelectionTimeoutMS=int(timeout_s * 1000),
                                 connectTimeoutMS=int(timeout_s * 1000)) as client:
            client.admin.command("ping")
    except PyMongoError as e:
        raise TrackingError(
            f"cannot reach MongoDB at {redact_url(url)} ({type(e).__name__}). Start that server, fix "
            f"mongo_url / ${ENV_URL}, or unset both to use the embedded server (tf-crnn db start)."
        ) from None


# ---- the embedded server --------------------------------------------------------

def home_dir() -> Path:
    """``$TF_CRNN_HOME`` or ``~/.tf_crnn``: where the embedded database lives."""
    return Path(os.environ.get(ENV_HOME) or Path.home() / ".tf_crnn")


@dataclass
class EmbeddedServer:
    """The project's own SecantusDB server, recorded in ``<home>/db/server.json``."""

    root: Path

    @classmethod
    def default(cls) -> "EmbeddedServer":
        return cls(home_dir() / "db")

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def state_file(self) -> Path:
        return self.root / "server.json"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def _state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def url(self) -> str | None:
        """URL of the running server, or None when it is not running."""
        state = self._state()
        if not state or not _pid_alive(state["pid"]):
            return None
        url = f"mongodb://127.0.0.1:{state['port']}/"
        try:
            ping(url, timeout_s=2.0)
        except TrackingError:
            return None
        return url

    def start(self, port: int | None = None, timeout_s: float = 60.0) -> str:
        """Start the server if it is not running; return its URL.

        Raises:
            TrackingError: the server did not answer within ``timeout_s`` (see its log).
        """
        url = self.url()
        if url:
            return url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = port or int(os.environ.get(ENV_PORT, DEFAULT_PORT))
        if not _port_free(port):
            port = _free_port()
        daemon = Path(sys.executable).with_name("secantusd-py")
        cmd = [str(daemon) if daemon.exists() else "secantusd-py", "--host", "127.0.0.1", "--port", str(port),
               "--storage-path", str(self.data_dir), "--log-level", "WARNING", "--standalone"]
        with open(self.log_file, "ab") as log:
            # A session of its own: the server outlives the training that started it.
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=self.root)
        self.state_file.write_text(json.dumps({"pid": proc.pid, "port": port}))
        url = f"mongodb://127.0.0.1:{port}/"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                ping(url, timeout_s=1.0)
                return url
            except TrackingError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise TrackingError(f"the embedded SecantusDB server did not start; see {self.log_file}") from None
                time.sleep(0.3)

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the server; return whether one was running."""
        state = self._state()
        if not state or not _pid_alive(state["pid"]):
            self.state_file.unlink(missing_ok=True)
            return False
        os.kill(state["pid"], signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _pid_alive(state["pid"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid_alive(state["pid"]):
            os.kill(state["pid"], signal.SIGKILL)
        self.state_file.unlink(missing_ok=True)
        return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited child not yet reaped) is not alive.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resolve_url(config_url: str | None = None, start_embedded: bool = True) -> str:
    """The database URL a run uses (config, then ``$TF_CRNN_MONGO_URL``, then the embedded server).

    Raises:
        TrackingError: the chosen server cannot be reached or started.
    """
    url = config_url or os.environ.get(ENV_URL)
    if url:
        ping(url)
        return url
    server = EmbeddedServer.default()
    return server.start() if start_embedded else (server.url() or "")


# ---- observers ----------------------------------------------------------------

def is_chief() -> bool:
    """Whether this process writes the run: true unless ``TF_CONFIG`` makes it a non-chief worker."""
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    if not task:
        return True
    if "chief" in cluster:
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def scrub(value, secrets: tuple[str, ...]):
    """``value`` (nested dicts / lists / strings) with every secret replaced by ``***``."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "***")
        return value
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub(v, secrets) for v in value)
    return value


def url_secrets(url: str | None) -> tuple[str, ...]:
    """The password of a URL, raw and percent-encoded (empty when there is none)."""
    password = urlsplit(url).password if url else None
    if not password:
        return ()
    return tuple({unquote(password), password, quote(unquote(password), safe="")})


# How long one database operation of the observer may wait for the server before
# the observer counts the database as gone (pymongo's default is 30 s).
OBSERVER_TIMEOUT_S = 5.0
# At the end of a run, how long to keep retrying to write what is still buffered.
FINAL_WAIT_S = 60.0
FALLBACK_DIR = "sacred_runs"          # in output_model_dir: Sacred FileStorageObserver copy, only after an outage
FAILURE_DIR = "sacred_failed_runs"    # in output_model_dir: Sacred's pickled run document when the last save fails


def _warn(message: str) -> None:
    # stderr: shown on the terminal and kept in the run's captured_out.
    print(f"tf-crnn: WARNING: {message}", file=sys.stderr, flush=True)


def _ms(ts):
    """A datetime truncated to milliseconds, as MongoDB stores it."""
    return ts.replace(microsecond=ts.microsecond // 1000 * 1000, tzinfo=None) if hasattr(ts, "microsecond") else ts


def _observer_class():
    from sacred.observers import FileStorageObserver, MongoObserver
    from sacred.serializer import flatten

    class _ResilientMongoObserver(MongoObserver):
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
          leaves Sacred's pickled run document in ``failure_dir`` as well.

        Training never waits on the database except at the very end.
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
            self._late = False       # metrics arrived after it (Sacred's last heartbeat)
            self._spool = None

        # -- Sacred events --
        def started_event(self, ex_info, command, host_info, start_time, config, meta_info, _id):
            config, meta_info = scrub(config, self.secrets), scrub(meta_info, self.secrets)
            self._start_args = copy.deepcopy(dict(ex_info=ex_info, command=command, host_info=host_info,
                                                  start_time=start_time, config=config, meta_info=meta_info))
            return super().started_event(ex_info, command, host_info, start_time, config, meta_info, _id)

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
                local = dict(args, name=self._local_name(name))
                had_fallback = self.fallback is not None
                if had_fallback:
                    self._fallback_call("artifact_event", **local)
                if self.down_since is None:
                    try:
                        super().artifact_event(name, filename, metadata, content_type)
                        return
                    except PyMongoError as e:
                        self._went_down(e)
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
                    _warn(f"the last metrics of run {self.run_entry['_id']} are only in {self.fallback.dir}"
                          if self.fallback is not None else
                          f"the last metrics of run {self.run_entry['_id']} could not be stored")
                self._late = False

        @staticmethod
        def _local_name(name: str) -> str:
            # FileStorageObserver keeps its own run.json, config.json, ... in the run folder.
            return f"artifact_{name}" if name in ("run.json", "config.json", "cout.txt", "metrics.json",
                                                  "info.json") else name

        # -- writing --
        def _flush_metrics(self) -> bool:
            try:
                for name in list(self._pending):
                    series = self._pending[name]
                    if name in self._uncertain:
                        series = self._not_yet_stored(name, series)
                    if series["steps"]:
                        self._uncertain.add(name)
                        MongoObserver.log_metrics(self, {name: series}, self._info)
                    self._uncertain.discard(name)
                    del self._pending[name]
                return True
            except PyMongoError as e:
                self._went_down(e)
                return False

        def _not_yet_stored(self, name, series):
            """The values of ``series`` whose timestamp is not in the stored series yet."""
            doc = self.metrics.find_one({"run_id": self.run_entry["_id"], "name": name}, {"timestamps": 1})
            stored = {_ms(t) for t in (doc or {}).get("timestamps", [])}
            keep = [i for i, t in enumerate(series["timestamps"]) if _ms(t) not in stored]
            return {key: [values[i] for i in keep] for key, values in series.items()}

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
                self.runs.update_one({"_id": self.run_entry["_id"]}, {"$set": self.run_entry}, upsert=True)
            except PyMongoError as e:
                self._went_down(e)
                return False
            if self.down_since is not None:
                print(f"tf-crnn: MongoDB at {self.shown_url} answers again after "
                      f"{time.monotonic() - self.down_since:.0f} s: everything buffered is now stored in run "
                      f"{self.run_entry['_id']}" + (f" (the local copy {self.fallback.dir} is no longer needed)"
                                                    if self.fallback is not None else ""), file=sys.stderr, flush=True)
                self.down_since = None
            return True

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
            lost = sum(len(s["steps"]) for s in self._pending.values())
            where = f"{self.fallback.dir} (Sacred FileStorageObserver files)" if self.fallback is not None else "nowhere"
            _warn(f"MongoDB at {self.shown_url} is still unreachable after {self.final_wait_s:.0f} s: run "
                  f"{self.run_entry['_id']} is incomplete there ({lost} metric values and "
                  f"{len(self._pending_artifacts)} artifacts not stored). Its complete record is in {where}.")
            if self.failure_dir:
                # Sacred's own last resort: one more try, then the run document pickled in failure_dir.
                MongoObserver.final_save(self, attempts=1)

        def _went_down(self, error: Exception) -> None:
            if self.down_since is None:
                self.down_since = time.monotonic()
                self.outages += 1
                _warn(f"MongoDB at {self.shown_url} did not answer ({type(error).__name__}); training goes on, "
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
                _warn(f"cannot write the local copy of run {run_id} to {self.fallback_dir}: {e}")
                return
            self.fallback = fallback
            _warn(f"run {run_id} is also being written to {fallback.dir} (Sacred FileStorageObserver: run.json, "
                  f"config.json, metrics.json, cout.txt, artifacts) until MongoDB has everything.")

        def _fallback_call(self, event, **kwargs) -> None:
            try:
                if callable(event):
                    event(self.fallback)
                else:
                    getattr(self.fallback, event)(**kwargs)
            except Exception as e:  # a full disk must not stop the training either
                _warn(f"writing the local copy in {self.fallback.dir} failed: {type(e).__name__}: {e}")

        def _keep_copy(self, name: str, filename: str) -> str:
            """A copy of an artifact that outlives ``filename`` (often a temporary file)."""
            if self.fallback is not None and self.fallback.dir:
                kept = os.path.join(self.fallback.dir, self._local_name(name))
                if os.path.isfile(kept):
                    return kept
            if self._spool is None:
                self._spool = tempfile.mkdtemp(prefix="tf_crnn_pending_artifacts_")
            kept = os.path.join(self._spool, f"{len(self._pending_artifacts)}_{os.path.basename(name)}")
            shutil.copyfile(filename, kept)
            return kept

    return _ResilientMongoObserver


def mongo_observer(url: str, db_name: str = DEFAULT_DB_NAME, failure_dir: str | None = None,
                   fallback_dir: str | None = None, timeout_s: float | None = None,
                   final_wait_s: float | None = None):
    """A Sacred MongoObserver writing to ``db_name`` (runs, metrics, GridFS artifacts).

    The password of ``url`` is replaced by ``***`` in everything the observer
    stores: the config, Sacred's meta info (which repeats the config updates
    and command line), the info dict, ``captured_out`` and a failure's trace.

    A database outage during the run neither stops the training nor loses a
    metric or an artifact: they are buffered and written when the database
    answers again, and from the first failure on the run is also written to
    ``fallback_dir/<run id>`` by Sacred's FileStorageObserver (see
    ``_ResilientMongoObserver``). ``failure_dir`` is Sacred's own: the pickled
    run document when its last save fails.
    """
    cls = _observer_class()
    return cls(url, db_name, failure_dir=failure_dir, fallback_dir=fallback_dir, secrets=url_secrets(url),
               timeout_s=timeout_s, final_wait_s=final_wait_s)


# ---- output folder and resumed runs -------------------------------------------------

RUN_FILE = "run.json"      # in output_model_dir: the Sacred run writing this folder (chief only)
STALE_AFTER_S = 60.0       # a RUNNING run without heartbeat for this long is taken as dead when resuming


def estimate_output_bytes(config: dict) -> int:
    """A generous estimate of what a training writes to ``output_model_dir``.

    Weights (float32) times: Adam's two moments in each of ``keep_checkpoints``
    + 1 checkpoints, two exports (``export``, ``export_best``) and the
    temporary copy of an export; plus 64 MB for reports and logs.
    """
    height = int(config.get("input_shape", [32])[0])
    channels = int(config.get("input_channels", 1))
    parameters = 0
    for filters, kernel, pool, bn in zip(config.get("cnn_features_list", []), config.get("cnn_kernel_size", []),
                                         config.get("cnn_pool_size", []), config.get("cnn_batch_norm", [])):
        parameters += kernel * kernel * channels * filters + (4 * filters if bn else filters)
        channels = filters
        height = -(-height // int(pool[0]))
    width = height * channels
    for units in config.get("rnn_units", []):
        parameters += 2 * 4 * (units * (width + units) + units)
        width = 2 * units
    try:
        with open(config.get("lookup_alphabet_file") or "", encoding="utf-8") as f:
            classes = len(json.load(f)) + 1
    except (OSError, ValueError):
        classes = 200
    parameters += (width + 1) * classes
    weights = 4 * parameters
    keep = int(config.get("keep_checkpoints", 3) or 1)
    return weights * (3 * (keep + 1) + 3) + 64 * 2**20


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
    tmp = os.path.join(output_dir, RUN_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, os.path.join(output_dir, RUN_FILE))
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
            record.get("pid") != os.getpid() and not _pid_alive(int(record.get("pid", -1)))
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
                _warn(f"run {previous_id}, which wrote {output_dir} before, is still RUNNING in MongoDB with a "
                      f"heartbeat less than {STALE_AFTER_S:.0f} s old: if it is alive, two trainings now write "
                      f"the same folder")
        except PyMongoError as e:
            _warn(f"could not check run {previous_id} in MongoDB: {type(e).__name__}")
    os.makedirs(output_dir, exist_ok=True)
    write_run_file(output_dir, run._id, url, db_name, resumed_from)
    return resumed_from
