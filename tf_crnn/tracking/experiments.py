"""The Sacred experiments of tf-crnn: ``crnn`` (a training) and ``crnn-evaluate`` (``tf-crnn evaluate --log``).

Both are made by :func:`new_experiment` (captured output filter, package
dependencies) and record to MongoDB through the same observer
(:func:`tf_crnn.tracking.observer.mongo_observer`) on the database
:func:`tf_crnn.tracking.urls.resolve_url` picks.

``crnn`` (:data:`ex`): ``python train.py with ...`` and ``tf-crnn train with
...`` run its command line. Per epoch the run gets the scalars
``train.loss``, ``eval.loss``, ``eval.char_accuracy``,
``eval.sequence_accuracy``, ``eval.cer`` and ``train.images_per_second``; at
the end the artifacts ``alphabet.json``, ``config.json``, ``export.zip`` (the
SavedModel) and the reports. The run's result is the final eval metrics dict.

``crnn-evaluate`` (:func:`run_logged_evaluation`): one run per evaluation,
naming the training run it evaluates.
"""
from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shutil
import tempfile

from sacred import Experiment
from sacred.observers.mongo import parse_mongo_db_arg
from sacred.utils import apply_backspaces_and_linefeeds

from .. import cluster, reports
from ..alphabet import Alphabet
from ..config import Params
from . import run_records
from .observer import FAILURE_DIR, FALLBACK_DIR, ResilientMongoObserver, mongo_observer
from .urls import DEFAULT_DB_NAME, host_port, redact_url, resolve_url

EXPERIMENT_NAME = "crnn"
EVALUATE_EXPERIMENT_NAME = "crnn-evaluate"
TENSORBOARD_SAMPLES = 6
REPORT_DIR = "reports"  # inside output_model_dir
METRIC_NAMES = ("train.loss", "eval.loss", "eval.char_accuracy", "eval.sequence_accuracy", "eval.cer")


def mongo_option_updates(spec: str) -> dict:
    """Config updates for Sacred's ``-m [HOST:PORT:]DB``: ``mongo_url`` and ``mongo_db_name``.

    Sacred's defaults apply: ``localhost:27017`` without HOST:PORT.

    Raises:
        ValueError: ``spec`` names a collection, run id or priority (tf-crnn writes Sacred's
            standard ``runs`` collection only).
    """
    parts = parse_mongo_db_arg(spec)
    if any(parts.get(k) is not None for k in ("collection", "overwrite", "priority")):
        raise ValueError(f"-m {spec}: tf-crnn takes -m [HOST:PORT:]DB_NAME only (no collection, run id or "
                         f"priority); for credentials or TLS set mongo_url or TF_CRNN_MONGO_URL instead")
    return {"mongo_url": f"mongodb://{parts.get('url', 'localhost:27017')}/",
            "mongo_db_name": parts.get("db_name") or DEFAULT_DB_NAME}


