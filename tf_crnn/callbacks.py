"""What happens around each epoch of :meth:`tf_crnn.trainer.Trainer.fit`, as a list of callbacks.

The trainer runs the epoch (training steps, batch-norm averaging, evaluation)
and then hands an :class:`EpochResult` to the callbacks, in three steps:

1. the callbacks that record the epoch (:attr:`Callback.records_epoch`; the Sacred experiment's
   metrics and ``reports/history.json``), first: the epoch is on record before anything else
   can fail. A failure of theirs stops the training;
2. every other callback, in order, each one isolated: a failure is printed as one warning line
   naming the callback and the error, added to :attr:`EpochResult.callback_failures` and handed to
   the recording callbacks (:meth:`Callback.on_callback_failure`), and the training goes on:

   - :class:`BestExport`: exports the model to ``export_best`` when the eval CER is
     the lowest so far;
   - :class:`EarlyStopping` (``early_stopping_patience``): stops the training when
     the eval CER has not improved for that many epochs;
   - :class:`ReduceLROnPlateau` (``lr_plateau_patience``): multiplies the learning
     rate by ``lr_plateau_factor`` when the eval CER has not improved for that
     many epochs;
   - :class:`FreezeConvBlocks` (``freeze_conv_epochs``): keeps the conv blocks out of
     training for the first epochs of a fine-tuning;
   - :class:`EpochLog`: one log line per epoch;
   - then the caller's own (a sweep's pruning);
3. :class:`Checkpoint`, last: saves weights, optimizer and callback state, so a
   resumed training continues exactly (``restore_model``). Being last, a
   checkpoint means everything its epoch writes is written. A failure of it stops
   the training (:class:`CheckpointError`): the epoch is recorded, but not resumable.

A callback sees the training through :class:`Training`, the few members of the
training loop it uses (:class:`tf_crnn.trainer.Trainer` has them); it does not
import the trainer. A callback's own state (the best CER of :class:`BestExport`,
the plateau counters) lives in the callback and is checkpointed from there.

Both plateau rules follow Keras' ``EarlyStopping`` / ``ReduceLROnPlateau``
(monitor ``eval.cer``, mode ``min``): an epoch improves when its CER is below
the best so far by more than ``min_delta``. Their counters are ``tf.Variable``
in the training checkpoint, so a resumed training keeps counting where the
stopped one was. The training code knows nothing of Sacred or MongoDB:
results leave it through callbacks.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import keras
import numpy as np
import tensorflow as tf

from ._util import warn

log = logging.getLogger(__name__)

BEST_EXPORT_DIR = "export_best"


@dataclass
class EpochResult:
    """One epoch: scalars (``train.loss``, ``eval.*``), speed, and the eval predictions (aligned with the eval entries).

    Attributes:
        epoch: 1-based number of the epoch just finished.
        metrics: ``train.loss`` and ``eval.loss``, ``eval.char_accuracy``, ``eval.sequence_accuracy``,
            ``eval.cer``, ``eval.wer`` (see :mod:`tf_crnn.metrics`).
        images_per_second: training images per second of the training steps (evaluation excluded).
        seconds: wall time of the epoch, training and evaluation.
        predictions: ``list[tuple[str, ...]]``, the eval predictions in eval-entry order.
        learning_rate: the learning rate of the last step of the epoch.
        callback_failures: the callbacks that failed at this epoch's end, in order, each
            ``{"epoch": int, "callback": name, "error": "ErrorType: message"}`` (see :func:`end_epoch`).
        eval_counts: the eval images each worker scored (one entry per worker, the chief first; their sum
            is the eval set).
    """

    epoch: int
    metrics: dict[str, float]
    images_per_second: float
    seconds: float
    predictions: list = field(default_factory=list, repr=False)
    learning_rate: float = math.nan
    callback_failures: list[dict] = field(default_factory=list)
    eval_counts: list[int] = field(default_factory=list)

    @property
    def cer(self) -> float:
        return self.metrics["eval.cer"]


class ConvModel(Protocol):
    """What :class:`FreezeConvBlocks` uses of the model (:class:`tf_crnn.model.CRNN` has it)."""

    #: Per conv block, its layers (convolution, batch norm, activation, pooling).
    conv_blocks: Sequence[Sequence[keras.layers.Layer]]


@runtime_checkable
class Training(Protocol):
    """The members of a training loop that the callbacks use (:class:`tf_crnn.trainer.Trainer` has them).

    The callbacks are written against this, not against the trainer module, so they do not import it.
    """

    #: Set to True by a callback to end the training after the current epoch.
    stop_training: bool
    #: Epochs trained so far (int64 scalar; checkpointed).
    epoch: tf.Variable
    #: A factor on the learning-rate schedule (float32 scalar; :class:`tf_crnn.schedules.Scaled`).
    lr_scale: tf.Variable
    #: The model being trained.
    model: ConvModel
    #: Saves the training checkpoint (weights, optimizer, epoch, callback state).
    manager: tf.train.CheckpointManager

    def learning_rate(self) -> float:
        """The learning rate of the current optimizer step (schedule times ``lr_scale``)."""

    def retrace(self) -> None:
        """Compile the training step anew (after the set of trainable variables changed)."""

    def export(self, export_dir: str) -> str:
        """Write the SavedModel of the current weights to ``export_dir``; return its path."""

    def output_path(self, name: str) -> str:
        """``name`` inside the folder this process writes to."""


class Callback:
    """A hook into :meth:`tf_crnn.trainer.Trainer.fit`; override what you need.

    ``name`` and :meth:`state` let a callback keep state across a resume: the
    variables it returns are saved in every checkpoint (under ``name``, see
    :meth:`checkpoint_entries`) and restored with ``restore_model``.
    """

    name = "callback"
    #: Whether this callback writes the epoch's record (its metrics, ``history.json``): such callbacks run
    #: before every other one, and a failure of theirs stops the training (see :func:`end_epoch`).
    records_epoch = False

    def state(self) -> dict[str, tf.Variable]:
        """Variables to save in the training checkpoint (none by default)."""
        return {}

    def checkpoint_entries(self) -> dict[str, tf.train.Checkpoint | tf.Variable]:
        """Where :meth:`state` goes in the training checkpoint: one entry ``name`` holding it (none without state)."""
        state = self.state()
        return {self.name: tf.train.Checkpoint(**state)} if state else {}

    def on_train_begin(self, trainer: Training) -> None:
        """Before the first epoch of this :meth:`tf_crnn.trainer.Trainer.fit` call."""

    def on_epoch_end(self, trainer: Training, result: EpochResult) -> None:
        """After each epoch's evaluation. Set ``trainer.stop_training = True`` to end the training after it."""

    def on_callback_failure(self, trainer: Training, result: EpochResult, failure: dict) -> None:
        """A recording callback (:attr:`records_epoch`): another callback failed at the end of ``result``'s epoch.

        ``failure``: ``{"epoch", "callback", "error"}``, also in ``result.callback_failures``; the warning
        is printed already. Called after this callback's :meth:`on_epoch_end` of that epoch.
        """

    def on_train_end(self, trainer: Training, results: list[EpochResult]) -> None:
        """After the last epoch (also after an early stop)."""


