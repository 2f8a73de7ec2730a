"""Fit a CRNN under a tf.distribute strategy: strategy, optimizer, steps, per-epoch evaluation, resume.

:class:`Trainer` owns the model, the optimizer, the checkpoint and the
compiled steps. After each epoch's evaluation it hands an
:class:`~tf_crnn.callbacks.EpochResult` to its callbacks
(:mod:`tf_crnn.callbacks`): best export, early stopping, learning-rate
reduction on plateau, checkpoint, logging, and whatever the caller adds.
Training knows nothing about Sacred or MongoDB: the experiment
(:mod:`tf_crnn.experiment.experiments`) logs the run's metrics from a callback.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import math
import os
import re
import shutil
import tempfile
import time
from typing import Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import config as _framework_config  # see op_determinism_enabled
from tqdm import tqdm

from . import callbacks as callbacks_lib
from . import cluster, data, interrupts, metrics
from .alphabet import Alphabet
from .callbacks import Callback, EpochResult
from .config import OPTIMIZER_NAMES, STRATEGY_NAMES, ConfigError, Params
from .decoding import codes_to_symbols, ctc_decode
from .export import export_saved_model
from .model import build_crnn, ctc_loss, parameter_count, sequence_lengths
from .schedules import WarmupExponentialDecay, make_schedule  # noqa: F401 (WarmupExponentialDecay: was defined here)

log = logging.getLogger(__name__)

EXPORT_DIR = "export"
BEST_EXPORT_DIR = callbacks_lib.BEST_EXPORT_DIR
CHECKPOINT_DIR = "checkpoints"
_CHECKPOINT_INDEX = re.compile(r"ckpt-(\d+)\.index")  # tf.train.CheckpointManager's default file names
#: The checkpoint entry that marks a training with ema_decay (its optimizer state holds the averages).
EMA_CHECKPOINT_KEY = "ema_decay"


# ---- strategy and optimizer -------------------------------------------------

def _one_device() -> tf.distribute.Strategy:
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def _multi_worker() -> tf.distribute.Strategy:
    # The cluster of TF_CONFIG (the strategy reads it itself) or of a Slurm step (tf_crnn.cluster).
    return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=cluster.resolver())


#: How each ``strategy`` setting but ``auto`` is built (names: :data:`tf_crnn.config.Strategy`).
STRATEGIES = {"default": tf.distribute.get_strategy, "one_device": _one_device,
              "mirrored": tf.distribute.MirroredStrategy, "multi_worker": _multi_worker}
assert set(STRATEGIES) | {"auto"} == set(STRATEGY_NAMES), "config.Strategy and STRATEGIES name the same strategies"


def auto_strategy_name() -> str:
    """What ``strategy=auto`` means here: ``multi_worker`` when ``TF_CONFIG`` or a Slurm job step
    (:mod:`tf_crnn.cluster`) has several workers, ``mirrored`` on several GPUs, ``one_device`` on one GPU,
    else ``default``."""
    if cluster.worker_count() > 1:
        return "multi_worker"
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and not cluster.source():
        log.warning("Slurm job %s has %s tasks, but this process is not one of several tasks of a job step: it "
                    "trains alone. Start the training with srun (see docs/guide/several-machines.md)",
                    os.environ.get("SLURM_JOB_ID"), os.environ["SLURM_NTASKS"])
    # Physical, not logical, devices: listing logical ones starts TensorFlow's runtime, after which
    # MultiWorkerMirroredStrategy can no longer configure its collective ops.
    gpus = tf.config.list_physical_devices("GPU")
    return "mirrored" if len(gpus) > 1 else "one_device" if gpus else "default"


def pick_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The tf.distribute strategy for ``name``, a :data:`tf_crnn.config.Strategy` (``auto``: see below).

    ``auto`` is :func:`auto_strategy_name`.
    """
    return STRATEGIES[auto_strategy_name() if name == "auto" else name]()


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Within the block: Python, NumPy and TensorFlow seeded with ``seed``, TensorFlow's op determinism on.

    ``keras.utils.set_random_seed`` + ``tf.config.experimental.enable_op_determinism``, the
    recipe of TensorFlow's determinism guide: two runs with the same seed, data and settings on
    the same hardware then give bit-identical weights and metrics (tested on the CPU). Enter it
    before the model is built. Op determinism is process-wide; it is turned off again at the end
    unless it was on before, so later trainings in the same process (a sweep, a test) are not
    slowed or refused by it (XLA has no deterministic MaxPool gradient, for one).
    """
    was_on = op_determinism_enabled()
    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if was_on is False:
            _framework_config.disable_op_determinism()


def op_determinism_enabled() -> bool | None:
    """Whether TensorFlow's op determinism is on; None where this TensorFlow cannot tell.

    TensorFlow 2.21 exports only ``enable_op_determinism``; reading and turning it off goes
    through ``tensorflow.python.framework.config``, where both live (looked up, not assumed).
    """
    is_enabled = getattr(_framework_config, "is_op_determinism_enabled", None)
    if is_enabled is None or not hasattr(_framework_config, "disable_op_determinism"):
        return None
    return bool(is_enabled())


def cpu_has_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (``amx_bf16`` or ``avx512_bf16`` in ``/proc/cpuinfo``).

    oneDNN, TensorFlow's CPU kernels, runs bfloat16 convolutions and matrix products on AMX tiles or
    AVX512-BF16 there; elsewhere it emulates them, slower than float32. False where ``/proc/cpuinfo``
    cannot be read (not Linux).
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def mixed_precision_policy(params: Params) -> str | None:
    """The Keras dtype policy ``mixed_precision`` means on this machine (None: float32 throughout).

    ``float16`` / ``bfloat16``: that one. ``on``: float16 when TensorFlow sees a GPU, bfloat16
    otherwise. ``auto``: float16 on a GPU of compute capability 7.0 or more (tensor cores),
    bfloat16 on a CPU with native bfloat16 (:func:`cpu_has_bfloat16`) and no GPU, else None.
    ``off``: None.
    """
    choice = params.mixed_precision
    gpus = tf.config.list_physical_devices("GPU")
    if choice == "auto":
        if gpus:
            capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
            choice = "float16" if tuple(capability) >= (7, 0) else "off"
        else:
            choice = "bfloat16" if cpu_has_bfloat16() else "off"
    elif choice == "on":
        choice = "float16" if gpus else "bfloat16"
    return {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}.get(choice)


def make_optimizer(params: Params, schedule: keras.optimizers.schedules.LearningRateSchedule | None = None
                   ) -> keras.optimizers.Optimizer:
    """The config's optimizer with ``schedule`` (default :func:`tf_crnn.schedules.make_schedule`), global-norm
    clipping, and with ``ema_decay`` > 0 Keras' moving average of the weights (``use_ema``, ``ema_momentum``)."""
    schedule = schedule or make_schedule(params)
    clip = {"global_clipnorm": params.gradient_clip_norm} if params.gradient_clip_norm > 0 else {}
    ema = {"use_ema": True, "ema_momentum": params.ema_decay} if params.ema_decay > 0 else {}
    return OPTIMIZERS[params.optimizer](learning_rate=schedule, **clip, **ema)


