"""``tf-crnn compile CSV... -o DIR``: annotation CSVs to TFRecord shards, an index and a manifest.

The library is :mod:`tf_crnn.datasets.compile`; the format :mod:`tf_crnn.compiled`. A training takes the
folder wherever it takes a CSV (``csv_files_train``, ``csv_files_eval``), as do ``tf-crnn validate``,
``tf-crnn evaluate --csv`` and ``tf-crnn alphabet build``.

Examples::

    tf-crnn compile data/prepared/fraktur.train.csv -o data/compiled/fraktur.train
    tf-crnn compile words/labels.csv -o data/compiled/words --shard-size 5000 --on-bad-sample skip
"""
from __future__ import annotations

import argparse

from ..config import ON_BAD_SAMPLE_NAMES, Params
from .datasets import add_delimiters, add_unicode_form
from .errors import handles


@handles("compile")
def _compile(args: argparse.Namespace) -> int:
    from ..datasets.compile import compile_dataset, parse_shard_size

    shard_images, shard_mb = parse_shard_size(args.shard_size) if args.shard_size else (None, None)
    params = Params(csv_delimiter=args.csv_delimiter, string_split_delimiter=args.string_split_delimiter,
                    unicode_normalization=args.unicode_normalization, input_channels=args.channels,
                    on_bad_sample=args.on_bad_sample)
    manifest = compile_dataset(args.csv, args.output, params, shard_images, shard_mb, overwrite=args.overwrite,
                               progress=not args.no_progress)
    totals = manifest["totals"]
    print(f"{args.output}: {totals['examples']} examples in {totals['shards']} shard(s), "
          f"{totals['bytes'] / 1e6:.1f} MB ({totals['left_out']} of {totals['rows']} rows left out)")
    return 0


def register(sub) -> None:
    """Add ``tf-crnn compile`` to the ``tf-crnn`` subparsers ``sub``."""
    p = sub.add_parser("compile", help="pack annotated images into TFRecord shards a training reads instead of "
                                       "many small files", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv", nargs="+", help="annotation CSVs")
    p.add_argument("-o", "--output", required=True, help="folder to write (new or empty; --overwrite to replace "
                                                         "a compiled one)")
    p.add_argument("--shard-size", metavar="N|NMB",
                   help="bound of a shard: a number of images (5000) or megabytes (64MB); default 128MB")
    p.add_argument("--channels", type=int, choices=(1, 3), default=1,
                   help="the model's input_channels: images TensorFlow cannot read as they are are stored "
                        "converted to its mode (default 1)")
    p.add_argument("--on-bad-sample", choices=ON_BAD_SAMPLE_NAMES, default="error",
                   help="a missing or undecodable image, or an image listed with different labels: stop "
                        "(error, default) or leave its rows out and list them (skip)")
    p.add_argument("--overwrite", action="store_true", help="replace the compiled data set in the folder")
    p.add_argument("--no-progress", action="store_true")
    add_delimiters(p)
    add_unicode_form(p)
    p.set_defaults(func=_compile)
