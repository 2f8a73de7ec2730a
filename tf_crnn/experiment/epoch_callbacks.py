"""What the experiment layer does after each epoch of a training: the trainer's callbacks of a Sacred run.

- :class:`SacredEpochLog` records the epoch (it runs before the trainer's other callbacks): the run's
  scalars and per-epoch record, handed to its observers at once (:func:`write_metrics_now`),
  ``reports/history.json`` and one printed line; and the callbacks that failed at an epoch's end
  (``info.callback_failures``);
- :class:`TensorBoardEpochLog`: the scalars and sample predictions in TensorBoard;
- :class:`TrialPruning`: a sweep's trial reports each epoch's eval CER to Optuna and stops when its
  pruner says so (:mod:`tf_crnn.experiment.sweep`).

:mod:`tf_crnn.experiment.experiments` gives them to :meth:`tf_crnn.trainer.Trainer.fit`; the trainer
knows nothing of Sacred. This module loads TensorFlow (through :mod:`tf_crnn.callbacks`): it is imported
when a training starts, not with the experiment.
"""
from __future__ import annotations

import weakref
from typing import Any, Protocol

from sacred.metrics_logger import linearize_metrics

from .. import reports
from .._util import warn
from ..callbacks import Callback, EpochResult

#: The runs told that their metrics reach the observers at Sacred's heartbeat only (told once each).
_HEARTBEAT_ONLY_RUNS: weakref.WeakSet = weakref.WeakSet()


def write_metrics_now(run) -> bool:
    """Hand the metrics logged so far to the run's observers now, not at Sacred's next heartbeat.

    Sacred 0.8 gives observers metrics only from its heartbeat thread
    (``Run._emit_heartbeat``, every 10 s), taken from the run's private
    ``_metrics`` queue: a process killed between two heartbeats loses what was
    logged since the last one. This drains the same queue (an entry is read
    once, so the heartbeat never sends it again) and calls each observer's
    ``log_metrics`` as the heartbeat does. It is tf-crnn's only use of Sacred's
    private API (pyproject.toml bounds Sacred below 0.9 for it); nothing happens
    without observers. A Sacred whose run lacks ``_metrics.get_last_metrics`` gets
    one warning per run and nothing else: its heartbeat and the run's final event
    still hand every metric to the observers, only later.

    Returns:
        Whether the metrics were handed over now (False: no observers, or left to the heartbeat).
    """
    if not run.observers:
        return False
    queue = getattr(run, "_metrics", None)
    if not callable(getattr(queue, "get_last_metrics", None)):
        if run not in _HEARTBEAT_ONLY_RUNS:
            _HEARTBEAT_ONLY_RUNS.add(run)
            warn("this Sacred version has no run._metrics.get_last_metrics (tf-crnn knows Sacred 0.8): each "
                 "epoch's metrics reach the database at Sacred's heartbeat (every 10 s) and at the run's end "
                 "only, so a killed process loses the metrics of its last seconds")
        return False
    metrics = linearize_metrics(queue.get_last_metrics())
    if not metrics:
        return False
    for observer in run.observers:
        try:
            observer.log_metrics(metrics_by_name=metrics, info=run.info)
        except Exception as e:  # as in Sacred's heartbeat: a failing observer must not stop the training
            warn(f"observer {type(observer).__name__} could not store the metrics: {type(e).__name__}: {e}")
    return True


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


def replace_epoch(series: list[tuple[int, float]], epoch: int, value: float) -> None:
    """Put ``(epoch, value)`` at the end of ``series``, dropping the points of ``epoch`` and later ones.

    An epoch trained again (a resume from the checkpoint before it) replaces its earlier record, and the
    epochs after it, which belonged to the training that was not continued, go with it: never twice.
    """
    series[:] = [point for point in series if point[0] < epoch]
    series.append((epoch, value))


class SacredEpochLog(Callback):
    """Records each epoch of a training: in its Sacred run and in ``reports/history.json``.

    It records the epoch (:attr:`~tf_crnn.callbacks.Callback.records_epoch`): the trainer runs it before
    its other callbacks, so a failure of those (a best export on a full disk) does not lose the record.
    Per epoch: the scalars named in ``history`` and ``train.images_per_second`` (step: the epoch),
    ``info.epochs`` (epoch, seconds, images per second, ``eval_images``: the eval images each worker
    scored, the chief first), all in MongoDB (or the run's local copy)
    before ``history.json`` has the epoch and before the other callbacks run; one printed line (the
    run's captured output). An epoch already in ``history`` (trained again after a resume) replaces
    its points there; one the run has already (carried over) is not logged to the run a second time.
    A callback that fails later at the epoch's end is added to ``info.callback_failures``
    (``{"epoch", "callback", "error"}``; in the database at the next heartbeat).

    Args:
        run: the Sacred run.
        history: name -> ``[(epoch, value)]`` of the logged metrics (``train.loss``, ``eval.cer``, ...), with the
            epochs a resumed training continues (carried over into ``run``: :func:`carry_over_history`);
            updated here and saved in ``report_dir``.
        report_dir: where :func:`tf_crnn.reports.save_history` writes ``history.json``.
        n_epochs: the training's length, for the printed line.
    """

    name = "sacred_epoch_log"
    records_epoch = True

    def __init__(self, run, history: dict[str, list], report_dir: str, n_epochs: int):
        self.run, self.history, self.report_dir, self.n_epochs = run, history, report_dir, n_epochs
        #: The epochs the run has metrics of (those carried over): Sacred's metrics are append-only.
        self.in_run = {epoch for series in history.values() for epoch, _ in series}

    def on_epoch_end(self, trainer, result: EpochResult) -> None:
        if result.epoch in self.in_run:
            warn(f"epoch {result.epoch} is in run {self.run._id}'s metrics already: its values of this training "
                 f"go to {reports.HISTORY_FILE} only")
        else:
            for name in self.history:
                self.run.log_scalar(name, result.metrics[name], result.epoch)
            self.run.log_scalar("train.images_per_second", result.images_per_second, result.epoch)
            self.in_run.add(result.epoch)
        epochs = [e for e in self.run.info.get("epochs", []) if e["epoch"] < result.epoch]
        self.run.info["epochs"] = epochs + [
            {"epoch": result.epoch, "seconds": round(result.seconds, 2),
             "images_per_second": round(result.images_per_second, 2), "eval_images": result.eval_counts}]
        write_metrics_now(self.run)
        for name, series in self.history.items():
            replace_epoch(series, result.epoch, result.metrics[name])
        reports.save_history(self.report_dir, self.history)
        print(f"epoch {result.epoch}/{self.n_epochs}: "
              + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
              + f", {result.images_per_second:.1f} training images/s, {result.seconds:.0f} s"
              + (f", eval images per worker {'+'.join(map(str, result.eval_counts))}"
                 if len(result.eval_counts) > 1 else ""))

    def on_callback_failure(self, trainer, result: EpochResult, failure: dict) -> None:
        self.run.info.setdefault("callback_failures", []).append(dict(failure))


class TensorBoardEpochLog(Callback):
    """Each epoch's scalars and the predictions of the first ``samples`` eval images, in TensorBoard.

    Args:
        board: the run's :class:`tf_crnn.reports.TensorBoardLog`.
        samples: how many eval images ``board`` shows (the first ones).
    """

    name = "tensorboard"

    def __init__(self, board: reports.TensorBoardLog, samples: int):
        self.board, self.samples = board, samples

    def on_epoch_end(self, trainer, result: EpochResult) -> None:
        self.board.log_epoch(result.epoch, result.metrics, ["".join(p) for p in result.predictions[:self.samples]])


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
