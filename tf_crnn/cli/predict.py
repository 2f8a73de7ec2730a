"""``tf-crnn predict --model EXPORT IMAGE...``: transcribe images with an exported model."""
from __future__ import annotations

import argparse

from .errors import handles


@handles("predict")
def _predict(args: argparse.Namespace) -> int:
    from ..loader import PredictionModel

    model = PredictionModel(args.model)
    for path, pred in zip(args.images, model.predict(args.images, batch_size=args.batch_size)):
        print(f"{path}\t{pred.text}\t{pred.score:.4f}")
    return 0


def register(sub) -> None:
    """Add ``tf-crnn predict`` to the ``tf-crnn`` subparsers ``sub``."""
    p = sub.add_parser("predict", help="transcribe images with an exported model",
                       description="Print one line per image: path, text, score (tab-separated).")
    p.add_argument("--model", required=True, help="export folder (output_model_dir/export)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("images", nargs="+", help="image files")
    p.set_defaults(func=_predict)
