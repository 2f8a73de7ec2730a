"""``tf-crnn evaluate``: score an exported model on annotated CSVs (library: :mod:`tf_crnn.evaluation`).

    tf-crnn evaluate --model output/fraktur/export --csv data/prepared/fraktur.eval.csv \\
        [--alphabet data/alphabets/fraktur.json] [--out DIR] [--decoding greedy|beam_search] \\
        [--beam-width N] [--top-paths K] [--lexicon words.txt] [--log [--train-run ID]] [--strict]
    tf-crnn evaluate --model out/fold_1/export --model out/fold_2/export --model out/fold_3/export --csv ...
"""
from __future__ import annotations

import argparse
import sys

from .._util import parse_run_id
from ..config import DECODING_NAMES
from .errors import handles

CLI_DESCRIPTION = """\
Score an exported model (SavedModel folder, or .tflite / .onnx file of tf-crnn convert)
on annotated CSVs (path;|l|a|b|e|l| rows).

Prints per-character accuracy, full-sequence accuracy, CER, WER and 1 - NED,
each exact, case-insensitive and alphanumeric-only (the IIIT5K / SVT / IC13
protocol), and writes <csv>.<decoding>.predictions.csv (one row per image:
ground truth, prediction, score, edit distances) and <csv>.<decoding>.summary.json
into --out. The decoding defaults to the export's training-time setting;
--decoding, --beam-width, --top-paths and --lexicon change it (the export's
logits are decoded outside the model). --log records the evaluation as a Sacred
run of the experiment 'crnn-evaluate' with the training run's id.

Several --model vote (confidence voting of Reul et al. 2018 over the aligned greedy
transcriptions, tf_crnn/voting.py): they must share the alphabet; the decoding is greedy;
the outputs are named <csv>.greedy.vote<N>.* and go by default to evaluation/ in the folder
that holds all the models.

An image that cannot be read (missing, corrupt) is reported on stderr with its
file:line and left out of the metrics (listed in the summary); --strict makes
that an error (exit code 1) before anything is evaluated. No readable image: exit code 2.
A label symbol the model's alphabet lacks (a new book's ã, β, ...) is reported on stderr
and scored: the model cannot produce it, so it counts as an error in CER and WER, and
the summary lists the symbols and lines; --strict refuses such labels (exit code 2).

example:
  tf-crnn evaluate --model output/fraktur/export --csv data/prepared/fraktur.eval.csv
  tf-crnn evaluate --model output/iiit5k/export --csv data/prepared/iiit5k.test.csv \\
      --decoding beam_search --beam-width 10 --lexicon words.txt --log
  tf-crnn evaluate --model out/fold_1/export --model out/fold_2/export --csv data/eval.csv
"""


@handles("evaluate")
def _evaluate(args: argparse.Namespace) -> int:
    from .. import evaluation
    from ..annotations import listing  # pandas: loaded when the command runs, not for every tf-crnn call

    request = evaluation.EvaluationRequest(
        model_dir=args.model[0] if len(args.model) == 1 else args.model, csv_files=args.csv,
        alphabet_file=args.alphabet, out_dir=args.out,
        decoding=args.decoding, beam_width=args.beam_width, top_paths=args.top_paths, lexicon=args.lexicon,
        lexicon_max_distance=args.lexicon_max_distance, batch_size=args.batch_size,
        train_run=parse_run_id(args.train_run), progress=not args.quiet, strict=args.strict)
    job = evaluation.plan(request)
    if job.prepared.unreadable:
        print(f"tf-crnn evaluate: leaving out {len(job.prepared.unreadable)} image(s) that cannot be read:\n"
              + listing(job.prepared.problems), file=sys.stderr)
    outside = job.prepared.outside_alphabet()
    if outside["lines"]:
        print(f"tf-crnn evaluate: warning: {outside['lines']} line(s) have {outside['occurrences']} label symbol(s) "
              f"the model's alphabet lacks ({' '.join(outside['symbols'])}); the model cannot produce them, so they "
              f"count as errors (--strict refuses them):\n" + listing(outside["where"]), file=sys.stderr)
    if args.log:
        from ..experiment.experiments import run_logged_evaluation

        run_logged_evaluation(job, args.mongo_url, args.mongo_db_name)  # prints the table inside the run
    else:
        print(evaluation.report(evaluation.run(job)))
    return 0


def register(sub) -> None:
    """Add ``tf-crnn evaluate`` to the ``tf-crnn`` subparsers ``sub``."""
    p = sub.add_parser("evaluate", help="score an export on annotated CSVs: metrics, per-sample CSV, Sacred run",
                       description=CLI_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, action="append", metavar="MODEL",
                   help="export folder (output_model_dir/export), a .tflite / .onnx file of tf-crnn convert, or "
                        "pretrained:NAME (tf-crnn models list); repeat it to evaluate the vote of several models")
    p.add_argument("--csv", required=True, action="append", metavar="CSV",
                   help="annotated images (path;|l|a|b|e|l|) or a compiled folder (tf-crnn compile), repeat for "
                        "several")
    p.add_argument("--alphabet", help="lookup table to check labels with; must be the model's "
                                      "(default: the export's alphabet.json)")
    p.add_argument("--out", help="folder for <csv>.<decoding>.predictions.csv and .summary.json "
                                 "(default: <model>/../evaluation; evaluation/NAME for pretrained:NAME)")
    p.add_argument("--decoding", choices=DECODING_NAMES,
                   help="default: the training-time setting in the export's params.json")
    p.add_argument("--beam-width", type=int, help="beams kept by beam search (default: params.json's)")
    p.add_argument("--top-paths", type=int,
                   help="beam-search hypotheses kept per image (default: params.json's num_beam_paths, "
                        "5 with --lexicon)")
    p.add_argument("--lexicon", help="word list (one per line): output the lexicon word of highest CTC "
                                     "probability among those near the hypotheses (CRNN, Shi et al. 2015)")
    p.add_argument("--lexicon-max-distance", type=int, default=3,
                   help="edit-distance radius of the lexicon search (CRNN's delta; default 3)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--log", action="store_true", help="record the evaluation as a Sacred run (crnn-evaluate)")
    p.add_argument("--train-run", help="_id of the training run, stored with the evaluation run "
                                       "(default: the one the export records, if any)")
    p.add_argument("--mongo-url", help="MongoDB for --log (default: $TF_CRNN_MONGO_URL, else the embedded server)")
    p.add_argument("--mongo-db-name", help="database for --log (default: tf_crnn)")
    p.add_argument("--strict", action="store_true",
                   help="stop if any image cannot be read (exit code 1) or any label has a symbol outside the "
                        "model's alphabet (exit code 2), instead of leaving the image out / scoring the symbol")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_evaluate)
