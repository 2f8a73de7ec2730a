"""``tf-crnn convert``: convert a SavedModel export to TFLite or ONNX (library: :mod:`tf_crnn.convert`).

    tf-crnn convert --model output/fraktur/export --format tflite --quantize int8 \\
        --representative data/prepared/fraktur.train.csv --samples 200 -o out/fraktur.tflite
    tf-crnn convert --model output/fraktur/export --format onnx -o out/fraktur.onnx
    tf-crnn convert --model pretrained:latin-print --format onnx -o out/latin-print.onnx

``tf-crnn export``, its name before 0.5, still works and says so on stderr: "export" now means
only the SavedModel a training writes (:mod:`tf_crnn.export`).
"""
from __future__ import annotations

import argparse
import sys

from ..config import DEPLOY_FORMAT_NAMES, QUANTIZATION_NAMES
from ..convert import INT8_CHANGE_WARNING, INT8_CHECK_IMAGES, QUANTIZATIONS
from .errors import handles, renamed

CLI_DESCRIPTION = f"""\
Convert a tf-crnn SavedModel export into a TFLite or ONNX model file, with
NAME.alphabet.json and NAME.params.json written beside it: the three files are all
tf-crnn predict / evaluate (or your own code) need to run it.

Inputs (the images preprocessed as training does: height fixed, width kept, values in [-1, 1]):
  TFLite  images float32 [1, height, width, channels]; resize the interpreter's input per image
  ONNX    images float32 [batch, height, width, channels] right-padded, widths int32 [batch]
Output: CTC logits float32 [batch, time, classes], class 0 = blank (ONNX also: lengths int32 [batch]).

--quantize (TFLite): none (float32), float16 (float16 weights), dynamic (int8 weights),
int8 (int8 weights and activations calibrated on --samples images of --representative CSV;
float32 input and output; the LSTM cell state stays float32).

The converted file is checked against the trained model: {INT8_CHECK_IMAGES} images (int8's first calibration
images, else drawn from --representative CSV, else, for an export trained with mixed precision, from the eval
CSVs of its params.json) are transcribed by the file and by the CRNN in the dtype policy it was trained in
(model.json: float32, or bfloat16 / float16 compute), and the CER between them is printed, with a warning
above {100 * INT8_CHANGE_WARNING:.0f} %.

example:
  tf-crnn convert --model output/fraktur/export --format tflite --quantize int8 \\
      --representative data/prepared/fraktur.train.csv --samples 200 -o out/fraktur.tflite
  tf-crnn convert --model output/fraktur/export --format onnx -o out/fraktur.onnx
"""
#: How each ``--quantize`` choice computes, in the line that reports the check.
FILE_PRECISIONS = {"none": "float32", "float16": "float16 weights", "dynamic": "dynamic-range int8", "int8": "int8"}
HELP = "convert a SavedModel export to TFLite (fp32 / fp16 / int8) or ONNX"


@handles("convert")
def _convert(args: argparse.Namespace) -> int:
    from ..convert import convert

    done = convert(args.model, args.output, args.format, args.quantize, args.representative, args.samples,
                   seed=args.seed, progress=not args.quiet)
    what = "TFLite, " + QUANTIZATIONS[done.quantize] if done.format == "tflite" else "ONNX, float32"
    calibrated = f", calibrated on {done.representative_images} image(s)" if done.representative_images else ""
    print(f"wrote {done.path} ({done.size / 1e6:.2f} MB; {what}{calibrated}) in {done.seconds:.0f} s")
    print(f"with  {done.alphabet_file}\n      {done.params_file}")
    report_change(done, args.output)
    print(f"run:  tf-crnn predict --model {args.output} IMAGE...")
    return 0


def report_change(done, output: str) -> None:
    """Print the CER between the converted file's and the trained model's transcriptions (or why there is none)."""
    converted = {"tflite": f"TFLite {FILE_PRECISIONS[done.quantize]}", "onnx": "ONNX float32"}[done.format]
    if done.quantize == "int8":
        converted = "int8"
    # "int8 against float32": the wording of 0.4's int8 check, which compared with the float32 model only.
    trained = "float32" if done.quantize == "int8" and done.trained_policy == "float32" else \
        f"the SavedModel ({done.trained_policy})"
    if done.change is None:
        if done.trained_policy != "float32":
            print(f"warning: the export computes in {done.trained_policy}, {output} in float32: give "
                  "--representative CSV to measure how much that changes its transcriptions", file=sys.stderr)
        return
    print(f"{converted} against {trained} on {done.checked} {done.checked_on} image(s): "
          f"{100 * done.change:.2f} % of the transcriptions' symbols changed (CER)")
    if done.change > INT8_CHANGE_WARNING:
        fix = ("use --quantize dynamic (int8 weights, float activations)" if done.quantize == "int8" else
               "use the SavedModel where its accuracy matters")
        print(f"warning: above {100 * INT8_CHANGE_WARNING:.0f} %: the conversion has damaged this model; "
              f"score it with `tf-crnn evaluate --model {output} --csv EVAL.csv`, or {fix}", file=sys.stderr)


def register(sub) -> None:
    """Add ``tf-crnn convert`` and its deprecated old name ``tf-crnn export`` to the ``tf-crnn`` subparsers ``sub``."""
    p = sub.add_parser("convert", help=HELP, description=CLI_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=_convert)
    old = sub.add_parser("export", help="old name of convert (deprecated)", description=CLI_DESCRIPTION,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(old)
    old.set_defaults(func=renamed("tf-crnn export", "tf-crnn convert", _convert))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``tf-crnn convert``."""
    p.add_argument("--model", required=True, help="the SavedModel export folder (output_model_dir/export), or "
                                                   "pretrained:NAME (tf-crnn models list)")
    p.add_argument("--format", choices=DEPLOY_FORMAT_NAMES, help="default: from the suffix of -o")
    p.add_argument("--quantize", choices=QUANTIZATION_NAMES, default="none", help="TFLite only (default none)")
    p.add_argument("--representative", action="append", metavar="CSV",
                   help="annotated CSV whose images calibrate --quantize int8 and check the converted file "
                        "against the trained model (repeatable)")
    p.add_argument("--samples", type=int, default=200,
                   help="representative images drawn at random from the CSVs (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of that draw (default 0)")
    p.add_argument("-o", "--output", required=True,
                   help="the model file, NAME.tflite or NAME.onnx; NAME.alphabet.json and NAME.params.json "
                        "are written beside it")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
