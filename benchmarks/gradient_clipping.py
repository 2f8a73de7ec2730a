"""Gradient clipping: does ``gradient_clip_norm`` change how the default job trains, and what does it cost?

    python benchmarks/gradient_clipping.py                                   # clip 5 vs none, 2 seeds, 4 epochs
    python benchmarks/gradient_clipping.py --norms 0 1 5 --learning-rates 1e-3 3e-3 --seeds 0 1 2

Each combination of ``--norms`` (``gradient_clip_norm``; 0 = no clipping), ``--learning-rates`` and
``--seeds`` trains the default job of ``config_template.json`` (rendered digit strings, compact
CRNN) for ``--epochs`` epochs from scratch through ``tf_crnn.trainer.Trainer.fit``, the loop
``train.py`` runs. Printed per run and epoch: training CTC loss, eval CER, and the global L2 norm
of the gradients before clipping (median, maximum, share of steps above the clip norm, which is
the share of steps clipping changed). Clipping follows Pascanu et al. 2013 (rescale the whole
gradient when its global norm exceeds the threshold), as ``keras`` ``global_clipnorm`` does.
Step time with and without clipping: ``benchmarks/train_throughput.py --gradient-clip-norm 0``.
Mixed precision is off here so the norms are those of the unscaled gradients.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import tempfile
from pathlib import Path

import keras
import tensorflow as tf
from _common import ROOT, Timer, header

from tf_crnn import data
from tf_crnn.alphabet import Alphabet
from tf_crnn.callbacks import Callback
from tf_crnn.config import Params
from tf_crnn.experiment.experiments import ensure_generated_data
from tf_crnn.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--norms", type=float, nargs="+", default=[0.0, 5.0], help="gradient_clip_norm values")
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[1e-3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--config", type=Path, default=ROOT / "config_template.json")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "tf_crnn_bench_clip_data")
    args = parser.parse_args()

    header(f"gradient clipping: {args.config.name}, {args.epochs} epochs per run")
    config = json.loads(args.config.read_text(encoding="utf-8"))
    values = {k: v for k, v in config.items() if k != "generate_data"}
    values.update(csv_files_train=[str(args.data / "train" / "labels.csv")],
                  csv_files_eval=[str(args.data / "eval" / "labels.csv")],
                  lookup_alphabet_file=str(ROOT / values["lookup_alphabet_file"]),
                  n_epochs=args.epochs, mixed_precision="off")
    base = Params.from_dict(values)
    # The same images for every run, generated and checked once.
    ensure_generated_data(base, config["generate_data"], seed=0)
    alphabet = Alphabet.from_file(base.lookup_alphabet_file)
    train = data.load_split(base.csv_files_train, base, alphabet, "train", progress=False)
    evaluation = data.load_split(base.csv_files_eval, base, alphabet, "eval", progress=False)
    rows = []
    for norm, rate, seed in itertools.product(args.norms, args.learning_rates, args.seeds):
        params = dataclasses.replace(base, gradient_clip_norm=norm, learning_rate=rate,
                                     output_model_dir=tempfile.mkdtemp(prefix="tf_crnn_bench_clip_"))
        rows.append(train_once(params, alphabet, train, evaluation, seed))
    print("\nsummary (eval CER and train loss of the last epoch, training images/s after the first epoch, "
          "share of steps clipped over all epochs; means over seeds):")
    print(f"{'clip norm':>9} {'learning rate':>13} {'eval CER':>9} {'train loss':>10} {'images/s':>8} "
          f"{'steps clipped':>13} {'max grad norm':>13}")
    for (norm, rate), group in itertools.groupby(rows, key=lambda r: (r["norm"], r["rate"])):
        group = list(group)
        mean = lambda key: statistics.fmean(r[key] for r in group)  # noqa: E731
        print(f"{norm or 'none':>9} {rate:>13g} {mean('cer'):>9.4f} {mean('loss'):>10.3f} {mean('speed'):>8.1f} "
              f"{mean('clipped'):>12.0%} {max(r['max_norm'] for r in group):>13.1f}"
              f"   (CER per seed: {', '.join(format(r['cer'], '.4f') for r in group)})")


class NormLog(Callback):
    """Per epoch: eval CER, train loss, speed and the gradient norms of its steps (``trainer.take_norms()``)."""

    name = "norm_log"

    def __init__(self, norm: float):
        self.norm, self.epochs = norm, []

    def on_epoch_end(self, trainer, result):
        norms = trainer.take_norms()
        clipped = sum(n > self.norm for n in norms) / len(norms) if self.norm > 0 else 0.0
        self.epochs.append({"cer": result.metrics["eval.cer"], "loss": result.metrics["train.loss"],
                            "speed": result.images_per_second, "clipped": clipped, "max_norm": max(norms)})
        print(f"epoch {result.epoch}: train loss {result.metrics['train.loss']:8.3f}, eval CER "
              f"{result.metrics['eval.cer']:.4f}; gradient norm median {statistics.median(norms):7.2f}, "
              f"max {max(norms):8.2f}" + (f", {clipped:.0%} of {len(norms)} steps clipped" if self.norm > 0 else "")
              + f"; {result.images_per_second:.1f} images/s")


def train_once(params: Params, alphabet: Alphabet, train: list, evaluation: list, seed: int) -> dict:
    """One training from scratch; prints its epochs and returns its final figures."""
    norm, rate = params.gradient_clip_norm, params.learning_rate
    keras.utils.set_random_seed(seed)
    trainer = NormRecordingTrainer(params, alphabet)
    print(f"\n-- gradient_clip_norm {norm or 'none'}, learning rate {rate:g}, seed {seed}: "
          f"{len(train)} training / {len(evaluation)} eval images")
    log = NormLog(norm)
    with Timer() as t:
        trainer.fit(train, evaluation, seed=seed, callbacks=[log])
    print(f"{t.seconds:.0f} s")
    epochs = log.epochs
    last = epochs[-1]
    return {"norm": norm, "rate": rate, "seed": seed, "cer": last["cer"], "loss": last["loss"],
            # Training images/s after the first epoch (which includes tracing).
            "speed": statistics.fmean(e["speed"] for e in epochs[1:] or epochs),
            "clipped": statistics.fmean(e["clipped"] for e in epochs), "max_norm": max(e["max_norm"] for e in epochs)}


class NormRecordingTrainer(Trainer):
    """A Trainer that keeps the global gradient norm of every step (before the optimizer clips it)."""

    CAPACITY = 100_000

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # One replica (the benchmark runs on one device): a plain buffer and cursor are enough.
        self.norms = tf.Variable(tf.zeros([self.CAPACITY]), trainable=False)
        self.cursor = tf.Variable(0, trainable=False)

    def _loss_and_gradients(self, batch, global_count):
        loss_sum, grads = super()._loss_and_gradients(batch, global_count)
        self.norms[self.cursor % self.CAPACITY].assign(tf.linalg.global_norm(grads))
        self.cursor.assign_add(1)
        return loss_sum, grads

    def take_norms(self) -> list[float]:
        """The norms recorded since the last call."""
        n = int(self.cursor.numpy())
        self.cursor.assign(0)
        return self.norms.numpy()[:min(n, self.CAPACITY)].tolist()


if __name__ == "__main__":
    main()
