"""tf-crnn predict over a whole collection: images/s against plain Keras, and a resume after kill -9 half way.

    python benchmarks/predict_collection.py --export EXPORT --images 10000                  # speed, A-B-A
    python benchmarks/predict_collection.py --export EXPORT --onnx M.onnx                   # + ONNX Runtime
    python benchmarks/predict_collection.py --export EXPORT --images 256 --rounds 1         # tiny
    python benchmarks/predict_collection.py --export EXPORT --resume-check SOURCE...        # kill -9, resume

Speed (issue 24: tf-crnn at least 1.5x the plain figure), on ``--images`` rendered digit strings (word setup,
cached in ``--data``), rounds in A-B-A order in one process:

(a) tf-crnn: :func:`tf_crnn.collection.transcribe_collection` with the export's
    :class:`tf_crnn.loader.PredictionModel`, what ``tf-crnn predict -o`` runs (chunks sorted by aspect ratio,
    the export's ``logits`` signature, greedy decoding), without the process start and the file writing.
(b) plain Keras: the same network with the same weights (:meth:`PredictionModel.crnn`), a straightforward
    tf.data pipeline in input order (read, :func:`tf_crnn.data.preprocess_image`, ``padded_batch``), the model
    called batch by batch, greedy CTC decoding with ``keras.ops.ctc_decode``.
(c) with ``--onnx``: (a) with the same model converted to ONNX (ONNX Runtime), between (b) and the last (a).

``--resume-check`` runs ``tf-crnn predict -o`` on the sources as a process, kills it (SIGKILL) when half the
images are written, resumes it with ``--resume`` and checks that the output holds every image once, in input
order. Figures: docs/benchmarks/scale.md.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, Timer, generate_digits, header


def tf_crnn_rate(export: str, paths: list[str], batch: int) -> float:
    """Images/s of :func:`tf_crnn.collection.transcribe_collection` (results kept in memory)."""
    from tf_crnn.collection import transcribe_collection
    from tf_crnn.loader import PredictionModel

    model = PredictionModel(export)
    kept: list = []
    with Timer() as t:
        transcribe_collection(model, paths, kept.extend, batch_size=batch)
    return len(kept) / t.seconds


def plain_keras_rate(export: str, paths: list[str], batch: int) -> float:
    """Images/s of the same network as a plain Keras model on a plain tf.data pipeline, greedy CTC decoding."""
    import keras
    import tensorflow as tf

    from tf_crnn.data import preprocess_image
    from tf_crnn.loader import PredictionModel
    from tf_crnn.model import sequence_lengths

    model, params = PredictionModel(export).crnn()
    dataset = (tf.data.Dataset.from_tensor_slices(paths)
               .map(lambda p: preprocess_image(tf.io.read_file(p), params), num_parallel_calls=tf.data.AUTOTUNE)
               .padded_batch(batch).prefetch(tf.data.AUTOTUNE))
    forward = tf.function(lambda x, w: model(x, w, training=False), reduce_retracing=True)
    count = 0
    with Timer() as t:
        for images, widths in dataset:
            logits = forward(images, widths)
            decoded, _ = keras.ops.ctc_decode(logits, sequence_lengths(widths, model.pool_widths), strategy="greedy",
                                              mask_index=0)
            count += int(decoded.shape[1])
    return count / t.seconds


def speed(args) -> dict:
    folder = args.data / f"word_{args.images}"
    generate_digits(folder, args.images, "word")
    paths = sorted(str(p) for p in (folder / "images").glob("*.png"))[:args.images]
    arms = {"tf-crnn": lambda p: tf_crnn_rate(args.export, p, args.batch),
            "plain": lambda p: plain_keras_rate(args.export, p, args.batch)}
    if args.onnx:
        arms["tf-crnn onnx"] = lambda p: tf_crnn_rate(args.onnx, p, args.batch)
    for measure in arms.values():
        measure(paths[:args.batch])  # tracing and caches, left out
    figures: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(args.rounds):  # A-B-A (A-B-C-A with --onnx)
        for name in [*arms, "tf-crnn"]:
            figures[name].append(arms[name](paths))
    for name, values in figures.items():
        print(f"{name:12s}: " + ", ".join(f"{v:.1f}" for v in values) + " images/s")
    mean = {name: sum(v) / len(v) for name, v in figures.items()}
    print(f"ratio tf-crnn / plain: {mean['tf-crnn'] / mean['plain']:.2f} ({len(paths)} images, batch {args.batch})")
    if args.onnx:
        print(f"ratio tf-crnn onnx / plain: {mean['tf-crnn onnx'] / mean['plain']:.2f}; "
              f"onnx / SavedModel: {mean['tf-crnn onnx'] / mean['tf-crnn']:.2f}")
    return figures


def resume_check(args) -> dict:
    """Kill ``tf-crnn predict -o`` half way, resume it; the output must list every image once, in input order."""
    from tf_crnn.collection import gather

    expected = list(gather(args.resume_check).paths)
    out = Path(tempfile.mkdtemp(prefix="tf_crnn_bench_resume_")) / "out.tsv"
    command = [sys.executable, "-m", "tf_crnn.cli", "predict", "--model", args.export, "--no-progress",
               "--batch-size", str(args.batch), *(["--chunk-size", str(args.chunk_size)] if args.chunk_size else []),
               "-o", str(out), *args.resume_check]

    def written() -> int:
        return out.read_bytes().count(b"\n") if out.exists() else 0

    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    while written() < len(expected) // 2 and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_after, killed_at = time.perf_counter() - start, written()
    with Timer() as resumed:
        result = subprocess.run(command + ["--resume"], cwd=ROOT, stdout=subprocess.DEVNULL)
    paths = [line.split("\t", 1)[0] for line in out.read_text(encoding="utf-8").splitlines()]
    once = paths == expected
    if not 0 < killed_at < len(expected):
        print(f"warning: killed with {killed_at} of {len(expected)} lines: not half way (a smaller --chunk-size?)")
    print(f"killed after {killed_after:.0f} s with {killed_at} of {len(expected)} lines; resumed in "
          f"{resumed.seconds:.0f} s (exit {result.returncode}); every image once, in input order: {once}")
    return {"images": len(expected), "killed_at": killed_at, "killed_after_s": killed_after,
            "resume_s": resumed.seconds, "exit": result.returncode, "every_image_once": once}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", required=True, help="a tf-crnn SavedModel export")
    parser.add_argument("--onnx", help="the same model converted (tf-crnn convert --format onnx): a third arm, "
                                       "tf-crnn on ONNX Runtime")
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="A-B-A rounds")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "tf_crnn_bench_data")
    parser.add_argument("--resume-check", nargs="+", metavar="SOURCE",
                        help="instead of the speed: kill tf-crnn predict -o on these sources half way and resume")
    parser.add_argument("--chunk-size", type=int, help="--chunk-size of the resume check (default: tf-crnn's)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    header("tf-crnn predict over a collection" + (": resume after kill -9" if args.resume_check else
                                                  ": against plain Keras"))
    figures = resume_check(args) if args.resume_check else speed(args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
