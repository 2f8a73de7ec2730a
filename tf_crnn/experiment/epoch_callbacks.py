"""What the experiment layer does after each epoch of a training: the trainer's callbacks of a Sacred run.

- :class:`SacredEpochLog`: the run's scalars and per-epoch record, handed to its observers at once
  (:func:`write_metrics_now`), ``reports/history.json``, TensorBoard and one printed line;
- :class:`TrialPruning`: a sweep's trial reports each epoch's eval CER to Optuna and stops when its
  pruner says so (:mod:`tf_crnn.experiment.sweep`).

:mod:`tf_crnn.experiment.experiments` gives them to :meth:`tf_crnn.trainer.Trainer.fit`; the trainer
knows nothing of Sacred. This module loads TensorFlow (through :mod:`tf_crnn.callbacks`): it is imported
when a training starts, not with the experiment.
"""
from __future__ import annotations

from typing import Any, Protocol

from sacred.metrics_logger import linearize_metrics

from .. import reports
from .._util import warn
from ..callbacks import Callback, EpochResult


def write_metrics_now(run) -> None:
    """Hand the metrics logged so far to the run's observers now, not at Sacred's next heartbeat.

    Sacred 0.8 gives observers metrics only from its heartbeat thread
    (``Run._emit_heartbeat``, every 10 s), taken from the run's private
    ``_metrics`` queue: a process killed between two heartbeats loses what was
    logged since the last one. This drains the same queue (an entry is read
    once, so the heartbeat never sends it again) and calls each observer's
    ``log_metrics`` as the heartbeat does. It is tf-crnn's only use of Sacred's
    private API; nothing happens without observers.
    """
    if not run.observers:
        return
    metrics = linearize_metrics(run._metrics.get_last_metrics())
    if not metrics:
        return
    for observer in run.observers:
        try:
            observer.log_metrics(metrics_by_name=metrics, info=run.info)
        except Exception as e:  # as in Sacred's heartbeat: a failing observer must not stop the training
            warn(f"observer {type(observer).__name__} could not store the metrics: {type(e).__name__}: {e}")


def carry_over_history(run, history: dict) -> list[int]:
    """Log the epochs a resumed training continues (``history``: name -> ``[(epoch, value)]``) into ``run``.

    They keep their epoch numbers, so the run's metrics (Omniboard) show the whole
    training as one curve; ``info.carried_over_epochs`` lists them (their values come
    from ``reports/history.json``, written by the earlier runs). Returns those epochs.
    """
    epochs = sorted({epoch for series in history.values() for epoch, _ in series})
    if not epochs:
        return []
    for name, series in history.items():
        for epoch, value in series:
            run.log_scalar(name, value, epoch)
    run.info["carried_over_epochs"] = epochs
    write_metrics_now(run)
    return epochs


class SacredEpochLog(Callback):
    """Logs each epoch of a training to its Sacred run, to ``reports/history.json`` and to TensorBoard.

    Per epoch: the scalars named in ``history`` and ``train.images_per_second`` (step: the epoch),
    ``info.epochs`` (epoch, seconds, images per second), all in MongoDB (or the run's local copy)
    before ``history.json`` has the epoch and before the next epoch starts; the TensorBoard scalars
    and sample predictions; one printed line (the run's captured output).

    Args:
        run: the Sacred run.
        history: name -> ``[(epoch, value)]`` of the logged metrics (``train.loss``, ``eval.cer``, ...), with the
            epochs a resumed training continues; appended to here and saved in ``report_dir``.
        report_dir: where :func:`tf_crnn.reports.save_history` writes ``history.json``.
        board: the run's :class:`tf_crnn.reports.TensorBoardLog`.
        samples: how many eval images ``board`` shows (the first ones): their predictions are logged.
        n_epochs: the training's length, for the printed line.
    """

    name = "sacred_epoch_log"

    def __init__(self, run, history: dict[str, list], report_dir: str, board: reports.TensorBoardLog,
                 samples: int, n_epochs: int):
        self.run, self.history, self.report_dir, self.board = run, history, report_dir, board
        self.samples, self.n_epochs = samples, n_epochs

    def on_epoch_end(self, trainer, result: EpochResult) -> None:
        for name, series in self.history.items():
            self.run.log_scalar(name, result.metrics[name], result.epoch)
            series.append((result.epoch, result.metrics[name]))
        self.run.log_scalar("train.images_per_second", result.images_per_second, result.epoch)
        self.run.info.setdefault("epochs", []).append(
            {"epoch": result.epoch, "seconds": round(result.seconds, 2),
             "images_per_second": round(result.images_per_second, 2)})
        write_metrics_now(self.run)
        reports.save_history(self.report_dir, self.history)
        self.board.log_epoch(result.epoch, result.metrics, ["".join(p) for p in result.predictions[:self.samples]])
        print(f"epoch {result.epoch}/{self.n_epochs}: "
              + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
              + f", {result.images_per_second:.1f} training images/s, {result.seconds:.0f} s")


class TrialJudge(Protocol):
    """What :class:`TrialPruning` reports to: a sweep's :class:`tf_crnn.experiment.sweep.TrialProgress`."""

    def on_epoch(self, result: EpochResult) -> bool:
        """Take one epoch's result; True when the trial is to stop (pruned)."""


class TrialPruning(Callback):
    """A sweep's trial: reports each epoch to the trial (``judge``); stops the training when it is pruned.

    A pruned training ends after that epoch (export, reports and artifacts as usual); its run
    records ``info.sweep_pruned_at_epoch``.

    Args:
        judge: the trial's progress (:meth:`tf_crnn.experiment.sweep.TrialProgress.on_epoch`).
        run: the trial's Sacred run.
    """

    name = "trial_pruning"

    def __init__(self, judge: TrialJudge, run: Any):
        self.judge, self.run = judge, run

    def on_epoch_end(self, trainer, result: EpochResult) -> None:
        if self.judge.on_epoch(result):
            self.run.info["sweep_pruned_at_epoch"] = result.epoch
            trainer.stop_training = True
