"""``tf-crnn predict --model EXPORT IMAGE...`` (or ``--run ID``): transcribe images with an exported model.

``--model`` is a SavedModel export folder or a ``.tflite`` / ``.onnx`` file of ``tf-crnn convert``;
the decoding (``--decoding``, ``--beam-width``, ``--lexicon``) is the same for each
(:func:`tf_crnn.decoding.decode_batch`), by default the training-time setting of ``params.json``.

Several ``--model`` transcribe together by confidence voting (:class:`tf_crnn.voting.VotingModel`;
greedy decoding, one alphabet); each line's score is then the vote's.

``--run ID`` loads the export of a recorded training run from the database
(:meth:`tf_crnn.loader.PredictionModel.from_run`, cached in ``$TF_CRNN_HOME/models``).

Sources may also be folders (read recursively) and annotation CSVs (their images); with ``-o FILE``
the images are transcribed chunk by chunk, batched by width, and written in input order to FILE (TSV or
JSON Lines), resumable with ``--resume`` (:mod:`tf_crnn.collection`). :func:`add_model_options` and
:func:`load_model` are the model and decoding options, for every command that transcribes.

Exit codes: 0 when at least one image was transcribed (bad images are reported on stderr and
skipped), 1 with ``--strict`` when some image could not be read (the others are still printed),
2 when none could be read or the arguments are wrong.
"""
from __future__ import annotations

import argparse
import sys

from .._util import parse_run_id
from ..config import DECODING_NAMES
from .errors import EXIT_DATA, EXIT_OK, handles


@handles("predict")
def _predict(args: argparse.Namespace) -> int:
    from ..collection import OutputFile, gather

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.chunk_size is not None and args.chunk_size < 1:
        raise ValueError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    if args.resume and not args.output:
        raise ValueError("--resume continues the file of -o/--output: give it")
    if args.output:
        with OutputFile(args.output, resume=args.resume) as out:  # refused or repaired before the model loads
            model, decoding = load_model(args)
            return _predict_to_file(args, model, decoding,
                                    gather(args.images, args.csv_delimiter or csv_delimiter_of(model)), out)
    model, decoding = load_model(args)
    images = list(gather(args.images, args.csv_delimiter or csv_delimiter_of(model)).paths)
    if not images:
        raise ValueError(f"no image files in {' '.join(args.images)}")
    predictions = model.predict(images, batch_size=args.batch_size, decoding=decoding)
    failed = 0
    for path, pred in zip(images, predictions):
        if pred.error:
            failed += 1
            print(f"tf-crnn predict: {path}: {pred.error}", file=sys.stderr)
        else:
            print(f"{path}\t{pred.text}\t{pred.score:.4f}")
    return _exit_code(failed, len(predictions), args.strict)


def _predict_to_file(args: argparse.Namespace, model, decoding, sources, out) -> int:
    """``-o FILE``: stream the images chunk by chunk into ``out`` (:mod:`tf_crnn.collection`)."""
    from tqdm import tqdm

    from ..collection import DEFAULT_CHUNK_SIZE, transcribe_collection

    if out.repaired:
        print(f"tf-crnn predict: {args.output}: dropped an unfinished last line (from a killed run); "
              "its image is transcribed again", file=sys.stderr)

    def write(results: list) -> None:
        for path, pred in results:
            if pred.error:
                tqdm.write(f"tf-crnn predict: {path}: {pred.error}", file=sys.stderr)
        out.write(results)

    with tqdm(total=sources.total, desc="predicting", unit="img", disable=args.no_progress) as bar:
        tally = transcribe_collection(model, sources.paths, write, batch_size=args.batch_size, decoding=decoding,
                                      chunk_size=args.chunk_size or DEFAULT_CHUNK_SIZE, done=out.done,
                                      progress=bar.update)
    if tally.seen == 0:
        raise ValueError(f"no image files in {' '.join(args.images)}")
    if tally.seen == tally.skipped:
        print(f"tf-crnn predict: all {tally.seen} image(s) are already in {args.output}", file=sys.stderr)
        return EXIT_OK
    return _exit_code(tally.failed, tally.seen - tally.skipped, args.strict)


