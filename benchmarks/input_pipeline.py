"""The tf.data input pipeline alone against what the model consumes, and how much of each batch is padding.

    python benchmarks/input_pipeline.py                                    # word setup, 1024 images, batch 64
    python benchmarks/input_pipeline.py --setup line --images 256 --batch 16

Rendered digit strings (``tf_crnn.datasets.synthetic.generate_numbers``, cached under
``--data``) go through ``tf_crnn.data.make_dataset`` exactly as in training: decode, resize
keeping the aspect ratio, augmentation, batching in width buckets, padding. Figures:

* pipeline alone: images/s of iterating the dataset (first pass left out: file cache, autotune);
* model: training images/s of the default CRNN fed by that pipeline, and on the same batches
  cached in memory (the model alone); the pipeline keeps up when its rate exceeds the model's;
* padding: fraction of padded pixels in the batches (``tf_crnn.data.padding_fraction``).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import SETUPS, Timer, generate_digits, header, setup_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setup", default="word", choices=list(SETUPS))
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--passes", type=int, default=3, help="pipeline passes (the first is left out)")
    parser.add_argument("--model-steps", type=int, default=4, help="measured training steps (after 1 warm-up)")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "tf_crnn_bench_data")
    args = parser.parse_args()

    header(f"input pipeline vs model: {args.setup} setup, batch {args.batch}")
    import tensorflow as tf

    from tf_crnn import data
    from tf_crnn.alphabet import Alphabet
    from tf_crnn.trainer import Trainer

    folder = args.data / f"{args.setup}_{args.images}"
    with Timer() as t:
        csv = generate_digits(folder, args.images, args.setup)
    print(f"data: {args.images} rendered digit strings in {folder} ({t.seconds:.0f} s incl. generation if new)")
    params = setup_params(args.setup, args.batch, csv_files_train=[str(csv)])
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    entries = data.load_split([str(csv)], params, alphabet, "train", progress=False)
    widths = sorted(e.width for e in entries)
    print(f"resized widths: median {widths[len(widths) // 2]} px, 90th percentile {widths[int(0.9 * len(widths))]} px "
          f"(input_shape {params.input_shape}, max_width {params.max_width})")

    pipeline_rates = {}
    for augment in (True, False):
        p = setup_params(args.setup, args.batch, csv_files_train=[str(csv)], data_augmentation=augment)
        dataset = data.make_dataset(entries, p, args.batch, training=True, seed=0)
        rates = []
        for i in range(args.passes):
            with Timer() as t:
                n = sum(int(tf.shape(b["widths"])[0]) for b in dataset)
            if i:
                rates.append(n / t.seconds)
        rate = pipeline_rates[augment] = sum(rates) / len(rates) if rates else n / t.seconds
        print(f"pipeline alone ({'with' if augment else 'without'} augmentation): {rate:.0f} images/s "
              f"(mean of {len(rates)} passes after the first)")
    print(f"padding: {100 * data.padding_fraction(entries, params, args.batch):.1f} % of the pixels of a batch "
          f"(width buckets; eval order)")

    trainer = Trainer(params, alphabet)
    dataset = data.make_dataset(entries, params, args.batch, training=True, seed=0)
    trainer.train_epoch(dataset, data.batch_count(entries, args.batch), steps=1)  # tracing
    with Timer() as t:
        _, seen = trainer.train_epoch(dataset, data.batch_count(entries, args.batch), steps=args.model_steps)
    fed = seen / t.seconds
    cached = dataset.take(args.model_steps).cache()
    trainer.train_epoch(cached, data.batch_count(entries, args.batch), steps=args.model_steps)  # fills the cache
    with Timer() as t:
        _, seen_cached = trainer.train_epoch(cached, data.batch_count(entries, args.batch), steps=args.model_steps)
    alone = seen_cached / t.seconds
    print(f"model fed by the pipeline: {fed:.1f} training images/s ({args.model_steps} steps, default CRNN)")
    print(f"model on cached batches:   {alone:.1f} training images/s")
    # The model trains on augmented batches (params.data_augmentation), so that is the rate to compare.
    rate = pipeline_rates[params.data_augmentation]
    print(f"pipeline ({'with' if params.data_augmentation else 'without'} augmentation) / model: {rate / alone:.0f}x "
          "-> " + ("the pipeline keeps up" if rate > alone else "input-bound: the pipeline is slower than the model"))


if __name__ == "__main__":
    main()
