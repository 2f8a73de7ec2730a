"""Omniboard (a web dashboard for Sacred runs) on the database runs go to; ``tf-crnn board`` runs it.

Omniboard is a Node.js program (npm package ``omniboard``). tf-crnn installs
it with npm into ``$TF_CRNN_HOME/omniboard`` (``~/.tf_crnn/omniboard``) the
first time it is needed and starts it against the database that training uses
(:func:`tf_crnn.tracking.server.resolve_url`)::

    tf-crnn board                    # foreground, Ctrl-C stops it; http://127.0.0.1:9000/sacred
    tf-crnn board --port 9001 --url mongodb://host:27017/ --db tf_crnn

Omniboard shows every run, its captured output and artifacts, and can delete
runs. It listens on 127.0.0.1 only (Omniboard itself would listen on every
network interface: ``omniboard_preload.js`` binds the address), so only
users of this machine reach it. ``host="0.0.0.0"`` (``tf-crnn board --host``)
opens it to the network on purpose, and then only with Omniboard's basic
authentication: the user and password come from the environment
(``TF_CRNN_BOARD_USER``, default ``admin``, and ``TF_CRNN_BOARD_PASSWORD``),
never from the command line, where every user of the machine could read them.

From Python (tests, notebooks)::

    with Board(url, "tf_crnn", port=0) as board:   # port 0: any free port
        print(board.address)

A URL without credentials or options is passed as Omniboard's
``-m host:port:db``; any other goes through Omniboard's ``MONGO_URI``
environment variable (the ``--mu`` form), so a password never shows in the
process list, and it is printed only as ``***``.
"""
from __future__ import annotations

import collections
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._util import free_port
from .server import home_dir
from .urls import DEFAULT_DB_NAME, host_port, ping, redact_url, scrub, url_secrets

OMNIBOARD_VERSION = "2.16"  # the npm version spec; 2.16.1 is checked against SecantusDB
DEFAULT_PORT = 9000
BASE_PATH = "/sacred"  # where Omniboard serves the runs of a database given with -m / MONGO_URI

# Omniboard shows metrics in its runs table only as "metric columns" (one aggregate of a metric per run),
# kept in the database (collection omniboard.metric.columns). A board adds these when there are none yet.
# (column name without dots: Omniboard uses it as a field name; metric; min / max / last / avg)
DEFAULT_METRIC_COLUMNS = (
    ("eval CER (best)", "eval.cer", "min"),
    ("eval CER (last)", "eval.cer", "last"),
    ("sequence accuracy (best)", "eval.sequence_accuracy", "max"),
    ("char accuracy (best)", "eval.char_accuracy", "max"),
    ("train loss (last)", "train.loss", "last"),
)

_LISTENING = re.compile(r"Omniboard is listening on port (\d+)")
LOCAL_HOST = "127.0.0.1"
ENV_USER, ENV_PASSWORD = "TF_CRNN_BOARD_USER", "TF_CRNN_BOARD_PASSWORD"
PRELOAD = Path(__file__).with_name("omniboard_preload.js")  # binds the address, passes the authentication


