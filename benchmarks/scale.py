"""Training at 10 k, 100 k and 1 M images: start-up, peak memory and steady speed, from files and from shards.

    python benchmarks/scale.py --data /data/scale                                  # 10k, 100k, 1M (issue 24)
    python benchmarks/scale.py --data /tmp/scale --sizes 2000 20000 --steps 20     # small

One generated set of rendered digit strings (word setup, ``_common.generate_digits``: 32 px high, 3-10
digits) of the largest size is made once under ``--data`` (1 M images: 4.6 GB of PNG files, 6.4 GB on disk,
20 minutes on 2 cores), with 1,000 eval images; each smaller size is the first N rows of its CSV. Every
measurement is a fresh ``train.py`` process (the default CRNN, ``data_fingerprint=content``, no MongoDB
observer) with its own ``output_model_dir``:

1. **first run**: a new ``$TF_CRNN_HOME`` (empty check cache), timed from the process start to the line
   ``run N: computing in ...`` (data checked, content fingerprint taken, model built; the first training step
   follows), then stopped;
2. **second run**: the same home (the check cache of the first run), timed the same way, then trained for
   ``--epochs`` epochs of ``--steps`` steps of ``--batch`` images: steady images/s is the mean of the epochs
   after the first (whose first step traces the graph) as ``train.py`` logs them (training steps only), and
   the peak resident memory (``ru_maxrss`` of the process, from ``os.wait4``);
3. the same two runs from the set compiled with ``tf-crnn compile`` (timed; ``--shard-size``), for the
   smallest and the largest size.

Order: the sizes from small to large, then the smallest size once more (A-B-A: the machine's drift shows as a
difference between the two smallest-size figures), then the compiled sets. The files are in the operating
system's page cache when the set was just generated (the first run checks from memory, not from a cold disk).
``--data-path SIZE`` measures instead what ``train.py`` does with the data before the model (read, check,
fingerprint) in one process, with the peak RSS after each step (``$TF_CRNN_HOME``: the check cache to use).

The end prints a table and the projection to ``--project`` images (:func:`projection`); ``--json`` keeps the
figures.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, generate_digits, header, train_py, word_training_config

EVAL_IMAGES = 1_000


def sized_csv(source: Path, size: int) -> Path:
    """``source``'s folder / ``first_SIZE.csv``: the first ``size`` rows of ``source`` (same relative paths)."""
    target = source.parent / f"first_{size}.csv"
    if not target.is_file():
        with source.open(encoding="utf-8") as rows, target.open("w", encoding="utf-8") as out:
            for _, row in zip(range(size), rows):
                out.write(row)
    return target


def config_file(folder: Path, name: str, train: Path, eval_: Path, args) -> Path:
    """A config of the default word setup training on ``train`` (CSV or compiled folder)."""
    path = folder / f"config-{name}.json"
    path.write_text(json.dumps(word_training_config(
        train, eval_, n_epochs=args.epochs, steps_per_epoch=args.steps, train_batch_size=args.batch,
        eval_batch_size=64, seed=1)))
    return path


def measure(name: str, train: Path, eval_: Path, work: Path, args) -> dict:
    """First run (fresh home, stopped when ready) and second run (trained) of one training set."""
    home = work / f"home-{name}"
    config = config_file(work, name, train, eval_, args)
    first = train_py(config, home, work / "outputs" / f"{name}-first", stop_when_ready=True)
    print(f"  {name}: first run {first['ready_s']:.1f} s to the first step", flush=True)
    second = train_py(config, home, work / "outputs" / f"{name}-second", stop_when_ready=False)
    steady = second["epoch_images_per_s"][1:] or second["epoch_images_per_s"]
    figures = {"first_ready_s": first["ready_s"], "second_ready_s": second["ready_s"],
               "peak_rss_mb": second["peak_rss_mb"], "first_peak_rss_mb": first["peak_rss_mb"],
               "steady_images_per_s": round(sum(steady) / len(steady), 1),
               "epoch_images_per_s": second["epoch_images_per_s"]}
    print(f"  {name}: second run {figures['second_ready_s']:.1f} s to the first step, "
          f"{figures['steady_images_per_s']:.1f} images/s steady (epochs {second['epoch_images_per_s']}), "
          f"peak RSS {figures['peak_rss_mb']} MB", flush=True)
    return figures


