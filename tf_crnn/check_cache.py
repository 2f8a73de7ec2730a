"""What the checks before training remember between runs, so a second run checks and hashes only new or changed files.

Two kinds of facts, one table each, in one SQLite file, ``$TF_CRNN_HOME/cache/checks.sqlite``
(``~/.tf_crnn/cache``; never beside the data, whose folders may be read-only):

- ``images``: what :func:`tf_crnn.data.check_images` found out about a usable image: width, height, whether
  TensorFlow reads its bytes directly, whether it is one colour. Per file and *check variant* (the model's
  channels, the Pillow and TensorFlow versions and :data:`tf_crnn.images.RULE_VERSION`). Verdicts that depend on
  a run's settings (``squeezed`` by ``max_width``, the CTC length check) are derived from these facts every run.
  Unusable images are not remembered: they are checked again every run (they are few, and a reason such as a
  read error may not last).
- ``md5``: the MD5 of a file's bytes, for the ``content`` data fingerprint
  (:func:`tf_crnn.tracking.provenance.data_fingerprint`).

A fact is keyed by the file's absolute path, size and modification time in nanoseconds, taken before the file
is read: a file rewritten, touched or replaced since has another key and is checked again (its row is
replaced). A file modified less than :data:`RACY_SECONDS` before it was read is not remembered, since a
rewrite within the file system's timestamp granularity (1-2 s on some) could keep its key.

Several processes (trainings, sweep workers) may read and write the file at once: SQLite in WAL mode, writes
in short transactions, a busy timeout. WAL mode needs them on one machine: machines sharing a home folder
over NFS need a ``TF_CRNN_HOME`` each. A cache that cannot be used (home not writable, disk full, a corrupt
file, a lock held too long) never stops a run: one warning per process, then every file is checked as without
a cache. ``TF_CRNN_NO_CHECK_CACHE=1`` turns it off.

:func:`counts` tells how many look-ups of this process the cache answered (``images hit``, ``md5 hit``) and how
many files had to be checked or hashed (``images miss``, ``md5 miss``).
"""
from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

from ._util import home_dir

log = logging.getLogger(__name__)

#: Set to ``1`` (or ``true``, ``yes``) to check and hash every file every run.
ENV_OFF = "TF_CRNN_NO_CHECK_CACHE"
#: The cache file, relative to :func:`tf_crnn._util.home_dir`.
RELATIVE_PATH = Path("cache") / "checks.sqlite"
#: A file whose modification time is this close to (or after) the moment it was stat'ed is not remembered.
RACY_SECONDS = 2.0
#: How long a process waits for another one's write transaction before giving the cache up.
BUSY_TIMEOUT_S = 60.0
#: Paths per ``IN (...)`` look-up and rows per write transaction (short locks for the other writers).
LOOKUP_CHUNK = 500
WRITE_CHUNK = 20_000
#: A look-up reads all of a table's rows (of the check variant) when the files asked for are at least this
#: fraction of them: 1/4.
SCAN_SHARE = 4

#: The facts remembered about a usable image: width, height (px), read directly by TensorFlow, one colour.
ImageFacts = tuple[int, int, bool, bool]

# The tables carry their layout's version in their names: a later layout gets new tables, never misreads old rows.
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS images_v1 (variant TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL, "
    "mtime_ns INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL, direct INTEGER NOT NULL, "
    "blank INTEGER NOT NULL, PRIMARY KEY (variant, path)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS md5_v1 (path TEXT NOT NULL PRIMARY KEY, size INTEGER NOT NULL, "
    "mtime_ns INTEGER NOT NULL, md5 TEXT NOT NULL) WITHOUT ROWID",
)

_counts: Counter = Counter()
_shared: dict[Path, "CheckCache"] = {}
_shared_lock = threading.Lock()


class FileKey(NamedTuple):  # a tuple: a million are made each run, in half the time of a frozen dataclass
    """A file as the cache knows it: absolute path, size (bytes), modification time (ns since the epoch).

    ``seen_ns``: when it was stat'ed (``time.time_ns()``); the cache compares path, size and modification time.
    """

    path: str
    size: int
    mtime_ns: int
    seen_ns: int = 0

    @property
    def settled(self) -> bool:
        """Modified long enough before it was stat'ed that a later rewrite gets a later modification time."""
        return self.mtime_ns < self.seen_ns - int(RACY_SECONDS * 1e9)


