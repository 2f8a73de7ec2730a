"""One mapping from errors to exit codes and messages, for every ``tf-crnn`` command.

Exit codes: 0 success; 1 the data has problems (an error class that says so
with ``exit_code = 1``, such as unconvertible rows, or a check that found
problems); 2 bad usage or input the user can fix (missing files, invalid
values, an unreachable database, a training whose run MongoDB could not be
given whole); 130 interrupted (Ctrl-C, SIGINT); 143 terminated (SIGTERM: ``docker
stop``, job schedulers). The message is one line on stderr, ``tf-crnn COMMAND:
error: ...``, with no traceback: the errors listed here are the user's to fix
and their messages say how. A command's old name says its new one on stderr
(:func:`renamed`) and does the same thing.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable

EXIT_OK, EXIT_DATA, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143

#: What counts as the user's to fix: reported in one line, exit code 2 unless the error names another.
USER_ERRORS = (ImportError, OSError, ValueError, RuntimeError)


def is_training_user_error(error: BaseException) -> bool:
    """Whether an error of a training is the user's to fix (one line) rather than a bug (a traceback).

    Narrower than :data:`USER_ERRORS`: inside a training a ValueError or RuntimeError
    from TensorFlow or Keras is a bug. The user's are: a bad setting (tf-crnn's
    :class:`~tf_crnn.config.ConfigError`, Sacred's own config errors), bad data
    (``DataError``, ``AlphabetError``, ``AnnotationError``, ``CompiledDataError``), missing files and output
    folder problems (``OSError``), and an unusable database (``TrackingError``).
    """
    from sacred.utils import SacredError

    from ..alphabet import AlphabetError
    from ..annotations import AnnotationError
    from ..compiled import CompiledDataError
    from ..config import ConfigError
    from ..tracking.urls import TrackingError

    kinds = [OSError, ConfigError, AlphabetError, AnnotationError, CompiledDataError, TrackingError, SacredError]
    data = sys.modules.get("tf_crnn.data")  # its DataError can only come once it is loaded (it loads TensorFlow)
    if data is not None:
        kinds.append(data.DataError)
    return isinstance(error, tuple(kinds))


def exit_code(error: BaseException) -> int:
    """The exit code of a :data:`USER_ERRORS` error (its ``exit_code`` attribute, else 2)."""
    return int(getattr(error, "exit_code", EXIT_USAGE))


def report(command: str, error: BaseException) -> int:
    """Print ``error`` for ``command`` on stderr and return its exit code."""
    code = exit_code(error)
    # An error with its own exit code (a data problem) is a finding, not a failure of the command.
    label = "" if code == EXIT_DATA else "error: "
    print(f"tf-crnn {command}: {label}{error}", file=sys.stderr)
    return code


def interrupted(command: str, error: KeyboardInterrupt, details: str = "") -> int:
    """Print that ``command`` was stopped (by which signal, and ``details``) and return its exit code.

    The code is 128 + the signal's number for a :class:`tf_crnn.interrupts.Interrupted`
    (130 SIGINT, 143 SIGTERM), else 130 (Python's own Ctrl-C).
    """
    how = getattr(error, "signal_name", None)
    print(f"tf-crnn {command}: interrupted" + (f" by {how}" if how else "") + (f": {details}" if details else ""),
          file=sys.stderr)
    return int(getattr(error, "exit_code", EXIT_INTERRUPTED))


def handles(command: str) -> Callable:
    """Decorate a command handler ``handler(args) -> exit code`` so user errors become a message and a code."""
    def wrap(func: Callable) -> Callable:
        @functools.wraps(func)
        def run(args) -> int:
            try:
                return func(args)
            except USER_ERRORS as e:
                return report(command, e)
            except KeyboardInterrupt as e:
                return interrupted(command, e)
        return run
    return wrap


def renamed(old: str, new: str, handler: Callable) -> Callable:
    """``handler`` under a command's old name ``old``: one line on stderr naming ``new``, then the same thing."""
    @functools.wraps(handler)
    def run(args) -> int:
        print(f"`{old}` is now `{new}`; the old name will go in a later release", file=sys.stderr)
        return handler(args)
    return run
