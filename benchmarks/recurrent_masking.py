"""Training step of the CRNN's BiLSTM stack: Keras' masked Bidirectional against tf-crnn's unmasked paths.

    python benchmarks/recurrent_masking.py                        # word and line shapes, float32 and bfloat16
    python benchmarks/recurrent_masking.py --steps 2 --rounds 1   # tiny (CI)

The recurrent part alone (the conv blocks do not depend on it): random features ``[batch, time,
features]`` right-padded to random lengths, two BiLSTM layers and the classifier, forward, a
squared loss on the valid steps, backward, no optimizer. ``masked``: ``Bidirectional(x,
mask=...)``, what tf-crnn ran before 0.5; ``unmasked``: :func:`tf_crnn.model.bidirectional`
(forward LSTM unmasked, backward LSTM on each sample's valid steps reversed in place) with Keras'
own LSTM layers, what evaluation and export run; ``hoisted``: the same in training, where each
direction runs as :func:`tf_crnn.model.hoisted_lstm` when :func:`tf_crnn.model.uses_hoisted_lstm`
says so (float32 on a CPU; otherwise it is Keras' LSTM again); ``hoisted-bf16``: the same with the
input projections in bfloat16, what the CRNN trains under ``mixed_bfloat16`` (float32 layers only).
All modes share the weights; rounds alternate A B C D D C B A; the first ``--warmup`` steps (tracing)
are left out.
"""
from __future__ import annotations

import argparse
import statistics
import time

from _common import header

#: name -> (batch, time steps, features per step, LSTM units): the experiment configs' recurrent shapes
SHAPES = {"word": (32, 25, 512, 128),   # experiments/iiit5k.json: 32 x 100 words, T = 100 / 4, 2 rows x 256
          "line": (16, 300, 512, 192)}  # experiments/fraktur.json: lines of about 1200 px, T = width / 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--policies", nargs="+", default=["float32", "mixed_bfloat16"])
    parser.add_argument("--steps", type=int, default=10, help="measured steps per mode and round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds")
    args = parser.parse_args()
    header("BiLSTM training step: masked vs unmasked vs hoisted")
    for shape in args.shapes:
        for policy in args.policies:
            bench(shape, policy, args)


def bench(shape: str, policy: str, args) -> None:
    import keras
    import tensorflow as tf

    from tf_crnn.model import bidirectional, uses_hoisted_lstm

    batch, steps, features, units = SHAPES[shape]
    rnns = [keras.layers.Bidirectional(keras.layers.LSTM(units, return_sequences=True, dtype=policy), dtype=policy)
            for _ in range(2)]
    classifier = keras.layers.Dense(100, dtype="float32")
    x = tf.random.stateless_normal([batch, steps, features], seed=[0, 1])
    lengths = tf.random.stateless_uniform([batch], seed=[2, 3], minval=steps // 2, maxval=steps + 1, dtype=tf.int32)
    mask = tf.sequence_mask(lengths, steps)
    for rnn in rnns:  # build once, through Keras' own call
        rnn(tf.zeros([1, steps, rnn.forward_layer.units * 2 if rnn is not rnns[0] else features]))
    classifier(tf.zeros([1, 2 * units]))
    variables = [v for layer in [*rnns, classifier] for v in layer.trainable_variables]

    def forward(mode: str):
        h = x
        for rnn in rnns:
            # The layers have no dropout: ``training`` only picks the path (hoisted loop or Keras' LSTM).
            projection = "bfloat16" if mode == "hoisted-bf16" else None
            h = (rnn(h, mask=mask) if mode == "masked" else
                 bidirectional(rnn, h, lengths, mode.startswith("hoisted"), projection))
        return classifier(h)

    def make_step(mode: str):
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                out = tf.cast(forward(mode), tf.float32)
                loss = tf.reduce_sum(tf.where(mask[:, :, None], out, 0.0) ** 2)
            return loss, tape.gradient(loss, variables)
        return step

    modes = ["masked", "unmasked", "hoisted"] + (["hoisted-bf16"] if policy == "float32" else [])
    step_fns = {mode: make_step(mode) for mode in modes}
    times = {mode: [] for mode in modes}
    for mode, fn in step_fns.items():
        for _ in range(args.warmup):
            fn()[0].numpy()
    for mode in (modes + modes[::-1]) * args.rounds:
        for _ in range(args.steps // 2 or 1):
            start = time.perf_counter()
            step_fns[mode]()[0].numpy()
            times[mode].append(time.perf_counter() - start)
    median = {mode: statistics.median(times[mode]) for mode in modes}
    hoisted = "hoisted loop" if uses_hoisted_lstm(rnns[0].forward_layer) else "Keras' LSTM: not hoisted here"
    print(f"{shape} (batch {batch}, {steps} steps x {features} features, 2 x BiLSTM({units})), {policy}: "
          + ", ".join(f"{mode} {1000 * median[mode]:.1f} ms/step" for mode in modes)
          + f" (medians of {len(times['masked'])}); unmasked is {median['masked'] / median['unmasked']:.2f}x, "
          f"hoisted ({hoisted}) {median['masked'] / median['hoisted']:.2f}x"
          + (f", hoisted-bf16 {median['masked'] / median['hoisted-bf16']:.2f}x" if "hoisted-bf16" in median else "")
          + " as fast as masked", flush=True)


if __name__ == "__main__":
    main()