class BoardError(RuntimeError):
    """Omniboard cannot be installed or started."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is an address of this machine only (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def credentials(host: str, environ=os.environ) -> tuple[str, str] | None:
    """The basic authentication for a board on ``host``: ``(user, password)`` from the environment, or None.

    Raises:
        BoardError: ``host`` is not a loopback address and ``TF_CRNN_BOARD_PASSWORD`` is not set (a board open to
            the network without a password is refused), or the user or password holds a ``:`` (Omniboard's
            ``-u USER:PASSWORD:SECRET`` cannot carry one).
    """
    password = environ.get(ENV_PASSWORD) or None
    user = environ.get(ENV_USER) or "admin"
    if password is None:
        if is_loopback(host):
            return None
        raise BoardError(f"Omniboard on {host} would be open to the network, where it shows and can delete every "
                         f"run: set a password in the environment first ({ENV_PASSWORD}=..., and {ENV_USER}=... "
                         f"for a user other than admin), never on the command line")
    if ":" in user or ":" in password:
        raise BoardError(f"{ENV_USER} and {ENV_PASSWORD} must not contain ':' (Omniboard's -u USER:PASSWORD:SECRET "
                         f"cannot carry it): choose others")
    return user, password


# ---- installation ---------------------------------------------------------------

def install_dir() -> Path:
    """``$TF_CRNN_HOME/omniboard``: the npm prefix Omniboard is installed into."""
    return home_dir() / "omniboard"


def find_omniboard(root: Path | None = None) -> Path | None:
    """The Omniboard start script installed under ``root`` (default :func:`install_dir`), or None."""
    script = Path(root or install_dir()) / "node_modules" / "omniboard" / "dist" / "start.js"
    return script if script.is_file() else None


def _node() -> str:
    node = shutil.which("node")
    if not node:
        raise BoardError("Omniboard needs Node.js (`node` and `npm` on PATH), which is not installed: "
                         "install it (Debian/Ubuntu: `apt-get install nodejs npm`; or https://nodejs.org) "
                         "and run `tf-crnn board` again.")
    return node


def install(root: Path | None = None, version: str = OMNIBOARD_VERSION, quiet: bool = False) -> Path:
    """Install Omniboard with npm under ``root`` unless it is there; return its start script.

    Takes a few minutes and about 500 MB the first time. Concurrent callers wait
    for each other (a lock file in ``root``).

    Raises:
        BoardError: Node.js or npm is missing, or ``npm install`` failed (its output is in the message).
    """
    root = Path(root or install_dir())
    script = find_omniboard(root)
    if script:
        return script
    _node()
    npm = shutil.which("npm")
    if not npm:
        raise BoardError("Omniboard is installed with npm, which is not on PATH: install it "
                         "(Debian/Ubuntu: `apt-get install npm`) and run `tf-crnn board` again.")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        script = find_omniboard(root)  # another process may have installed it meanwhile
        if script:
            return script
        cmd = [npm, "install", "--prefix", str(root), "--no-audit", "--no-fund", "--loglevel=error",
               f"omniboard@{version}"]
        if not quiet:
            print(f"installing Omniboard {version} with npm into {root} (a few minutes, once) ...", flush=True)
        proc = subprocess.run(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, text=True)
        script = find_omniboard(root)
        if proc.returncode != 0 or not script:
            tail = "\n".join(proc.stdout.strip().splitlines()[-20:])
            raise BoardError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{tail}")
        return script


# ---- the command line Omniboard gets ------------------------------------------------

def omniboard_args(url: str, db: str) -> tuple[list[str], dict[str, str]]:
    """Omniboard's arguments and extra environment for database ``db`` at MongoDB ``url``.

    A plain ``mongodb://host[:port][/]`` becomes ``-m host:port:db``. Anything
    else (credentials, several hosts, options, ``mongodb+srv``) becomes the full
    URL with ``db`` as its path in ``MONGO_URI``; the authentication database
    stays what the original URL meant (its path, else ``admin``).
    """
    parts = urlsplit(url)
    path_db = parts.path.strip("/")
    plain = (parts.scheme == "mongodb" and "@" not in parts.netloc and "," not in parts.netloc
             and not parts.query and path_db in ("", db))
    if plain:
        return ["-m", f"{host_port(url)}:{db}"], {}
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if "@" in parts.netloc and "authSource" not in query:
        query["authSource"] = path_db or "admin"
    return [], {"MONGO_URI": urlunsplit(parts._replace(path=f"/{db}", query=urlencode(query)))}


# ---- the server ---------------------------------------------------------------------

class Board:
    """Omniboard as a subprocess: :meth:`start`, :attr:`address`, :meth:`stop` (or ``with Board(...)``).

    Args:
        url: MongoDB URL (as from :func:`tf_crnn.tracking.server.resolve_url`).
        db: database name (``mongo_db_name``).
        port: first port to try (Omniboard takes the next one while a port is busy); 0 picks a free one.
        root: npm prefix Omniboard is installed under (default :func:`install_dir`); installed when missing.
        on_output: called with each line Omniboard prints (default: kept in :attr:`output` only).
        metric_columns: ``(column name, metric, min|max|last|avg)`` added to the runs table when the
            database has no metric columns yet (default :data:`DEFAULT_METRIC_COLUMNS`; ``()``: none).
        host: the address Omniboard listens on: 127.0.0.1 (default) serves this machine only; any other
            (``0.0.0.0``: every interface) requires ``TF_CRNN_BOARD_PASSWORD`` (:func:`credentials`).
    """

    def __init__(self, url: str, db: str = DEFAULT_DB_NAME, port: int = DEFAULT_PORT,
                 root: Path | None = None, on_output: Callable[[str], None] | None = None,
                 metric_columns=DEFAULT_METRIC_COLUMNS, host: str = LOCAL_HOST):
        self.url, self.db, self.root = url, db, Path(root or install_dir())
        self.host = host
        self.metric_columns = tuple(metric_columns)
        self.notes: list[str] = []  # what went wrong on the side (metric columns not added)
        self.requested_port = port
        self.port: int | None = None
        self.on_output = on_output
        self.output: collections.deque[str] = collections.deque(maxlen=200)
        self._proc: subprocess.Popen | None = None
        self._listening = threading.Event()

    @property
    def address(self) -> str:
        """``http://HOST:PORT/sacred``, the page with the runs table (127.0.0.1 for a board on every interface)."""
        if self.port is None:
            raise BoardError("Omniboard is not running")
        host = LOCAL_HOST if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}{BASE_PATH}"

    def _request(self, url: str, data: bytes | None = None) -> urllib.request.Request:
        """A request to this board, with its basic authentication when it has one."""
        headers = {"Content-Type": "application/json"}
        auth = credentials(self.host)
        if auth:
            import base64

            headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
        return urllib.request.Request(url, data=data, headers=headers)

    def describe(self) -> str:
        """What is served, from where, with any password as ``***``."""
        return f"runs of database '{self.db}' at {redact_url(self.url)}"

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 120.0) -> str:
        """Install Omniboard if needed, start it and wait until it serves the runs; return :attr:`address`.

        Raises:
            tf_crnn.tracking.urls.TrackingError: the database does not answer.
            BoardError: Node.js / npm missing, install failed, or Omniboard did not come up (its output is in
                the message).
        """
        if self.running():
            return self.address
        credentials(self.host)  # refuses a board open to the network without a password, before anything starts
        ping(self.url)
        script = install(self.root)
        args, extra_env = omniboard_args(self.url, self.db)
        port = self.requested_port or free_port()
        env = {**os.environ, **extra_env, "PORT": str(port), "TF_CRNN_BOARD_HOST": self.host}
        env.pop("OMNIBOARD_CONFIG", None)  # would replace the database given here
        self.port = None
        self._listening.clear()
        self.output.clear()
        self._proc = subprocess.Popen([_node(), "--require", str(PRELOAD), str(script), *args], cwd=script.parent,
                                      env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, errors="replace",
                                      start_new_session=True)
        threading.Thread(target=self._read_output, args=(self._proc,), daemon=True).start()
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        self._add_metric_columns()
        return self.address

    def _api(self, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        with urllib.request.urlopen(self._request(f"{self.address}/api/v1/{path}", data), timeout=10) as response:
            return json.loads(response.read() or b"null")

    def _add_metric_columns(self) -> None:
        """Add :attr:`metric_columns` through Omniboard's API when the database has none (a read-only user: a note)."""
        if not self.metric_columns:
            return
        try:
            if self._api("Omniboard.Metric.Columns"):
                return  # the user's own choice
            for name, metric, extrema in self.metric_columns:
                self._api("Omniboard.Metric.Columns", {"name": name, "metric_name": metric,
                                                       "extrema": extrema, "lastn": 1})
        except (urllib.error.URLError, OSError, ValueError) as e:
            self.notes.append(f"could not add the default metric columns ({e}); add them with "
                              f"'+/- Metric Columns' in Omniboard")

    def _read_output(self, proc: subprocess.Popen) -> None:
        auth = credentials(self.host)
        secrets = url_secrets(self.url) + ((auth[1],) if auth else ())
        for line in proc.stdout:
            line = scrub(line.rstrip("\n"), secrets)
            self.output.append(line)
            match = _LISTENING.search(line)
            if match:
                self.port = int(match.group(1))
                self._listening.set()
            if self.on_output:
                self.on_output(line)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._listening.wait(0.2):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise BoardError(self._failure("did not start"))
        # Listening is not enough: the runs API answers once Omniboard has connected to the database.
        while True:
            try:
                with urllib.request.urlopen(self._request(f"{self.address}/api/v1/Runs/count"), timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise BoardError(self._failure(f"does not serve the runs of {self.describe()}"))
            time.sleep(0.3)

    def _failure(self, what: str) -> str:
        out = "\n".join(list(self.output)[-20:])
        return f"Omniboard {what}; its output:\n{out}"

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop Omniboard; return whether it was running."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return False
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
        return True

    def wait(self) -> int:
        """Block until Omniboard exits; return its exit code."""
        return self._proc.wait() if self._proc else 0

    def __enter__(self) -> "Board":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
