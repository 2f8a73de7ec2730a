"""Shared by the benchmarks: the two setups, synthetic data, and the header every benchmark prints."""
from __future__ import annotations

import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars between the figures

READY = "computing in"  # printed by tf_crnn.experiment.experiments.train_with after the data checks
EPOCH = re.compile(r"^epoch (\d+)/\d+: .*?([\d.]+) training images/s")  # tf_crnn.experiment.epoch_callbacks

# name -> (input_shape [height, min_width], label length of the synthetic batches, digits per generated image)
SETUPS = {
    "word": ([32, 100], 8, (3, 10)),    # cropped words: the CRNN paper's 32 x 100
    "line": ([48, 800], 48, (25, 60)),  # text lines: 48 px high, at least 800 px wide
}


def setup_params(setup: str, batch: int, **overrides):
    """The default CRNN (Params() defaults: Shi et al.'s 7 conv blocks + 2 x 256 BiLSTM) for a setup."""
    from tf_crnn.config import Params

    shape, _, _ = SETUPS[setup]
    values = dict(input_shape=list(shape), max_width=max(2048, shape[1]), train_batch_size=batch,
                  eval_batch_size=batch, lookup_alphabet_file=str(ROOT / "data" / "alphabets" / "digits.json"))
    values.update(overrides)
    return Params(**values)


def word_training_config(train, eval_, **settings) -> dict:
    """The config of a training of the default CRNN, word setup, on generated digit strings: ``train`` and
    ``eval_`` (CSVs or compiled folders), the digits alphabet, the content fingerprint, a new run; ``settings``
    add to it or replace keys."""
    return {"csv_files_train": [str(train)], "csv_files_eval": [str(eval_)],
            "lookup_alphabet_file": str(ROOT / "data" / "alphabets" / "digits.json"), "input_shape": [32, 100],
            "data_fingerprint": "content", "restore_model": False, **settings}


def header(title: str) -> float:
    """Print what ran where; returns the 1-minute load average at the start."""
    import tensorflow as tf

    load = os.getloadavg()[0]
    busy = cpu_busy_share()
    cores = os.cpu_count()
    gpus = tf.config.list_physical_devices("GPU")
    print(f"== {title}")
    print(f"command: {shlex.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}")
    print(f"machine: {platform.processor() or platform.machine()}, {cores} CPU cores, "
          f"{len(gpus)} GPU(s){' ' + ', '.join(g.name for g in gpus) if gpus else ''}; "
          f"TensorFlow {tf.__version__}, Python {platform.python_version()}")
    if not gpus:
        # The load average trails by a minute (a benchmark just ended still shows); the busy share is now.
        shared = busy is not None and busy > 0.25
        print(f"note: CPU only; load average {load:.1f} on {cores} cores"
              + (f", {100 * busy:.0f} % of the CPU busy with other work over the last second" if busy is not None
                 else "")
              + (" -- the CPU is shared with other jobs: figures are lower bounds and noisy" if shared else ""))
    return load


def cpu_busy_share(seconds: float = 1.0) -> float | None:
    """Share of all cores busy over the next ``seconds`` (Linux ``/proc/stat``); None elsewhere."""
    def sample():
        values = [int(v) for v in open("/proc/stat").readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, total

    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def generate_digits(folder: Path, n: int, setup: str, seed: int = 0) -> Path:
    """``n`` rendered digit strings for ``setup`` (cached in ``folder``); returns the labels.csv."""
    from tf_crnn.datasets.synthetic import generate_numbers

    _, _, (lo, hi) = SETUPS[setup]
    csv = folder / "labels.csv"
    if not csv.exists() or sum(1 for _ in open(csv, encoding="utf-8")) != n:
        generate_numbers(folder, n, seed=seed, min_length=lo, max_length=hi, workers=None, progress=False)
    return csv


def steady(times: list[float], warmup: int) -> tuple[float, float]:
    """Mean and median of the step times after the first ``warmup`` (tracing, caches)."""
    kept = sorted(times[warmup:]) or sorted(times)
    return sum(kept) / len(kept), kept[len(kept) // 2]


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def train_py(config: Path, home: Path, output: Path, stop_when_ready: bool, **env: str) -> dict:
    """One ``train.py with CONFIG output_model_dir=OUTPUT`` process, ``$TF_CRNN_HOME`` = ``home``, no observer.

    Returns ``{"ready_s": seconds from the start to the line READY (data checked, fingerprint taken, model
    built), "epoch_images_per_s": training images/s of each epoch, "peak_rss_mb": the process's peak resident
    memory (ru_maxrss from os.wait4)}``. With ``stop_when_ready`` it is sent SIGTERM at READY. ``env``: more
    environment variables.

    Raises:
        RuntimeError: the process ended without READY, or failed when it was to train (its last lines say why).
    """
    command = [sys.executable, str(ROOT / "train.py"), "with", str(config), f"output_model_dir={output}"]
    environment = {**os.environ, "TF_CRNN_HOME": str(home), "TF_CRNN_NO_OBSERVER": "1", "PYTHONUNBUFFERED": "1",
                   "TF_CPP_MIN_LOG_LEVEL": "2", "TQDM_DISABLE": "1", **env}
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    ready = None
    rates: list[float] = []
    for line in process.stdout:
        seen.append(line)
        if ready is None and READY in line:
            ready = time.perf_counter() - started
            if stop_when_ready:
                process.send_signal(signal.SIGTERM)
        match = EPOCH.search(line)
        if match:
            rates.append(float(match.group(2)))
    _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage (subprocess.wait would discard it)
    process.returncode = os.waitstatus_to_exitcode(status)
    if ready is None or (not stop_when_ready and process.returncode != 0):
        raise RuntimeError(f"train.py ended with {process.returncode}:\n" + "".join(seen[-40:]))
    return {"ready_s": round(ready, 1), "epoch_images_per_s": rates, "peak_rss_mb": round(usage.ru_maxrss / 1024)}
