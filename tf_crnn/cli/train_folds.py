"""``tf-crnn train-folds --folds K --config config.json [--set key=value ...]``: cross-fold training.

The training rows are dealt into K parts (seeded); K trainings each learn on K-1 parts and are
evaluated on the config's eval CSVs, each a run of ``crnn`` whose ``info.folds`` holds the group id,
its fold and K. The parts and ``folds.json`` go to ``OUTPUT_MODEL_DIR/folds``, the trainings to
``OUTPUT_MODEL_DIR/fold_1`` .. ``fold_K``. At the end: a table of the folds, their exports and the
``tf-crnn evaluate`` command that votes them (Reul et al. 2018). The library is :mod:`tf_crnn.experiment.folds`.

A fold that fails stops the others (``--keep-going``: the next folds train anyway). Exit code: 0
when every fold completed; else 2 (the failures all the user's to fix, as ``tf-crnn train``), 1 for
another error (its traceback is printed); 130 / 143 when interrupted.
"""
from __future__ import annotations

import argparse
import sys
import traceback

from . import errors
from .errors import handles


def _started(fold, k: int) -> None:
    print(f"\n=== fold {fold.fold}/{k}: training on {fold.train_rows} rows (all parts but "
          f"{fold.held_out_part}), output_model_dir {fold.output_model_dir}", flush=True)


def _ended(fold, error: BaseException | None) -> None:
    if error is None:
        cer = (fold.result or {}).get("cer")
        print(f"=== fold {fold.fold}: {fold.status}, run {fold.run}"
              + (f", final eval CER {cer:.4f}" if isinstance(cer, float) else ""), flush=True)
        return
    print(f"=== fold {fold.fold}: FAILED, run {fold.run}: {fold.error}", file=sys.stderr, flush=True)
    if not errors.is_training_user_error(error):  # a bug: its traceback (also in the run, if one started)
        traceback.print_exception(error, file=sys.stderr)


def _summary(plan) -> str:
    from ..experiment.folds import vote_command

    lines = [f"\ncross-fold training {plan.group}: {plan.k} folds, parts and folds.json in {plan.folder}",
             "fold  run     status       final eval CER  export"]
    for fold in plan.folds:
        cer = (fold.result or {}).get("cer")
        shown = f"{cer:.4f}" if isinstance(cer, float) else "-"
        lines.append(f"{fold.fold:<5} {str(fold.run if fold.run is not None else '-'):<7} {fold.status:<12} "
                     f"{shown:<15} {fold.export_dir if fold.status == 'COMPLETED' else '-'}")
    exports = [f.export_dir for f in plan.folds if f.status == "COMPLETED"]
    if len(exports) >= 2:
        lines += ["", f"vote the {len(exports)} models:", "  " + vote_command(exports, plan.eval_csvs)]
    return "\n".join(lines)


@handles("train-folds")
def _train_folds(args: argparse.Namespace) -> int:
    from ..experiment import experiments, folds

    base = experiments.base_config(args.config, args.set)
    plan = folds.plan_folds(base, args.folds, args.split_seed, args.group)
    print(f"cross-fold training {plan.group}: the {plan.num_rows} rows of {', '.join(plan.source_csvs)} in "
          f"{plan.k} parts (split seed {plan.split_seed}) in {plan.folder}")
    failures: dict[int, BaseException] = {}

    def ended(fold, error: BaseException | None) -> None:
        if error is not None:
            failures[fold.fold] = error
        _ended(fold, error)

    try:
        folds.train_folds(plan, base, args.keep_going, lambda fold: _started(fold, plan.k), ended)
    finally:  # also after Ctrl-C: what finished is listed
        print(_summary(plan))
    if not failures:
        return errors.EXIT_OK
    untried = sum(f.status == "PENDING" for f in plan.folds)
    print(f"tf-crnn train-folds: error: fold(s) {', '.join(map(str, failures))} of {plan.k} failed"
          + (f", {untried} not trained (--keep-going trains them anyway)" if untried else ""), file=sys.stderr)
    # as tf-crnn train: 2 for mistakes to fix, 1 for a bug
    return errors.EXIT_USAGE if all(map(errors.is_training_user_error, failures.values())) else 1


def register(sub) -> None:
    """Add ``tf-crnn train-folds`` to the ``tf-crnn`` subparsers ``sub``."""
    p = sub.add_parser("train-folds", help="cross-fold training: K trainings on K splits of the training data, "
                                           "each a run, to vote with tf-crnn evaluate --model ... --model ...",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folds", type=int, required=True, metavar="K", help="number of folds and trainings (>= 2)")
    p.add_argument("--config", action="append", default=[], metavar="FILE",
                   help="config file (JSON, as for tf-crnn train with FILE); repeatable, later files win")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config update (as for tf-crnn train with KEY=VALUE); repeatable")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the split into folds (default 0)")
    p.add_argument("--group", help="group id the runs share in info.folds.group (default: folds-<date>-<time>-<hex>)")
    p.add_argument("--keep-going", action="store_true",
                   help="a failing fold is recorded (FAILED) and the next folds train; by default it stops them")
    p.set_defaults(func=_train_folds)
