"""Training step of the CRNN's BiLSTM stack: Keras' masked Bidirectional against tf-crnn's unmasked path.

    python benchmarks/recurrent_masking.py                        # word and line shapes, float32 and bfloat16
    python benchmarks/recurrent_masking.py --steps 2 --rounds 1   # tiny (CI)

The recurrent part alone (the conv blocks do not depend on it): random features ``[batch, time,
features]`` right-padded to random lengths, two BiLSTM layers and the classifier, forward, a
squared loss on the valid steps, backward, no optimizer. ``masked``: ``Bidirectional(x,
mask=...)``, what tf-crnn ran before 0.5; ``unmasked``: :func:`tf_crnn.model.bidirectional`
(forward LSTM unmasked, backward LSTM on each sample's valid steps reversed in place). Both
modes share the weights; rounds alternate A B B A; the first ``--warmup`` steps (tracing) are
left out.
"""
from __future__ import annotations

import argparse
import statistics
import time

from _common import header

#: name -> (batch, time steps, features per step, LSTM units): the experiment configs' recurrent shapes
SHAPES = {"word": (32, 25, 256, 128),   # experiments/iiit5k.json: 32 x 100 words, T = 100 / 4
          "line": (16, 300, 256, 192)}  # experiments/fraktur.json: lines of about 1200 px, T = width / 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--policies", nargs="+", default=["float32", "mixed_bfloat16"])
    parser.add_argument("--steps", type=int, default=10, help="measured steps per mode and round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds")
    args = parser.parse_args()
    header("BiLSTM training step: masked vs unmasked")
    for shape in args.shapes:
        for policy in args.policies:
            bench(shape, policy, args)


def bench(shape: str, policy: str, args) -> None:
    import keras
    import tensorflow as tf

    from tf_crnn.model import bidirectional

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

    def forward(masked: bool):
        h = x
        for rnn in rnns:
            h = rnn(h, mask=mask) if masked else bidirectional(rnn, h, lengths, True)
        return classifier(h)

    def make_step(masked: bool):
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                out = tf.cast(forward(masked), tf.float32)
                loss = tf.reduce_sum(tf.where(mask[:, :, None], out, 0.0) ** 2)
            return loss, tape.gradient(loss, variables)
        return step

    step_fns = {"masked": make_step(True), "unmasked": make_step(False)}
    times = {"masked": [], "unmasked": []}
    for mode, fn in step_fns.items():
        for _ in range(args.warmup):
            fn()[0].numpy()
    for mode in ["masked", "unmasked", "unmasked", "masked"] * args.rounds:
        for _ in range(args.steps // 2 or 1):
            start = time.perf_counter()
            step_fns[mode]()[0].numpy()
            times[mode].append(time.perf_counter() - start)
    masked, unmasked = statistics.median(times["masked"]), statistics.median(times["unmasked"])
    print(f"{shape} (batch {batch}, {steps} steps x {features} features, 2 x BiLSTM({units})), {policy}: "
          f"masked {1000 * masked:.1f} ms/step, unmasked {1000 * unmasked:.1f} ms/step (medians of "
          f"{len(times['masked'])}), unmasked is {masked / unmasked:.2f}x as fast", flush=True)


if __name__ == "__main__":
    main()
