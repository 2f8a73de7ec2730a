"""Steady-state training throughput of the default CRNN, with and without the MongoDB observer.

    python benchmarks/train_throughput.py                                   # batch 64, word and line setups
    python benchmarks/train_throughput.py --setups word --batch 16 --steps 6  # a small CPU run

Setups: ``word`` (32 x 100, the CRNN paper's input) and ``line`` (48 x 800). The model is
``Params()``'s default CRNN (Shi et al.: 7 conv blocks, 2 x 256 BiLSTM). Batches are synthetic
(random pixels and labels, built once) so only the training step is measured: forward, CTC
loss, backward and the Adam update, through ``tf_crnn.trainer.Trainer``'s compiled step.
The first ``--warmup`` steps (tracing, memory allocation) are left out of every figure.

Observer overhead: the same steps run inside Sacred runs, alternately unobserved and observed
by tf-crnn's MongoDB observer (``tf_crnn.tracking.observer.mongo_observer``) writing to a SecantusDB server in its
own process (or ``--mongo-url``), with ``train.loss`` logged at every step and a heartbeat every
``--beat-interval`` seconds (Sacred's default is 10 s; the default here, 1 s, is a stress test).
Two figures: the change of the step time (noisy on a shared machine), and the direct cost, the
CPU time spent in the observer's event handlers plus the CPU time of the database server
(``/proc``, Linux, when the benchmark started the server), against the observed runs' wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from _common import SETUPS, header, setup_params, steady

from tf_crnn.config import MIXED_PRECISION_NAMES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="measured steps per mode and round")
    parser.add_argument("--warmup", type=int, default=3, help="steps left out (tracing)")
    parser.add_argument("--rounds", type=int, default=2, help="alternations unobserved / observed")
    parser.add_argument("--beat-interval", type=float, default=1.0)
    parser.add_argument("--mongo-url", help="default: a SecantusDB server started for the benchmark")
    parser.add_argument("--no-observer", action="store_true", help="skip the observer comparison")
    parser.add_argument("--jit-compile", action="store_true", help="XLA-compile the loss and gradients")
    parser.add_argument("--mixed-precision", choices=MIXED_PRECISION_NAMES, default="auto")
    parser.add_argument("--gradient-clip-norm", type=float, default=5.0, help="global-norm clipping (0: none)")
    parser.add_argument("--deterministic", action="store_true",
                        help="seed and turn on TensorFlow's op determinism (process-wide: compare separate runs)")
    args = parser.parse_args()

    header(f"training throughput: default CRNN, batch {args.batch}")
    server = server_pid = None
    url = args.mongo_url
    if not args.no_observer and not url:
        from tf_crnn._util import free_port
        from tf_crnn.tracking.server import EmbeddedServer

        server = EmbeddedServer(Path(tempfile.mkdtemp(prefix="tf_crnn_bench_db_")))
        url = server.start(port=free_port())
        server_pid = json.loads(server.state_file.read_text())["pid"]
        print(f"observer database: SecantusDB in its own process at {url}")
    try:
        for setup in args.setups:
            bench_setup(setup, args, url, server_pid)
    finally:
        if server is not None:
            server.stop()


def bench_setup(setup: str, args, url: str | None, server_pid: int | None = None) -> None:
    import numpy as np
    import tensorflow as tf
    from sacred import Experiment

    from tf_crnn.alphabet import Alphabet
    from tf_crnn.tracking import observer as observers
    from tf_crnn.trainer import Trainer, deterministic

    params = setup_params(setup, args.batch, jit_compile=args.jit_compile, mixed_precision=args.mixed_precision,
                          gradient_clip_norm=args.gradient_clip_norm)
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    if args.deterministic:
        deterministic(0).__enter__()  # on for the rest of this process: the benchmark measures nothing else
    trainer = Trainer(params, alphabet)
    (height, width), label_length, _ = SETUPS[setup]
    rng = np.random.default_rng(0)
    batch = {
        "images": rng.uniform(-1, 1, [args.batch, height, width, 1]).astype(np.float32),
        "widths": np.full([args.batch], width, np.int32),
        "labels": rng.integers(1, alphabet.num_classes, [args.batch, label_length]).astype(np.int32),
        "label_lengths": np.full([args.batch], label_length, np.int32),
        "index": np.arange(args.batch, dtype=np.int32),
    }
    dist = trainer.strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch).repeat())
    step = tf.function(trainer.distributed_train_step, input_signature=[dist.element_spec])
    batches = iter(dist)
    weights = trainer.model.count_params()
    print(f"\n-- {setup}: {height} x {width}, labels of {label_length} symbols, batch {args.batch}, "
          f"{weights / 1e6:.1f} M weights, {trainer.strategy.num_replicas_in_sync} replica(s); "
          f"jit_compile {params.jit_compile}, dtype policy {trainer.dtype_policy or 'float32'}, "
          f"gradient_clip_norm {params.gradient_clip_norm or 'none'}, deterministic {args.deterministic}")

    counter = {"step": 0}

    def run_steps(n: int, run=None) -> list[float]:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            loss, _ = step(next(batches))
            loss = float(loss)  # waits for the step
            times.append(time.perf_counter() - start)
            counter["step"] += 1
            if run is not None:
                run.log_scalar("train.loss", loss / args.batch, counter["step"])
        return times

    warm = run_steps(args.warmup)
    print(f"warm-up: {len(warm)} steps, first {warm[0]:.2f} s (tracing), left out")
    if args.no_observer or not url:
        times = run_steps(args.steps * args.rounds)
        mean, median = steady(times, 0)
        print(f"steady state: {args.batch / mean:.1f} images/s ({mean:.3f} s/step mean, {median:.3f} median, "
              f"{len(times)} steps)")
        return

    bench = Experiment(f"crnn-benchmark-{setup}", save_git_info=False)

    @bench.main
    def steps_in_a_run(_run):
        return run_steps(args.steps, _run)

    timings = {"unobserved": [], "observed": []}
    handler_cpu, observed_wall = [0.0], 0.0
    server_cpu_start = process_cpu_seconds(server_pid)
    for round_ in range(args.rounds):
        # ABBA order: a drift of the machine's speed over the benchmark does not favour either mode.
        for mode in ("unobserved", "observed")[::1 if round_ % 2 == 0 else -1]:
            bench.observers[:] = ([timed(observers.mongo_observer(url, "tf_crnn_benchmark"), handler_cpu)]
                                  if mode == "observed" else [])
            start = time.perf_counter()
            run = bench.run(options={"--beat-interval": args.beat_interval, "--capture": "sys",
                                     "--loglevel": "ERROR"})
            if mode == "observed":
                observed_wall += time.perf_counter() - start
            timings[mode] += run.result
    server_cpu = process_cpu_seconds(server_pid)
    plain, plain_median = steady(timings["unobserved"], 0)
    observed, observed_median = steady(timings["observed"], 0)
    print(f"steady state: {args.batch / plain:.1f} training images/s ({plain:.3f} s/step mean, "
          f"{plain_median:.3f} median over {len(timings['unobserved'])} steps)")
    print(f"with the MongoDB observer: {args.batch / observed:.1f} images/s ({observed:.3f} s/step mean, "
          f"{observed_median:.3f} median over {len(timings['observed'])} steps; heartbeat every "
          f"{args.beat_interval:g} s, a metric logged every step)")
    print(f"observer overhead: {100 * (observed_median - plain_median) / plain_median:+.1f} % of the median step "
          f"time, {100 * (observed - plain) / plain:+.1f} % of the mean (runs alternating {args.rounds} x "
          f"{args.steps} steps each)")
    # The direct cost, free of the step-time noise: CPU time the observer's event handlers used
    # (in the training process) and the database server used (a process of its own, same cores).
    cpu = handler_cpu[0]
    direct = f"observer event handlers: {handler_cpu[0]:.3f} s CPU"
    if server_cpu is not None and server_cpu_start is not None:
        cpu += server_cpu - server_cpu_start
        direct += f" + database server: {server_cpu - server_cpu_start:.3f} s CPU (all rounds)"
    print(f"{direct} over {observed_wall:.1f} s of observed runs: {100 * cpu / observed_wall:.2f} % of their wall "
          f"time (the training used {os.cpu_count()} cores)")


def timed(observer, total: list[float]):
    """Wrap ``observer``'s event handlers so the CPU time of each call is added to ``total[0]``."""
    for name in ("started_event", "heartbeat_event", "log_metrics", "completed_event", "artifact_event"):
        handler = getattr(observer, name)

        def wrapper(*args, _handler=handler, **kwargs):
            start = time.thread_time()
            try:
                return _handler(*args, **kwargs)
            finally:
                total[0] += time.thread_time() - start

        setattr(observer, name, wrapper)
    return observer


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` (Linux ``/proc``); None when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
