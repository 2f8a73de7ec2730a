"""``tf-crnn predict --model EXPORT IMAGE...`` (or ``--run ID``): transcribe images with an exported model.

``--model`` is a SavedModel export folder, a ``.tflite`` / ``.onnx`` file of ``tf-crnn convert``, or a model
shipped with tf-crnn, ``pretrained:NAME`` (``tf-crnn models list``);
the decoding (``--decoding``, ``--beam-width``, ``--lexicon``) is the same for each
(:func:`tf_crnn.decoding.decode_batch`), by default the training-time setting of ``params.json``.

Several ``--model`` transcribe together by confidence voting (:class:`tf_crnn.voting.VotingModel`;
greedy decoding, one alphabet); each line's score is then the vote's.

``--run ID`` loads the export of a recorded training run from the database
(:meth:`tf_crnn.loader.PredictionModel.from_run`, cached in ``$TF_CRNN_HOME/models``).

``--page`` / ``--alto FILES... --output-dir DIR`` recognise the text lines of PAGE XML / ALTO pages and write a
copy of each file with the text (:func:`tf_crnn.page_recognition.recognise_pages`); exit code 1 when a page
could not be read (the others are written), 2 when none could.

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

from .. import __version__
from .._util import parse_run_id
from ..config import DECODING_NAMES
from .errors import EXIT_DATA, EXIT_OK, handles


@handles("predict")
def _predict(args: argparse.Namespace) -> int:
    from ..collection import OutputFile, gather

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.page or args.alto:
        if args.output or args.resume:
            raise ValueError("-o/--output and --resume are for image sources; with --page / --alto the texts go "
                             "into the copies in --output-dir")
        model, decoding = load_model(args)
        return _predict_pages(args, model, decoding)
    _refuse_page_options(args)
    if not args.images:
        raise ValueError("give image files, folders or CSVs, or --page / --alto files with --output-dir")
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


# --------------------------------------------------------------------------- --page / --alto (PAGE XML, ALTO)

def _predict_pages(args: argparse.Namespace, model, decoding) -> int:
    """``--page`` / ``--alto``: every page recognised and written into ``--output-dir``
    (:func:`tf_crnn.page_recognition.recognise_pages`). Exit code 1 when a page could not be read (the others
    are written), or with ``--strict`` when a line was left out; 2 when no page could be read."""
    from ..datasets.layout import LayoutOptions
    from ..datasets.page_writer import WriteOptions
    from ..page_recognition import recognise_pages

    if not args.output_dir:
        raise ValueError("--page / --alto need --output-dir DIR (where the copies with the recognised text go)")
    if args.images:
        raise ValueError(f"--page / --alto read the lines from the pages: give no image files ({args.images[0]})")
    layout = LayoutOptions(images=args.page_images, mets=args.mets, image_group=args.image_group,
                           page_group=args.page_group)
    writing = WriteOptions(1 if args.text_index is None else args.text_index, not args.replace_text,
                           tuple(args.model or [f"run {args.run}"]), f"tf-crnn {__version__}")
    failed = left_out = written = 0
    for fmt, sources in (("page", args.page), ("alto", args.alto)):
        if not sources:
            continue
        outcome = recognise_pages(model, fmt, sources, args.output_dir, layout, writing, args.batch_size, decoding)
        for _, reason in outcome.failed:
            print(f"tf-crnn predict: {reason}", file=sys.stderr)
        for page in outcome.written:
            for line_id, reason in page.left_out:
                print(f"tf-crnn predict: {page.xml}: line {line_id} left out: {reason}", file=sys.stderr)
            print(f"{page.xml}\t{page.out}\t{page.lines} lines")
        failed, written = failed + len(outcome.failed), written + len(outcome.written)
        left_out += sum(len(page.left_out) for page in outcome.written)
    if not written:
        raise ValueError(f"none of the {failed} page(s) could be read")
    if failed or (left_out and args.strict):
        print(f"tf-crnn predict: {failed} page(s) not written, {left_out} line(s) left out", file=sys.stderr)
        return EXIT_DATA
    return EXIT_OK


#: The --page / --alto options (argparse dest -> option), refused with image files.
PAGE_OPTIONS = {"output_dir": "--output-dir", "text_index": "--text-index", "replace_text": "--replace-text",
                "page_images": "--images", "mets": "--mets", "image_group": "--image-group",
                "page_group": "--page-group"}


def _refuse_page_options(args: argparse.Namespace) -> None:
    """Image files with an option of --page / --alto: a ValueError naming it (it would be ignored)."""
    given = [option for dest, option in PAGE_OPTIONS.items() if getattr(args, dest) not in (None, False)]
    if given:
        raise ValueError(f"{given[0]} applies to --page / --alto only")


def _add_page_options(p) -> None:
    group = p.add_argument_group("PAGE XML / ALTO pages (instead of image files)")
    group.add_argument("--page", nargs="+", metavar="SOURCE",
                       help="PAGE XML files, folders of them or a METS file: recognise their lines and write a copy "
                            "of each with the text into --output-dir")
    group.add_argument("--alto", nargs="+", metavar="SOURCE", help="ALTO files, folders or a METS file: the same")
    group.add_argument("--output-dir", metavar="DIR", help="where the copies go (one per file, same name)")
    group.add_argument("--text-index", type=int,
                       help="PAGE: the TextEquiv/@index of the recognised text (default 1: the main text)")
    group.add_argument("--replace-text", action="store_true",
                       help="PAGE: remove the lines' TextEquivs already there (default: keep them, renumbered)")
    group.add_argument("--images", dest="page_images", metavar="DIR",
                       help="folder of the page images when the XML's reference does not lead to them")
    group.add_argument("--mets", metavar="METS_XML", help="the METS file that pairs page files with images")
    group.add_argument("--image-group", metavar="USE", help="the METS file group of the page images")
    group.add_argument("--page-group", metavar="USE", help="with a METS file as source: its group of page files")


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
                        help="export folder (output_model_dir/export), a .tflite / .onnx file of tf-crnn convert, or "
                             "pretrained:NAME (tf-crnn models list); repeat it to transcribe by the vote of several "
                             "models")
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
    p.add_argument("images", nargs="*", metavar="SOURCE",
                   help="image files (any format Pillow reads), folders (their images, recursively, in sorted "
                        "order) or annotation CSVs (.csv: the images of their rows; labels ignored)")
    _add_page_options(p)
    p.set_defaults(func=_predict)
