"""Small helpers shared across tf-crnn: tf-crnn's home folder, atomic file writes, a free TCP port, whether a process
is alive, warnings, the TensorFlow start-up log filter, run ids from the command line."""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import json
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import IO, Iterator

#: The environment variable naming tf-crnn's home folder.
ENV_HOME = "TF_CRNN_HOME"


def home_dir() -> Path:
    """``$TF_CRNN_HOME`` or ``~/.tf_crnn``: where the embedded database, downloads and the check cache live."""
    return Path(os.environ.get(ENV_HOME) or Path.home() / ".tf_crnn")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, newline: str | None = None, binary: bool = False) -> Iterator[IO]:
    """Open ``path`` for writing text (UTF-8; bytes with ``binary``) so that readers see the old file or the
    whole new one.

    Writes to a temporary file in the same folder (created if needed) and
    renames it over ``path`` when the ``with`` block ends without error; on an
    error the temporary file is removed and ``path`` is untouched. The file gets the
    permissions ``open`` would give it (0666 less the umask).

    Raises:
        OSError: the folder cannot be created or written.
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.tmp-")
    try:
        # mkstemp makes the file private (0600); the result gets what open() would give it (0666 less the umask).
        os.chmod(tmp, 0o666 & ~current_umask())
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline=newline)) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process's umask, read without changing it (Linux ``/proc/self/status``; 0o022 where unreadable).

    ``os.umask`` can only read it by setting it, which would race with other threads creating files.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


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


#: What TensorFlow prints to stderr while it is imported on every run (its C++ start-up logs).
TENSORFLOW_STARTUP_NOISE = ("All log messages before absl::InitializeLog() is called",
                            "oneDNN custom operations are on", "cpu_feature_guard.cc",
                            "To enable the following instructions:")


@contextlib.contextmanager
def filtered_stderr(noise: tuple[str, ...] = TENSORFLOW_STARTUP_NOISE) -> Iterator[None]:
    """Hold back what the process writes to file descriptor 2 and pass on the lines without ``noise``.

    Works on the descriptor, so C++ code's writes are caught too (TensorFlow logs
    through absl before ``absl::InitializeLog``, which ``TF_CPP_MIN_LOG_LEVEL`` does
    not reach in TensorFlow 2.21).
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not any(n in line for n in noise)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """An import hook that runs ``import tensorflow`` inside :func:`filtered_stderr`, then leaves ``sys.meta_path``.

    A mere look-up (``importlib.util.find_spec("tensorflow")``, as Sacred does to
    see which packages exist) does not use it up: it stays until the import runs.
    """

    def __init__(self):
        self._looking = False

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or self._looking:
            return None
        self._looking = True  # the look-up below walks sys.meta_path, this finder included
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._looking = False
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            with filtered_stderr():
                load(module)

        spec.loader.exec_module = exec_module
        return spec


def quiet_tensorflow(argv: list[str] | None = None) -> None:
    """Keep TensorFlow's C++ start-up logs (oneDNN, cpu_feature_guard, absl) off the terminal.

    Unless the user set ``TF_CPP_MIN_LOG_LEVEL`` or ``--debug`` / ``-d`` is in
    ``argv`` (``tf-crnn``'s and Sacred's debug flag): sets
    ``TF_CPP_MIN_LOG_LEVEL=2`` (errors only, for what TensorFlow logs once
    running) and filters the start-up lines of ``import tensorflow``, whenever it
    happens (:class:`QuietTensorFlowImport`). Has no effect once TensorFlow is loaded.
    """
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or any(a in ("--debug", "-d") for a in (argv or [])):
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if "tensorflow" not in sys.modules and not any(isinstance(f, QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, QuietTensorFlowImport())


def parse_run_id(value: str | None):
    """A run id from the command line: an integer if it looks like one (Sacred's ids are), else the string."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return value
