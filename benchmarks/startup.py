"""Start-up of a training on a generated set: the first run (empty check cache), a second run, and a run without
the cache, each a fresh ``train.py`` process.

    python benchmarks/startup.py --images 10000                # 10k training + 1k eval digit images
    python benchmarks/startup.py --data DIR --images 100000    # keep (and reuse) the generated set in DIR
    python benchmarks/startup.py --images 200 --repeat 1       # tiny (CI)

Each run is timed from the process start to the line ``run N: computing in ...``, which ``train.py`` prints once
the data checks (:func:`tf_crnn.data.load_split`) and the run's data record with its ``content`` fingerprint
(:func:`tf_crnn.tracking.provenance.describe_training_data`) are done and the model is built; then the process
is stopped. The runs use a fresh ``$TF_CRNN_HOME`` (so the first run finds no cache) and no MongoDB observer.
Order: first, second, without cache (``TF_CRNN_NO_CHECK_CACHE=1``), ``--repeat`` times; the first run of a
repeat starts from an empty cache again.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from _common import header, train_py, word_training_config


def generated_set(folder: Path, images: int) -> tuple[Path, Path]:
    """``folder/train/labels.csv`` (``images`` digit images) and ``folder/eval/labels.csv`` (a tenth), made once."""
    from tf_crnn.datasets.synthetic import generate_numbers

    splits = {"train": images, "eval": max(1, images // 10)}
    for split, n in splits.items():
        csv = folder / split / "labels.csv"
        if not csv.is_file() or sum(1 for _ in csv.open(encoding="utf-8")) != n:
            started = time.perf_counter()
            generate_numbers(folder / split, n, seed=0 if split == "train" else 1, progress=False)
            print(f"generated {n} {split} images in {folder / split} ({time.perf_counter() - started:.0f} s)")
    return folder / "train" / "labels.csv", folder / "eval" / "labels.csv"


def config_file(folder: Path, train_csv: Path, eval_csv: Path) -> Path:
    """A config of the default word setup on the generated set, one step (the process is stopped before it);
    ``output_model_dir`` is given per run."""
    path = folder / "startup-config.json"
    path.write_text(json.dumps(word_training_config(train_csv, eval_csv, n_epochs=1, steps_per_epoch=1)))
    return path


def time_to_ready(config: Path, home: Path, cache: bool, output: Path) -> float:
    """Seconds from starting ``train.py with CONFIG output_model_dir=OUTPUT`` to its ``computing in`` line; the
    process is then stopped (:func:`_common.train_py`)."""
    env = {} if cache else {"TF_CRNN_NO_CHECK_CACHE": "1"}
    return train_py(config, home, output, stop_when_ready=True, **env)["ready_s"]


def cache_rows(home: Path) -> str:
    """What the check cache under ``home`` holds: image facts and file digests (its tables of this layout)."""
    from tf_crnn.check_cache import RELATIVE_PATH

    file = home / RELATIVE_PATH
    if not file.is_file():
        return "no check cache"
    with contextlib.closing(sqlite3.connect(file)) as db:
        facts, digests = (db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                          for table in ("images_v1", "md5_v1"))
    return f"check cache: {facts} image facts, {digests} digests"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000, help="training images (eval: a tenth); default 10000")
    parser.add_argument("--data", type=Path, help="folder for the generated set (kept and reused); default: a temp")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of first / second / without cache (default 2)")
    args = parser.parse_args()
    header("training start-up: first run, second run (check cache), without the cache")
    folder = args.data or Path(tempfile.mkdtemp(prefix="tf_crnn_startup_"))
    folder.mkdir(parents=True, exist_ok=True)
    train_csv, eval_csv = generated_set(folder, args.images)
    megabytes = sum(f.stat().st_size for f in folder.glob("*/images/*")) / 2**20
    print(f"data: {folder}: {args.images} training + {max(1, args.images // 10)} eval images, {megabytes:.0f} MB")
    config = config_file(folder, train_csv, eval_csv)
    time.sleep(2.5)  # files modified within 2 s of their check are not remembered (check_cache.RACY_SECONDS)
    times: dict[str, list[float]] = {"first": [], "second": [], "without cache": []}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="tf_crnn_startup_home_") as home:
            for name, cache in (("first", True), ("second", True), ("without cache", False)):
                output = Path(home) / "outputs" / name.replace(" ", "_")  # a folder per run: none is "in use"
                times[name].append(time_to_ready(config, Path(home), cache, output))
                print(f"{name:14s}: {times[name][-1]:.1f} s to the first step ({cache_rows(Path(home))})")
    for name, seconds in times.items():
        print(f"{name:14s}: {', '.join(f'{s:.1f}' for s in seconds)} s; best {min(seconds):.1f} s")


if __name__ == "__main__":
    main()