def file_key(path: str | os.PathLike, seen_ns: int | None = None) -> FileKey | None:
    """The :class:`FileKey` of a regular file now, or None when it is missing, not a file or cannot be stat'ed.

    ``seen_ns``: a ``time.time_ns()`` taken before the ``stat`` (default: now); an earlier one only makes
    :attr:`FileKey.settled` stricter.
    """
    seen = time.time_ns() if seen_ns is None else seen_ns
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return FileKey(os.path.abspath(path), st.st_size, st.st_mtime_ns, seen)


class FileStats:
    """The :class:`FileKey` of each file one run looks at, each file stat'ed once however often it is asked for.

    A training checks its images (:func:`tf_crnn.data.check_images`) and then fingerprints them
    (:func:`tf_crnn.tracking.provenance.data_fingerprint`): both look their files up in the cache by key, and at a
    million images each ``stat`` pass took about 5 s. The key a file had when the run first looked is the one both
    use: a file changed in between is checked and hashed again by the next run (its key no longer matches).
    Keep one for the span of one run only: a later run must see the files as they are then.
    """

    def __init__(self) -> None:
        self._keys: dict[str, FileKey | None] = {}

    def keys(self, paths: Sequence[str]) -> list[FileKey | None]:
        """:func:`file_key` of each path, in order: the remembered one, or (one clock read for all) a new one."""
        known, seen = self._keys, time.time_ns()
        for path in paths:
            if path not in known:
                known[path] = file_key(path, seen)
        return [known[path] for path in paths]


def turned_off() -> bool:
    """Whether ``TF_CRNN_NO_CHECK_CACHE`` asks for no cache."""
    return os.environ.get(ENV_OFF, "").strip().lower() in ("1", "true", "yes", "on")


def default_file() -> Path:
    """``$TF_CRNN_HOME/cache/checks.sqlite`` (``~/.tf_crnn/cache/checks.sqlite``)."""
    return home_dir() / RELATIVE_PATH


def shared() -> "CheckCache":
    """This process's cache at :func:`default_file` (one object per file, so it warns once); a disabled one
    when :func:`turned_off`."""
    if turned_off():
        return CheckCache(None)
    file = default_file().absolute()
    with _shared_lock:
        if file not in _shared:
            _shared[file] = CheckCache(file)
        return _shared[file]


def counts() -> dict[str, int]:
    """Look-ups of this process so far: ``images hit`` / ``images miss``, ``md5 hit`` / ``md5 miss``."""
    return dict(_counts)


