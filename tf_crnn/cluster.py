"""Which machines train together: ``TF_CONFIG`` (Kubeflow's ``TFJob`` too) or a Slurm job step, read in one place.

Two sources, in this order:

1. ``TF_CONFIG``, TensorFlow's JSON description of a multi-worker cluster
   (``{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}``,
   see the ``tf.distribute.MultiWorkerMirroredStrategy`` guide). Kubeflow's training operator writes
   it into every pod of a ``TFJob``, with a ``chief`` task beside the ``worker`` tasks when the job has
   a ``Chief`` replica. Task types ``chief`` and ``worker`` train; ``evaluator``, ``ps`` and ``master``
   are refused (:func:`tf_config`). When set, ``TF_CONFIG`` wins over a Slurm job around the process.
2. A Slurm job step of several tasks (``srun`` inside ``sbatch`` / ``salloc``: ``SLURM_JOB_ID``,
   ``SLURM_PROCID`` and ``SLURM_STEP_NUM_TASKS`` > 1): every task is a worker, the cluster is
   TensorFlow's ``SlurmClusterResolver`` over the step's nodes (:func:`slurm_resolver`), task 0 the chief.
   A job's batch script itself is a one-task step (no ``SLURM_STEP_NUM_TASKS``): it trains alone.

tf-crnn asks whether several workers train together (the ``auto`` strategy then is ``multi_worker``)
and whether this process is the chief, the one worker that records the Sacred run and writes
``output_model_dir``. Only :func:`slurm_resolver` imports TensorFlow (the command line's start
reads the rest).
"""
from __future__ import annotations

import json
import os

from .config import ConfigError

GUIDE = "docs/guide/several-machines.md"
#: The task types tf-crnn trains with (MultiWorkerMirroredStrategy's); anything else in TF_CONFIG is refused.
TRAINING_TASKS = ("chief", "worker")
#: Why each other task type of TF_CONFIG is refused.
REFUSED_TASKS = {
    "evaluator": "tf-crnn evaluates inside the training (each worker scores its share of the eval set after "
                 "every epoch), it has no side-car evaluator: remove the Evaluator replicas (TFJob) or the "
                 "'evaluator' entry",
    "ps": "parameter servers are not supported (tf-crnn trains with MultiWorkerMirroredStrategy): use Chief "
          "and Worker replicas only",
    "master": "'master' is the old name of 'chief': name that replica Chief (TFJob) or the task 'chief'",
}
#: The first gRPC port of a Slurm step's workers without ``TF_CRNN_SLURM_PORT`` (see :func:`slurm_port_base`).
SLURM_PORT_FLOOR = 20000
#: Ports a job may use per node (one per task on the node) before the next job's range.
SLURM_PORTS_PER_JOB = 8
#: Job ids folded onto ports 20000-31999: below Linux's ephemeral ports (32768 and up).
SLURM_PORT_JOBS = 1500


def tf_config() -> dict:
    """``TF_CONFIG`` parsed (``{}`` when unset), its task types checked.

    Raises:
        ConfigError: ``TF_CONFIG`` is not a JSON object, or it names a task type tf-crnn does not train
            with (:data:`REFUSED_TASKS` says why for ``evaluator``, ``ps`` and ``master``).
    """
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e}): see {GUIDE}") from None
    if not isinstance(value, dict):
        raise ConfigError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    task_type = value.get("task", {}).get("type")
    for name in [*value.get("cluster", {}), *([task_type] if task_type else [])]:
        if name not in TRAINING_TASKS:
            reason = REFUSED_TASKS.get(name, f"tf-crnn trains with {' and '.join(TRAINING_TASKS)} tasks only")
            raise ConfigError(f"TF_CONFIG names a task type {name!r}: {reason} (see {GUIDE})")
    return value


def slurm_task_count() -> int:
    """Tasks of the Slurm job step this process runs in (``SLURM_STEP_NUM_TASKS``); 0 outside a step of a job.

    Raises:
        ConfigError: ``SLURM_STEP_NUM_TASKS`` or ``SLURM_PROCID`` is not a number.
    """
    if not (os.environ.get("SLURM_JOB_ID") and os.environ.get("SLURM_PROCID")):
        return 0
    try:
        int(os.environ["SLURM_PROCID"])
        return int(os.environ.get("SLURM_STEP_NUM_TASKS", "0"))
    except ValueError:
        raise ConfigError(f"SLURM_PROCID={os.environ['SLURM_PROCID']!r} / SLURM_STEP_NUM_TASKS="
                          f"{os.environ.get('SLURM_STEP_NUM_TASKS')!r} are not numbers: start the training with "
                          f"srun inside a Slurm job (see {GUIDE})") from None


def source() -> str:
    """Where the cluster comes from: ``"TF_CONFIG"``, ``"slurm"`` (a step of several tasks) or ``""`` (none)."""
    if tf_config():
        return "TF_CONFIG"
    return "slurm" if slurm_task_count() > 1 else ""


