"""One mapping from errors to exit codes and messages, for every ``tf-crnn`` command.

Exit codes: 0 success; 1 the data has problems (an error class that says so
with ``exit_code = 1``, such as unconvertible rows, or a check that found
problems); 2 bad usage or input the user can fix (missing files, invalid
values, an unreachable database); 130 interrupted (Ctrl-C). The message is one
line on stderr, ``tf-crnn COMMAND: error: ...``, with no traceback: the errors
listed here are the user's to fix and their messages say how.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable

EXIT_OK, EXIT_DATA, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: What counts as the user's to fix: reported in one line, exit code 2 unless the error names another.
USER_ERRORS = (ImportError, OSError, ValueError, RuntimeError)


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


def handles(command: str) -> Callable:
    """Decorate a command handler ``handler(args) -> exit code`` so user errors become a message and a code."""
    def wrap(func: Callable) -> Callable:
        @functools.wraps(func)
        def run(args) -> int:
            try:
                return func(args)
            except USER_ERRORS as e:
                return report(command, e)
            except KeyboardInterrupt:
                print(f"tf-crnn {command}: interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED
        return run
    return wrap
