"""Many small image files against a compiled data set (tf-crnn compile): disk size, input pipeline, training.

    python benchmarks/compiled_data.py                                  # 10,000 rendered words, batch 64
    python benchmarks/compiled_data.py --images 2000 --train-steps 10 --rounds 1

Rendered digit strings of the word setup (``_common.generate_digits``, cached under ``--data``) are
compiled once (``tf_crnn.datasets.compile.compile_dataset``, ``--shard-size``). Then, in A-B-A order
(files, shards, files; ``--rounds`` times):

* input pipeline alone: images/s of one training epoch of ``tf_crnn.data.make_dataset`` (shuffle, read,
  decode, resize, augmentation, width buckets; the decoded-image cache off), from the files and from the shards;
* training: images/s of the default CRNN over ``--train-steps`` steps after one warm-up step, fed by each.

And what to store, measured once: ``read + decode`` alone from the files, from shards of the encoded
images (what compile stores), and from shards of the decoded uint8 pixels (``tf.io.serialize_tensor``,
written here for the comparison only), with the disk size of each.

The files are read through the operating system's page cache after the first pass (a warm cache for
both; a cold disk or a network file system makes the files slower, not the shards).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from _common import Timer, generate_digits, header, setup_params


def folder_bytes(paths) -> int:
    return sum(os.path.getsize(p) for p in paths)


def pipeline_rate(data, entries, params, batch: int) -> float:
    """Images/s of one shuffled training pass of the input pipeline alone."""
    with Timer() as t:
        n = sum(int(b["widths"].shape[0]) for b in data.make_dataset(entries, params, batch, training=True, seed=0))
    return n / t.seconds


def training_rate(data, trainer, entries, params, batch: int, steps: int) -> float:
    """Training images/s over ``steps`` steps, after a warm-up step, fed by the pipeline."""
    dataset = data.make_dataset(entries, params, batch, training=True, seed=0)
    trainer.train_epoch(dataset, data.batch_count(entries, batch), steps=1)
    with Timer() as t:
        _, seen = trainer.train_epoch(dataset, data.batch_count(entries, batch), steps=steps)
    return seen / t.seconds


def storage_choice(tf, csv_entries, folder: Path, work: Path) -> dict:
    """Read + decode images/s and disk bytes: files, shards of encoded images, shards of decoded pixels."""
    from tf_crnn import compiled

    paths = [e.sample.image_path for e in csv_entries]
    pixels = work / "pixels.tfrecord"
    with tf.io.TFRecordWriter(str(pixels)) as writer:
        for path in paths:
            image = tf.io.decode_image(tf.io.read_file(path), channels=1, expand_animations=False)
            writer.write(tf.io.serialize_tensor(image).numpy())
    shards = compiled.shard_paths(str(folder), compiled.load_manifest(folder))
    spec = {"image": tf.io.FixedLenFeature([], tf.string)}

    def decode(encoded):
        return tf.io.decode_image(encoded, channels=1, expand_animations=False)

    arms = {
        "files (read_file + decode_image)": (
            tf.data.Dataset.from_tensor_slices(paths).map(lambda p: decode(tf.io.read_file(p)), tf.data.AUTOTUNE),
            folder_bytes(paths)),
        "shards, encoded (parse + decode_image)": (  # parsed in batches of 256, as tf_crnn.data does
            tf.data.TFRecordDataset(shards).batch(256).map(lambda r: tf.io.parse_example(r, spec)["image"])
            .unbatch().map(decode, tf.data.AUTOTUNE), folder_bytes(shards)),
        "shards, pixels (parse_tensor)": (
            tf.data.TFRecordDataset([str(pixels)]).map(lambda r: tf.io.parse_tensor(r, tf.uint8), tf.data.AUTOTUNE),
            os.path.getsize(pixels)),
    }
    found = {}
    for name, (dataset, size) in arms.items():
        for _ in dataset:  # warm: page cache, tracing
            pass
        with Timer() as t:
            n = sum(1 for _ in dataset)
        found[name] = {"images_per_s": n / t.seconds, "bytes": size}
        print(f"  {name:40s} {n / t.seconds:8.0f} images/s  {size / 1e6:8.1f} MB")
    pixels.unlink()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--shard-size", default="5000", help="tf-crnn compile --shard-size (images or NMB)")
    parser.add_argument("--train-steps", type=int, default=20, help="measured training steps per arm")
    parser.add_argument("--rounds", type=int, default=1, help="A-B-A rounds")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "tf_crnn_bench_data")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    header(f"files vs compiled shards: word setup, {args.images} images, batch {args.batch}")
    import tensorflow as tf

    from tf_crnn import data
    from tf_crnn.alphabet import Alphabet
    from tf_crnn.datasets.compile import compile_dataset, parse_shard_size
    from tf_crnn.trainer import Trainer

    source = args.data / f"word_{args.images}"
    with Timer() as t:
        csv = generate_digits(source, args.images, "word")
    print(f"data: {args.images} rendered digit strings in {source} ({t.seconds:.0f} s incl. generation if new)")
    params = setup_params("word", args.batch, cache_images="off")
    shard_images, shard_mb = parse_shard_size(args.shard_size)
    with tempfile.TemporaryDirectory(dir=args.data) as work:
        folder = Path(work) / "compiled"
        with Timer() as t:
            manifest = compile_dataset([str(csv)], str(folder), params, shard_images, shard_mb, progress=False)
        totals = manifest["totals"]
        alphabet = Alphabet.from_file(params.lookup_alphabet_file)
        entries = {"files": data.load_split([str(csv)], params, alphabet, "train", progress=False),
                   "shards": data.load_split([str(folder)], params, alphabet, "train", progress=False)}
        image_files = [e.sample.image_path for e in entries["files"]]
        disk = {"files": {"files": len(image_files) + 1, "bytes": folder_bytes(image_files) + os.path.getsize(csv)},
                "shards": {"files": totals["shards"] + 2, "bytes": folder_bytes(
                    str(p) for p in folder.iterdir())}}
        print(f"compile: {t.seconds:.1f} s, {totals['examples']} examples in {totals['shards']} shard(s) "
              f"(--shard-size {args.shard_size})")
        for name, d in disk.items():
            print(f"disk, {name}: {d['files']} files, {d['bytes'] / 1e6:.1f} MB")

        print("what to store, read + decode alone (warm cache, 1 channel):")
        storage = storage_choice(tf, entries["files"], folder, Path(work))

        trainer = Trainer(params, alphabet)
        figures = {"files": {"pipeline": [], "training": []}, "shards": {"pipeline": [], "training": []}}
        pipeline_rate(data, entries["files"], params, args.batch)  # warm the page cache for the files
        for _ in range(args.rounds):
            for arm in ("files", "shards", "files"):
                figures[arm]["pipeline"].append(pipeline_rate(data, entries[arm], params, args.batch))
                figures[arm]["training"].append(training_rate(data, trainer, entries[arm], params, args.batch,
                                                              args.train_steps))
                print(f"  {arm:6s}: input pipeline {figures[arm]['pipeline'][-1]:7.0f} images/s, training "
                      f"{figures[arm]['training'][-1]:6.1f} images/s")
    for arm, values in figures.items():
        print(f"{arm}: input pipeline mean {sum(values['pipeline']) / len(values['pipeline']):.0f} images/s, "
              f"training mean {sum(values['training']) / len(values['training']):.1f} images/s "
              f"({len(values['pipeline'])} measurement(s))")
    if args.json:
        args.json.write_text(json.dumps({"disk": disk, "storage": storage, **figures}, indent=1))


if __name__ == "__main__":
    main()