class BestExport(Callback):
    """Exports the model to ``<output dir>/export_best`` whenever the eval CER is the lowest so far.

    Create it inside the training's strategy scope: :attr:`best_cer` is then a variable of that
    strategy, as the trainer's own are.
    """

    name = "best_export"
    #: Where :attr:`best_cer` sits in the training checkpoint: at its top, where the trainer kept it
    #: before it moved here (tf-crnn 0.4), so those checkpoints still resume.
    CHECKPOINT_KEY = "best_cer"

    def __init__(self):
        #: The lowest eval CER so far (float32 scalar; infinity before the first epoch).
        self.best_cer = tf.Variable(math.inf, dtype=tf.float32, trainable=False, name="best_cer")

    def state(self):
        return {"best_cer": self.best_cer}

    def checkpoint_entries(self):
        return {self.CHECKPOINT_KEY: self.best_cer}

    def on_epoch_end(self, trainer, result):
        # Compared in float32, the variable's dtype: an equal CER rounded to float32 is no improvement.
        if np.float32(result.cer) < self.best_cer.numpy():
            # The best CER only once its export is written: after a failed export the next better epoch exports.
            trainer.export(trainer.output_path(BEST_EXPORT_DIR))
            self.best_cer.assign(result.cer)
            log.info("epoch %d: best eval CER so far (%.4f), exported to %s", result.epoch, result.cer,
                     BEST_EXPORT_DIR)


