"""The Sacred experiments of tf-crnn: ``crnn`` (a training) and ``crnn-evaluate`` (``tf-crnn evaluate --log``).

Both are made by :func:`new_experiment` (captured output filter, package
dependencies) and record to MongoDB through the same observer
(:func:`tf_crnn.tracking.observer.mongo_observer`) on the database
:func:`tf_crnn.tracking.server.resolve_url` picks.

``crnn`` (:data:`ex`): ``python train.py with ...`` and ``tf-crnn train with
...`` run its command line. Per epoch the run gets the scalars
``train.loss``, ``eval.loss``, ``eval.char_accuracy``,
``eval.sequence_accuracy``, ``eval.cer`` and ``train.images_per_second``; at
the end the artifacts ``alphabet.json``, ``config.json``, ``export.zip`` (the
SavedModel) and the reports. The run's result is the final eval metrics dict.

Each epoch is logged by :class:`tf_crnn.experiment.epoch_callbacks.SacredEpochLog`, a callback
of the trainer: its scalars reach the observers when the epoch ends, not only at Sacred's heartbeat;
a resumed run starts with the epochs of the checkpoint it continues. A caller running trainings in
this process (a sweep) passes its own callbacks to :meth:`CRNNExperiment.run`. What a run needs
beyond its config (its observer, database URL, the output folder's lock, those callbacks) lives in
one :class:`RunState` per run, owned by the experiment. Before a training starts, the chief checks
and locks its output folder (:func:`claim_output_dir`); during it, SIGTERM and SIGINT end the run
INTERRUPTED (:class:`CRNNExperiment`). :func:`interruption_summary` and
:func:`unsaved_run_error` say how a run ended for the command line
(:mod:`tf_crnn.cli.train`).

``crnn-evaluate`` (:func:`run_logged_evaluation`): one run per evaluation,
naming the training run it evaluates.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sacred import Experiment
from sacred.arg_parser import get_config_updates
from sacred.observers.mongo import parse_mongo_db_arg
from sacred.utils import apply_backspaces_and_linefeeds, recursive_update

from .. import check_cache, cluster, compiled, interrupts, reports
from .._util import write_json
from ..alphabet import Alphabet, AlphabetError
from ..config import ConfigError, Params, load_config_file
from ..tracking import output_lock, provenance, run_records
from ..tracking.observer import FAILURE_DIR, FALLBACK_DIR, ResilientMongoObserver, mongo_observer
from ..tracking.server import resolve_url
from ..tracking.urls import DEFAULT_DB_NAME, TrackingError, host_port, redact_url

if TYPE_CHECKING:  # named in a type only: importing the callbacks loads TensorFlow
    from sacred.run import Run

    from ..callbacks import Callback

EXPERIMENT_NAME = "crnn"
EVALUATE_EXPERIMENT_NAME = "crnn-evaluate"
TENSORBOARD_SAMPLES = 6
REPORT_DIR = "reports"  # inside output_model_dir
TENSORBOARD_DIR = "tensorboard"  # inside output_model_dir
METRIC_NAMES = ("train.loss", "eval.loss", "eval.char_accuracy", "eval.sequence_accuracy", "eval.cer")


#: Keys of the Sacred config of ``crnn`` that are not :class:`Params` fields.
NON_PARAM_KEYS = ("seed", "generate_data")


def base_config(config_files: Sequence[str] = (), updates: Sequence[str] = ()) -> dict:
    """A config of ``crnn`` for trainings started in this process (a sweep's trials, cross-fold
    trainings): JSON config files in order, then ``key=value`` updates, as Sacred combines them.

    The same as ``with config.json key=value`` of a training: Sacred's parsing of values
    (Python literals, else text) and dotted keys for nested values (``generate_data.train_size=500``).

    Raises:
        ConfigError: a file that is missing or not a JSON object, or an update without ``=``.
    """
    parsed, not_updates = get_config_updates(list(updates))
    if not_updates:
        raise ConfigError(f"{not_updates[0]!r} is no key=value update")
    config: dict = {}
    for name in config_files:
        recursive_update(config, load_config_file(name))
    return recursive_update(config, parsed)


def base_params(base: dict) -> Params:
    """A :func:`base_config` as :class:`Params` (defaults for what it leaves out). Raises: ConfigError."""
    return Params.from_dict(base, ignore=NON_PARAM_KEYS)


def mongo_option_updates(spec: str) -> dict:
    """Config updates for Sacred's ``-m [HOST:PORT:]DB``: ``mongo_url`` and ``mongo_db_name``.

    Sacred's defaults apply: ``localhost:27017`` without HOST:PORT.

    Raises:
        ConfigError: ``spec`` names a collection, run id or priority (tf-crnn writes Sacred's
            standard ``runs`` collection only).
    """
    parts = parse_mongo_db_arg(spec)
    if any(parts.get(k) is not None for k in ("collection", "overwrite", "priority")):
        raise ConfigError(f"-m {spec}: tf-crnn takes -m [HOST:PORT:]DB_NAME only (no collection, run id or "
                          f"priority); for credentials or TLS set mongo_url or TF_CRNN_MONGO_URL instead")
    return {"mongo_url": f"mongodb://{parts.get('url', 'localhost:27017')}/",
            "mongo_db_name": parts.get("db_name") or DEFAULT_DB_NAME}


class UserErrorExit(BaseException):
    """Carries an error that is the user's to fix past Sacred's command line, which prints a traceback for
    every ``Exception``, to the caller of :meth:`CRNNExperiment.run_commandline` (``error``: the original)."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


