"""``tf-crnn``: one command for training and everything around it.

    tf-crnn train with config.json [key=value ...]   train (the Sacred experiment; same as python train.py)
    tf-crnn evaluate --model EXPORT --csv CSV        score an export (or the vote of several) on annotated data
    tf-crnn predict --model EXPORT IMAGE...          transcribe images with an export (or .tflite / .onnx, or a vote)
    tf-crnn models list|show NAME                    the pretrained models shipped with tf-crnn (pretrained:NAME)
    tf-crnn convert --model EXPORT -o OUT.tflite     convert an export to TFLite (fp32/fp16/int8) or ONNX
    tf-crnn runs list|show|compare|download|delete   the recorded runs
    tf-crnn sweep SPACE --trials N --config C.json   hyperparameter search (Optuna), each trial a run
    tf-crnn train-folds --folds K --config C.json    cross-fold training: K runs to vote with evaluate / predict
    tf-crnn db uri|start|stop|status                 the database runs go to
    tf-crnn board                                    browse the runs with Omniboard
    tf-crnn prepare / alphabet / generate / validate data sets
    tf-crnn compile CSV... -o DIR                    pack annotated images into TFRecord shards for training
    tf-crnn fonts check FONTS --alphabet A.json      which symbols each font cannot draw
    tf-crnn augment --preview CSV -o sheet.png       look at the training augmentation

One module per command, except :mod:`tf_crnn.cli.datasets`, which holds the
five data set commands (prepare, alphabet, generate, fonts, validate: thin
wrappers of :mod:`tf_crnn.datasets` that share the CSV-format and generator
options). Each module registers its parsers and handlers
(``register(subparsers)``), and :mod:`tf_crnn.cli.errors` turns the errors a
user can fix into one line and an exit code. TensorFlow's start-up logs are
hidden unless ``--debug`` is given or ``TF_CPP_MIN_LOG_LEVEL`` is set.
"""
from __future__ import annotations

import argparse
import sys

from .._util import quiet_tensorflow
from . import (
    augment,
    board,
    compile_data,
    convert,
    datasets,
    db,
    evaluate,
    models,
    predict,
    runs,
    sweep,
    train,
    train_folds,
)

COMMANDS = (train, evaluate, predict, models, convert, runs, db, board, datasets, compile_data, sweep, train_folds,
            augment)


def build_parser() -> argparse.ArgumentParser:
    """The ``tf-crnn`` parser with every command's subparser."""
    parser = argparse.ArgumentParser(prog="tf-crnn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show TensorFlow's own start-up and info logs")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tf-crnn`` console script; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    quiet_tensorflow(argv)
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
