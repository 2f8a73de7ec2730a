"""``tf-crnn convert``: convert a SavedModel export to TFLite or ONNX (library: :mod:`tf_crnn.convert`).

    tf-crnn convert --model output/fraktur/export --format tflite --quantize int8 \\
        --representative data/prepared/fraktur.train.csv --samples 200 -o out/fraktur.tflite
    tf-crnn convert --model output/fraktur/export --format onnx -o out/fraktur.onnx

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
float32 input and output; the LSTM cell state stays float32). After an int8 conversion the
first {INT8_CHECK_IMAGES} calibration images are transcribed by the int8 and the float32 model and the CER
between them is printed, with a warning above {100 * INT8_CHANGE_WARNING:.0f} %.

example:
  tf-crnn convert --model output/fraktur/export --format tflite --quantize int8 \\
      --representative data/prepared/fraktur.train.csv --samples 200 -o out/fraktur.tflite
  tf-crnn convert --model output/fraktur/export --format onnx -o out/fraktur.onnx
"""
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
    if done.int8_change is not None:
        print(f"int8 against float32 on {done.int8_checked} calibration image(s): "
              f"{100 * done.int8_change:.2f} % of the transcriptions' symbols changed (CER)")
        if done.int8_change > INT8_CHANGE_WARNING:
            print(f"warning: above {100 * INT8_CHANGE_WARNING:.0f} %: the quantization has damaged this model; "
                  f"score it with `tf-crnn evaluate --model {args.output} --csv EVAL.csv`, or use "
                  f"--quantize dynamic (int8 weights, float activations)", file=sys.stderr)
    print(f"run:  tf-crnn predict --model {args.output} IMAGE...")
    return 0


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
    p.add_argument("--model", required=True, help="the SavedModel export folder (output_model_dir/export)")
    p.add_argument("--format", choices=DEPLOY_FORMAT_NAMES, help="default: from the suffix of -o")
    p.add_argument("--quantize", choices=QUANTIZATION_NAMES, default="none", help="TFLite only (default none)")
    p.add_argument("--representative", action="append", metavar="CSV",
                   help="annotated CSV whose images calibrate --quantize int8 (repeatable)")
    p.add_argument("--samples", type=int, default=200,
                   help="representative images drawn at random from the CSVs (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of that draw (default 0)")
    p.add_argument("-o", "--output", required=True,
                   help="the model file, NAME.tflite or NAME.onnx; NAME.alphabet.json and NAME.params.json "
                        "are written beside it")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
