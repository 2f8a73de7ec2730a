"""The embedded database: a SecantusDB server (MongoDB wire protocol) that tf-crnn starts and reuses.

Its data lives in ``$TF_CRNN_HOME/db/data`` (``~/.tf_crnn/db``), its pid and
port in ``server.json`` beside it, its log in ``server.log``. It runs in a
session of its own, so it outlives the training that started it; ``tf-crnn db
start|stop|status`` manage it. :func:`resolve_url` picks the database a run uses, this
server being the last choice.
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

from .._util import free_port, home_dir, pid_alive, write_json
from .urls import ENV_URL, TrackingError, ping

ENV_PORT = "TF_CRNN_DB_PORT"
DEFAULT_PORT = 27117


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
        if not state or not pid_alive(state["pid"]):
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
            port = free_port()
        daemon = Path(sys.executable).with_name("secantusd-py")
        cmd = [str(daemon) if daemon.exists() else "secantusd-py", "--host", "127.0.0.1", "--port", str(port),
               "--storage-path", str(self.data_dir), "--log-level", "WARNING", "--standalone"]
        with open(self.log_file, "ab") as log:
            # A session of its own: the server outlives the training that started it.
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=self.root)
        write_json(self.state_file, {"pid": proc.pid, "port": port}, indent=None)
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
        if not state or not pid_alive(state["pid"]):
            self.state_file.unlink(missing_ok=True)
            return False
        os.kill(state["pid"], signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while pid_alive(state["pid"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(state["pid"]):
            os.kill(state["pid"], signal.SIGKILL)
        self.state_file.unlink(missing_ok=True)
        return True


def resolve_url(config_url: str | None = None, start_embedded: bool = True, db_name: str | None = None) -> str:
    """The database URL a run uses: ``config_url``, else ``$TF_CRNN_MONGO_URL``, else the embedded server.

    With ``db_name``, a configured server must also let this URL read that database
    (:func:`tf_crnn.tracking.urls.ping`), so missing credentials show at the start, not at the first write.

    Args:
        config_url: the run's ``mongo_url`` (None or empty: not configured).
        start_embedded: start the embedded server if it is not running; False returns its URL only
            if it runs, else ``""``.
        db_name: the database the run writes to (checked on a configured server only).

    Raises:
        TrackingError: the chosen server cannot be reached, rejects the credentials, or cannot be started.
    """
    url = config_url or os.environ.get(ENV_URL)
    if url:
        ping(url, db_name=db_name)
        return url
    server = EmbeddedServer.default()
    return server.start() if start_embedded else (server.url() or "")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