class _PlateauCounter(Callback):
    """Counts epochs since the eval CER last improved by more than ``min_delta`` (state checkpointed)."""

    def __init__(self, patience: int, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"{self.name}: patience must be >= 1, got {patience}")
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.best = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name=f"{self.name}_best")
        self.wait = tf.Variable(0, dtype=tf.int64, trainable=False, name=f"{self.name}_wait")

    def state(self):
        return {"best": self.best, "wait": self.wait}

    def update(self, cer: float) -> bool:
        """Record one epoch's CER; return whether the patience is used up (the counter then restarts)."""
        if cer < float(self.best.numpy()) - self.min_delta:
            self.best.assign(cer)
            self.wait.assign(0)
            return False
        self.wait.assign_add(1)
        if int(self.wait.numpy()) < self.patience:
            return False
        self.wait.assign(0)
        return True


class EarlyStopping(_PlateauCounter):
    """Stops the training after ``patience`` epochs without an eval CER improvement larger than ``min_delta``.

    The export at the end is still written from the last epoch's weights; the
    best epoch's model is in ``export_best`` (:class:`BestExport`).
    """

    name = "early_stopping"

    def __init__(self, patience: int, min_delta: float = 0.0):
        super().__init__(patience, min_delta)
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, trainer, result):
        if self.update(result.cer):
            trainer.stop_training = True
            self.stopped_epoch = result.epoch
            log.warning("early stopping after epoch %d: eval CER has not improved by more than %g for %d "
                        "epochs (best %.4f)", result.epoch, self.min_delta, self.patience, float(self.best.numpy()))


class ReduceLROnPlateau(_PlateauCounter):
    """Multiplies the learning rate by ``factor`` after ``patience`` epochs without an eval CER improvement.

    Acts on ``trainer.lr_scale``, a factor on the learning-rate schedule
    (:class:`tf_crnn.schedules.Scaled`), so the schedule keeps its
    shape at a lower level. ``min_lr`` (0: none) bounds the reductions, not the
    rate: a reduction that would take the current step's rate below ``min_lr``
    sets it to ``min_lr`` instead, and none is made once the rate is at or below
    it (the scale is never raised). The schedule goes on decaying after a
    reduction (``exponential``, ``cosine``, ``one_cycle``), so later steps can
    train below ``min_lr``.
    """

    name = "lr_plateau"

    def __init__(self, patience: int, factor: float = 0.5, min_delta: float = 0.0, min_lr: float = 0.0):
        if not 0.0 < factor < 1.0:
            raise ValueError(f"{self.name}: factor must be in (0, 1), got {factor}")
        super().__init__(patience, min_delta)
        self.factor, self.min_lr = float(factor), float(min_lr)

    def on_epoch_end(self, trainer, result):
        if not self.update(result.cer):
            return
        old_scale = float(trainer.lr_scale.numpy())
        new_scale = old_scale * self.factor
        if self.min_lr > 0 and trainer.learning_rate() * self.factor < self.min_lr:
            new_scale = old_scale * self.min_lr / max(trainer.learning_rate(), 1e-30)
        if new_scale < old_scale:
            trainer.lr_scale.assign(new_scale)
            log.warning("epoch %d: eval CER has not improved for %d epochs: learning rate x %.3g (now %.3g)",
                        result.epoch, self.patience, new_scale / old_scale, trainer.learning_rate())


class FreezeConvBlocks(Callback):
    """Keeps the conv blocks (convolutions and their batch norm) out of training during the first ``epochs`` epochs.

    Fine-tuning (``init_from``, ``freeze_conv_epochs``): the new output layer and the BiLSTMs
    adapt first, so the large early gradients of a freshly initialised output layer do not
    disturb the pretrained features. Frozen layers are not ``trainable`` (Keras): they get no
    gradient and no optimizer update, and a frozen batch norm uses its moving statistics. The
    training step is retraced when the set of trained variables changes (:meth:`Training.retrace`).
    Nothing is checkpointed: whether a resumed training's conv blocks are frozen follows from its epoch.
    """

    name = "freeze_conv_blocks"

    def __init__(self, epochs: int):
        if epochs < 1:
            raise ValueError(f"{self.name}: epochs must be >= 1, got {epochs}")
        self.epochs = int(epochs)

    @staticmethod
    def set_trainable(trainer: Training, trainable: bool) -> bool:
        """Make the conv blocks of ``trainer.model`` (not) trainable; return whether that changed anything.

        A change retraces the training step (:meth:`Training.retrace`).
        """
        layers = [layer for block in trainer.model.conv_blocks for layer in block]
        if all(layer.trainable == trainable for layer in layers):
            return False
        for layer in layers:
            layer.trainable = trainable
        trainer.retrace()
        return True

    def on_train_begin(self, trainer):
        frozen = int(trainer.epoch.numpy()) < self.epochs
        if self.set_trainable(trainer, not frozen) and frozen:
            log.info("conv blocks frozen until the end of epoch %d (freeze_conv_epochs)", self.epochs)

    def on_epoch_end(self, trainer, result):
        if result.epoch >= self.epochs and self.set_trainable(trainer, True):
            log.info("epoch %d: conv blocks trained from now on (freeze_conv_epochs=%d)", result.epoch, self.epochs)


