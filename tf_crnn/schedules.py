"""Learning-rate schedules of a training (``learning_rate_schedule``), all with linear warm-up.

- ``exponential`` (:class:`WarmupExponentialDecay`): ``lr * decay_rate ** (step / decay_steps)``
  after a linear warm-up; it never ends, so the last epochs still train at a fair rate.
- ``cosine`` (:class:`WarmupCosineDecay` from 0): linear warm-up from 0 to ``lr`` over
  ``warmup_steps``, then cosine annealing down to ``lr * learning_rate_final_fraction`` at the
  last step of the training (Loshchilov & Hutter 2017, "SGDR: Stochastic Gradient Descent with
  Warm Restarts", arXiv 1608.03983, without restarts).
- ``one_cycle`` (:class:`WarmupCosineDecay` from ``lr / 25``): the one-cycle policy of Smith &
  Topin 2017 ("Super-Convergence", arXiv 1708.07120): linear rise from ``lr / 25`` to the
  maximum ``lr`` over ``warmup_steps`` (30 % of the training when that is 0), then annealing to
  ``lr * learning_rate_final_fraction``. The divisor 25, the 30 % and the cosine annealing are
  the defaults of PyTorch's ``OneCycleLR`` (Smith & Topin's paper anneals linearly).

Both decaying schedules are Keras' ``CosineDecay`` (its warm-up and ``alpha`` floor); what they
add is the length of the training, which the trainer knows only once it has its data
(:meth:`TrainingSchedule.set_total_steps`: ``n_epochs`` times the steps of one epoch). The
step counts are variables read at every step, so setting them needs no retracing, and a
resumed training (``restore_model``) with the same config continues the same curve; a resume
with more ``n_epochs`` stretches the rest of the curve to the new end.

Every schedule is wrapped by :class:`Scaled`: times ``lr_scale``, the factor
:class:`tf_crnn.callbacks.ReduceLROnPlateau` lowers.
"""
from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from .config import LEARNING_RATE_SCHEDULE_NAMES, Params

#: one_cycle starts its rise at ``learning_rate`` divided by this (PyTorch ``OneCycleLR``'s ``div_factor``).
ONE_CYCLE_DIVISOR = 25.0
#: one_cycle's rise, as a fraction of the training, when ``warmup_steps`` is 0 (``OneCycleLR``'s ``pct_start``).
ONE_CYCLE_RISE_FRACTION = 0.3


class TrainingSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A learning-rate schedule (step -> float32 rate) that may depend on how many steps the training has."""

    def set_total_steps(self, total_steps: int) -> None:
        """Tell the schedule the training's length in optimizer steps (a no-op unless the shape depends on it)."""


class WarmupExponentialDecay(TrainingSchedule):
    """``lr * min(1, (step + 1) / warmup_steps) * decay_rate ** (step / decay_steps)``.

    Args:
        learning_rate: the rate after the warm-up, before any decay.
        decay_steps, decay_rate: the rate is multiplied by ``decay_rate`` every ``decay_steps`` steps (smoothly).
        warmup_steps: linear warm-up length in steps (0: none).
    """

    def __init__(self, learning_rate: float, decay_steps: int, decay_rate: float, warmup_steps: int = 0):
        self.learning_rate, self.decay_steps = learning_rate, decay_steps
        self.decay_rate, self.warmup_steps = decay_rate, warmup_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        lr = self.learning_rate * tf.pow(self.decay_rate, step / self.decay_steps)
        if self.warmup_steps > 0:
            lr *= tf.minimum(1.0, (step + 1.0) / self.warmup_steps)
        return lr

    def get_config(self):
        return {"learning_rate": self.learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "warmup_steps": self.warmup_steps}


