"""Cross-fold training: k trainings on k splits of the training data, each a run of ``crnn`` (``tf-crnn train-folds``).

The committee of Reul, Springmann, Wick & Puppe 2018, "Improving OCR accuracy on early printed
books by utilizing cross fold training and voting" (DAS 2018, arXiv 1711.09670): the rows of the
training CSVs (``csv_files_train``, all together) are shuffled with a seed and dealt into k parts
whose sizes differ by at most one (:func:`assign_folds`); training ``i`` (1..k) learns on every part
but part ``i`` and, like any training, is evaluated on ``csv_files_eval`` after each epoch. The k
exports then vote (:mod:`tf_crnn.voting`, ``tf-crnn evaluate --model ... --model ...``).

Under the base config's ``output_model_dir`` OUT:

- ``OUT/folds/part_<i>.csv``: the parts (image paths absolute, labels as read);
- ``OUT/folds/folds.json``: the group id, k, the split seed, the source CSVs, and per fold its
  parts, ``output_model_dir``, run id, status and final eval metrics (rewritten after each fold);
- ``OUT/fold_<i>``: training ``i``'s ``output_model_dir`` (its export in ``OUT/fold_<i>/export``).

Each training is a normal run of :data:`tf_crnn.experiment.experiments.ex` in this process (as a
sweep's trials), with ``info.folds = {"group", "fold", "k", "split_seed", "train_parts",
"held_out_part"}``: the runs of one cross-fold training share ``info.folds.group``.
"""
from __future__ import annotations

import datetime
import os
import re
import secrets
import shlex
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .._util import write_json
from ..annotations import read_csvs, write_csv
from ..config import ConfigError
from ..tracking import run_records
from . import experiments

PARTS_DIR = "folds"  # inside output_model_dir: the parts and folds.json
RECORD_FILE = "folds.json"
GROUP_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class FoldsError(ConfigError):
    """A cross-fold training that cannot start: too few folds or rows, a bad group id, folders in use."""


def assign_folds(num_rows: int, k: int, seed: int) -> list[list[int]]:
    """Deal row indices ``0..num_rows-1`` into ``k`` parts at random, reproducibly.

    The rows are permuted with NumPy's ``default_rng(seed)`` and cut into ``k`` consecutive pieces
    (``numpy.array_split``: sizes differ by at most one); each part lists its rows in file order.

    Raises:
        FoldsError: ``k`` < 2, or fewer rows than parts.
    """
    if k < 2:
        raise FoldsError(f"cross-fold training needs at least 2 folds, got {k}")
    if num_rows < k:
        raise FoldsError(f"{num_rows} training rows cannot be dealt into {k} folds")
    order = np.random.default_rng(seed).permutation(num_rows)
    return [sorted(int(i) for i in part) for part in np.array_split(order, k)]