OPTIMIZERS = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
              "rmsprop": keras.optimizers.RMSprop, "sgd": keras.optimizers.SGD}
assert set(OPTIMIZERS) == set(OPTIMIZER_NAMES), "config.Optimizer and OPTIMIZERS name the same optimizers"


def output_bytes_estimate(params: Params, num_classes: int) -> int:
    """A generous estimate of what a training writes to ``output_model_dir``, in bytes.

    Weights (float32, :func:`tf_crnn.model.parameter_count`) times: the weights,
    Adam's two moments (and the moving averages with ``ema_decay``) in each of
    ``keep_checkpoints`` + 1 checkpoints, two exports (``export``, ``export_best``)
    and the temporary copy of an export; plus 64 MB for reports and logs.
    """
    weights = 4 * parameter_count(params, num_classes)
    per_checkpoint = 4 if params.ema_decay > 0 else 3
    return weights * (per_checkpoint * (params.keep_checkpoints + 1) + 3) + 64 * 2**20


def skip_non_finite(grads: list[tf.Tensor]) -> tuple[list[tf.Tensor], tf.Tensor]:
    """``grads``, or all zeros when any holds an inf or NaN on any replica; and 1.0 if so, else 0.0.

    Call in a replica context. Why: under ``mixed_bfloat16`` on oneDNN, a conv layer's weight
    gradient came out non-finite in about one training step in 10-100 on Fraktur lines (finite
    loss, finite activations; not reproducible on the same batch), and with global-norm clipping a
    single NaN turns every weight into NaN. A zero gradient still advances the optimizer's step
    (Adam then moves by its momentum alone), as Keras' LossScaleOptimizer's skipped steps do not.
    """
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
    context = tf.distribute.get_replica_context()
    # Every replica must agree, or the all-reduced gradients would mix zeros and NaNs.
    finite = context.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32)) < 0.5
    return [tf.where(finite, g, tf.zeros_like(g)) for g in grads], 1.0 - tf.cast(finite, tf.float32)