class CRNNExperiment(Experiment):
    """Sacred's Experiment, with ``-m`` turned into ``mongo_url`` / ``mongo_db_name`` config updates.

    Sacred's own ``-m`` would append a plain ``MongoObserver`` (no buffering, fallback folder or
    password redaction) beside the one :func:`attach_observer` adds: two records of one run.
    """

    def run(self, command_name=None, config_updates=None, named_configs=(), info=None, meta_info=None,
            options=None):
        spec = (options or {}).get("--mongo_db")
        if spec:
            updates = mongo_option_updates(spec)
            if (config_updates or {}).get("mongo_url") not in (None, updates["mongo_url"]):
                raise ValueError("the database is given twice, by -m and by mongo_url: keep one")
            config_updates = {**(config_updates or {}), **updates}
            options = {**options, "--mongo_db": None}  # Sacred then adds no observer of its own
        return super().run(command_name, config_updates, named_configs, info, meta_info, options)


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

    Sacred only lists the packages the experiment's module imports; TensorFlow
    is imported lazily (so ``print_config`` and ``--help`` stay fast), so its
    distributions are named here.
    """
    experiment = cls(name, save_git_info=False)
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

# Set by the config hook for the run being created; the URL itself may hold a password.
_active = {"url": None}


@ex.config_hook
def attach_observer(config, command_name, logger):
    """Attach a MongoObserver for the resolved database before the run starts.

    Runs after the config is resolved and before Sacred copies the observers
    into the run, so ``mongo_url`` can come from the config. The observer
    stores the password of the URL as ``***`` (:func:`mongo_observer`).
    """
    ex.observers[:] = [o for o in ex.observers if not isinstance(o, ResilientMongoObserver)]
    _active["url"] = None
    if command_name != "main":
        return {}
    if cluster.is_chief():
        # A read-only or too full output folder stops here: before any data is read or any run recorded.
        run_records.check_output_dir(config["output_model_dir"], output_bytes_estimate(config))
    if not cluster.is_chief() or os.environ.get("TF_CRNN_NO_OBSERVER"):
        return {}
    url = resolve_url(config.get("mongo_url"))
    # A database outage during the run is buffered; the run is also written to out/sacred_runs from then on.
    ex.observers.append(run_observer(url, config.get("mongo_db_name"), config["output_model_dir"]))
    _active["url"] = url
    return {}


def output_bytes_estimate(config: dict) -> int:
    """Bytes the training of ``config`` writes to its output folder (:func:`tf_crnn.trainer.output_bytes_estimate`)."""
    from ..trainer import output_bytes_estimate as estimate

    params = Params.from_dict({k: v for k, v in config.items() if k != "generate_data"})
    try:
        num_classes = Alphabet.from_file(params.lookup_alphabet_file).num_classes
    except (OSError, ValueError):  # the alphabet is checked properly later; size for a large one meanwhile
        num_classes = 200
    return estimate(params, num_classes)


@ex.main
def main(_config, _run, _seed):
    """Train, evaluate each epoch, export, attach artifacts; return the final eval metrics."""
    from .. import callbacks, data, trainer as trainer_lib  # TensorFlow loads only for real runs, not print_config

    config = dict(_config)
    generate_spec = config.pop("generate_data", None)
    params = Params.from_dict(config)
    if generate_spec:
        ensure_generated_data(params, generate_spec, _seed)
    if not params.csv_files_train or not params.csv_files_eval or not params.lookup_alphabet_file:
        raise ValueError("set csv_files_train, csv_files_eval and lookup_alphabet_file (see config_template.json)")
    os.makedirs(params.output_model_dir, exist_ok=True)
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    train_entries = data.load_split(params.csv_files_train, params, alphabet, "train")
    eval_entries = data.load_split(params.csv_files_eval, params, alphabet, "eval")
    print(f"run {_run._id}: {len(train_entries)} training and {len(eval_entries)} eval images, "
          f"alphabet of {len(alphabet)} symbols")

    trainer = trainer_lib.Trainer(params, alphabet)
    restored = None
    if params.restore_model:
        restored = trainer.restore()
        _run.info["resumed_from_epoch"] = restored
        _run.info["resumed_from_step"] = int(trainer.optimizer.iterations.numpy())
    # output_model_dir/run.json names the run writing the folder; a resumed run records the one it continues.
    resumed = run_records.record_run(_run, params.output_model_dir, _active["url"], params.mongo_db_name, restored)
    if resumed is not None:
        print(f"run {_run._id} resumes run {resumed} from its epoch {restored} checkpoint")

    # A resumed training's learning curves start with the epochs of the checkpoint it continues.
    report_dir = os.path.join(trainer.output_dir, REPORT_DIR)
    history = reports.load_history(report_dir, METRIC_NAMES, restored or 0)
    samples = eval_entries[:TENSORBOARD_SAMPLES]
    # trainer.output_dir is output_model_dir on the chief, a scratch folder on other workers.
    board = reports.TensorBoardLog(os.path.join(trainer.output_dir, "tensorboard"),
                                   [e.sample.image_path for e in samples], [e.sample.text for e in samples])

    def log_epoch(result: callbacks.EpochResult):
        for name in METRIC_NAMES:
            _run.log_scalar(name, result.metrics[name], result.epoch)
            history[name].append((result.epoch, result.metrics[name]))
        reports.save_history(report_dir, history)
        _run.log_scalar("train.images_per_second", result.images_per_second, result.epoch)
        board.log_epoch(result.epoch, result.metrics, ["".join(p) for p in result.predictions[:len(samples)]])
        print(f"epoch {result.epoch}/{params.n_epochs}: "
              + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
              + f", {result.images_per_second:.1f} training images/s, {result.seconds:.0f} s")
        _run.info.setdefault("epochs", []).append(
            {"epoch": result.epoch, "seconds": round(result.seconds, 2),
             "images_per_second": round(result.images_per_second, 2)})

    results = trainer.fit(train_entries, eval_entries, seed=_seed, callbacks=[callbacks.OnEpochEnd(log_epoch)])
    if trainer.stop_training:
        _run.info["early_stopping_epoch"] = results[-1].epoch
    if results:  # the last epoch's evaluation is the final model's: no second pass
        final = {k.removeprefix("eval."): v for k, v in results[-1].metrics.items() if k.startswith("eval.")}
        predictions = results[-1].predictions
    else:  # restored a training that had already reached n_epochs
        final, predictions = trainer.evaluate(eval_entries)
    export_dir = trainer.export(os.path.join(params.output_model_dir, trainer_lib.EXPORT_DIR))
    write_reports(report_dir, history, eval_entries, predictions)
    attach_artifacts(_run, params, alphabet, export_dir, report_dir)
    report_location(_run, params)
    return {k: float(v) for k, v in final.items()}


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
        raise ValueError(f"generate_data.generator must be one of {sorted(generators)}, got {name!r}")
    for csv_file, size, offset in ((params.csv_files_train[0], spec["train_size"], 0),
                                   (params.csv_files_eval[0], spec["eval_size"], 10_000_000)):
        if os.path.exists(csv_file):
            continue
        if os.path.basename(csv_file) != "labels.csv":
            raise ValueError(f"generate_data writes <folder>/labels.csv; {csv_file} is not such a path")
        print(f"generating {size} synthetic '{name}' images for {csv_file} (first use only)")
        # Different seeds for the two splits so no eval image repeats a training one.
        generators[name](os.path.dirname(csv_file), size, seed=seed + offset)


def write_reports(report_dir: str, history: dict, eval_entries: list, predictions: list) -> str:
    """Learning curves, prediction gallery and confusions of the final model, in ``report_dir``."""
    os.makedirs(report_dir, exist_ok=True)
    labels = [e.sample.symbols for e in eval_entries]
    reports.learning_curves(history, os.path.join(report_dir, "learning_curves.png"))
    reports.prediction_gallery([e.sample.image_path for e in eval_entries], labels, predictions,
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
        config_file = os.path.join(tmp, "config.json")
        with open(config_file, "w", encoding="utf-8") as f:
            json.dump(public_config(params), f, indent=1, ensure_ascii=False)
        run.add_artifact(config_file, "config.json", content_type="application/json")
        archive = shutil.make_archive(os.path.join(tmp, "export"), "zip", export_dir)
        run.add_artifact(archive, "export.zip", content_type="application/zip")


def public_config(params: Params) -> dict:
    """The settings with any password in ``mongo_url`` replaced by ``***``."""
    config = params.to_dict()
    config["mongo_url"] = redact_url(config["mongo_url"])
    return config


def report_location(run, params: Params) -> None:
    """Tell the user where the run and the model are and how to look at them."""
    url = _active["url"]
    print(f"\nexported model: {os.path.abspath(os.path.join(params.output_model_dir, 'export'))}")
    if url is None or run._id is None:
        print("no MongoDB observer was attached: the run was not stored")
        return
    db = params.mongo_db_name
    print(f"run {run._id} stored in {redact_url(url)} database '{db}' (collection 'runs')\n"
          f"  browse:  tf-crnn board --db {db}   (Omniboard; or npx omniboard -m {host_port(url)}:{db})\n"
          f"  predict: tf-crnn predict --model {os.path.join(params.output_model_dir, 'export')} IMAGE...")


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
        _run.info["model"] = job.prepared.model.export_dir
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
