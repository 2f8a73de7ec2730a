"""Stopping a training cleanly on SIGTERM and SIGINT: the signal becomes a KeyboardInterrupt, at a safe point.

``docker stop``, Kubernetes and job schedulers (Slurm, ...) send SIGTERM, whose
default action kills Python at once: no final record, no message. Inside
:func:`stop_on_signals` both SIGTERM and SIGINT (Ctrl-C) raise
:class:`Interrupted` (a ``KeyboardInterrupt``, which Sacred records as an
``INTERRUPTED`` run) in the main thread. Inside :func:`deferred` the signal is
held back until the block ends, so an epoch's checkpoint, export and log are
written whole (:meth:`tf_crnn.trainer.Trainer.fit` wraps its epoch-end
callbacks in it). A second signal during a deferred block still waits for it;
a signal outside one always raises.

Nothing here knows about Sacred or TensorFlow.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

#: The signals :func:`stop_on_signals` turns into :class:`Interrupted`.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_state = {"depth": 0, "pending": None}  # depth of nested deferred() blocks; signal held back meanwhile


class Interrupted(KeyboardInterrupt):
    """A stop signal received inside :func:`stop_on_signals`.

    Attributes:
        signum: the signal number (``signal.SIGTERM``, ``signal.SIGINT``).
        exit_code: the shell's convention for a process ended by that signal,
            128 + its number: 130 for SIGINT, 143 for SIGTERM.
    """

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = int(signum)

    @property
    def signal_name(self) -> str:
        """``SIGTERM``, ``SIGINT``, ..."""
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise_interrupted(signum, frame) -> None:
    if _state["depth"] > 0:
        _state["pending"] = signum  # raised when the deferred block ends
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise :class:`Interrupted` in the main thread.

    SIGINT is set too, not left to Python's default: a process started in the
    background of a non-interactive shell (``nohup ... &``, CI scripts) inherits
    SIGINT ignored and would never see Ctrl-C's KeyboardInterrupt. The previous
    handlers are restored at the end. Outside the main thread (where Python
    allows no signal handlers) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold back a stop signal until the block ends, then raise :class:`Interrupted`.

    For work that must not be cut in half (a checkpoint, an export, an epoch's
    log). Blocks may nest; the signal is raised when the outermost one ends
    without an error of its own. Without :func:`stop_on_signals` around it (or
    outside the main thread) this changes nothing.
    """
    _state["depth"] += 1
    try:
        yield
    except BaseException:
        _state["pending"] = None  # this error ends the work anyway
        raise
    finally:
        _state["depth"] -= 1
    if _state["depth"] == 0 and _state["pending"] is not None:
        signum, _state["pending"] = _state["pending"], None
        raise Interrupted(signum)
