"""Where runs go: the MongoDB URL, the embedded SecantusDB server, password redaction.

Resolution order of the database URL:

1. ``mongo_url`` in the run's config;
2. the environment variable ``TF_CRNN_MONGO_URL``;
3. the embedded server: SecantusDB (PyPI ``SecantusDB``, MongoDB wire protocol
   over WiredTiger) started on 127.0.0.1 with its data in
   ``$TF_CRNN_HOME/db`` (``~/.tf_crnn/db`` by default) and reused by later runs.

Passwords in URLs are replaced by ``***`` (:func:`redact_url`) wherever a URL
is stored or printed. The Sacred observer is in :mod:`tf_crnn.observers`, the
run records of an output folder in :mod:`tf_crnn.run_records`.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
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


# ---- who writes, and secrets ----------------------------------------------------

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