def _exit_code(failed: int, total: int, strict: bool) -> int:
    """0, 1 (``--strict`` and some image unreadable), or raise (exit 2) when none of ``total`` could be read."""
    if failed == total:
        raise ValueError(f"none of the {failed} image(s) could be read")
    if failed and strict:
        print(f"tf-crnn predict: {failed} of {total} image(s) could not be read (--strict)", file=sys.stderr)
        return EXIT_DATA
    return EXIT_OK


def load_model(args: argparse.Namespace):
    """The model and decoding that :func:`add_model_options`' arguments ask for.

    Returns:
        ``(model, decoding)``: a :class:`tf_crnn.loader.PredictionModel` (``--model`` once, or ``--run``) or a
        :class:`tf_crnn.voting.VotingModel` (``--model`` repeated), and its :class:`tf_crnn.decoding.Decoding`.
    """
    from ..decoding import default_decoding
    from ..loader import PredictionModel
    from ..voting import VotingModel, voting_decoding

    if args.model and len(args.model) > 1:
        decoding = voting_decoding(args.decoding, args.lexicon)  # before loading anything
        return VotingModel(args.model), decoding
    model = (PredictionModel(args.model[0]) if args.model else
             PredictionModel.from_run(parse_run_id(args.run), args.url, args.db))
    return model, default_decoding(model.params, args.decoding, args.beam_width, lexicon=args.lexicon,
                                   lexicon_max_distance=args.lexicon_max_distance)


def csv_delimiter_of(model) -> str:
    """The ``csv_delimiter`` the model (the first of a vote) was trained with (``;`` if not recorded)."""
    first = model.models[0] if hasattr(model, "models") else model
    return first.params.get("csv_delimiter", ";")


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The options that choose the model and its decoding (read by :func:`load_model`)."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", action="append", metavar="MODEL",
                        help="export folder (output_model_dir/export), or a .tflite / .onnx file of tf-crnn convert; "
                             "repeat it to transcribe by the vote of several models")
    source.add_argument("--run", metavar="ID", help="the export of this training run, from the database")
    p.add_argument("--url", help="MongoDB URL for --run (default: as training: $TF_CRNN_MONGO_URL, else embedded)")
    p.add_argument("--db", help="database for --run (default: tf_crnn)")
    p.add_argument("--batch-size", type=int, default=32, help="images per model call (>= 1, default 32)")
    p.add_argument("--decoding", choices=DECODING_NAMES,
                   help="default: the training-time setting in the model's params.json")
    p.add_argument("--beam-width", type=int, help="beams kept by beam search (default: params.json's)")
    p.add_argument("--lexicon", help="word list (one per line): print the lexicon word of highest CTC "
                                     "probability among those near the hypotheses (CRNN, Shi et al. 2015)")
    p.add_argument("--lexicon-max-distance", type=int, default=3,
                   help="edit-distance radius of the lexicon search (CRNN's delta; default 3)")


def register(sub) -> None:
    """Add ``tf-crnn predict`` to the ``tf-crnn`` subparsers ``sub``."""
    p = sub.add_parser("predict", help="transcribe images with an exported model",
                       description="Print one line per image: path, text, score (tab-separated), or write them "
                                   "to -o FILE (TSV, or JSON Lines for a .jsonl name) chunk by chunk, resumable. "
                                   "An image that cannot be read is reported on stderr (and has a line with "
                                   "its reason in -o FILE); exit code 1 then only with --strict, 2 when no "
                                   "image could be read.")
    add_model_options(p)
    p.add_argument("--strict", action="store_true", help="exit with code 1 if any image cannot be read")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write path, text, score per image to FILE in input order, flushed every chunk: TSV, "
                        "or JSON Lines when FILE ends in .jsonl (an existing FILE needs --resume)")
    p.add_argument("--resume", action="store_true",
                   help="continue -o FILE: skip the images it already holds (an unfinished last line is dropped)")
    p.add_argument("--chunk-size", type=int,
                   help="with -o: images sorted by width and written together (default: "
                        "tf_crnn.collection.DEFAULT_CHUNK_SIZE, 2000; a kill loses at most one chunk)")
    p.add_argument("--csv-delimiter", help="separator of the CSV sources (default: the model's csv_delimiter)")
    p.add_argument("--no-progress", action="store_true", help="with -o: no progress bar")
    p.add_argument("images", nargs="+", metavar="SOURCE",
                   help="image files (any format Pillow reads), folders (their images, recursively, in sorted "
                        "order) or annotation CSVs (.csv: the images of their rows; labels ignored)")
    p.set_defaults(func=_predict)
