"""``tf-crnn train with config.json [key=value ...]``: the Sacred command line of the experiment ``crnn``.

Everything after ``train`` goes to Sacred unchanged, exactly as ``python
train.py ...`` (``with``, ``print_config``, ``-m``, ``--help``, ...); both run
:func:`run_training`. The experiment is :data:`tf_crnn.experiment.experiments.ex`.

How a training ends (exit code, what is printed; see :mod:`tf_crnn.cli.errors`):

- 0: the run is COMPLETED and stored;
- 2: a mistake to fix (bad setting, bad data, output folder in use or not
  writable, unusable database): one line, no traceback (``tf-crnn --debug``,
  Sacred's ``-d`` or ``TF_CRNN_DEBUG=1`` show it), the run, if one started, is
  FAILED in MongoDB with its trace; or the run ended but MongoDB could not be
  given all of it: the line names the ``tf-crnn db import-run`` command that uploads it;
- 130 (SIGINT, Ctrl-C) / 143 (SIGTERM): stopped; the run is INTERRUPTED, the
  last finished epoch is checkpointed and its metrics are stored;
- 1: a bug (Sacred prints the traceback).
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback

from . import errors

DEBUG_ENV = "TF_CRNN_DEBUG"  # =1: tracebacks of the user's errors too


def debug_requested(argv: list[str], debug: bool = False) -> bool:
    """``--debug`` given to ``tf-crnn``, Sacred's ``-d`` / ``--debug`` in ``argv``, or ``$TF_CRNN_DEBUG`` (not 0)."""
    return debug or any(a in ("-d", "--debug") for a in argv) or os.environ.get(DEBUG_ENV, "0") not in ("", "0")


def run_training(argv: list[str], debug: bool = False) -> int:
    """Run the Sacred command line ``argv`` (``argv[0]``: the program name) of the experiment; return the exit code.

    Args:
        argv: e.g. ``["train.py", "with", "config.json", "n_epochs=3"]``.
        debug: print the traceback of the user's errors as well (see :func:`debug_requested`).
    """
    from ..config import ConfigError, check_config_files
    from ..experiment import experiments

    debug = debug_requested(argv, debug)
    try:
        check_config_files(list(argv[1:]))  # a broken JSON file is named here; Sacred would show a traceback
    except ConfigError as e:
        return _user_error(e, debug)
    try:
        run = experiments.ex.run_commandline(argv, user_error=errors.is_training_user_error)
    except experiments.UserErrorExit as stop:
        return _user_error(stop.error, debug)
    except KeyboardInterrupt as e:
        run = experiments.ex.current_run
        unsaved = experiments.unsaved_run_error(run)
        details = "; ".join(filter(None, [experiments.interruption_summary(run), unsaved and str(unsaved)]))
        return errors.interrupted("train", e, details)
    unsaved = experiments.unsaved_run_error(run)
    if unsaved is not None:
        return errors.report("train", unsaved)
    return 0 if run is None or run.status == "COMPLETED" else 1


def _user_error(error: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exception(error, file=sys.stderr)
    return errors.report("train", error)


def _train(args: argparse.Namespace) -> int:
    return run_training(["tf-crnn train", *args.sacred_args], debug=args.debug)


def register(sub) -> None:
    """Add ``tf-crnn train`` to the ``tf-crnn`` subparsers ``sub``."""
    p = sub.add_parser("train", help="train a CRNN as a Sacred run: tf-crnn train with config.json [key=value ...]",
                       description=__doc__, add_help=False,  # --help goes to Sacred, which lists its options
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sacred_args", nargs=argparse.REMAINDER, help="Sacred's command line: with config.json key=value")
    p.set_defaults(func=_train)
