"""``tf-crnn train with config.json [key=value ...]``: the Sacred command line of the experiment ``crnn``.

Everything after ``train`` goes to Sacred unchanged, exactly as ``python
train.py ...`` (``with``, ``print_config``, ``-m``, ``--help``, ...). The
experiment is :data:`tf_crnn.tracking.experiments.ex`.
"""
from __future__ import annotations

import argparse


def _train(args: argparse.Namespace) -> int:
    from ..tracking.experiments import ex

    # Sacred parses the rest and reports its own errors (its exit code is the command's).
    run = ex.run_commandline(["tf-crnn train", *args.sacred_args])
    return 0 if run is None or run.status == "COMPLETED" else 1


def register(sub) -> None:
    """Add ``tf-crnn train`` to the ``tf-crnn`` subparsers ``sub``."""
    p = sub.add_parser("train", help="train a CRNN as a Sacred run: tf-crnn train with config.json [key=value ...]",
                       description=__doc__, add_help=False,  # --help goes to Sacred, which lists its options
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sacred_args", nargs=argparse.REMAINDER, help="Sacred's command line: with config.json key=value")
    p.set_defaults(func=_train)