#: A factory of a caller's callback: ``make(run) -> tf_crnn.callbacks.Callback``, called with the Sacred run
#: when its training starts (so the callback can note in ``run.info`` what it did).
CallbackFactory = Callable[["Run"], "Callback"]


@dataclass
class RunState:
    """One run of :data:`ex` while Sacred creates and runs it: what it needs beyond its config.

    Sacred hands config hooks only the config, and the main function only config values and the
    run; these are neither. :meth:`CRNNExperiment.run` makes one per run, the config hooks fill it
    in, :func:`main` passes it on, and it ends with the run (the lock released).

    Attributes:
        callbacks: the caller's callback factories (a sweep's pruning); their callbacks run after
            the run's own after each epoch.
        url: the database the run is recorded in (may hold a password); None without observer.
        observer: the run's MongoDB observer (:func:`attach_observer`); None without one.
        lock: the output folder's lock (:func:`claim_output_dir`, the chief only).
    """

    callbacks: tuple[CallbackFactory, ...] = ()
    url: str | None = None
    observer: ResilientMongoObserver | None = None
    lock: output_lock.OutputLock | None = None

    def release(self) -> None:
        """Release the output folder's lock, if it was taken."""
        lock, self.lock = self.lock, None
        if lock is not None:
            lock.release()


class CRNNExperiment(Experiment):
    """Sacred's Experiment, with ``-m`` turned into config updates, stop signals, per-run state and callbacks.

    * ``-m`` becomes ``mongo_url`` / ``mongo_db_name``: Sacred's own ``-m`` would append a plain
      ``MongoObserver`` (no buffering, fallback folder or password redaction) beside the one
      :func:`attach_observer` adds: two records of one run.
    * During a run, SIGTERM and SIGINT raise :class:`tf_crnn.interrupts.Interrupted` (a
      KeyboardInterrupt: Sacred records the run as INTERRUPTED).
    * :attr:`state` is the :class:`RunState` of the run being created or run (None between runs); the
      lock :func:`claim_output_dir` takes is released when the run ends, however it ends.
    """

    _user_error: Callable[[BaseException], bool] | None = None
    state: RunState | None = None

    def run_commandline(self, argv=None, user_error: Callable[[BaseException], bool] | None = None):
        """Sacred's command line; an error for which ``user_error(error)`` is true leaves as :class:`UserErrorExit`.

        Such an error has been recorded already (the run, if one started, is FAILED with its
        trace), but Sacred's command line does not print its traceback: the caller prints one line.
        """
        self._user_error = user_error
        try:
            return super().run_commandline(argv)
        finally:
            self._user_error = None

    def run(self, command_name=None, config_updates=None, named_configs=(), info=None, meta_info=None,
            options=None, callbacks: Sequence[CallbackFactory] = ()):
        """Sacred's ``run``; ``callbacks``: factories of callbacks the training runs after its own each epoch.

        Runs follow one another in a process (a sweep's trials): each gets a fresh :class:`RunState`.
        """
        self.state = RunState(tuple(callbacks))
        try:
            spec = (options or {}).get("--mongo_db")
            if spec:
                updates = mongo_option_updates(spec)
                if (config_updates or {}).get("mongo_url") not in (None, updates["mongo_url"]):
                    raise ConfigError("the database is given twice, by -m and by mongo_url: keep one")
                config_updates = {**(config_updates or {}), **updates}
                options = {**options, "--mongo_db": None}  # Sacred then adds no observer of its own
            with interrupts.stop_on_signals(), root_log_handler():
                return super().run(command_name, config_updates, named_configs, info, meta_info, options)
        except Exception as e:
            if self._user_error is not None and self._user_error(e):
                raise UserErrorExit(e) from e
            raise
        finally:
            self.state.release()
            self.state = None