class CheckpointMismatch(ConfigError):
    """A checkpoint that does not hold this training's model (written for another network)."""

    def __init__(self, path: str, error: Exception):
        super().__init__(
            f"checkpoint {path} does not hold this model's weights ({str(error).splitlines()[0][:200]}): the "
            "config's network differs from the one that wrote it. Resume with that config, or start anew "
            "with overwrite_output=True.")
        self.path = path


def lacks_batch_norm_statistics(path: str) -> bool:
    """Whether a checkpoint is of a tf-crnn 0.4.0 of before 2026-11-22: weights, but no batch-norm statistics.

    Keras 3 keeps a model's layers in lists tf.train.Checkpoint does not follow; the trainable
    weights were saved anyway, as the optimizer's, the moving means and variances were not.
    """
    names = [name for name, _ in tf.train.list_variables(path)]
    return (any(n.startswith("optimizer/_trainable_variables/") for n in names)
            and not any("moving_mean" in n for n in names))


# ---- the training loop --------------------------------------------------------

def on_averaged_weights(method):
    """Decorate a :class:`Trainer` method to run with the averaged weights in the model (``averaged_weights``)."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self.averaged_weights():
            return method(self, *args, **kwargs)
    return run


def newest_checkpoint(directory: str) -> str | None:
    """The prefix of the newest complete checkpoint in ``directory`` (``.../ckpt-N``), or None if there is none.

    ``tf.train.CheckpointManager`` writes ``ckpt-N.index`` (which TensorFlow writes once the checkpoint's
    data files are in place) before it updates its record (the ``checkpoint`` file): a process killed
    between the two leaves the record naming ``ckpt-N-1``. Then the higher-numbered checkpoint is newer and
    is returned, so a resume after ``kill -9`` keeps every epoch that was checkpointed.
    """
    recorded = tf.train.latest_checkpoint(directory)
    names = tf.io.gfile.listdir(directory) if tf.io.gfile.isdir(directory) else []  # gfile: also gs:// folders
    numbers = [int(match.group(1)) for name in names if (match := _CHECKPOINT_INDEX.fullmatch(name))]
    if numbers and (recorded is None or max(numbers) > int(recorded.rsplit("-", 1)[1])):
        newest = os.path.join(directory, f"ckpt-{max(numbers)}")
        log.warning("%s is newer than the checkpoint record names (%s; the process that wrote it was stopped "
                    "before updating the record): restoring it", newest, recorded)
        return newest
    return recorded


class EvalShare:
    """Which eval batches this worker scores (:meth:`Trainer.evaluate`): worker ``k`` of ``N``, batches ``k``,
    ``k + N``, ... of the whole set's, as ``tf.distribute`` deals a worker's batches to its local devices.

    Every worker takes the same number of steps (:attr:`steps`) and every local device gets a batch at
    every step: a share that is short is filled up with :attr:`filler` batches, whose ``index`` is -1 and
    whose results are dropped (tf.distribute would otherwise hand an empty batch of width 0 to the model).

    Args:
        batches: batches of the whole eval set (:func:`tf_crnn.data.batch_count`).
        local_devices: replicas on this worker (``strategy.extended.worker_devices``).
        filler: a one-batch dataset of the eval pipeline's structure.
    """

    def __init__(self, batches: int, local_devices: int, filler: tf.data.Dataset):
        self.batches, self.local, self.filler = batches, local_devices, filler
        #: This worker's index and the number of workers (the input context's, set by :meth:`dataset`).
        self.worker, self.workers = 0, 1

    @property
    def steps(self) -> int:
        """Evaluation steps of every worker: its batches spread over its local devices, the most of any worker."""
        return math.ceil(math.ceil(self.batches / self.workers) / self.local)

    def dataset(self, full: tf.data.Dataset, context: tf.distribute.InputContext) -> tf.data.Dataset:
        """This worker's batches of ``full`` and the fillers (for ``distribute_datasets_from_function``)."""
        self.worker, self.workers = context.input_pipeline_id, context.num_input_pipelines
        own = full.shard(self.workers, self.worker) if self.workers > 1 else full
        missing = self.steps * self.local - len(range(self.worker, self.batches, self.workers))
        if missing:
            own = own.concatenate(self.filler.map(lambda batch: {**batch, "index": -tf.ones_like(batch["index"])})
                                  .cache().repeat(missing))
        return own