class CheckCache:
    """The facts of :mod:`tf_crnn.check_cache` in one SQLite file; every method is a no-op (all misses) when
    disabled.

    Args:
        file: the SQLite file (created with its folder on first use); None: a disabled cache.
    """

    def __init__(self, file: Path | None):
        self.file = file
        self.enabled = file is not None
        self._connection: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._inherited: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    # ---- image facts

    def image_facts(self, keys: Sequence[FileKey | None], variant: str) -> list[ImageFacts | None]:
        """The remembered facts of each file under ``variant``, or None where unknown or changed (a miss)."""
        rows = self._lookup("path, size, mtime_ns, width, height, direct, blank", "images_v1", "variant = ?",
                            [variant], keys)
        found = [None if row is None else (row[3], row[4], bool(row[5]), bool(row[6])) for row in _matching(rows, keys)]
        self._count("images", found)
        return found

    def remember_images(self, facts: Iterable[tuple[FileKey | None, ImageFacts]], variant: str) -> None:
        """Store the facts of usable images found under ``variant`` (unsettled or unknown files are skipped)."""
        self._store("INSERT OR REPLACE INTO images_v1 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(variant, k.path, k.size, k.mtime_ns, int(w), int(h), int(d), int(b))
                     for k, (w, h, d, b) in facts if k is not None and k.settled])

    # ---- file hashes

    def md5s(self, keys: Sequence[FileKey | None]) -> list[str | None]:
        """The remembered MD5 hex digest of each file, or None where unknown or changed (a miss)."""
        rows = self._lookup("path, size, mtime_ns, md5", "md5_v1", "1", [], keys)
        found = [None if row is None else row[3] for row in _matching(rows, keys)]
        self._count("md5", found)
        return found

    def remember_md5s(self, digests: Iterable[tuple[FileKey | None, str]]) -> None:
        """Store files' MD5 hex digests (unsettled or unknown files are skipped)."""
        self._store("INSERT OR REPLACE INTO md5_v1 VALUES (?, ?, ?, ?)",
                    [(k.path, k.size, k.mtime_ns, digest) for k, digest in digests if k is not None and k.settled])

    # ---- SQLite

    def _count(self, kind: str, found: list) -> None:
        hits = sum(f is not None for f in found)
        _counts[f"{kind} hit"] += hits
        _counts[f"{kind} miss"] += len(found) - hits

    def _lookup(self, columns: str, table: str, condition: str, leading: list,
                keys: Sequence[FileKey | None]) -> dict[str, tuple]:
        """``{path: row}`` of ``SELECT columns FROM table WHERE condition`` (``leading``: its parameters; ``path``
        the first column), at least for the paths of ``keys`` (a row whose path no key has may come too).

        When the keys are at least 1/:data:`SCAN_SHARE` of the rows the condition selects (a training asks for most
        of what its own earlier runs stored), one pass over those rows; else indexed look-ups of
        :data:`LOOKUP_CHUNK` paths. At a million keys the pass takes 1.6 s, the look-ups 2.6 s plus about 1 s to sort
        the paths.
        """
        wanted = sum(k is not None for k in keys)
        if not self.enabled or not wanted:
            return {}
        try:
            with self._lock:
                connection = self._connect()
                stored = connection.execute(f"SELECT count(*) FROM {table} WHERE {condition}", leading).fetchone()[0]
                if wanted * SCAN_SHARE >= stored:
                    return {row[0]: row for row in
                            connection.execute(f"SELECT {columns} FROM {table} WHERE {condition}", leading)}
                paths = sorted({k.path for k in keys if k is not None})  # in key order: neighbouring pages
                rows: dict[str, tuple] = {}
                for start in range(0, len(paths), LOOKUP_CHUNK):
                    chunk = paths[start:start + LOOKUP_CHUNK]
                    sql = f"SELECT {columns} FROM {table} WHERE {condition} AND path IN ({', '.join('?' * len(chunk))})"
                    rows.update((row[0], row) for row in connection.execute(sql, [*leading, *chunk]))
                return rows
        except (sqlite3.Error, OSError) as e:
            self._give_up(e)
            return {}

    def _store(self, sql: str, rows: list[tuple]) -> None:
        if not self.enabled or not rows:
            return
        try:
            with self._lock:
                connection = self._connect()
                for start in range(0, len(rows), WRITE_CHUNK):
                    connection.execute("BEGIN IMMEDIATE")
                    try:
                        connection.executemany(sql, rows[start:start + WRITE_CHUNK])
                    except BaseException:
                        connection.execute("ROLLBACK")
                        raise
                    connection.execute("COMMIT")
        except (sqlite3.Error, OSError) as e:
            self._give_up(e)

    def _connect(self) -> sqlite3.Connection:
        """The open connection of this process (a forked child opens its own: SQLite's rule)."""
        if self._connection is not None and self._pid != os.getpid():
            # Closing the parent's connection here could disturb the parent's locks: keep it, unused.
            self._inherited.append(self._connection)
            self._connection = None
        if self._connection is None:
            self._pid = os.getpid()
            self.file.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.file, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                         check_same_thread=False)
            try:
                _set_up(connection)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _give_up(self, error: Exception) -> None:
        """Disable the cache for this process with one warning."""
        self.enabled = False
        log.warning("the check cache %s cannot be used (%s: %s): checking every image and hashing every file "
                    "without it in this process. Delete the file if it is damaged, make %s writable, or set %s=1 to "
                    "turn the cache off.", self.file, type(error).__name__, error, self.file.parent, ENV_OFF)
        if self._connection is not None:
            try:
                self._connection.close()
            except sqlite3.Error:
                pass
            self._connection = None


def _set_up(connection: sqlite3.Connection) -> None:
    """WAL mode and the tables, retried while another process holds the lock, for up to BUSY_TIMEOUT_S.

    SQLite answers "database is locked" at once, without waiting out the busy timeout, when two processes open a
    new file together and one of them switches it to WAL (the switch needs the file to itself): the other tries
    again shortly. The mode is persistent, so it is only set when the file is not in WAL mode yet.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if str(connection.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")  # WAL stays consistent; a power cut may drop rows
            for statement in SCHEMA:
                connection.execute(statement)
            return
        except sqlite3.OperationalError as e:
            if not ("locked" in str(e) or "busy" in str(e)) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _matching(rows: dict[str, tuple], keys: Sequence[FileKey | None]) -> list[tuple | None]:
    """Per key, the row remembered for its path when its size and modification time (``row[1]``, ``row[2]``) match
    the key's, else None (one loop, no call per key: a million keys are looked up each run)."""
    get = rows.get
    found: list[tuple | None] = []
    for key in keys:
        row = None if key is None else get(key.path)
        found.append(row if row is not None and row[1] == key.size and row[2] == key.mtime_ns else None)
    return found
