"""Training throughput with 1 worker against N workers under MultiWorkerMirroredStrategy, on this machine.

    python benchmarks/multi_worker.py                              # 1 vs 2 workers on 127.0.0.1, word setup
    python benchmarks/multi_worker.py --workers 1 2 4 --batch 64   # on a bigger machine (one worker per GPU)
    python benchmarks/multi_worker.py --steps 2 --warmup 1         # tiny (CI)

Every worker is a process of its own with the ``TF_CONFIG`` of a cluster on 127.0.0.1 (free ports),
as ``strategy=auto`` sees on several machines, and runs ``tf_crnn.trainer.Trainer``'s compiled
training step on synthetic batches of ``--batch`` images (the global batch, split over the workers:
what ``train_batch_size`` means). So the figures are those of the step alone: forward, CTC, backward,
the gradient all-reduce between workers and the optimizer update; the input pipeline is left out.
On one machine the workers share its cores (TensorFlow's default thread pools in each), so the
comparison shows the cost of the collective operations, not a speed-up; with one GPU per worker on
separate machines the same command (each machine's TF_CONFIG instead of 127.0.0.1) measures scaling.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, SETUPS, header, setup_params, steady


def worker(args) -> None:
    """One worker process: build the trainer under the cluster's strategy, time the steps, report as JSON."""
    import numpy as np
    import tensorflow as tf

    from tf_crnn.alphabet import Alphabet
    from tf_crnn.trainer import Trainer, pick_strategy

    strategy = pick_strategy("auto")  # before any TensorFlow op, as train.py: collective ops are set up first
    params = setup_params(args.setup, args.batch, output_model_dir=tempfile.mkdtemp(prefix="tf_crnn_bench_mw_"),
                          mixed_precision=args.mixed_precision,
                          cnn_features_list=[32, 64, 128, 128, 256], cnn_kernel_size=[3] * 5,
                          cnn_pool_size=[[2, 2], [2, 2], [2, 1], [1, 1], [2, 1]],
                          cnn_batch_norm=[False, True, True, True, True], rnn_units=[128, 128])
    trainer = Trainer(params, Alphabet.from_file(params.lookup_alphabet_file), strategy)
    (height, width), label_length, _ = SETUPS[args.setup]
    rng = np.random.default_rng(0)
    batch = {
        "images": rng.uniform(-1, 1, [args.batch, height, width, 1]).astype(np.float32),
        "widths": np.full([args.batch], width, np.int32),
        "labels": rng.integers(1, 11, [args.batch, label_length]).astype(np.int32),
        "label_lengths": np.full([args.batch], label_length, np.int32),
        "index": np.arange(args.batch, dtype=np.int32),
    }
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    dist = trainer.strategy.experimental_distribute_dataset(dataset.with_options(options))
    step = tf.function(trainer.distributed_train_step, input_signature=[dist.element_spec])
    batches = iter(dist)
    times = []
    for _ in range(args.warmup + args.steps):
        start = time.perf_counter()
        _, seen = step(next(batches))
        seen = int(seen)  # waits for the step
        times.append(time.perf_counter() - start)
    mean, median = steady(times, args.warmup)
    Path(args.report).write_text(json.dumps({"mean": mean, "median": median, "images_per_step": seen,
                                             "replicas": trainer.strategy.num_replicas_in_sync,
                                             "dtype_policy": trainer.dtype_policy}))


def run_cluster(count: int, args) -> dict:
    """Start ``count`` worker processes on 127.0.0.1; return worker 0's report."""
    from tf_crnn._util import free_port

    ports = [free_port() for _ in range(count)]
    reports = [Path(tempfile.mkstemp(suffix=".json")[1]) for _ in range(count)]
    procs = []
    for index in range(count):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                                    "task": {"type": "worker", "index": index}}))
        if count == 1:
            env.pop("TF_CONFIG")  # one worker: the default strategy, as strategy=auto picks
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "--as-worker", "--count", str(count), "--report", str(reports[index]),
             "--setup", args.setup, "--batch", str(args.batch), "--steps", str(args.steps),
             "--warmup", str(args.warmup), "--mixed-precision", args.mixed_precision], env=env, cwd=ROOT))
    try:
        codes = [p.wait(timeout=args.timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if any(codes):
        raise SystemExit(f"{count} worker(s): exit codes {codes}")
    return json.loads(reports[0].read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--setup", choices=list(SETUPS), default="word")
    parser.add_argument("--batch", type=int, default=64, help="global batch (split over the workers)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="rounds over --workers, alternating the order")
    parser.add_argument("--mixed-precision", default="auto")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--as-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.as_worker:
        worker(args)
        return
    header(f"1 vs N workers (MultiWorkerMirroredStrategy on 127.0.0.1), {args.setup}, global batch {args.batch}")
    print("network: experiments/iiit5k.json's CRNN (5 conv blocks, 2 x BiLSTM(128)); synthetic batches")
    figures: dict[int, list[float]] = {n: [] for n in args.workers}
    for round_ in range(args.rounds):
        for count in args.workers[::1 if round_ % 2 == 0 else -1]:
            report = run_cluster(count, args)
            speed = report["images_per_step"] / report["mean"]
            figures[count].append(speed)
            print(f"{count} worker(s), {report['replicas']} replica(s), {report['dtype_policy'] or 'float32'}: "
                  f"{speed:.1f} images/s ({report['mean']:.3f} s/step mean, {report['median']:.3f} median)", flush=True)
    base = sum(figures[args.workers[0]]) / len(figures[args.workers[0]])
    for count, speeds in figures.items():
        mean = sum(speeds) / len(speeds)
        print(f"{count} worker(s): {mean:.1f} images/s, {mean / base:.2f}x {args.workers[0]} worker(s)")


if __name__ == "__main__":
    main()