def new_group_id() -> str:
    """A fresh group id: ``folds-<UTC date>-<time>-<4 hex digits>``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return f"folds-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


@dataclass
class Fold:
    """One training of a cross-fold training, and how it ended (once it has)."""

    fold: int  # 1..k
    output_model_dir: str
    train_parts: list[str]  # every part but its own
    held_out_part: str
    train_rows: int
    run: Any = None  # the run's _id, once it exists
    status: str = "PENDING"  # then COMPLETED, FAILED, INTERRUPTED (Sacred's) or FAILED for a run that never started
    result: dict | None = None  # the final eval metrics of a COMPLETED run
    error: str | None = None

    @property
    def export_dir(self) -> str:
        """Where the training exports its model."""
        return os.path.join(self.output_model_dir, "export")


@dataclass
class FoldPlan:
    """The folds of a cross-fold training, written out and checked (:func:`plan_folds`)."""

    group: str
    k: int
    split_seed: int
    folder: str  # OUT/folds
    source_csvs: list[str]
    eval_csvs: list[str]
    num_rows: int = 0  # training rows, all parts together
    folds: list[Fold] = field(default_factory=list)

    @property
    def record_file(self) -> str:
        return os.path.join(self.folder, RECORD_FILE)

    def save(self) -> str:
        """Write ``folds.json`` (atomically); return its path."""
        return write_json(self.record_file, {"group": self.group, "k": self.k, "split_seed": self.split_seed,
                                             "source_csvs": self.source_csvs, "eval_csvs": self.eval_csvs,
                                             "num_rows": self.num_rows, "folds": [asdict(f) for f in self.folds]})


def plan_folds(base: dict, k: int, split_seed: int = 0, group: str | None = None) -> FoldPlan:
    """Check a cross-fold training and write its parts (nothing trains yet).

    Args:
        base: the base config (:func:`tf_crnn.experiment.experiments.base_config`); its
            ``output_model_dir`` holds the parts and the folds' folders. With ``generate_data``, the
            synthetic sets are generated first (as a training would, seeded with ``seed`` or
            ``split_seed``), then split.
        k: the number of folds (trainings), at least 2.
        split_seed: the seed of :func:`assign_folds`.
        group: the group id the runs share (letters, digits, ``.``, ``_``, ``-``); default :func:`new_group_id`.

    Raises:
        ConfigError: an invalid base config (:func:`tf_crnn.experiment.experiments.base_params`).
        FoldsError: as :func:`assign_folds`, a bad ``group``, a missing eval CSV, or a fold folder holding
            an earlier training's checkpoints or export without ``restore_model`` / ``overwrite_output``.
        FileNotFoundError / AnnotationError: a training CSV that is missing or cannot be read.
    """
    group = group or new_group_id()
    if not GROUP_PATTERN.fullmatch(group):
        raise FoldsError(f"group id {group!r}: use letters, digits, '.', '_' and '-'")
    params = experiments.base_params(base)
    if not params.csv_files_train or not params.csv_files_eval:
        raise FoldsError("set csv_files_train and csv_files_eval: the training rows are split into the folds")
    spec = base.get("generate_data")
    if spec:
        experiments.ensure_generated_data(params, spec, base.get("seed", split_seed))
    missing = [f for f in params.csv_files_eval if not os.path.isfile(f)]
    if missing:  # every fold would fail on it
        raise FoldsError(f"eval CSV not found: {', '.join(missing)}")
    samples = read_csvs(params.csv_files_train, params.csv_delimiter, params.string_split_delimiter,
                        params.unicode_normalization)
    parts = assign_folds(len(samples), k, split_seed)
    out = params.output_model_dir
    folds = [os.path.join(out, f"fold_{i}") for i in range(1, k + 1)]
    for folder in folds:  # before anything is written: a training would refuse the folder later
        try:
            run_records.check_new_training(folder, experiments.model_outputs(), params.restore_model,
                                           params.overwrite_output)
        except ConfigError as e:
            raise FoldsError(str(e)) from None
    plan = FoldPlan(group, k, split_seed, os.path.abspath(os.path.join(out, PARTS_DIR)),
                    [os.path.abspath(f) for f in params.csv_files_train],
                    [os.path.abspath(f) for f in params.csv_files_eval], len(samples))
    files = [os.path.join(plan.folder, f"part_{i}.csv") for i in range(1, k + 1)]
    for rows, path in zip(parts, files):
        write_csv([(samples[r].image_path, samples[r].symbols) for r in rows], path, params.csv_delimiter,
                  params.string_split_delimiter, relative=False)
    for i, folder in enumerate(folds):
        plan.folds.append(Fold(i + 1, os.path.abspath(folder), [f for j, f in enumerate(files) if j != i], files[i],
                               len(samples) - len(parts[i])))
    plan.save()
    return plan


def fold_config(base: dict, fold: Fold) -> dict:
    """The config of one fold's training: the base config with its parts and its own folder."""
    return {**base, "output_model_dir": fold.output_model_dir, "csv_files_train": list(fold.train_parts),
            "generate_data": None}


def train_folds(plan: FoldPlan, base: dict, keep_going: bool = False,
                on_start: Callable[[Fold], None] | None = None,
                on_end: Callable[[Fold, BaseException | None], None] | None = None) -> list[Fold]:
    """Train the folds of ``plan`` one after the other, each a run of ``crnn`` (see the module docstring).

    A fold whose training raises is FAILED (its run, if one started, too, with the trace); the
    next folds are trained only with ``keep_going``. ``folds.json`` is rewritten after each fold.
    Ctrl-C (or SIGTERM) stops everything: the fold in progress is INTERRUPTED and the interrupt raised.

    Args:
        on_start: called with each fold before it trains.
        on_end: called with each fold once it ended, and its error (None when it completed).

    Returns:
        the folds tried (all of them, unless one failed without ``keep_going``).
    """
    tried = []
    for fold in plan.folds:
        if on_start:
            on_start(fold)
        tried.append(fold)
        error = None
        try:
            run = experiments.ex.run(config_updates=fold_config(base, fold), options={"--capture": "sys"},
                                     info={"folds": {"group": plan.group, "fold": fold.fold, "k": plan.k,
                                                     "split_seed": plan.split_seed, "train_parts": fold.train_parts,
                                                     "held_out_part": fold.held_out_part}})
            fold.run, fold.status, fold.result = run._id, run.status, run.result
        except KeyboardInterrupt:
            _record_failure(fold, "INTERRUPTED", None)
            plan.save()
            raise
        except Exception as e:
            error = e
            _record_failure(fold, "FAILED", e)
        plan.save()
        if on_end:
            on_end(fold, error)
        if error is not None and not keep_going:
            break
    return tried


def _record_failure(fold: Fold, status: str, error: BaseException | None) -> None:
    run = experiments.ex.current_run  # the fold's run if Sacred created one (None or an earlier fold's if not)
    started = run is not None and run.config.get("output_model_dir") == fold.output_model_dir
    fold.run = run._id if started else None
    fold.status = run.status if started and run.status in ("FAILED", "INTERRUPTED") else status
    fold.error = None if error is None else f"{type(error).__name__}: {error}"


def vote_command(exports: Sequence[str], eval_csvs: Sequence[str]) -> str:
    """The ``tf-crnn evaluate`` command line that evaluates the vote of ``exports`` on ``eval_csvs``."""
    return " ".join(["tf-crnn evaluate", *(f"--model {shlex.quote(e)}" for e in exports),
                     *(f"--csv {shlex.quote(c)}" for c in eval_csvs)])