class CurrentStderrHandler(logging.StreamHandler):
    """A log handler writing to ``sys.stderr`` as it is at each record: inside a run, Sacred's capture of it."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler sets it; the current sys.stderr is always used
        pass


@contextlib.contextmanager
def root_log_handler() -> Iterator[None]:
    """Give the root logger a handler for the block (a run of :data:`ex`), if it has none.

    Without one, absl (TensorFlow's SavedModel export logs through it) calls
    ``logging.basicConfig()`` inside the first run, binding the root handler to that
    run's captured stderr, which Sacred closes when the run ends: every later run in the
    same process (a sweep's trials, ``runs rerun``, a benchmark) would then log
    "I/O operation on closed file" errors.
    """
    root = logging.getLogger()
    if root.handlers:
        yield
        return
    handler = CurrentStderrHandler()
    handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))  # what basicConfig() would have set
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


CAPTURED_OUT_HEAD, CAPTURED_OUT_TAIL = 20_000, 200_000  # characters; keeps the run document far under 16 MB


def bounded_captured_out(text: str) -> str:
    """The final state of each line (tqdm redraws lines with \\r), cut in the middle past about 220k characters."""
    text = apply_backspaces_and_linefeeds(text)
    if len(text) <= CAPTURED_OUT_HEAD + CAPTURED_OUT_TAIL:
        return text
    cut = len(text) - CAPTURED_OUT_HEAD - CAPTURED_OUT_TAIL
    return f"{text[:CAPTURED_OUT_HEAD]}\n[... {cut} characters cut ...]\n{text[-CAPTURED_OUT_TAIL:]}"


def new_experiment(name: str, cls: type[Experiment] = Experiment) -> Experiment:
    """A Sacred experiment as tf-crnn records them: bounded captured output, TensorFlow / Keras versions.

    Sacred only lists the packages and sources the experiment's module imports;
    TensorFlow and most of tf-crnn are imported lazily (so ``print_config`` and
    ``--help`` stay fast), so the distributions and every module of the package
    are named here.
    """
    # Sacred records commit and dirty flag of the checkout the sources are in; it needs the git command.
    experiment = cls(name, save_git_info=shutil.which("git") is not None)
    # Every module, not only those imported when the experiment is created (TensorFlow's come later).
    for source in provenance.package_sources():
        experiment.add_source_file(source)
    experiment.captured_out_filter = bounded_captured_out
    experiment.logger = logging.getLogger(name)
    for dist in ("tensorflow", "tensorflow-cpu", "keras", "tf-crnn"):
        try:
            experiment.add_package_dependency(dist, importlib.metadata.version(dist))
        except importlib.metadata.PackageNotFoundError:
            pass
    return experiment


def run_observer(url: str, db_name: str | None, output_dir: str) -> ResilientMongoObserver:
    """The observer of a run writing ``output_dir``; outage copies go to its ``sacred_runs``, ``sacred_failed_runs``."""
    return mongo_observer(url, db_name or DEFAULT_DB_NAME, failure_dir=os.path.join(output_dir, FAILURE_DIR),
                          fallback_dir=os.path.join(output_dir, FALLBACK_DIR))


ex = new_experiment(EXPERIMENT_NAME, CRNNExperiment)
ex.add_config(Params.defaults())
ex.add_config({"generate_data": None})

@ex.config_hook
def claim_output_dir(config, command_name, logger):
    """Check and lock ``output_model_dir`` before anything is read or recorded (the chief only).

    Stops the training, before any run is recorded, when the folder cannot take
    its output (:func:`run_records.check_output_dir`), another live training holds
    it (:mod:`output_lock`), or it holds an earlier training's checkpoints or
    export and neither ``restore_model`` nor ``overwrite_output`` is set
    (:func:`run_records.check_new_training`).
    """
    if command_name != "main" or not cluster.is_chief():
        return {}
    output_dir = config["output_model_dir"]
    run_records.check_output_dir(output_dir, output_bytes_estimate(config))
    ex.state.lock = output_lock.acquire(output_dir)  # released by CRNNExperiment.run when the run ends
    run_records.check_new_training(output_dir, model_outputs(), config["restore_model"], config["overwrite_output"])
    return {}


@ex.config_hook
def attach_observer(config, command_name, logger):
    """Attach a MongoObserver for the resolved database before the run starts.

    Runs after the config is resolved and before Sacred copies the observers
    into the run, so ``mongo_url`` can come from the config. The observer
    stores the password of the URL as ``***`` (:func:`mongo_observer`).
    """
    ex.observers[:] = [o for o in ex.observers if not isinstance(o, ResilientMongoObserver)]
    if command_name != "main" or not cluster.is_chief() or os.environ.get("TF_CRNN_NO_OBSERVER"):
        return {}
    url = resolve_url(config.get("mongo_url"), db_name=config.get("mongo_db_name") or DEFAULT_DB_NAME)
    # A database outage during the run is buffered; the run is also written to out/sacred_runs from then on.
    observer = run_observer(url, config.get("mongo_db_name"), config["output_model_dir"])
    ex.observers.append(observer)
    ex.state.url, ex.state.observer = url, observer
    return {}


def output_bytes_estimate(config: dict) -> int:
    """Bytes the training of ``config`` writes to its output folder (:func:`tf_crnn.trainer.output_bytes_estimate`)."""
    from ..trainer import output_bytes_estimate as estimate

    params = Params.from_dict({k: v for k, v in config.items() if k != "generate_data"})
    try:
        num_classes = Alphabet.from_file(params.lookup_alphabet_file, params.unicode_normalization).num_classes
    except (OSError, ValueError):  # the alphabet is checked properly later; size for a large one meanwhile
        num_classes = 200
    return estimate(params, num_classes)


@ex.main
def main(_config, _run, _seed):
    """Train, evaluate each epoch, export, attach artifacts; return the final eval metrics.

    A stop signal ends the run INTERRUPTED with ``info.interrupted_by`` (``SIGTERM``, ``SIGINT``).
    """
    config = dict(_config)
    generate_spec = config.pop("generate_data", None)
    params = Params.from_dict(config)
    state = ex.state
    if state.lock is not None:
        state.lock.set_run(_run._id)
    try:
        return train(params, generate_spec, _run, _seed, state)
    except KeyboardInterrupt as e:
        # Stored by Sacred's last heartbeat, which it sends when the run stops.
        _run.info["interrupted_by"] = getattr(e, "signal_name", "KeyboardInterrupt")
        raise


def train(params: Params, generate_spec: dict | None, _run, _seed, state: RunState) -> dict:
    """The body of :func:`main`: data, training with per-epoch logging, export, reports, artifacts."""
    from .. import trainer as trainer_lib  # TensorFlow loads only for real runs, not print_config

    if params.overwrite_output and cluster.is_chief():
        removed = run_records.clear_previous_training(params.output_model_dir, training_outputs())
        if removed:
            print(f"overwrite_output=True: removed the {', '.join(removed)} of the earlier training in "
                  f"{params.output_model_dir}")
    if generate_spec:
        ensure_generated_data(params, generate_spec, _seed)
    if not params.csv_files_train or not params.csv_files_eval:
        raise ConfigError("set csv_files_train, csv_files_eval and lookup_alphabet_file (see config_template.json)")
    if not params.lookup_alphabet_file and params.init_alphabet == "table":
        raise ConfigError("set lookup_alphabet_file (see config_template.json), or with init_from "
                          "init_alphabet=union / new to take the alphabet of the init_from model and the labels")
    os.makedirs(params.output_model_dir, exist_ok=True)
    # The strategy before any TensorFlow op (the image check runs some): MultiWorkerMirroredStrategy must
    # configure the collective ops at program start-up.
    strategy = trainer_lib.pick_strategy(params.strategy)
    with trainer_lib.deterministic(_seed) if params.deterministic else contextlib.nullcontext():
        return train_with(strategy, params, _run, _seed, state)


def train_with(strategy, params: Params, _run, _seed, state: RunState) -> dict:
    """:func:`train` once the strategy exists: data checks, the Trainer, per-epoch logging, export, artifacts."""
    from .. import data, finetune
    from .. import trainer as trainer_lib
    from .epoch_callbacks import SacredEpochLog, TensorBoardEpochLog, carry_over_history

    splits = {"train": params.csv_files_train, "eval": params.csv_files_eval}
    # Read once: the alphabet (init_alphabet), the data checks and the run's data record (provenance) take the rows.
    indexes = compiled.Indexes()  # a compiled folder's index read once, for the rows and for the checks
    rows = {split: data.read_split(csv_files, params, indexes) for split, csv_files in splits.items()}
    alphabet, init_source, alphabet_record = training_alphabet(params, rows, _run._id)
    entries = {}
    stats = check_cache.FileStats()  # each image stat'ed once, for its check and for the data fingerprint
    for split, csv_files in splits.items():
        try:
            entries[split] = data.load_split(csv_files, params, alphabet, split, samples=rows[split], stats=stats,
                                             indexes=indexes)
        except AlphabetError as e:
            raise (finetune.unknown_symbols_hint(e, params.init_from) if params.init_from is not None else e) from None
    train_entries, eval_entries = entries["train"], entries["eval"]
    _run.info["train_eval_overlap"] = len(data.shared_with_training(train_entries, eval_entries))
    print(f"run {_run._id}: {len(train_entries)} training and {len(eval_entries)} eval images, "
          f"alphabet of {len(alphabet)} symbols")
    provenance.record(_run, provenance.describe_training_data(params, rows=rows, stats=stats),
                      environment_of(params, strategy))
    del stats, indexes  # a key per image and the compiled examples: not needed by the training that follows

    trainer = trainer_lib.Trainer(params, alphabet, strategy)
    _run.info["dtype_policy"] = trainer.dtype_policy or "float32"
    print(f"run {_run._id}: computing in {trainer.dtype_policy or 'float32'} "
          f"(mixed_precision={params.mixed_precision})")
    restored = None
    if params.restore_model:
        restored = trainer.restore()
        _run.info["resumed_from_epoch"] = restored
        _run.info["resumed_from_step"] = int(trainer.optimizer.iterations.numpy())
    if params.init_from is not None:
        _run.info["init_from"] = fine_tune(trainer.model, alphabet, params, restored, init_source, alphabet_record)
        print(f"run {_run._id}: {finetune.describe(_run.info['init_from'])}")
    # output_model_dir/run.json names the run writing the folder; a resumed run records the one it continues.
    resumed = run_records.record_run(_run, params.output_model_dir, state.url, params.mongo_db_name, restored)

    # A resumed training's metrics and learning curves start with the epochs of the checkpoint it continues.
    report_dir = os.path.join(trainer.output_dir, REPORT_DIR)
    history = reports.load_history(report_dir, METRIC_NAMES, restored or 0)
    carried = carry_over_history(_run, history)
    if resumed is not None:
        print(f"run {_run._id} resumes run {resumed} from its epoch {restored} checkpoint"
              + (f" (metrics of epochs {carried[0]}-{carried[-1]} copied from {REPORT_DIR}/{reports.HISTORY_FILE})"
                 if carried else ""))
    samples = eval_entries[:TENSORBOARD_SAMPLES]
    # trainer.output_dir is output_model_dir on the chief, a scratch folder on other workers.
    board = reports.TensorBoardLog(os.path.join(trainer.output_dir, TENSORBOARD_DIR),
                                   data.image_sources(samples), [e.sample.text for e in samples])
    epoch_log = SacredEpochLog(_run, history, report_dir, params.n_epochs)
    results = trainer.fit(train_entries, eval_entries, seed=_seed,
                          callbacks=[epoch_log, TensorBoardEpochLog(board, len(samples)),
                                     *(make(_run) for make in state.callbacks)])
    stopped = early_stopping_epoch(trainer)
    if stopped is not None:
        _run.info["early_stopping_epoch"] = stopped
    if results:  # the last epoch's evaluation is the final model's: no second pass
        final = {k.removeprefix("eval."): v for k, v in results[-1].metrics.items() if k.startswith("eval.")}
        predictions = results[-1].predictions
    else:  # restored a training that had already reached n_epochs
        final, predictions = trainer.evaluate(eval_entries)
    export_dir = trainer.export(os.path.join(params.output_model_dir, trainer_lib.EXPORT_DIR))
    write_reports(report_dir, history, eval_entries, predictions)
    attach_artifacts(_run, params, alphabet, export_dir, report_dir)
    report_location(_run, params, state)
    return {k: float(v) for k, v in final.items()}


def environment_of(params: Params, strategy=None) -> dict:
    """The environment a training of ``params`` has on this machine, as a run records it (``info.environment``):
    :func:`tf_crnn.tracking.provenance.environment`, whether the CPU computes bfloat16 natively
    (``cpu_bfloat16``, :func:`tf_crnn.trainer.cpu_has_bfloat16`) and the dtype policy ``mixed_precision``
    picks here (``dtype_policy``: ``float32``, ``mixed_bfloat16``, ``mixed_float16``). ``tf-crnn runs rerun``
    compares it with the record (:func:`tf_crnn.tracking.provenance.changed_environment`).
    """
    from .. import trainer as trainer_lib

    return {**provenance.environment(strategy), "cpu_bfloat16": trainer_lib.cpu_has_bfloat16(),
            "dtype_policy": trainer_lib.mixed_precision_policy(params) or "float32"}


def training_alphabet(params: Params, rows: dict, run_id=None) -> tuple[Alphabet, object, dict | None]:
    """The alphabet a training uses: its ``lookup_alphabet_file`` (``init_alphabet=table``), or that of
    ``init_from`` extended with (``union``) or replaced by (``new``) the symbols of ``rows``' labels
    (:func:`tf_crnn.finetune.training_alphabet`).

    Args:
        rows: ``{"train": samples, "eval": samples}``, every row of each split's CSVs.

    Returns:
        ``(alphabet, source, record)``: the :class:`tf_crnn.experiment.sources.InitSource` resolved for
        ``union`` / ``new`` (None for ``table``) and the record of the alphabet chosen (None for ``table``).

    Raises:
        AlphabetError: a bad lookup table; tf_crnn.finetune.FinetuneError: an unusable init_from.
    """
    if params.init_alphabet == "table":
        return Alphabet.from_file(params.lookup_alphabet_file, params.unicode_normalization), None, None
    from .. import finetune
    from .sources import resolve_init_from

    source = resolve_init_from(params.init_from, params.mongo_url, params.mongo_db_name)
    alphabet, record = finetune.training_alphabet(
        params.init_alphabet, finetune.source_alphabet(source.path, params.unicode_normalization),
        [*rows["train"], *rows["eval"]])
    unused = f" (lookup_alphabet_file {params.lookup_alphabet_file} is not used)" if params.lookup_alphabet_file else ""
    print(f"run {run_id}: {finetune.describe_alphabet(record)}{unused}")
    return alphabet, source, record


def fine_tune(model, alphabet: Alphabet, params: Params, resumed_epoch: int | None, source=None,
              alphabet_record: dict | None = None) -> dict:
    """Start ``model`` from ``params.init_from``: resolved to a folder (a run's export is downloaded,
    :func:`tf_crnn.experiment.sources.resolve_init_from`), then loaded (:func:`tf_crnn.finetune.initialize`).

    A resumed training (``resumed_epoch``: the epoch of the checkpoint it restored) loads nothing: its
    checkpoint holds the fine-tuned weights already (:func:`tf_crnn.finetune.not_applied`).

    Args:
        source: ``params.init_from`` already resolved (by :func:`training_alphabet`), else None.
        alphabet_record: how ``init_alphabet`` made the alphabet, recorded as ``alphabet`` (None: the table).

    Returns:
        The record for ``run.info["init_from"]``.

    Raises:
        tf_crnn.finetune.FinetuneError, tf_crnn.tracking.urls.TrackingError: as those two functions.
    """
    from .. import finetune
    from .sources import resolve_init_from

    if resumed_epoch:
        record = finetune.not_applied(params.init_from, resumed_epoch)
    else:
        source = source or resolve_init_from(params.init_from, params.mongo_url, params.mongo_db_name)
        record = finetune.initialize(model, alphabet, source.path, source.origin, params.unicode_normalization)
    if alphabet_record is not None:
        record["alphabet"] = alphabet_record
    return record


def early_stopping_epoch(trainer) -> int | None:
    """The epoch after which the config's early stopping (``early_stopping_patience``) ended ``trainer.fit``, if it did.

    Another callback may stop a training too (a sweep's pruning): only early stopping counts here.
    """
    from ..callbacks import EarlyStopping

    return next((cb.stopped_epoch for cb in trainer.callbacks if isinstance(cb, EarlyStopping)
                 and cb.stopped_epoch is not None), None)


def model_outputs() -> tuple[str, ...]:
    """The sub-folders of ``output_model_dir`` whose content marks an earlier training: checkpoints, exports."""
    from ..trainer import BEST_EXPORT_DIR, CHECKPOINT_DIR, EXPORT_DIR

    return CHECKPOINT_DIR, EXPORT_DIR, BEST_EXPORT_DIR


def training_outputs() -> tuple[str, ...]:
    """The sub-folders of ``output_model_dir`` that belong to one training (``overwrite_output`` removes them)."""
    return (*model_outputs(), REPORT_DIR, TENSORBOARD_DIR)


def ensure_generated_data(params: Params, spec: dict, seed: int) -> None:
    """Generate the synthetic train / eval sets the config names if their CSVs do not exist yet.

    ``spec``: ``{"generator": "numbers", "train_size": N, "eval_size": M}``; the
    CSVs are written at ``csv_files_train[0]`` and ``csv_files_eval[0]``, which
    must be ``<folder>/labels.csv``.
    """
    from ..datasets import synthetic

    generators = {"numbers": synthetic.generate_numbers}
    name = spec.get("generator", "numbers")
    if name not in generators:
        raise ConfigError(f"generate_data.generator must be one of {sorted(generators)}, got {name!r}")
    for csv_file, size, offset in ((params.csv_files_train[0], spec["train_size"], 0),
                                   (params.csv_files_eval[0], spec["eval_size"], 10_000_000)):
        if os.path.exists(csv_file):
            continue
        if os.path.basename(csv_file) != "labels.csv":
            raise ConfigError(f"generate_data writes <folder>/labels.csv; {csv_file} is not such a path")
        print(f"generating {size} synthetic '{name}' images for {csv_file} (first use only)")
        # Different seeds for the two splits so no eval image repeats a training one.
        generators[name](os.path.dirname(csv_file), size, seed=seed + offset)


def write_reports(report_dir: str, history: dict, eval_entries: list, predictions: list) -> str:
    """Learning curves, prediction gallery and confusions of the final model, in ``report_dir``."""
    os.makedirs(report_dir, exist_ok=True)
    labels = [e.sample.symbols for e in eval_entries]
    reports.learning_curves(history, os.path.join(report_dir, "learning_curves.png"))
    from .. import data  # imports TensorFlow

    # Paths, or for a compiled eval split the images from its shards (one more read of them).
    reports.prediction_gallery(data.image_sources(eval_entries), labels, predictions,
                               os.path.join(report_dir, "predictions.png"))
    counts = reports.confusions(labels, predictions)
    reports.confusions_table(counts, os.path.join(report_dir, "confusions.csv"))
    reports.confusions_chart(counts, os.path.join(report_dir, "confusions.png"))
    return report_dir


# Artifact name -> content type (stored in GridFS; Omniboard 2.16 picks its preview by file extension).
REPORT_ARTIFACTS = {"learning_curves.png": "image/png", "predictions.png": "image/png",
                    "confusions.png": "image/png", "confusions.csv": "text/csv"}


def attach_artifacts(run, params: Params, alphabet: Alphabet, export_dir: str, report_dir: str) -> None:
    """Attach ``alphabet.json``, ``config.json``, ``export.zip`` and the reports to the run."""
    for name, content_type in REPORT_ARTIFACTS.items():
        run.add_artifact(os.path.join(report_dir, name), name, content_type=content_type)
    with tempfile.TemporaryDirectory() as tmp:
        alphabet_file = os.path.join(tmp, "alphabet.json")
        alphabet.save(alphabet_file)
        run.add_artifact(alphabet_file, "alphabet.json", content_type="application/json")
        config_file = write_json(os.path.join(tmp, "config.json"), public_config(params))
        run.add_artifact(config_file, "config.json", content_type="application/json")
        archive = shutil.make_archive(os.path.join(tmp, "export"), "zip", export_dir)
        run.add_artifact(archive, "export.zip", content_type="application/zip")


def public_config(params: Params) -> dict:
    """The settings with any password in ``mongo_url`` replaced by ``***``."""
    config = params.to_dict()
    config["mongo_url"] = redact_url(config["mongo_url"])
    return config


def report_location(run, params: Params, state: RunState) -> None:
    """Tell the user where the run and the model are and how to look at them (``state``: the run's database)."""
    url = state.url
    print(f"\nexported model: {os.path.abspath(os.path.join(params.output_model_dir, 'export'))}")
    if url is None or run._id is None:
        print("no MongoDB observer was attached: the run was not stored")
        return
    db = params.mongo_db_name
    observer = state.observer
    if observer is not None and observer.down_since is not None:  # the end of the run decides (unsaved_run_error)
        print(f"run {run._id}: MongoDB at {redact_url(url)} does not answer; the run is kept in "
              f"{observer.local_record or 'memory'} meanwhile and written when it answers again")
        return
    direct = host_port(url)  # None for mongodb+srv://, whose hosts only DNS knows: Omniboard's --mu takes it whole
    direct = f"-m {direct}:{db}" if direct else f"--mu '<the URL with database {db}>'"
    print(f"run {run._id} stored in {redact_url(url)} database '{db}' (collection 'runs')\n"
          f"  browse:  tf-crnn board --db {db}   (Omniboard; or npx omniboard {direct})\n"
          f"  predict: tf-crnn predict --model {os.path.join(params.output_model_dir, 'export')} IMAGE...")


def unsaved_run_error(run) -> TrackingError | None:
    """What to tell the user when ``run`` ended but MongoDB could not be given all of it (None if it was).

    The message names the run, the database and the one command that uploads the
    run's complete local record (:mod:`tf_crnn.tracking.run_import`).
    """
    observer = next((o for o in getattr(run, "observers", ()) if isinstance(o, ResilientMongoObserver)
                     and o.incomplete), None)
    if observer is None:
        return None
    start = (f"run {run._id} is incomplete in MongoDB at {observer.shown_url} "
             f"(no answer for {observer.final_wait_s:.0f} s)")
    if observer.local_record is None:
        return TrackingError(f"{start}, and no local copy of it could be written")
    return TrackingError(f"{start}. Once the database answers, upload its local record with:  "
                         f"tf-crnn db import-run {observer.local_record}")


def interruption_summary(run) -> str:
    """One line on an interrupted training: its run, the last checkpointed epoch, how to continue.

    Empty when ``run`` is None or was not just interrupted.
    """
    if run is None or run.status != "INTERRUPTED":
        return ""
    epochs = run.info.get("epochs") or []
    epoch = epochs[-1]["epoch"] if epochs else run.info.get("resumed_from_epoch")
    if epoch:
        from ..trainer import CHECKPOINT_DIR  # loaded already: an epoch was trained

        where = (f"after epoch {epoch}, whose checkpoint is in "
                 f"{os.path.join(run.config['output_model_dir'], CHECKPOINT_DIR)}: continue with restore_model=True")
    else:
        where = "before its first epoch ended (no checkpoint)"
    recorded = f"run {run._id} is INTERRUPTED in MongoDB" if run._id is not None else "the run (not recorded) stopped"
    return f"{recorded} {where}"


# ---- crnn-evaluate ------------------------------------------------------------------

def run_logged_evaluation(job, mongo_url: str | None = None, mongo_db_name: str | None = None):
    """Run a checked evaluation (:class:`tf_crnn.evaluation.EvaluationJob`) as a run of ``crnn-evaluate``.

    The run gets: config (model, CSVs, alphabet, decoding, ``train_run``), ``info.train_run``,
    the metrics as result (``{normalization: {metric: value}}``) and as scalars
    ``<normalization>.<metric>`` (step 0), the per-sample CSV and summary JSON as artifacts,
    and the printed table as captured output.

    Returns:
        :class:`tf_crnn.evaluation.Written`, its summary naming the evaluation run.

    Raises:
        TrackingError: the database cannot be reached.
    """
    from .. import evaluation

    url = resolve_url(mongo_url)
    db_name = mongo_db_name or DEFAULT_DB_NAME
    experiment = new_experiment(EVALUATE_EXPERIMENT_NAME)
    experiment.observers.append(run_observer(url, db_name, job.out_dir))
    experiment.add_config(job.config())
    outcome = {}

    @experiment.main
    def main(_run):
        _run.info["train_run"] = job.train_run
        _run.info["model"] = job.prepared.model_name  # a list of paths for a vote
        written = evaluation.run(job, _run._id)
        print(evaluation.report(written))
        for normalization, values in written.summary["metrics"].items():
            for name, value in values.items():
                _run.log_scalar(f"{normalization}.{name}", value, 0)
        _run.add_artifact(written.predictions_csv, os.path.basename(written.predictions_csv), content_type="text/csv")
        _run.add_artifact(written.summary_json, os.path.basename(written.summary_json),
                          content_type="application/json")
        outcome["written"] = written
        print(f"evaluation run {_run._id} stored in {redact_url(url)} database '{db_name}'"
              + (f" (training run {job.train_run})" if job.train_run is not None else ""))
        return written.summary["metrics"]

    run = experiment.run(options={"--capture": "sys", "--loglevel": "WARNING"})
    outcome["written"].summary["evaluation_run"] = run._id
    return outcome["written"]
