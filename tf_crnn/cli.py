"""``tf-crnn``: the command-line tools around training.

    tf-crnn predict --model EXPORT_DIR IMAGE...     transcribe images with an export
    tf-crnn db uri|start|stop|status                the database runs go to
    tf-crnn prepare / alphabet / generate / validate  datasets (see tf_crnn.datasets)

Training itself is ``python train.py with config.json`` (a Sacred experiment).
"""
from __future__ import annotations

import argparse
import os
import sys


def _predict(args) -> int:
    from .loader import PredictionModel

    model = PredictionModel(args.model)
    for path, pred in zip(args.images, model.predict(args.images, batch_size=args.batch_size)):
        print(f"{path}\t{pred.text}\t{pred.score:.4f}")
    return 0


def _db(args) -> int:
    from . import tracking

    server = tracking.EmbeddedServer.default()
    if args.action == "uri":
        configured = os.environ.get(tracking.ENV_URL)
        url = tracking.redact_url(configured) if configured else server.url()
        print(url or "none: the embedded server is not running (`tf-crnn db start`; any training starts it)")
        return 0 if url else 1
    if args.action == "start":
        print(server.start())
        return 0
    if args.action == "stop":
        print("stopped" if server.stop() else "not running")
        return 0
    url = server.url()
    print(f"running at {url}, data in {server.data_dir}" if url else f"not running (data in {server.data_dir})")
    return 0 if url else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tf-crnn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="transcribe images with an exported model")
    p.add_argument("--model", required=True, help="export folder (output_model_dir/export)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("images", nargs="+", help="image files")
    p.set_defaults(func=_predict)

    from . import evaluation  # no TensorFlow import until it runs

    p = sub.add_parser("evaluate", help="score an export on annotated CSVs: metrics, per-sample CSV, Sacred run",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    evaluation.register_arguments(p)

    p = sub.add_parser("db", help="the MongoDB runs go to (embedded SecantusDB unless configured)")
    p.add_argument("action", choices=["uri", "start", "stop", "status"])
    p.set_defaults(func=_db)

    from . import board  # starts nothing until it runs

    board.add_parser(sub)

    try:
        from .datasets import cli as datasets_cli
    except ImportError:  # datasets tools are optional extras of the CLI
        datasets_cli = None
    if datasets_cli is not None and hasattr(datasets_cli, "register"):
        datasets_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tf-crnn`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"tf-crnn {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