def compile_set(csv: Path, out: Path, home: Path, shard_size: str) -> dict:
    """``tf-crnn compile CSV -o OUT`` as a process (its check cache in ``home``): seconds and bytes."""
    command = [sys.executable, "-m", "tf_crnn.cli", "compile", str(csv), "-o", str(out), "--shard-size", shard_size,
               "--no-progress", "--overwrite"]
    started = time.perf_counter()
    env = {**os.environ, "TF_CRNN_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"  compiled {csv.name} in {seconds:.0f} s: {size / 1e9:.2f} GB in {out}", flush=True)
    return {"compile_s": round(seconds, 1), "bytes": size}


def projection(figures: dict[str, dict], sizes: list[int], target: int) -> None:
    """Linear extrapolation to ``target`` images: start-up from the two largest sizes (a fixed part dominates the
    smallest), memory from the smallest and the largest (the decoded-image cache of ``cache_images: auto`` is on
    below its budget, so a middle size can take more than the largest)."""
    if len(sizes) < 2:
        return
    print(f"projection to {target:,} images (linear):")
    for key, unit, (a, b) in (("first_ready_s", "s", sizes[-2:]), ("second_ready_s", "s", sizes[-2:]),
                              ("peak_rss_mb", "MB", (sizes[0], sizes[-1]))):
        fa, fb = figures[f"files {a}"][key], figures[f"files {b}"][key]
        slope = (fb - fa) / (b - a)
        if slope <= 0:
            print(f"  {key}: no growth measured from {a:,} to {b:,} images ({fa:,} -> {fb:,} {unit})")
        else:
            print(f"  {key}: {fb + slope * (target - b):,.0f} {unit} ({slope * 1e6:,.1f} {unit} per million images, "
                  f"from {a:,} and {b:,})")


def table(figures: dict[str, dict]) -> None:
    print("| data | first run: s to first step | second run: s to first step | peak RSS, MB "
          "| steady images/s |")
    print("| --- | --- | --- | --- | --- |")
    for name, f in figures.items():
        print(f"| {name} | {f['first_ready_s']:.1f} | {f['second_ready_s']:.1f} | {f['peak_rss_mb']:,} "
              f"| {f['steady_images_per_s']:.1f} |")


def data_path(train_csv: Path, eval_csv: Path) -> tuple:
    """What ``train.py`` does with the data before it builds the model, in this process: read the CSVs
    (:func:`tf_crnn.data.read_split`), check them (:func:`tf_crnn.data.load_split`), take the content fingerprint
    (:func:`tf_crnn.tracking.provenance.describe_training_data`); prints the seconds and the peak RSS after each
    step and returns the entries and the data record. Run it with the ``$TF_CRNN_HOME`` of a run that saw the
    images to measure a second run's data path."""
    import resource

    from tf_crnn import check_cache, compiled, data
    from tf_crnn.alphabet import Alphabet
    from tf_crnn.config import Params
    from tf_crnn.tracking import provenance

    def peak_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def report(step: str, started: float) -> None:
        print(f"  {step}: {time.perf_counter() - started:.1f} s, peak RSS {peak_mb():,.0f} MB", flush=True)

    params = Params(**word_training_config(train_csv, eval_csv))
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    splits = {"train": params.csv_files_train, "eval": params.csv_files_eval}
    print(f"data path of {train_csv}: after the imports, peak RSS {peak_mb():,.0f} MB", flush=True)
    # Every step's result stays alive to the end, as in train.py.
    started = time.perf_counter()
    indexes = compiled.Indexes()
    rows = {split: data.read_split(csvs, params, indexes) for split, csvs in splits.items()}
    report("read", started)
    started = time.perf_counter()
    stats = check_cache.FileStats()
    entries = [data.load_split(csvs, params, alphabet, split, progress=False, samples=rows[split], stats=stats,
                               indexes=indexes)
               for split, csvs in splits.items()]
    report("check", started)
    started = time.perf_counter()
    record = provenance.describe_training_data(params, rows=rows, stats=stats)
    report("fingerprint", started)
    return entries, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder for the generated set (kept, reused)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--steps", type=int, default=100, help="training steps per epoch (default 100)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the second run; the first is not "
                                                              "counted as steady (default 3)")
    parser.add_argument("--batch", type=int, default=16, help="training batch (default 16)")
    parser.add_argument("--shard-size", default="128MB", help="tf-crnn compile --shard-size (default 128MB)")
    parser.add_argument("--no-compiled", action="store_true", help="skip the compiled sets")
    parser.add_argument("--project", type=int, default=16_000_000, help="projection target (MJSynth + "
                                                                        "SynthText: about 16 M)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--data-path", type=int, metavar="SIZE", help="instead: the data path of SIZE images "
                                                                      "alone, in this process (data_path())")
    args = parser.parse_args()
    sizes = sorted(args.sizes)
    if args.data_path:
        train_csv = generate_digits(args.data / "train", max(sizes[-1], args.data_path), "word", seed=0)
        data_path(sized_csv(train_csv, args.data_path), generate_digits(args.data / "eval", EVAL_IMAGES, "word", 1))
        return
    header(f"training at scale: {', '.join(f'{s:,}' for s in sizes)} images; {args.epochs} x {args.steps} steps "
           f"of {args.batch}")
    started = time.perf_counter()
    train_csv = generate_digits(args.data / "train", sizes[-1], "word", seed=0)
    eval_csv = generate_digits(args.data / "eval", EVAL_IMAGES, "word", seed=1)
    print(f"data: {args.data} ({time.perf_counter() - started:.0f} s incl. generation if new)", flush=True)
    time.sleep(2.5)  # files modified within 2 s of their check are not remembered (check_cache.RACY_SECONDS)
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="scale_", dir=args.data) as tmp:
        work = Path(tmp)
        for size in [*sizes, sizes[0]]:  # A-B-A: the smallest again at the end
            name = f"files {size}" if f"files {size}" not in figures else f"files {size} (again)"
            figures[name] = measure(re.sub(r"\W+", "_", name).strip("_"), sized_csv(train_csv, size), eval_csv,
                                    work, args)
        if not args.no_compiled:
            for size in (sizes[0], sizes[-1]) if len(sizes) > 1 else sizes:
                out = args.data / f"compiled_{size}"
                made = compile_set(sized_csv(train_csv, size), out, work / f"home-compile-{size}", args.shard_size)
                figures[f"shards {size}"] = {**measure(f"shards_{size}", out, eval_csv, work, args), **made}
    table(figures)
    projection(figures, sizes, args.project)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