def worker_count() -> int:
    """How many processes train together: the ``worker`` and ``chief`` tasks of ``TF_CONFIG``, else the tasks
    of a Slurm step, else 1."""
    config = tf_config()
    if config:
        return max(1, sum(len(v) for k, v in config.get("cluster", {}).items() if k in TRAINING_TASKS))
    return max(1, slurm_task_count())


def is_chief() -> bool:
    """Whether this process records the run and writes ``output_model_dir``.

    TensorFlow's convention: the ``chief`` task if the cluster has one, else worker 0; in a Slurm step
    task 0 (``SLURM_PROCID``); a process without a cluster is the chief of itself.
    """
    config = tf_config()
    if not config:
        return source() != "slurm" or int(os.environ["SLURM_PROCID"]) == 0
    task = config.get("task", {})
    if not task:
        return True
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def slurm_port_base() -> int:
    """The gRPC port of a Slurm step's first task on each node; the node's next tasks take the next ports.

    ``TF_CRNN_SLURM_PORT`` if set; else ``20000 + 8 * (SLURM_JOB_ID % 1500)``: ports 20000-31999, below
    Linux's ephemeral range, and different for jobs that share a node (unless their ids differ by a
    multiple of 1500), unlike TensorFlow's fixed 8888 (Jupyter's port too).

    Raises:
        ConfigError: ``TF_CRNN_SLURM_PORT`` is not a port number.
    """
    chosen = os.environ.get("TF_CRNN_SLURM_PORT", "").strip()
    if chosen:
        if not chosen.isdigit() or not 1024 <= int(chosen) <= 65535 - SLURM_PORTS_PER_JOB:
            raise ConfigError(f"TF_CRNN_SLURM_PORT={chosen!r} is no port number between 1024 and "
                              f"{65535 - SLURM_PORTS_PER_JOB}")
        return int(chosen)
    job = int(os.environ["SLURM_JOB_ID"]) if os.environ.get("SLURM_JOB_ID", "").isdigit() else 0
    return SLURM_PORT_FLOOR + SLURM_PORTS_PER_JOB * (job % SLURM_PORT_JOBS)


def slurm_resolver():
    """The cluster of this Slurm step as a ``tf.distribute.cluster_resolver.ClusterResolver``.

    TensorFlow's ``SlurmClusterResolver`` reads the step (``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS``,
    ``SLURM_STEP_NODELIST``, ``SLURM_STEP_TASKS_PER_NODE``): one ``worker`` per task, addresses
    ``node:port`` with ports from :func:`slurm_port_base`. Its GPU handling is left out: GPUs stay as
    Slurm bound them (``CUDA_VISIBLE_DEVICES`` not rewritten) and each worker uses the GPUs it sees,
    which the returned ``SimpleClusterResolver`` reports to the strategy (TensorFlow's resolver would
    ask ``nvidia-smi``, and with no GPU divide by zero).

    Returns:
        ``SimpleClusterResolver`` with the ``cluster_spec``, ``task_type`` ``"worker"`` and ``task_id``
        (= ``SLURM_PROCID``) of TensorFlow's resolver.

    Raises:
        ConfigError: this task's address is not on this node (``SLURMD_NODENAME``): TensorFlow orders the
            workers by sorted node name, Slurm numbers tasks in its node order (``node9,node10``), or the
            step distributes tasks cyclically (``srun --distribution=cyclic``).
    """
    import tensorflow as tf  # here only: the rest of the module is read before TensorFlow is loaded

    tasks = slurm_task_count()
    # One GPU "per task" of as many as there are tasks keeps the resolver's bookkeeping consistent without
    # nvidia-smi; it is not used (auto_set_gpu=False) and not what the strategy is told.
    slurm = tf.distribute.cluster_resolver.SlurmClusterResolver(
        port_base=slurm_port_base(), gpus_per_node=tasks, gpus_per_task=1, auto_set_gpu=False)
    spec = slurm.cluster_spec()
    task_type, task_id = slurm.get_task_info()
    address = spec.task_address(task_type, task_id)
    node = os.environ.get("SLURMD_NODENAME")
    if node and address.rsplit(":", 1)[0] != node:
        raise ConfigError(
            f"Slurm task {task_id} runs on {node}, but TensorFlow's SlurmClusterResolver gives it the address "
            f"{address} (it orders workers by sorted node name and expects tasks numbered node by node): use "
            f"the default block distribution and node names that sort in Slurm's order, or set TF_CONFIG for "
            f"each task yourself (see {GUIDE})")
    gpus = len(tf.config.list_physical_devices("GPU"))
    return tf.distribute.cluster_resolver.SimpleClusterResolver(
        spec, task_type=task_type, task_id=task_id, num_accelerators={"GPU": gpus} if gpus else None,
        rpc_layer="grpc")


def resolver():
    """The cluster resolver MultiWorkerMirroredStrategy is given: :func:`slurm_resolver` in a Slurm step of
    several tasks (without ``TF_CONFIG``), else None (the strategy reads ``TF_CONFIG`` itself).

    Raises:
        ConfigError: see :func:`tf_config` and :func:`slurm_resolver`.
    """
    return slurm_resolver() if source() == "slurm" else None