class Trainer:
    """Owns the model, optimizer, checkpoints and compiled steps of one training.

    Args:
        params: the run's settings.
        alphabet: the lookup table (fixes the number of classes).
        strategy: a tf.distribute strategy; :func:`pick_strategy` when None.
        callbacks: run after each epoch after the standard ones (best export, the config's early
            stopping / learning-rate reduction, log line) and before the checkpoint, which comes
            last (those that record the epoch, :attr:`Callback.records_epoch`, first of all); their
            :meth:`Callback.state` is saved in the checkpoint, so they are given here, before :meth:`restore`.
    """

    def __init__(self, params: Params, alphabet: Alphabet, strategy: tf.distribute.Strategy | None = None,
                 callbacks: Sequence[Callback] = ()):
        self.params, self.alphabet = params, alphabet
        self.strategy = strategy or pick_strategy(params.strategy)
        self.symbols_by_code = alphabet.symbols_by_code
        with self.strategy.scope():
            #: The Keras dtype policy trained with: None (float32), "mixed_float16" or "mixed_bfloat16".
            self.dtype_policy = mixed_precision_policy(params)
            self.model = build_crnn(params, alphabet.num_classes, self.dtype_policy)
            self.lr_scale = tf.Variable(1.0, dtype=tf.float32, trainable=False, name="lr_scale")
            #: The learning-rate schedule (times lr_scale); fit() tells it the training's length.
            self.schedule = make_schedule(params, self.lr_scale)
            self.optimizer = make_optimizer(params, self.schedule)
            if self.dtype_policy == "mixed_float16":
                # Dynamic loss scaling keeps small float16 gradients from flushing to zero (bfloat16 has
                # float32's exponent range and needs none).
                self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
            self.optimizer.build(self.model.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            #: Training steps applied as zero gradients because of an inf or NaN (not checkpointed).
            self.skipped_steps = tf.Variable(0.0, trainable=False, name="skipped_steps",
                                             aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            # In the scope, as best_cer was when it was the trainer's: a variable of the strategy.
            self.best_export = callbacks_lib.BestExport()
        #: The variables the optimizer was built with (and averages, with ema_decay), frozen or not.
        self.trained_variables = list(self.model.trainable_variables)
        self._averaged = False  # whether the model holds the averaged weights (averaged_weights())
        self.callbacks: list[Callback] = [self.best_export, *callbacks_lib.from_params(params),
                                           callbacks_lib.EpochLog(), *callbacks]
        # Saved after every other callback: a checkpoint means its epoch's record and exports are written too,
        # so a training killed between them redoes that epoch rather than missing its record.
        self.checkpointer = callbacks_lib.Checkpoint()
        self.stop_training = False  # a callback sets it to end fit() after the current epoch
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, epoch=self.epoch,
                                              **self._callback_state())
        # Several workers: all of them save (saving reads mirrored variables collectively), only the chief
        # into output_model_dir; the others into a scratch folder removed at the end (TF's convention).
        self.is_chief = cluster.is_chief()
        self.scratch_dir = None if self.is_chief else tempfile.mkdtemp(prefix="tf_crnn_worker_")
        if self.scratch_dir is not None:
            atexit.register(self.close)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(self.output_dir, CHECKPOINT_DIR), max_to_keep=params.keep_checkpoints)
        self._eval_step = None  # compiled for the dataset's element spec on first use
        #: The eval images each worker scored in the last :meth:`evaluate` (worker order: the chief first).
        self.eval_counts: list[int] = []
        self.retrace()

    def retrace(self) -> None:
        """Compile the training step anew at its next use: after the set of trainable variables changed
        (:class:`tf_crnn.callbacks.FreezeConvBlocks`), as the traced step holds the list it was traced with."""
        self._train_step = None  # compiled for the dataset's element spec on first use
        # XLA compiles the per-replica computation only: collectives and the optimizer update stay outside.
        self._gradient_fn = (tf.function(self._loss_and_gradients, jit_compile=True) if self.params.jit_compile
                             else self._loss_and_gradients)

    def _callback_state(self) -> dict:
        """Checkpoint entries beyond model, optimizer and epoch: the callbacks' state (the default config: only
        ``best_cer``, :class:`~tf_crnn.callbacks.BestExport`'s, as ever), ``lr_scale`` with ReduceLROnPlateau,
        ``ema_decay`` with weight averaging. Old checkpoints restore: every entry keeps the name it was saved under.
        """
        entries = {key: value for cb in self.callbacks for key, value in cb.checkpoint_entries().items()}
        if any(isinstance(cb, callbacks_lib.ReduceLROnPlateau) for cb in self.callbacks):
            entries["lr_scale"] = self.lr_scale
        if self.params.ema_decay > 0:  # marks a checkpoint whose optimizer state holds the averages (restore())
            entries[EMA_CHECKPOINT_KEY] = tf.Variable(self.params.ema_decay, trainable=False, name="ema_decay")
        return entries

    @contextlib.contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """Within the block the model holds the moving averages of its trainable weights (``ema_decay``), if any.

        Polyak averaging as Keras' optimizers keep it (``use_ema``): after every step
        ``average = ema_decay * average + (1 - ema_decay) * weight`` (the first step sets
        ``average = weight``). Evaluation and exports run inside this block; training runs on the
        weights themselves, which are put back bit for bit at the end. Batch-norm statistics are not
        averaged. Without ``ema_decay`` (or nested in another such block) it does nothing.
        """
        optimizer = getattr(self.optimizer, "inner_optimizer", self.optimizer)  # LossScaleOptimizer wraps one
        if not getattr(optimizer, "use_ema", False) or self._averaged:
            yield
            return
        weights = [keras.ops.convert_to_numpy(v) for v in self.trained_variables]
        optimizer.finalize_variable_values(self.trained_variables)  # Keras: the averages into the variables
        self._averaged = True
        try:
            yield
        finally:
            for variable, value in zip(self.trained_variables, weights):
                variable.assign(value)
            self._averaged = False

    @property
    def output_dir(self) -> str:
        """Where this process writes: ``output_model_dir`` on the chief, a scratch folder on other workers."""
        return self.params.output_model_dir if self.scratch_dir is None else self.scratch_dir

    def output_path(self, name: str) -> str:
        """``name`` inside :attr:`output_dir`."""
        return os.path.join(self.output_dir, name)

    def learning_rate(self) -> float:
        """The learning rate of the current optimizer step (schedule times ``lr_scale``)."""
        optimizer = getattr(self.optimizer, "inner_optimizer", self.optimizer)  # LossScaleOptimizer wraps one
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))

    def close(self) -> None:
        """Remove a non-chief worker's scratch folder."""
        if self.scratch_dir is not None:
            shutil.rmtree(self.scratch_dir, ignore_errors=True)

    # -- checkpoints --
    def restore(self) -> int:
        """Restore the latest checkpoint (weights, optimizer state, epoch); return the epoch reached (0 if none).

        Every worker reads the chief's checkpoints (``output_model_dir/checkpoints``): with several
        machines that folder must be on storage they all read (NFS, GCS, ...).
        """
        directory = os.path.join(self.params.output_model_dir, CHECKPOINT_DIR)
        latest = newest_checkpoint(directory)
        if latest is None:
            log.warning("restore_model=True but no checkpoint in %s: starting from scratch", directory)
            return 0
        with_ema = any(name.split("/")[0] == EMA_CHECKPOINT_KEY for name, _ in tf.train.list_variables(latest))
        if with_ema != (self.params.ema_decay > 0):  # the optimizer's variables would be matched up wrongly
            raise ConfigError(f"checkpoint {latest} was written {'with' if with_ema else 'without'} weight "
                              f"averaging (ema_decay > 0), this training has ema_decay={self.params.ema_decay}: "
                              "resume with the ema_decay it was written with (any value > 0 for a checkpoint "
                              "with averaging, 0 for one without)")
        try:
            status = self.checkpoint.restore(latest)
        except ValueError as e:  # a weight of another shape
            raise CheckpointMismatch(latest, e) from None
        try:
            status.assert_existing_objects_matched()
        except AssertionError as e:
            if not lacks_batch_norm_statistics(latest):
                raise CheckpointMismatch(latest, e) from None
            log.warning("%s was written by a tf-crnn 0.4.0 of before 2026-11-22, which did not save the batch-norm "
                        "moving statistics: they restart from their initial values and re-adapt during the next "
                        "epoch, whose eval metrics will be worse than the weights deserve", latest)
        log.info("restored %s (epoch %d)", latest, int(self.epoch.numpy()))
        return int(self.epoch.numpy())

    # -- steps --
    def _loss_and_gradients(self, batch, global_count):
        """Forward pass, CTC loss and gradients: the part XLA may compile (``jit_compile``)."""
        with tf.GradientTape() as tape:
            logits = self.model(batch["images"], batch["widths"], training=True)
            lengths = sequence_lengths(batch["widths"], self.model.pool_widths)
            per_sample = ctc_loss(batch["labels"], batch["label_lengths"], logits, lengths, xla=self.params.jit_compile)
            loss = tf.reduce_sum(per_sample) / tf.maximum(global_count, 1.0)
            # The identity unless the optimizer is a LossScaleOptimizer (mixed precision); inside the tape.
            loss = self.optimizer.scale_loss(loss)
        grads = tape.gradient(loss, self.model.trainable_variables)
        return tf.reduce_sum(per_sample), grads

    def _replica_train_step(self, batch):
        # The batch of this step over all replicas of all workers (the last one may be partial).
        count = tf.cast(tf.shape(batch["widths"])[0], tf.float32)
        global_count = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, count)
        loss_sum, grads = self._gradient_fn(batch, global_count)
        skipped = tf.constant(0.0)
        if not isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):  # that one skips such steps itself
            grads, skipped = skip_non_finite(grads)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return loss_sum, count, skipped

    def distributed_train_step(self, batch):
        """One training step over all replicas: ``(sum of per-sample CTC losses, images)``, both summed over workers.

        A step whose gradients hold an inf or NaN on any replica is applied as a zero gradient on all
        (:func:`skip_non_finite`); :attr:`skipped_steps` counts them.
        """
        loss_sum, count, skipped = self.strategy.run(self._replica_train_step, args=(batch,))
        # The same on every replica (they agree on skipping): their mean is that value.
        self.skipped_steps.assign_add(self.strategy.reduce(tf.distribute.ReduceOp.MEAN, skipped, axis=None))
        return (self.strategy.reduce(tf.distribute.ReduceOp.SUM, loss_sum, axis=None),
                self.strategy.reduce(tf.distribute.ReduceOp.SUM, count, axis=None))

    def _replica_eval_step(self, batch):
        logits = self.model(batch["images"], batch["widths"], training=False)
        lengths = sequence_lengths(batch["widths"], self.model.pool_widths)
        per_sample = ctc_loss(batch["labels"], batch["label_lengths"], logits, lengths)
        codes, scores = ctc_decode(logits, lengths, self.params.decoding, self.params.beam_width, 1)
        return tf.reduce_sum(per_sample), codes[:, 0], batch["index"]

    def _distributed_eval_step(self, batch):
        return self.strategy.run(self._replica_eval_step, args=(batch,))

    def average_replica_state(self) -> None:
        """Average the non-trainable model variables (batch-norm moving statistics) over all replicas.

        Gradients are all-reduced, so trainable weights agree everywhere, but each replica
        updates the moving statistics from its own batches. Averaged after each epoch, every
        worker evaluates, checkpoints and exports the same model.
        """
        variables = list(self.model.non_trainable_variables)
        if self.strategy.num_replicas_in_sync <= 1 or not variables:
            return

        def replica_fn():
            context = tf.distribute.get_replica_context()
            return [context.all_reduce(tf.distribute.ReduceOp.MEAN, tf.identity(v.value)) for v in variables]

        # Eagerly: once per epoch, and a traced all-reduce of variable reads has no device to reduce to.
        for variable, value in zip(variables, self.strategy.run(replica_fn)):
            variable.assign(self.strategy.experimental_local_results(value)[0])

    # -- epochs --
    def train_epoch(self, dataset: tf.data.Dataset, num_batches: int, steps: int | None = None) -> tuple[float, int]:
        """One pass (or ``steps`` batches); returns mean per-sample CTC loss and images seen.

        ``num_batches`` (:func:`data.batch_count`) is the progress bar's total only.
        """
        total_loss, seen = 0.0, 0
        dist = self.strategy.experimental_distribute_dataset(dataset)
        if self._train_step is None:
            # A fixed signature with unknown width: one trace for every batch shape.
            self._train_step = tf.function(self.distributed_train_step, input_signature=[dist.element_spec])
        bar = tqdm(total=min(steps or num_batches, num_batches),
                   desc=f"epoch {int(self.epoch.numpy()) + 1}/{self.params.n_epochs}", unit="batch", mininterval=2.0)
        for i, batch in enumerate(dist):
            if steps is not None and i >= steps:
                break
            loss_sum, n = self._train_step(batch)  # sums over all workers
            total_loss += float(loss_sum)
            seen += int(n)
            bar.update(1)
            bar.set_postfix(loss=f"{total_loss / max(1, seen):.3f}", refresh=False)
        bar.close()
        skipped = int(self.skipped_steps.numpy())
        if skipped:
            log.warning("epoch %d: %d training step(s) had an inf or NaN gradient and were applied as zero "
                        "gradients (mixed_precision=%s)", int(self.epoch.numpy()) + 1, skipped,
                        self.params.mixed_precision)
            self.skipped_steps.assign(0.0)
        return total_loss / max(1, seen), seen

    @on_averaged_weights
    def evaluate(self, entries: list[data.Entry],
                 dataset: tf.data.Dataset | None = None) -> tuple[dict[str, float], list]:
        """Loss and recognition metrics on ``entries``, of the averaged weights with ema_decay; several workers
        share the work.

        The eval batches (``eval_batch_size`` each, those of one worker) are dealt out: worker ``k`` of ``N``
        scores batches ``k, k + N, ...``, each local device of a worker whole batches in turn. Every worker
        adds up its :func:`tf_crnn.metrics.metric_sums` and CTC losses; one all-reduce over the workers
        gives each the sums of all, and :func:`tf_crnn.metrics.metrics_from_sums` the same metrics as one
        worker on the same batches (the counts exactly, the loss and ``char_accuracy`` up to the order of
        float additions). The decoded codes are all-reduced too, so every worker has every prediction (the
        chief's reports and TensorBoard samples). Each worker still reads and decodes all eval images
        (the batches are those of the whole set; with the image cache once). :attr:`eval_counts` holds the
        images each worker scored.

        Returns:
            metrics: ``loss``, ``char_accuracy``, ``sequence_accuracy``, ``cer``, ``wer``.
            predictions: ``list[tuple[str, ...]]`` aligned with ``entries``.
        """
        dataset = dataset or data.make_dataset(entries, self.params, self.params.eval_batch_size, training=False)
        share = EvalShare(data.batch_count(entries, self.params.eval_batch_size), self.local_replicas(),
                          data.make_dataset(entries[:1], self.params, 1, training=False))
        dist = self.strategy.distribute_datasets_from_function(functools.partial(share.dataset, dataset))
        if self._eval_step is None:
            self._eval_step = tf.function(self._distributed_eval_step, input_signature=[dist.element_spec])
        labels = [e.sample.symbols for e in entries]
        scored: dict[int, np.ndarray] = {}  # entry -> decoded codes (padded with blanks), of this worker's share
        total_loss = 0.0
        for batch in tqdm(dist, desc="evaluating", unit="batch", total=share.steps, mininterval=2.0, leave=False):
            for loss_sum, codes, index in zip(*(self.strategy.experimental_local_results(x)
                                                for x in self._eval_step(batch))):
                index = index.numpy()
                if index.size and index[0] >= 0:  # not a filler batch (EvalShare)
                    total_loss += float(loss_sum)
                    scored.update(zip(index.tolist(), codes.numpy()))
        # Every entry's decoded codes from the worker that scored it, zeros (blanks) from the others; as wide as
        # the widest image has time steps, which every worker knows.
        codes = np.zeros([len(entries), int(sequence_lengths([max(e.width for e in entries)],
                                                             self.model.pool_widths)[0])])
        for i, row in scored.items():
            row = np.trim_zeros(row, "b")
            codes[i, :len(row)] = row
        order = sorted(scored)
        own = metrics.metric_sums([labels[i] for i in order],
                                  codes_to_symbols(codes[order].astype(np.int32), self.symbols_by_code))
        counts = np.zeros(share.workers)  # at this worker's index, the images it scored
        counts[share.worker] = len(scored)
        # One all-reduce, in float64: counts and codes stay exact.
        sums = self.sum_over_workers(np.concatenate([[total_loss, *own.values(), *counts], codes.ravel()]))
        self.eval_counts = [int(c) for c in sums[len(own) + 1:len(own) + 1 + share.workers]]
        predictions = codes_to_symbols(sums[len(own) + 1 + share.workers:].reshape(codes.shape).astype(np.int32),
                                       self.symbols_by_code)
        if share.workers > 1:
            log.info("evaluation: worker %d of %d scored %d of the %d eval images", share.worker, share.workers,
                     len(scored), len(entries))
        result = {"loss": sums[0] / len(entries), **metrics.metrics_from_sums(dict(zip(metrics.SUMS, sums[1:])))}
        return result, predictions

    def local_replicas(self) -> int:
        """Replicas of the strategy on this worker (its devices)."""
        try:
            return len(self.strategy.extended.worker_devices)
        except RuntimeError:  # the default strategy has no worker_devices: its one replica
            return 1

    def sum_over_workers(self, value: np.ndarray) -> np.ndarray:
        """``value`` of this worker summed with those of the other workers, on every worker (same shape, dtype).

        An eager all-reduce among the replicas in which each worker's first local replica holds
        ``value`` and its others zeros, so each worker's value counts once. One worker: ``value`` itself.
        """
        local = self.local_replicas()
        if self.strategy.num_replicas_in_sync == local:
            return value
        own, zeros = tf.constant(value), tf.zeros(value.shape, value.dtype)
        per_replica = self.strategy.experimental_distribute_values_from_function(
            lambda context: own if context.replica_id_in_sync_group % local == 0 else zeros)
        reduced = self.strategy.run(lambda v: tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, v), args=(per_replica,))
        return self.strategy.experimental_local_results(reduced)[0].numpy()

    def fit(self, train_entries: list[data.Entry], eval_entries: list[data.Entry], seed: int | None = None,
            callbacks: Sequence[Callback] = ()) -> list[EpochResult]:
        """Train from the current epoch to ``params.n_epochs``, evaluating every epoch.

        After each epoch's evaluation the callbacks run (:func:`tf_crnn.callbacks.end_epoch`): those
        that record the epoch first, then the others in order, each isolated (a failure is a warning,
        recorded in the epoch's :attr:`~tf_crnn.callbacks.EpochResult.callback_failures`): those given
        to the constructor (best export, ...), then ``callbacks`` (state not checkpointed); the
        checkpoint last. A callback that sets :attr:`stop_training` ends the training after that
        epoch. A stop signal (:mod:`tf_crnn.interrupts`) that arrives while they run is raised once
        they are done.

        Args:
            train_entries, eval_entries: checked samples (:func:`tf_crnn.data.load_split`).
            seed: shuffling seed of the training data (None: a new order every run).
            callbacks: extra callbacks for this call only.

        Returns:
            One :class:`EpochResult` per epoch trained by this call (empty if ``n_epochs`` was reached already).

        Raises:
            tf_crnn.callbacks.CheckpointError: an epoch's checkpoint could not be written (its metrics are recorded).
            tf_crnn.compiled.CompiledDataError: a shard of a compiled data set that cannot be read (named).
        """
        p = self.params
        cache = data.use_image_cache(p, train_entries, eval_entries)
        train_ds = data.make_dataset(train_entries, p, p.train_batch_size, training=True, seed=seed, cache=cache)
        eval_ds = data.make_dataset(eval_entries, p, p.eval_batch_size, training=False, cache=cache)
        train_batches = data.batch_count(train_entries, p.train_batch_size)
        if p.steps_per_epoch and p.steps_per_epoch > train_batches:
            # More steps than one pass (a fine-tuning on a few dozen lines): passes follow each other, each
            # shuffled and augmented anew, as Keras' steps_per_epoch over a repeated dataset.
            train_ds = train_ds.repeat()
            train_batches = p.steps_per_epoch
        # cosine and one_cycle end at the last step of n_epochs epochs (a resume continues the same curve).
        self.schedule.set_total_steps(p.n_epochs * min(p.steps_per_epoch or train_batches, train_batches))
        epoch_callbacks = [*self.callbacks, *callbacks]
        hooks = [*epoch_callbacks, self.checkpointer]
        results: list[EpochResult] = []
        self.stop_training = False
        for hook in hooks:
            hook.on_train_begin(self)
        while int(self.epoch.numpy()) < p.n_epochs and not self.stop_training:
            try:
                result = self.run_epoch(train_ds, train_batches, eval_entries, eval_ds)
            except tf.errors.DataLossError as e:  # a damaged shard of a compiled data set: name it
                raise data.data_loss(e, train_entries, eval_entries) from e
            # A SIGTERM / Ctrl-C here waits: the finished epoch's record, exports and checkpoint are written whole.
            with interrupts.deferred():
                results.append(result)
                callbacks_lib.end_epoch(self, result, epoch_callbacks, self.checkpointer)
        for hook in hooks:
            hook.on_train_end(self, results)
        return results

    def run_epoch(self, train_ds: tf.data.Dataset, train_batches: int, eval_entries: list[data.Entry],
                  eval_ds: tf.data.Dataset) -> EpochResult:
        """One epoch: training steps, batch-norm averaging over replicas, evaluation; the epoch counter + 1."""
        start = time.perf_counter()
        train_loss, seen = self.train_epoch(train_ds, train_batches, self.params.steps_per_epoch)
        train_time = time.perf_counter() - start
        self.average_replica_state()
        eval_metrics, predictions = self.evaluate(eval_entries, eval_ds)
        self.epoch.assign_add(1)
        scalars = {"train.loss": train_loss, **{f"eval.{k}": v for k, v in eval_metrics.items()}}
        return EpochResult(int(self.epoch.numpy()), scalars, seen / max(train_time, 1e-9),
                           time.perf_counter() - start, predictions, self.learning_rate(),
                           eval_counts=list(self.eval_counts))

    @on_averaged_weights
    def export(self, export_dir: str) -> str:
        """Write the SavedModel of :func:`export_saved_model` for the current weights (averaged, with ema_decay).

        On a non-chief worker, a path inside ``output_model_dir`` is redirected into its scratch
        folder (every worker must write the SavedModel, only the chief's is kept).
        """
        if self.scratch_dir is not None:
            relative = os.path.relpath(os.path.abspath(export_dir), os.path.abspath(self.params.output_model_dir))
            export_dir = os.path.join(self.scratch_dir, relative if not relative.startswith("..")
                                      else os.path.basename(export_dir.rstrip("/")))
        return export_saved_model(self.model, self.params, self.alphabet, export_dir)
