"""tf-crnn's training against a plain Keras ``model.fit`` of the same network, in one process, ABBA order.

    python benchmarks/vs_plain_keras.py --setup word    # IIIT5K train words, fixed 32 x 100
    python benchmarks/vs_plain_keras.py --setup line    # Fraktur train lines, height 32, variable width
    python benchmarks/vs_plain_keras.py --setup word --csv CSV --limit 64 --epochs 1 --rounds 1   # tiny

(a) plain Keras: the network written here as a functional model from the same Params (same layers, same
weight count, printed), a straightforward tf.data pipeline (decode, resize: words to 32 x 100, lines to the
height keeping the aspect ratio; ``padded_batch``), CTC loss over every time step, Adam, ``model.fit``.
(b) tf-crnn: the experiment ``crnn`` exactly as ``train.py`` runs it (observer on, to a SecantusDB server
started here; augmentation as configured), its training images/s from the run's ``info.epochs``.

Both train ``--epochs`` epochs per round; the figure of a training is its last epoch's training images/s
(evaluation excluded), so tracing is left out when ``--epochs`` >= 2. Rounds alternate A B B A. The data is
prepared from ``../shared/data`` with ``tf-crnn prepare`` when the CSV is missing.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, header

SHARED = ROOT.parent / "shared" / "data"
SETUPS = {
    # name: (experiment config the network comes from, training CSV, how to prepare it from ../shared/data)
    "word": ("experiments/iiit5k.json", "data/prepared/iiit5k.train.csv",
             ["iiit5k", str(SHARED / "iiit5k"), "data/prepared/iiit5k.csv", "--group-by", "source",
              "--split-by-group", "each"]),
    "line": ("experiments/fraktur.json", "data/prepared/fraktur.train.csv",
             ["gt-pairs", str(SHARED / "archiscribe"), "data/prepared/fraktur.csv", "--group-by", "parent",
              "--split-by-group", "train=0,1 eval=2 mod=5"]),
}


def setup_params(setup: str, csv: str, epochs: int, out: str, overrides: dict | None = None):
    """The setup's experiment config, trained on ``csv`` (also the eval split: only training speed counts here).

    ``overrides``: config keys for tf-crnn's training (``--set``), e.g. ``{"mixed_precision": "off"}``.
    """
    from tf_crnn.config import Params, load_config_file

    config = load_config_file(ROOT / SETUPS[setup][0])
    config.pop("generate_data", None)
    config.update(csv_files_train=[csv], csv_files_eval=[csv], n_epochs=epochs, output_model_dir=out,
                  early_stopping_patience=0, lr_plateau_patience=0, restore_model=False)
    if setup == "word":
        config["max_width"] = config["input_shape"][1]  # fixed 32 x 100, as the plain model
    config["lookup_alphabet_file"] = str(ROOT / config["lookup_alphabet_file"])
    return Params(**{**config, **(overrides or {})})


def ensure_csv(setup: str, csv: str | None) -> str:
    if csv:
        return csv
    path = ROOT / SETUPS[setup][1]
    if not path.exists():
        subprocess.run([sys.executable, "-m", "tf_crnn.cli", "prepare", *SETUPS[setup][2], "--no-progress"],
                       cwd=ROOT, check=True)
    return str(path)


def limited_csv(csv: str, limit: int | None) -> str:
    """The first ``limit`` rows of ``csv`` in a temporary CSV beside it (relative image paths keep working)."""
    if not limit:
        return csv
    rows = Path(csv).read_text(encoding="utf-8").splitlines(keepends=True)[:limit]
    handle = tempfile.NamedTemporaryFile("w", suffix=".csv", dir=Path(csv).parent, delete=False, encoding="utf-8")
    handle.writelines(rows)
    handle.close()
    return handle.name


def plain_model(params, num_classes: int, fixed_width: int | None):
    """The CRNN of ``params`` as a plain functional Keras model (softmax-free logits, blank = class 0)."""
    import keras

    x = inputs = keras.Input([params.height, fixed_width, params.input_channels])
    for filters, kernel, pool, bn in zip(params.cnn_features_list, params.cnn_kernel_size, params.cnn_pool_size,
                                         params.cnn_batch_norm):
        x = keras.layers.Conv2D(filters, kernel, padding="same", use_bias=not bn)(x)
        if bn:
            x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        if tuple(pool) != (1, 1):
            x = keras.layers.MaxPooling2D(tuple(pool), strides=tuple(pool), padding="same")(x)
    x = keras.layers.Permute((2, 1, 3))(x)
    x = keras.layers.Reshape((-1, x.shape[2] * x.shape[3]))(x)
    for units in params.rnn_units:
        x = keras.layers.Bidirectional(keras.layers.LSTM(units, return_sequences=True))(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))


def ctc_loss(labels, logits):
    """Mean CTC loss over every time step of the padded batch (what a plain pipeline knows), blank = 0."""
    import tensorflow as tf

    labels = tf.cast(labels, tf.int32)
    batch, steps = tf.shape(logits)[0], tf.shape(logits)[1]
    return tf.reduce_mean(tf.nn.ctc_loss(labels, logits, tf.math.count_nonzero(labels, axis=1, dtype=tf.int32),
                                         tf.fill([batch], steps), logits_time_major=False, blank_index=0))


def plain_dataset(params, alphabet, csv: str, fixed_width: int | None):
    import numpy as np
    import tensorflow as tf

    from tf_crnn.annotations import read_csvs

    samples = read_csvs([csv], params.csv_delimiter, params.string_split_delimiter)
    samples = [s for s in samples if all(x in alphabet.lookup for x in s.symbols)]
    labels = [alphabet.encode(s.symbols) for s in samples]
    padded = np.zeros([len(labels), max(map(len, labels))], np.int32)
    for i, codes in enumerate(labels):
        padded[i, :len(codes)] = codes

    def load(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=params.input_channels, expand_animations=False)
        image = tf.image.convert_image_dtype(image, tf.float32)
        if fixed_width:
            width = fixed_width
        else:
            shape = tf.cast(tf.shape(image), tf.float32)
            width = tf.clip_by_value(tf.cast(shape[1] * params.height / shape[0], tf.int32), 8, params.max_width)
        return tf.image.resize(image, [params.height, width]) * 2.0 - 1.0, label

    ds = tf.data.Dataset.from_tensor_slices(([s.image_path for s in samples], padded)).shuffle(len(samples), seed=0)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.padded_batch(params.train_batch_size, padded_shapes=([params.height, None, params.input_channels],
                                                                 [padded.shape[1]]))
    return ds.prefetch(tf.data.AUTOTUNE), len(samples)


def train_plain(params, csv: str, fixed_width: int | None) -> tuple[float, int]:
    """Train the plain model; return the last epoch's training images/s and the weight count."""
    import keras

    from tf_crnn.alphabet import Alphabet

    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    dataset, count = plain_dataset(params, alphabet, csv, fixed_width)
    model = plain_model(params, alphabet.num_classes, fixed_width)
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate, global_clipnorm=params.gradient_clip_norm
                                                  or None), loss=ctc_loss)
    times = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(dataset, epochs=params.n_epochs, callbacks=[EpochTimer()], verbose=0)
    return count / times[-1], model.count_params()


