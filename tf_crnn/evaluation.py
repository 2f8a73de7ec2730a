"""Score an exported model on annotated CSVs: the library behind ``tf-crnn evaluate``.

The command line is :mod:`tf_crnn.cli.evaluate`; the Sacred run of ``--log``
is :func:`tf_crnn.experiment.experiments.run_logged_evaluation`.

1. :func:`prepare` loads the export, reads the CSVs, checks every label against
   the alphabet and checks every image once as training does
   (:func:`tf_crnn.data.check_images`), before anything is computed. A label
   symbol the model's alphabet lacks is scored (the model can never produce it,
   so it counts as an error) and listed; an image that cannot be read is
   left out and listed (``file:line: path: reason``). With ``strict`` either is an error.
2. :func:`evaluate` gets the CTC logits from the export and decodes them outside it
   (:meth:`PredictionModel.iter_decoded`), so the decoding
   need not be the one the model was trained with: greedy, beam search (top-k
   hypotheses) or lexicon-constrained (:func:`tf_crnn.decoding.lexicon_decode`).
   It scores the predictions with :func:`tf_crnn.metrics.normalized_metrics`
   (exact, case-insensitive and alphanumeric-only).
3. :func:`write_outputs` writes the per-sample CSV and the JSON summary;
   :func:`format_table` is the printed table.
4. :func:`plan` (steps 1 and the decoding) and :func:`run` (steps 2 and 3)
   take an :class:`EvaluationRequest`, the whole evaluation in one object.

Several models are evaluated as one by confidence voting (:class:`tf_crnn.voting.VotingModel`,
greedy decoding): the summary says so and lists them, the per-sample CSV has each model's own
transcription, and the file names end in ``.vote<N>``.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd

from . import compiled, metrics
from .alphabet import Alphabet, UnknownSymbol
from .annotations import Sample, listing
from .config import recorded_unicode_normalization
from .model_files import is_pretrained_folder
from .pretrained import MODELS_DIR, resolve
from .voting import METHOD as VOTING_METHOD
from .voting import VotingModel, voting_decoding

if TYPE_CHECKING:  # the decoding module loads TensorFlow: imported where it is used
    from .decoding import Decoding

#: What each metric of the summary means (written into it).
METRIC_DEFINITIONS = {
    "char_accuracy": "mean over samples of (positions i with prediction[i] == label[i]) / len(label) "
                     "(CRNN_Tensorflow)",
    "sequence_accuracy": "fraction of predictions equal to their label",
    "cer": "sum of Levenshtein distances / sum of label lengths, in symbols",
    "wer": "the same on whitespace-separated words",
    "one_minus_ned": "mean over samples of 1 - distance / max(len(label), len(prediction)) "
                     "(PaddleOCR norm_edit_dis, MMOCR 1-N.E.D)",
}


class EvaluationError(ValueError):
    """Input that cannot be evaluated: the message names the file (and line) and what to do."""


class UnreadableImages(EvaluationError):
    """Images that cannot be read, with ``strict``: a problem of the data (exit code 1)."""

    exit_code = 1


@dataclass
class Prepared:
    """Checked inputs of an evaluation."""

    model: Any  # tf_crnn.loader.PredictionModel, or tf_crnn.voting.VotingModel for several
    alphabet: Alphabet
    alphabet_file: str
    samples: list[Sample]  # the rows whose image can be read: those evaluated
    sizes: list[tuple[int, int]]  # (width, height) of each image
    csv_files: list[str]
    unreadable: list[tuple[Sample, str]] = field(default_factory=list)  # rows left out, with the reason
    unknown_symbols: list[UnknownSymbol] = field(default_factory=list)  # label symbols outside the alphabet (scored)
    #: Per sample the model's input when it is not the file at ``image_path``: encoded bytes from a compiled
    #: data set's shards (:mod:`tf_crnn.compiled`); None: every image is read from its file.
    images: list[bytes] | None = None

    def inputs(self, order: Sequence[int]) -> list[str | bytes]:
        """What the model reads for the samples at ``order``: their paths, or their compiled images."""
        return [self.samples[i].image_path if self.images is None else self.images[i] for i in order]

    @property
    def voting(self) -> bool:
        """Whether several models vote (:attr:`model` is a :class:`tf_crnn.voting.VotingModel`)."""
        return isinstance(self.model, VotingModel)

    @property
    def model_name(self) -> str | list[str]:
        """What was evaluated: the model's path, or the list of the voting models' paths."""
        return self.model.export_dirs if self.voting else self.model.export_dir

    @property
    def problems(self) -> list[str]:
        """One line per row left out: ``file:line: path: reason``."""
        return [f"{s.where()}: {s.image_path}: {reason}" for s, reason in self.unreadable]

    def outside_alphabet(self) -> dict:
        """The label symbols outside the model's alphabet among the evaluated rows, for the summary.

        ``{"lines": rows with any, "occurrences": symbols in all, "symbols": {symbol: count},
        "where": [file:line ...]}``.
        """
        evaluated = {(s.csv_file, s.line) for s in self.samples}
        found = [u for u in self.unknown_symbols if (u.csv_file, u.line) in evaluated]
        counts: dict[str, int] = {}
        for u in found:
            counts[u.symbol] = counts.get(u.symbol, 0) + 1
        return {"lines": len({(u.csv_file, u.line) for u in found}), "occurrences": len(found),
                "symbols": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
                "where": [str(u) for u in found]}


@dataclass
class Evaluation:
    """Outcome of :func:`evaluate`."""

    rows: pd.DataFrame
    metrics: dict[str, dict[str, float]]
    per_csv: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0
    lexicon_words: int | None = None


# ---- 1. inputs -------------------------------------------------------------------

def prepare(model_dir: str | Sequence[str], csv_files: list[str], alphabet_file: str | None = None,
            progress: bool = True, strict: bool = False) -> Prepared:
    """Load the model and check the data completely before any prediction.

    ``model_dir``: a SavedModel export folder, a ``.tflite`` / ``.onnx`` file of
    ``tf-crnn convert`` or a shipped model (``pretrained:NAME``; :class:`tf_crnn.loader.PredictionModel` takes
    each); or a list of
    several, which then vote (:class:`tf_crnn.voting.VotingModel`; a list of one is that model).
    The model decodes with the alphabet it was trained with (``alphabet.json``
    in the export, ``NAME.alphabet.json`` beside a model file); ``alphabet_file``, if given, must be that same
    table (it is required for an export without ``alphabet.json``). Labels are checked
    against it with :meth:`Alphabet.check`. Images are checked for the model's
    channels as training checks them (:func:`tf_crnn.data.check_images`); those that
    cannot be read are left out (:attr:`Prepared.unreadable`).

    Raises:
        FileNotFoundError: no model at ``model_dir``, a CSV or the alphabet file missing.
        tf_crnn.pretrained.PretrainedError: ``pretrained:NAME`` with a name tf-crnn does not ship.
        tf_crnn.runtimes.ModelFileError: a ``.tflite`` / ``.onnx`` file that cannot be loaded.
        AnnotationError: unreadable CSV rows (file:line).
        AlphabetError: with ``strict``, label symbols outside the alphabet (file:line); without it they are
            kept in :attr:`Prepared.unknown_symbols` and scored as errors.
        UnreadableImages: with ``strict``, images that cannot be read (file:line: path: reason).
        EvaluationError: no image can be read (each listed), alphabet mismatch, no rows.
        tf_crnn.voting.VotingError: models to vote with different alphabets.
    """
    model_dirs = [model_dir] if isinstance(model_dir, (str, os.PathLike)) else list(model_dir)
    models = [_load_model(os.path.abspath(resolve(path)), alphabet_file) for path in model_dirs]
    model = models[0] if len(models) == 1 else VotingModel(models)
    alphabet = model.alphabet
    alphabet_file = alphabet_file or model.alphabet_file

    csv_files = list(dict.fromkeys(os.path.abspath(f) for f in csv_files))
    # Labels in the model's Unicode form, as its training read its own (recorded_unicode_normalization).
    samples = compiled.read_rows(csv_files, model.params.get("csv_delimiter", ";"),
                                 model.params.get("string_split_delimiter", "|"),
                                 recorded_unicode_normalization(model.params))
    if not samples:
        raise EvaluationError(f"no rows in {', '.join(csv_files)}")
    if strict:
        alphabet.check(samples)
    unknown = alphabet.unknown_symbols(samples)  # the model cannot produce them: scored as errors, listed
    channels = sorted({m.input_channels for m in models})  # each voting model reads images its own way
    folders = compiled.compiled_sources(csv_files)
    if folders:
        readable, sizes, images = _compiled_images(folders, csv_files, channels)
        return Prepared(model, alphabet, os.path.abspath(alphabet_file), readable, sizes, csv_files, [], unknown,
                        images)
    readable, sizes, unreadable = _check_images(samples, channels, progress, strict)
    return Prepared(model, alphabet, os.path.abspath(alphabet_file), readable, sizes, csv_files, unreadable,
                    unknown)


def _compiled_images(folders: list[str], sources: list[str], channels: list[int]):
    """The samples of compiled folders (checked when compiled: all readable), their ``(width, height)`` and
    encoded images from the shards.

    Raises:
        EvaluationError: CSVs mixed with compiled folders.
        tf_crnn.compiled.CompiledDataError: a folder compiled for other channels, or damaged.
    """
    if len(folders) < len(sources):
        raise EvaluationError("give either CSVs or compiled folders to --csv, not both: compile the CSVs too")
    samples, sizes, images = [], [], []
    for folder in folders:
        for c in channels:  # converted images are stored in the compile's channels
            compiled.check_settings(folder, compiled.load_manifest(folder, check_sizes=False), c, None)
        examples = compiled.read_index(folder)
        stored = compiled.read_images(folder)
        samples += [e.sample for e in examples]
        sizes += [(e.info.width, e.info.height) for e in examples]
        images += [stored[e.record.number] for e in examples]
    return samples, sizes, images


def _load_model(model_dir: str, alphabet_file: str | None):
    """The model at ``model_dir`` with its alphabet: its own, which the table of ``alphabet_file`` (``--alphabet``,
    read in the model's Unicode form) must equal, or that table for a model without one.

    Raises:
        FileNotFoundError: no model there (with a hint when ``model_dir/export`` is one).
        EvaluationError: ``given`` is not the model's alphabet, or neither exists.
    """
    from .loader import PredictionModel

    if not (os.path.isfile(model_dir) or os.path.isfile(os.path.join(model_dir, "saved_model.pb"))
            or is_pretrained_folder(model_dir)):
        hint = ""
        if os.path.isfile(os.path.join(model_dir, "export", "saved_model.pb")):
            hint = f" (did you mean {os.path.join(model_dir, 'export')}?)"
        what = "folder without saved_model.pb" if os.path.isdir(model_dir) else "no such folder or file"
        raise FileNotFoundError(f"no exported model at {model_dir} ({what}; a model is a SavedModel folder, "
                                f"a .tflite / .onnx file of tf-crnn convert or pretrained:NAME){hint}")
    model = PredictionModel(model_dir)
    given = Alphabet.from_file(alphabet_file, model.normalization) if alphabet_file else None
    if given is not None:
        if model.alphabet is not None and model.alphabet.lookup != given.lookup:
            difference = model.alphabet.difference(given, ("the model's", "the given"))
            raise EvaluationError(
                f"the alphabet {alphabet_file} is not the one {model_dir} was trained with "
                f"({model.alphabet_file}): {difference}. Leave out --alphabet to use the model's.")
        model.alphabet = given
    elif model.alphabet is None:
        raise EvaluationError(f"{model_dir} has no alphabet.json ({model.alphabet_file}): "
                              "give the lookup table with --alphabet")
    return model


def _check_images(samples: list[Sample], channels: list[int], progress: bool, strict: bool):
    """Check every image once per input channels of the models: the readable samples, their
    ``(width, height)``, the others with the reason (an image one model cannot read is left out).

    Raises:
        UnreadableImages: some cannot be read and ``strict``.
        EvaluationError: none can be read.
    """
    from .data import check_images  # imports TensorFlow

    checks = [check_images([s.image_path for s in samples], c, progress) for c in channels]
    infos = [next((i for i in found if isinstance(i, str)), found[0]) for found in zip(*checks)]
    unreadable = [(s, info) for s, info in zip(samples, infos) if isinstance(info, str)]
    bad = [f"{s.where()}: {s.image_path}: {reason}" for s, reason in unreadable]
    if bad and (strict or len(bad) == len(samples)):
        error = UnreadableImages if strict else EvaluationError
        raise error(f"{len(bad)} unusable image(s){'' if strict else ', no image left'}:\n{listing(bad)}\n"
                    "Fix the paths or remove the rows.")
    readable = [(s, info) for s, info in zip(samples, infos) if not isinstance(info, str)]
    return [s for s, _ in readable], [(info.width, info.height) for _, info in readable], unreadable


# ---- 2. predictions and metrics ------------------------------------------------

def evaluate(prepared: Prepared, decoding: Decoding, batch_size: int = 32, progress: bool = True) -> Evaluation:
    """Predict every sample with ``decoding`` and score the predictions.

    Images are batched by similar aspect ratio (as the training's width
    buckets), so little padding is computed.
    """
    from tqdm import tqdm

    from .decoding import Lexicon

    samples, alphabet = prepared.samples, prepared.alphabet
    delimiter = prepared.model.params.get("string_split_delimiter", "|")
    lexicon = (Lexicon.from_file(decoding.lexicon, alphabet.lookup, delimiter,
                                 recorded_unicode_normalization(prepared.model.params)) if decoding.lexicon else None)
    order = sorted(range(len(samples)), key=lambda i: prepared.sizes[i][0] / max(1, prepared.sizes[i][1]))
    paths = prepared.inputs(order)
    best: list = [None] * len(samples)
    hypotheses: list = [None] * len(samples)  # with several models: each model's own transcription
    start_time = time.perf_counter()
    batches = prepared.model.iter_decoded(paths, batch_size, decoding, lexicon)
    for start, decoded in tqdm(batches, total=math.ceil(len(paths) / batch_size), desc="evaluating",
                               unit="batch", disable=not progress, mininterval=2.0):
        for k, (pick, hyps) in enumerate(decoded):
            best[order[start + k]] = pick
            hypotheses[order[start + k]] = hyps
    seconds = time.perf_counter() - start_time

    labels = [s.symbols for s in samples]
    predictions = [symbols for symbols, _ in best]
    rows = {
        "csv_file": [s.csv_file for s in samples],
        "line": [s.line for s in samples],
        "path": [s.image_path for s in samples],
        "ground_truth": [s.text for s in samples],
        "prediction": ["".join(p) for p in predictions],
        "score": [score for _, score in best],
        "edit_distance": metrics.edit_distances(labels, predictions),
        "gt_length": [len(gt) for gt in labels],
        "pred_length": [len(p) for p in predictions],
    }
    for name in metrics.NORMALIZATIONS:
        if name == "exact":
            continue
        norm_labels = [metrics.normalize(gt, name) for gt in labels]
        rows[f"edit_distance_{name}"] = metrics.edit_distances(
            norm_labels, [metrics.normalize(p, name) for p in predictions])
        rows[f"gt_length_{name}"] = [len(gt) for gt in norm_labels]
    if lexicon:
        rows["lexicon_free_prediction"] = ["".join(h[0][0]) for h in hypotheses]
    if prepared.voting:
        rows["model_predictions"] = [json.dumps([["".join(s), round(p, 6)] for s, p in h], ensure_ascii=False)
                                     for h in hypotheses]
    elif decoding.top_paths > 1:
        rows["hypotheses"] = [json.dumps([["".join(s), round(p, 6)] for s, p in h], ensure_ascii=False)
                              for h in hypotheses]
    frame = pd.DataFrame(rows)

    per_csv = {}
    if len(prepared.csv_files) > 1:
        for csv_file in prepared.csv_files:
            mine = [i for i, s in enumerate(samples) if s.csv_file == csv_file]
            per_csv[csv_file] = {"num_samples": len(mine), "metrics": metrics.normalized_metrics(
                [labels[i] for i in mine], [predictions[i] for i in mine])}
    return Evaluation(frame, metrics.normalized_metrics(labels, predictions), per_csv, seconds,
                      len(lexicon) if lexicon else None)


# ---- 3. outputs -------------------------------------------------------------------

def output_tag(csv_files: list[str], decoding: Decoding, num_models: int = 1) -> str:
    """File name stem: the CSV names, the decoding, ``-lexicon`` if one is used, ``.vote<N>`` for a vote of N models."""
    stems = [os.path.splitext(os.path.basename(f))[0] for f in csv_files]
    name = "+".join(stems[:3]) + (f"+{len(stems) - 3}more" if len(stems) > 3 else "")
    return (f"{name}.{decoding.method}" + ("-lexicon" if decoding.lexicon else "")
            + (f".vote{num_models}" if num_models > 1 else ""))


def summary_dict(prepared: Prepared, decoding: Decoding, result: Evaluation, train_run=None,
                 evaluation_run=None, predictions_csv: str | None = None) -> dict:
    """Everything about one evaluation except the per-sample rows (the JSON summary).

    A vote has ``model`` and ``logits_from`` as lists (one item per model) and a ``vote`` entry
    (``num_models``, ``models``, ``method``).
    """
    model = prepared.model
    vote = ({"vote": {"num_models": len(model), "models": model.export_dirs, "method": VOTING_METHOD}}
            if prepared.voting else {})
    return {
        "model": prepared.model_name,
        **vote,
        "csv_files": prepared.csv_files,
        "alphabet": prepared.alphabet_file,
        "num_samples": len(prepared.samples),
        "num_unreadable": len(prepared.unreadable),
        "unreadable": prepared.problems,
        "outside_alphabet": prepared.outside_alphabet(),
        "decoding": {**decoding.as_dict(), "lexicon_words": result.lexicon_words},
        "training_decoding": {k: model.params.get(k) for k in ("decoding", "beam_width", "num_beam_paths")},
        "logits_from": model.logits_source,
        "metrics": result.metrics,
        "per_csv": result.per_csv,
        "normalizations": metrics.NORMALIZATIONS,
        "metric_definitions": METRIC_DEFINITIONS,
        "train_run": train_run,
        "evaluation_run": evaluation_run,
        "predictions_csv": predictions_csv,
        "seconds": round(result.seconds, 3),
        "images_per_second": round(len(prepared.samples) / max(result.seconds, 1e-9), 2),
    }


def write_outputs(summary: dict, rows: pd.DataFrame, out_dir: str, tag: str) -> tuple[str, str]:
    """Write ``<tag>.predictions.csv`` (UTF-8, comma-separated, header) and ``<tag>.summary.json``.

    Returns:
        the two paths.
    """
    os.makedirs(out_dir, exist_ok=True)
    csv_path = os.path.join(out_dir, f"{tag}.predictions.csv")
    json_path = os.path.join(out_dir, f"{tag}.summary.json")
    summary["predictions_csv"] = csv_path
    rows.to_csv(csv_path, index=False, encoding="utf-8")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, ensure_ascii=False)
    return csv_path, json_path


def format_table(summary: dict) -> str:
    """The metrics as a plain-text table (normalizations x metrics), with what was evaluated."""
    def table(values: dict) -> str:
        frame = pd.DataFrame(values).T[list(METRIC_DEFINITIONS)]
        frame.index.name = "normalization"
        return frame.to_string(float_format=lambda v: f"{v:.4f}")

    d = summary["decoding"]
    how = d["method"] + (f" (beam width {d['beam_width']}, {d['top_paths']} hypotheses)"
                         if d["method"] == "beam_search" else "")
    if d["lexicon"]:
        how += f", lexicon {d['lexicon']} ({d['lexicon_words']} words, max distance {d['lexicon_max_distance']})"
    unreadable = summary.get("num_unreadable", 0)
    outside = summary.get("outside_alphabet") or {"lines": 0}
    vote = summary.get("vote")
    lines = ([f"model:    vote of {vote['num_models']} models, {vote['method']}:"]
             + [f"  {i}. {path}" for i, path in enumerate(vote["models"], 1)] if vote else
             [f"model:    {summary['model']}"])
    lines += [f"data:     {', '.join(summary['csv_files'])} ({summary['num_samples']} samples"
              + (f"; {unreadable} unreadable image(s) left out, listed in the summary" if unreadable else "")
              + (f"; {outside['lines']} line(s) with {outside['occurrences']} symbol(s) outside the model's "
                 f"alphabet, scored as errors: {' '.join(outside['symbols'])}" if outside["lines"] else "") + ")",
              f"decoding: {how}; {summary['images_per_second']:.1f} images/s",
              "", table(summary["metrics"])]
    for csv_file, part in summary.get("per_csv", {}).items():
        lines += ["", f"{csv_file} ({part['num_samples']} samples)", table(part["metrics"])]
    lines += ["", "normalizations:"] + [f"  {k}: {v}" for k, v in summary["normalizations"].items()]
    lines += ["one_minus_ned: " + METRIC_DEFINITIONS["one_minus_ned"]]
    return "\n".join(lines)


# ---- 4. the whole evaluation ------------------------------------------------------

@dataclass
class EvaluationRequest:
    """What ``tf-crnn evaluate`` is asked: the model, the data, the decoding and where to write.

    ``None`` for a decoding field means the export's training-time setting
    (:func:`tf_crnn.decoding.default_decoding`); ``out_dir`` None means ``<model>/../evaluation``
    (``<folder>/evaluation/<file name>`` for a ``.tflite`` / ``.onnx`` file, ``evaluation/NAME`` in the current
    folder for a shipped model, never inside the installed package);
    ``train_run`` None means the run recorded beside the export (:attr:`PredictionModel.train_run`).

    ``model_dir`` may list several models: they vote (greedy decoding only; ``out_dir`` None then
    means ``evaluation`` in the folder that holds them all, or beside the first model when that is the
    file system's root; ``train_run`` None means the list of theirs).
    """

    model_dir: str | Sequence[str]
    csv_files: list[str]
    alphabet_file: str | None = None
    out_dir: str | None = None
    decoding: str | None = None
    beam_width: int | None = None
    top_paths: int | None = None
    lexicon: str | None = None
    lexicon_max_distance: int = 3
    batch_size: int = 32
    train_run: Any = None
    progress: bool = True
    strict: bool = False  # an unreadable image or a label symbol outside the alphabet stops the evaluation


@dataclass
class EvaluationJob:
    """A checked :class:`EvaluationRequest`: inputs loaded, decoding and output names fixed."""

    prepared: Prepared
    decoding: Decoding
    out_dir: str
    tag: str
    train_run: Any
    batch_size: int = 32
    progress: bool = True

    def config(self) -> dict:
        """The evaluation's settings as recorded in a run's config."""
        return {"model": self.prepared.model_name, "csv_files": self.prepared.csv_files,
                "alphabet": self.prepared.alphabet_file, "decoding": self.decoding.as_dict(),
                "train_run": self.train_run, "num_samples": len(self.prepared.samples),
                "num_unreadable": len(self.prepared.unreadable)}


def plan(request: EvaluationRequest) -> EvaluationJob:
    """Check everything an evaluation needs before any prediction: :func:`prepare`, the decoding
    (:func:`tf_crnn.decoding.default_decoding`; for several models :func:`tf_crnn.voting.voting_decoding`).

    Raises:
        as :func:`prepare`, :func:`tf_crnn.decoding.default_decoding` and :func:`tf_crnn.voting.voting_decoding`.
    """
    if request.batch_size < 1:
        raise EvaluationError(f"--batch-size must be >= 1, got {request.batch_size}")
    from .decoding import default_decoding

    voting = not isinstance(request.model_dir, (str, os.PathLike)) and len(request.model_dir) > 1
    # a decoding a vote cannot do is refused before anything is loaded
    settings = voting_decoding(request.decoding, request.lexicon) if voting else None
    prepared = prepare(request.model_dir, request.csv_files, request.alphabet_file, request.progress,
                       request.strict)
    if voting:
        paths = prepared.model.export_dirs
        common = os.path.commonpath(paths)  # exports OUT/fold_1/export, OUT/fold_2/export: OUT/evaluation
        if common in paths or os.path.dirname(common) == common:  # one model several times; nothing but the root
            common = os.path.dirname(paths[0])
        default_out = "evaluation" if common.startswith(str(MODELS_DIR)) else os.path.join(common, "evaluation")
    else:
        settings = default_decoding(prepared.model.params, request.decoding, request.beam_width, request.top_paths,
                                    request.lexicon, request.lexicon_max_distance)
        model_path = prepared.model.export_dir  # a model file: one folder per file, .tflite and .onnx apart
        default_out = (os.path.join(os.path.dirname(model_path), "evaluation", os.path.basename(model_path))
                       if os.path.isfile(model_path) else os.path.join(os.path.dirname(model_path), "evaluation"))
        if os.path.dirname(os.path.abspath(model_path)) == str(MODELS_DIR):  # never into the installed package
            default_out = os.path.join("evaluation", os.path.basename(model_path))
    out_dir = os.path.abspath(request.out_dir or default_out)
    train_run = request.train_run if request.train_run is not None else prepared.model.train_run
    tag = output_tag(prepared.csv_files, settings, len(prepared.model) if prepared.voting else 1)
    return EvaluationJob(prepared, settings, out_dir, tag, train_run, request.batch_size, request.progress)


@dataclass
class Written:
    """The summary of a finished evaluation and the two files it wrote."""

    summary: dict
    predictions_csv: str
    summary_json: str


def run(job: EvaluationJob, evaluation_run=None) -> Written:
    """Evaluate, then write the per-sample CSV and the JSON summary (:func:`write_outputs`).

    ``evaluation_run``: the id of the Sacred run recording this evaluation, if any (stored in the summary).
    """
    result = evaluate(job.prepared, job.decoding, job.batch_size, job.progress)
    summary = summary_dict(job.prepared, job.decoding, result, job.train_run, evaluation_run)
    csv_path, json_path = write_outputs(summary, result.rows, job.out_dir, job.tag)
    summary["summary_json"] = json_path
    return Written(summary, csv_path, json_path)


def report(written: Written) -> str:
    """What ``tf-crnn evaluate`` prints: the table and where the files are."""
    return (format_table(written.summary) + f"\n\nper-sample predictions: {written.predictions_csv}"
            f"\nsummary: {written.summary_json}")

