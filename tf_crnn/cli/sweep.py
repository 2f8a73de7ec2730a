"""``tf-crnn sweep SPACE --trials N --config config.json [--set key=value ...]``: a hyperparameter search.

Every trial is a training recorded as a run of ``crnn`` (``info.sweep`` names the
sweep), in ``<output_model_dir>/sweep_<name>/trial_<k>``; the search minimizes the
trial's best eval CER, and Optuna's MedianPruner stops trials that fall behind. One
line per finished trial, then the trials ranked and the best one (``--json`` for
scripts: then everything else goes to stderr). The same ``--name`` resumes a sweep.
The library is :mod:`tf_crnn.experiment.sweep`.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from .errors import handles


def _pruner(args: argparse.Namespace):
    import optuna

    from ..experiment import sweep

    if args.no_pruning:
        return optuna.pruners.NopPruner()
    return sweep.median_pruner(args.startup_trials, args.prune_from_epoch)


def _progress_line(row: dict) -> str:
    from ..experiment.sweep import format_params

    cer = "–" if row["best_cer"] is None else f"{row['best_cer']:.4f}"
    how = row["state"]
    if how == "PRUNED":
        how += f" after epoch {row['epochs']}"
    elif how == "FAIL":
        how += f" ({row['error']})"
    if row.get("retry_of") is not None:
        how += f" (retry of trial {row['retry_of']})"
    return f"trial {row['trial']}: {how}, run {row['run']}, best eval CER {cer} ({format_params(row['params'])})"


def _print_summary(study, as_json: bool, out) -> None:
    from ..experiment import sweep

    table, best = sweep.trials_table(study), sweep.best_trial(study)
    if as_json:
        trials = table.astype(object).where(table.notna(), None).to_dict(orient="records")  # null, not NaN
        print(json.dumps({"sweep": study.study_name, "trials": trials, "best": best}, indent=1, ensure_ascii=False),
              file=out)
        return
    shown = table.drop(columns="error").assign(params=table["params"].map(sweep.format_params))
    print("\n" + (shown.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="–") if len(shown)
                  else "(no trials)"), file=out)
    print("\nbest: " + (_progress_line(best) if best else "none (no trial completed)"), file=out)


@handles("sweep")
def _sweep(args: argparse.Namespace) -> int:
    import optuna

    from ..experiment import experiments, sweep
    from ..tracking.urls import redact_url

    base = experiments.base_config(args.config, args.set)
    params = experiments.base_params(base)
    space = sweep.load_space(args.space, base)  # every mistake in the space stops here, before any training
    name = sweep.check_name(args.name or Path(args.space).stem)
    sweep.check_budget(args.trials, args.timeout, args.total_trials)
    # Our own line per trial replaces Optuna's log lines (and its tracebacks of failed trials).
    optuna.logging.set_verbosity(optuna.logging.INFO if args.debug else optuna.logging.ERROR)
    sampler = optuna.samplers.TPESampler(seed=args.sampler_seed) if args.sampler_seed is not None else None
    storage = args.storage or sweep.default_storage(params.output_model_dir, name)
    given = {key: getattr(args, key) for key in ("heartbeat", "retries") if getattr(args, key) is not None}
    study = sweep.open_study(name, params.output_model_dir, storage, _pruner(args), sampler, **given)
    runner = sweep.Sweep(study, space, base)
    catch = (Exception,) if args.keep_going else ()
    out = sys.stdout
    finished: list[dict] = []  # this call's trials, as they end

    def on_trial(trial) -> None:
        finished.append(sweep.trial_row(trial))
        print(_progress_line(finished[-1]), flush=True)

    try:  # with --json, the trainings' output and the progress go to stderr: stdout is the JSON alone
        with contextlib.redirect_stdout(sys.stderr if args.json else out):
            print(f"sweep {name}: study in {redact_url(storage)} ({len(study.trials)} earlier trials), "
                  f"trials in {runner.folder}")
            runner.run(args.trials, args.timeout, catch, on_trial=on_trial, total_trials=args.total_trials)
    finally:  # also after an error or Ctrl-C: what finished is in the study
        _print_summary(study, args.json, out)
    failed = [row for row in finished if row["state"] == "FAIL"]
    if failed:  # --keep-going went on past them, but a scheduler must still learn of them (as make -k does)
        print(f"tf-crnn sweep: {len(failed)} of {len(finished)} trials of this call failed: "
              + "; ".join(f"trial {row['trial']} (run {row['run']}): {row['error']}" for row in failed),
              file=sys.stderr)
        return 1
    return 0


def register(sub) -> None:
    """Add ``tf-crnn sweep`` to the ``tf-crnn`` subparsers ``sub``."""
    p = sub.add_parser(
        "sweep", help="hyperparameter search with Optuna, each trial a training run: tf-crnn sweep SPACE --trials N "
                      "--config config.json", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("space", help="search space, JSON or YAML: {config_key: {type: float|int|categorical, low, high, "
                                 "log, step | choices}}")
    p.add_argument("--name", help="study name (default: the space file's name); the same name resumes the sweep")
    p.add_argument("--trials", type=int,
                   help="run this many more trials in this process (Optuna's n_trials; 0: only print the sweep so far)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="start no trial after this many seconds (the running one finishes)")
    p.add_argument("--total-trials", type=int, metavar="N",
                   help="stop once the study has N trials complete, pruned or running, counting every worker "
                        "sharing it (--storage) and earlier calls")
    p.add_argument("--storage", metavar="URL",
                   help="Optuna storage URL, e.g. sqlite:///sweeps.db, or postgresql://USER@HOST:5432/DATABASE for "
                        "workers on many machines (default: OUTPUT_MODEL_DIR/sweep_NAME/optuna.sqlite3)")
    # The defaults are tf_crnn.experiment.sweep's HEARTBEAT_S and RETRIES (not imported here: it loads Optuna).
    p.add_argument("--heartbeat", type=int, metavar="SECONDS",
                   help="seconds between a running trial's heartbeats; a trial silent for twice as long is failed "
                        "and retried (default 60; give every worker the same)")
    p.add_argument("--retries", type=int, metavar="N",
                   help="times a trial failed by the heartbeat (its worker was killed) is queued again with the "
                        "same params (default 2)")
    p.add_argument("--startup-trials", type=int, default=5,
                   help="completed trials before the MedianPruner prunes any (default 5)")
    p.add_argument("--prune-from-epoch", type=int, default=1, help="first epoch at which a trial may be pruned")
    p.add_argument("--no-pruning", action="store_true", help="run every trial to its last epoch")
    p.add_argument("--sampler-seed", type=int, help="seed of Optuna's TPE sampler (reproducible suggestions)")
    p.add_argument("--keep-going", action="store_true",
                   help="a failing trial is recorded (FAIL) and the sweep goes on (the exit code is then 1); "
                        "by default it stops the sweep")
    p.add_argument("--json", action="store_true", help="print the trials and the best one as JSON")
    p.add_argument("--config", action="append", default=[], metavar="FILE",
                   help="base config file (JSON, as for tf-crnn train with FILE); repeatable, later files win")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="base config update (as for tf-crnn train with KEY=VALUE); repeatable")
    p.set_defaults(func=_sweep)
