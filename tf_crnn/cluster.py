"""Which machines train together: ``TF_CONFIG`` read in one place, without TensorFlow.

``TF_CONFIG`` is TensorFlow's JSON description of a multi-worker cluster
(``{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}``,
see the ``tf.distribute.MultiWorkerMirroredStrategy`` guide). tf-crnn asks it
two things: whether several workers train together (the ``auto`` strategy
then is ``multi_worker``) and whether this process is the chief, the one
worker that records the Sacred run and writes ``output_model_dir``.
"""
from __future__ import annotations

import json
import os

from .config import ConfigError


def tf_config() -> dict:
    """``TF_CONFIG`` parsed (``{}`` when unset).

    Raises:
        ConfigError: ``TF_CONFIG`` is not a JSON object.
    """
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e}): see docs/guide/several-machines.md") from None
    if not isinstance(value, dict):
        raise ConfigError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    return value


def worker_count() -> int:
    """How many processes train together: the ``worker`` and ``chief`` entries of the cluster (1 without one)."""
    cluster = tf_config().get("cluster", {})
    return max(1, sum(len(v) for k, v in cluster.items() if k in ("worker", "chief")))


def is_chief() -> bool:
    """Whether this process records the run and writes ``output_model_dir``.

    TensorFlow's convention: the ``chief`` task if the cluster has one, else
    worker 0; a process without ``TF_CONFIG`` task is the chief of itself.
    """
    config = tf_config()
    task = config.get("task", {})
    if not task:
        return True
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0
