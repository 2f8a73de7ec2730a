"""What a run's data fingerprint costs: ``content`` (MD5 of every image) against ``stat`` (path, size, mtime).

    python benchmarks/data_fingerprint.py --csv data/prepared/fraktur.train.csv   # images of a CSV
    python benchmarks/data_fingerprint.py --generate 100000                       # generated digit images

Prints seconds, images/s and MB/s per mode, each timed ``--rounds`` times in
ABBA order (``content`` first reads the files cold from disk only in the first
round; the page cache serves the later ones, as it does for a training that
just checked the same images).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import header

from tf_crnn.annotations import read_csvs
from tf_crnn.tracking.provenance import data_fingerprint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", action="append", help="annotation CSV whose images to fingerprint (repeatable)")
    parser.add_argument("--generate", type=int, help="fingerprint this many generated digit images instead")
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds (default 2: content, stat, stat, content)")
    args = parser.parse_args()
    header("data fingerprint: content vs stat")
    if args.csv:
        paths = [s.image_path for s in read_csvs(args.csv)]
        where = ", ".join(args.csv)
    else:
        from tf_crnn.datasets.synthetic import generate_numbers

        folder = Path(tempfile.mkdtemp(prefix="tf_crnn_fingerprint_"))
        started = time.perf_counter()
        generate_numbers(folder, args.generate or 1000, seed=0, progress=False)
        paths = [str(p) for p in (folder / "images").glob("*.png")]
        where = f"{len(paths)} generated images in {folder} (made in {time.perf_counter() - started:.0f} s)"
    megabytes = sum(os.path.getsize(p) for p in paths) / 2**20
    print(f"data: {where}: {len(paths)} images, {megabytes:.1f} MB")
    order = ["content", "stat", "stat", "content"] * max(1, args.rounds // 2)
    times: dict[str, list[float]] = {"content": [], "stat": []}
    for mode in order:
        started = time.perf_counter()
        data_fingerprint(paths, mode)
        times[mode].append(time.perf_counter() - started)
    for mode, seconds in times.items():
        best = min(seconds)
        print(f"{mode:8s}: {', '.join(f'{s:.2f}' for s in seconds)} s; best {best:.2f} s = "
              f"{len(paths) / best:,.0f} images/s" + (f", {megabytes / best:.0f} MB/s" if mode == "content" else ""))


if __name__ == "__main__":
    main()