def train_tf_crnn(params, url: str) -> float:
    """Train with the experiment ``crnn`` (observer on); return the last epoch's training images/s."""
    from tf_crnn.experiment.experiments import ex

    run = ex.run(config_updates={**params.to_dict(), "mongo_url": url, "mongo_db_name": "tf_crnn_benchmark"},
                 options={"--capture": "sys", "--loglevel": "ERROR"})
    return float(run.info["epochs"][-1]["images_per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", choices=list(SETUPS), default="word")
    parser.add_argument("--csv", help="training CSV (default: the setup's, prepared from ../shared/data)")
    parser.add_argument("--limit", type=int, help="use only the first N rows")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per training (the last one is measured)")
    parser.add_argument("--rounds", type=int, default=1, help="ABBA rounds (each: plain, tf-crnn, tf-crnn, plain)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config key of tf-crnn's training (repeatable), e.g. to measure one lever: "
                             "mixed_precision=off, cache_images=off")
    args = parser.parse_args()
    from tf_crnn.config import ConfigError, parse_assignments

    try:
        overrides = parse_assignments(args.set, "--set")
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    header(f"tf-crnn vs plain Keras model.fit: {args.setup}")
    from tf_crnn._util import free_port
    from tf_crnn.tracking.server import EmbeddedServer

    csv = limited_csv(ensure_csv(args.setup, args.csv), args.limit)
    server = EmbeddedServer(Path(tempfile.mkdtemp(prefix="tf_crnn_bench_db_")))
    url = server.start(port=free_port())  # never the user's own embedded server
    figures = {"plain": [], "tf-crnn": []}
    try:
        for mode in ["plain", "tf-crnn", "tf-crnn", "plain"] * args.rounds:
            params = setup_params(args.setup, csv, args.epochs, tempfile.mkdtemp(prefix="tf_crnn_bench_out_"),
                                  overrides if mode == "tf-crnn" else None)
            fixed = params.min_width if args.setup == "word" else None
            if mode == "plain":
                speed, weights = train_plain(params, csv, fixed)
                print(f"plain Keras model.fit: {speed:.1f} images/s ({weights / 1e6:.2f} M weights)", flush=True)
            else:
                speed = train_tf_crnn(params, url)
                print(f"tf-crnn (train.py's experiment, observer on{', ' if args.set else ''}{' '.join(args.set)}): "
                      f"{speed:.1f} images/s", flush=True)
            figures[mode].append(speed)
    finally:
        server.stop()
    plain, ours = statistics.median(figures["plain"]), statistics.median(figures["tf-crnn"])
    print(f"\n{args.setup}: plain {', '.join(f'{v:.1f}' for v in figures['plain'])} images/s (median {plain:.1f}); "
          f"tf-crnn {', '.join(f'{v:.1f}' for v in figures['tf-crnn'])} (median {ours:.1f}); "
          f"ratio tf-crnn / plain {ours / plain:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({**figures, "ratio": ours / plain}), encoding="utf-8")


if __name__ == "__main__":
    main()
