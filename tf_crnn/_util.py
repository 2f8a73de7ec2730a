"""Small helpers shared across tf-crnn: atomic file writes, a free TCP port, whether a process is alive, warnings."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, newline: str | None = None) -> Iterator[IO[str]]:
    """Open ``path`` for writing text (UTF-8) so that readers see the old file or the whole new one.

    Writes to a temporary file in the same folder (created if needed) and
    renames it over ``path`` when the ``with`` block ends without error; on an
    error the temporary file is removed and ``path`` is untouched.

    Raises:
        OSError: the folder cannot be created or written.
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, value, indent: int | None = 1) -> str:
    """Write ``value`` as UTF-8 JSON (non-ASCII kept), atomically (:func:`atomic_write`); return the path."""
    with atomic_write(path) as f:
        json.dump(value, f, ensure_ascii=False, indent=indent)
    return os.fspath(path)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it; another process may take it later)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie (an exited child not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def warn(message: str) -> None:
    """Print ``tf-crnn: WARNING: message`` to stderr (seen on the terminal and kept in a run's ``captured_out``)."""
    print(f"tf-crnn: WARNING: {message}", file=sys.stderr, flush=True)


def quiet_tensorflow(argv: list[str] | None = None) -> None:
    """Keep TensorFlow's C++ start-up logs (oneDNN, cpu_feature_guard, absl) off the terminal.

    Sets ``TF_CPP_MIN_LOG_LEVEL=2`` (errors only) before TensorFlow is imported,
    unless the user set it or ``--debug`` / ``-d`` is in ``argv`` (Sacred's and
    ``tf-crnn``'s debug flag). Has no effect once TensorFlow is loaded.
    """
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or any(a in ("--debug", "-d") for a in (argv or [])):
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
