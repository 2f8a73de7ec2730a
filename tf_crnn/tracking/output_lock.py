"""One training at a time per output folder: ``output_model_dir/.tf_crnn.lock``.

Two trainings writing one ``output_model_dir`` overwrite each other's
checkpoints, exports and reports without an error. The chief of a training
holds an exclusive ``flock`` on the lock file while it runs and writes in it
who holds it (pid, host, run id, start time). The kernel releases the lock
when its process dies, however it dies (``kill -9``, OOM killer), so a stale
lock on this host is simply taken over. A lock file naming another host is
only taken over when that host released it: on a shared file system whose
locks do not reach this host, that training may still be running.
"""
from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket

from .._util import pid_alive, warn

LOCK_FILE = ".tf_crnn.lock"  # in output_model_dir; empty when free


class OutputInUseError(OSError):
    """Another training holds the output folder; the message names its run, pid and host and what to do."""


def _holder_text(record: dict) -> str:
    run = f"run {record['run_id']}" if record.get("run_id") is not None else "a training (run not recorded yet)"
    return (f"{run}, pid {record.get('pid')} on host {record.get('host')}, started {record.get('started')}")


def _read(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 1 << 16)
    try:
        record = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _write(fd: int, record: dict) -> None:
    data = json.dumps(record).encode("utf-8") if record else b""
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


class OutputLock:
    """The held lock of an output folder (from :func:`acquire`); :meth:`release` frees it."""

    def __init__(self, path: str, fd: int, record: dict):
        self.path, self._fd, self.record = path, fd, record

    def set_run(self, run_id) -> None:
        """Name the Sacred run writing the folder (known once the run started)."""
        if self._fd is not None:
            self.record = {**self.record, "run_id": run_id}
            _write(self._fd, self.record)

    def release(self) -> None:
        """Empty the lock file and unlock it; a second call does nothing."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            _write(fd, {})
        except OSError:  # a full disk must not hide the run's own outcome; the flock goes with the close
            pass
        finally:
            os.close(fd)


def acquire(output_dir: str) -> OutputLock:
    """Lock ``output_dir`` (which must exist) for this process.

    A lock left by a process of this host that is gone is taken over, with a
    warning naming it.

    Raises:
        OutputInUseError: a live training holds it, or a training on another host
            that did not release it (the message says how to remove a stale one).
        OSError: the lock file cannot be created.
    """
    path = os.path.join(os.path.abspath(output_dir), LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        locked = _try_flock(fd)
        previous = _read(fd)
        if locked is False:
            raise OutputInUseError(_in_use_message(output_dir, previous))
        if previous and previous.get("host") != socket.gethostname():
            # Its flock may not reach this host (some shared file systems): only its owner or the user frees it.
            raise OutputInUseError(_in_use_message(output_dir, previous) +
                                   f"; if that training is no longer running, delete {path}")
        if previous and locked is None and isinstance(previous.get("pid"), int) and pid_alive(previous["pid"]):
            # No flock on this file system: the pid in the file decides.
            raise OutputInUseError(_in_use_message(output_dir, previous))
        if previous:
            warn(f"taking over the lock of {output_dir} from {_holder_text(previous)}: that process is gone "
                 f"without releasing it (killed?)")
        record = {"pid": os.getpid(), "host": socket.gethostname(), "run_id": None,
                  "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        _write(fd, record)
        return OutputLock(path, fd, record)
    except BaseException:
        os.close(fd)
        raise


def _try_flock(fd: int) -> bool | None:
    """Take the exclusive flock: True if taken, False if another open file holds it, None if unsupported here."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return None  # some network file systems: fall back on the pid in the file
        raise


def _in_use_message(output_dir: str, holder: dict) -> str:
    who = _holder_text(holder) if holder else "another training that is starting"
    return (f"output_model_dir {os.path.abspath(output_dir)} is in use by {who}: two trainings in one folder "
            f"overwrite each other's checkpoints and exports. Wait until it ends, stop it, or choose another "
            f"output_model_dir")