class WarmupCosineDecay(TrainingSchedule):
    """Linear warm-up from ``start`` to ``peak``, then cosine annealing to ``peak * final_fraction`` at the last step.

    Keras' ``CosineDecay`` with its warm-up: at step ``s`` (float32),
    ``start + (peak - start) * s / W`` while ``s < W``, then
    ``peak * (f + (1 - f) * (1 + cos(pi * (s - W) / (T - W))) / 2)``, and ``peak * f`` from step
    ``T`` on (``W`` warm-up steps, ``T`` total steps, ``f`` = ``final_fraction``).

    Args:
        peak: the rate at the end of the warm-up (``learning_rate``).
        final_fraction: the rate at the last step as a fraction of ``peak``, in [0, 1].
        start: the rate at step 0.
        warmup_steps: ``W``; None: ``round(warmup_fraction * T)``.
        warmup_fraction: used when ``warmup_steps`` is None.
        total_steps: ``T`` until :meth:`set_total_steps` says otherwise.
    """

    def __init__(self, peak: float, final_fraction: float, start: float = 0.0, warmup_steps: int | None = 0,
                 warmup_fraction: float = 0.0, total_steps: int = 1):
        self.peak, self.final_fraction, self.start = float(peak), float(final_fraction), float(start)
        self.warmup_steps, self.warmup_fraction = warmup_steps, float(warmup_fraction)
        self._warmup = tf.Variable(0.0, dtype=tf.float32, trainable=False, name="warmup_steps")
        self._decay = tf.Variable(1.0, dtype=tf.float32, trainable=False, name="decay_steps")
        self.set_total_steps(total_steps)
        self._cosine = keras.optimizers.schedules.CosineDecay(
            self.start, self._decay, alpha=self.final_fraction, warmup_target=self.peak, warmup_steps=self._warmup)

    def set_total_steps(self, total_steps: int) -> None:
        total = max(1, int(total_steps))
        warmup = self.warmup_steps if self.warmup_steps is not None else round(self.warmup_fraction * total)
        self._warmup.assign(float(min(warmup, total)))
        self._decay.assign(float(max(1, total - warmup)))

    @property
    def total_steps(self) -> int:
        """``T``: warm-up plus annealing steps."""
        return int(self._warmup.numpy() + self._decay.numpy())

    def __call__(self, step):
        return self._cosine(step)

    def get_config(self):
        return {"peak": self.peak, "final_fraction": self.final_fraction, "start": self.start,
                "warmup_steps": self.warmup_steps, "warmup_fraction": self.warmup_fraction,
                "total_steps": self.total_steps}


class Scaled(TrainingSchedule):
    """``schedule(step) * scale``: ``scale`` is a float32 ``tf.Variable`` (the trainer's ``lr_scale``) or None (1)."""

    def __init__(self, schedule: TrainingSchedule, scale: tf.Variable | None = None):
        self.schedule, self.scale = schedule, scale

    def __call__(self, step):
        lr = tf.cast(self.schedule(step), tf.float32)
        return lr if self.scale is None else lr * tf.cast(self.scale, tf.float32)

    def set_total_steps(self, total_steps: int) -> None:
        self.schedule.set_total_steps(total_steps)

    def get_config(self):
        return {"schedule": self.schedule.get_config()}


def exponential(params: Params) -> TrainingSchedule:
    return WarmupExponentialDecay(params.learning_rate, params.learning_decay_steps, params.learning_decay_rate,
                                  params.warmup_steps)


def cosine(params: Params) -> TrainingSchedule:
    return WarmupCosineDecay(params.learning_rate, params.learning_rate_final_fraction, 0.0, params.warmup_steps)


def one_cycle(params: Params) -> TrainingSchedule:
    return WarmupCosineDecay(params.learning_rate, params.learning_rate_final_fraction,
                             params.learning_rate / ONE_CYCLE_DIVISOR, params.warmup_steps or None,
                             ONE_CYCLE_RISE_FRACTION)


#: How each ``learning_rate_schedule`` is built (names: :data:`tf_crnn.config.LearningRateSchedule`).
SCHEDULES: dict[str, Callable[[Params], TrainingSchedule]] = {
    "exponential": exponential, "cosine": cosine, "one_cycle": one_cycle}
assert tuple(SCHEDULES) == LEARNING_RATE_SCHEDULE_NAMES, \
    "config.LearningRateSchedule and SCHEDULES name the same schedules"


def make_schedule(params: Params, scale: tf.Variable | None = None, total_steps: int | None = None) -> Scaled:
    """The config's learning-rate schedule times ``scale``.

    Args:
        params: ``learning_rate_schedule``, ``learning_rate``, ``warmup_steps`` and the schedule's own keys.
        scale: float32 ``tf.Variable`` multiplying the rate (``lr_scale``), or None.
        total_steps: the training's length in steps, if known; the trainer sets it again once it has its data
            (default: ``n_epochs * steps_per_epoch``, or ``n_epochs`` when steps_per_epoch is null).

    Returns:
        A Keras ``LearningRateSchedule``: optimizer step (int) -> learning rate (float32 tensor).
    """
    schedule = Scaled(SCHEDULES[params.learning_rate_schedule](params), scale)
    schedule.set_total_steps(total_steps or params.n_epochs * (params.steps_per_epoch or 1))
    return schedule