class CheckpointError(OSError):
    """The training checkpoint of an epoch could not be written (its metrics were recorded before)."""


class Checkpoint(Callback):
    """Saves the training checkpoint (weights, optimizer, epoch, callback state) after every epoch.

    Raises:
        CheckpointError: from :meth:`on_epoch_end`, when the checkpoint could not be written (whatever the
            cause: a full disk, a folder removed, TensorFlow's own errors), naming the folder and the error.
    """

    name = "checkpoint"

    def on_epoch_end(self, trainer, result):
        try:
            trainer.manager.save(checkpoint_number=result.epoch)
        except Exception as e:  # TensorFlow raises its own errors (tf.errors.*) as well as OSError
            raise CheckpointError(
                f"the checkpoint of epoch {result.epoch} could not be written to {trainer.manager.directory} "
                f"({type(e).__name__}: {e}); the training stopped with the metrics of epochs up to {result.epoch} "
                f"recorded. Fix the cause (free space, permissions) and continue from the last checkpoint "
                f"with restore_model=True") from e


class EpochLog(Callback):
    """One ``logging`` line per epoch with every scalar and the training speed."""

    name = "epoch_log"

    def on_epoch_end(self, trainer, result):
        log.info("epoch %d: %s, %.1f images/s", result.epoch,
                 ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items()), result.images_per_second)


def end_epoch(trainer: Training, result: EpochResult, callbacks: Sequence[Callback], checkpoint: Callback) -> None:
    """Hand a finished epoch to the callbacks: the recording ones, the others isolated, then ``checkpoint``.

    The callbacks with :attr:`Callback.records_epoch` run first, in order; then each other one, a failure
    (any ``Exception``) of which is printed as one warning line, appended to ``result.callback_failures``
    and handed to the recording callbacks (:meth:`Callback.on_callback_failure`): the training goes on,
    and a stop a callback asked for (``trainer.stop_training``) still holds. ``checkpoint`` comes last.

    Raises:
        Whatever a recording callback or ``checkpoint`` raises (:class:`CheckpointError`): the epoch's record,
        or its checkpoint, is missing, so the training must not go on.
    """
    recorders = [cb for cb in callbacks if cb.records_epoch]
    for callback in recorders:
        callback.on_epoch_end(trainer, result)
    for callback in callbacks:
        if callback.records_epoch:
            continue
        try:
            callback.on_epoch_end(trainer, result)
        except Exception as e:  # isolated: a best export that found a full disk must not cost the epoch
            failure = {"epoch": result.epoch, "callback": callback.name, "error": one_line(e)}
            result.callback_failures.append(failure)
            warn(f"epoch {result.epoch}: callback {callback.name} failed, the training goes on "
                 f"(the epoch's metrics are recorded): {failure['error']}")
            for recorder in recorders:
                recorder.on_callback_failure(trainer, result, failure)
    checkpoint.on_epoch_end(trainer, result)


def one_line(error: BaseException, limit: int = 500) -> str:
    """``ErrorType: message`` on one line (TensorFlow's messages span several), at most ``limit`` characters."""
    text = f"{type(error).__name__}: {' '.join(str(error).split())}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def from_params(params) -> list[Callback]:
    """The optional callbacks a config turns on: early stopping, learning-rate reduction on plateau, conv freezing.

    Args:
        params: a :class:`tf_crnn.config.Params`; a patience (or ``freeze_conv_epochs``) of 0 leaves that
            callback out.
    """
    chosen: list[Callback] = []
    if params.early_stopping_patience:
        chosen.append(EarlyStopping(params.early_stopping_patience, params.early_stopping_min_delta))
    if params.lr_plateau_patience:
        chosen.append(ReduceLROnPlateau(params.lr_plateau_patience, params.lr_plateau_factor,
                                        params.lr_plateau_min_delta, params.lr_plateau_min_lr))
    if params.freeze_conv_epochs:
        chosen.append(FreezeConvBlocks(params.freeze_conv_epochs))
    return chosen
