"""PredictionModel throughput and latency at batch 1 and batch 64.

    python benchmarks/inference.py                                     # word setup, default CRNN
    python benchmarks/inference.py --export output/digits/export       # a trained export
    python benchmarks/inference.py --setup line --images 64 --batches 1 16

Without ``--export`` the default CRNN (``Params()``, untrained: the speed is the same) is
exported with ``tf_crnn.trainer.Trainer.export``. Input: encoded PNGs of rendered digit strings,
so the figures include decoding and resizing inside the SavedModel, the CRNN and CTC decoding,
exactly what ``tf_crnn.loader.PredictionModel.predict_bytes`` does. The first call for each
batch size is left out (tracing).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import SETUPS, Timer, generate_digits, header, setup_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setup", default="word", choices=list(SETUPS))
    parser.add_argument("--export", type=Path, help="a tf-crnn export (default: export the default CRNN)")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "tf_crnn_bench_data")
    args = parser.parse_args()

    header(f"inference: PredictionModel, {args.setup} setup")
    from tf_crnn.alphabet import Alphabet
    from tf_crnn.loader import PredictionModel
    from tf_crnn.trainer import Trainer

    export = args.export
    if export is None:
        params = setup_params(args.setup, 64)
        export = Path(tempfile.mkdtemp(prefix="tf_crnn_bench_export_")) / "export"
        with Timer() as t:
            trainer = Trainer(params, Alphabet.from_file(params.lookup_alphabet_file))
            trainer.export(str(export))
        print(f"exported the default CRNN ({trainer.model.count_params() / 1e6:.1f} M weights, untrained) "
              f"to {export} in {t.seconds:.0f} s")
    folder = args.data / f"{args.setup}_{args.images}"
    csv = generate_digits(folder, args.images, args.setup)
    images = [p.read_bytes() for p in sorted((folder / "images").glob("*.png"))][:args.images]
    model = PredictionModel(export)
    print(f"model: {export}; {len(images)} PNG images from {csv.parent}")

    for batch in args.batches:
        model.predict_bytes(images[:batch], batch_size=batch)  # tracing for this batch size
        calls = []
        for start in range(0, len(images) - batch + 1, batch):
            t0 = time.perf_counter()
            model.predict_bytes(images[start:start + batch], batch_size=batch)
            calls.append(time.perf_counter() - t0)
        total = sum(calls)
        n = batch * len(calls)
        ordered = sorted(calls)
        p50, p90 = ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        print(f"batch {batch:3d}: {n / total:7.1f} images/s, {1000 * total / n:7.1f} ms per image; "
              f"per call p50 {1000 * p50:.1f} ms, p90 {1000 * p90:.1f} ms ({len(calls)} calls)")


if __name__ == "__main__":
    main()
