"""Fine-tuning on a few lines of a new book: CER on the book's other lines against N (Reul et al. 2018's protocol).

Reul, Springmann, Wick & Puppe, "Improving OCR Accuracy on Early Printed Books by combining Pretraining, Voting,
and Active Learning" (JLCL 33(1), 2018) measure how the CER on a book falls with the number N of its lines a
model is trained on, starting from a pretrained model and from random weights. This benchmark does the same with
tf-crnn's own training and evaluation:

- A book is a set of line images: the rows of one CSV (``--book-per-csv``), or the rows of CSVs grouped by a
  regular expression on the image path (``--book-pattern``; its groups joined by ``/`` name the book; the default
  matches archiscribe's ``YEAR/ID_HASH.png`` and names ``YEAR/ID``). PAGE or ALTO pages go through
  ``tf-crnn prepare page|alto`` first (one CSV per book).
- Only books with at least ``max(N) + --min-heldout`` lines take part, for every N. Each book's lines are
  shuffled once (``--seed``); the first ``max(N)`` form the pool the N training lines are drawn from, the rest
  are the held-out lines: the same held-out lines for every N and every draw, never trained on, never used to
  choose anything.
- For N > 0 and each of ``--draws`` draws, N lines are drawn from the pool (draw d: seed d) and a training of
  fixed length (``--steps`` steps of ``--batch`` lines, chosen in advance: nothing is selected on the held-out
  lines; its eval split is its own N training lines) starts once from ``--model`` (``init_from``) and once from
  random weights; its last export (not ``export_best``) is scored on the held-out lines with ``tf-crnn
  evaluate``. N = 0 scores ``--model`` as it is.
- A book's CER is the CER over its held-out lines (edits / reference symbols); the table gives the mean over
  books of the mean over draws, and per book.

Every cell is a line of ``WORK/results.jsonl``; a run that is stopped (Ctrl-C, a scheduler's time limit) is
continued by the same command, which skips the cells already there. The trainings run unobserved (``train.py
-u``): they are scratch runs of a benchmark, not experiments to keep.

    python benchmarks/few_lines.py --model /path/to/fraktur/export --csv data/prepared/fraktur.eval.csv \\
        --config experiments/fraktur.json --work output/few_lines_fraktur -n 0 10 25 --draws 2
"""
from __future__ import annotations

import argparse
import json
import math
import random
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from _common import ROOT, header

ARCHISCRIBE_BOOK = r"(\d{4})/(.+)_[0-9a-f]+\.[a-z]+$"


def read_rows(csv: Path, delimiter: str) -> list[tuple[str, str]]:
    """(absolute image path, label field as written) of each row; relative paths are taken from the CSV's folder."""
    rows = []
    for number, line in enumerate(csv.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        path, sep, label = line.partition(delimiter)
        if not sep:
            sys.exit(f"error: {csv}:{number}: no '{delimiter}' between image path and label")
        image = Path(path) if Path(path).is_absolute() else (csv.parent / path)
        rows.append((str(image.resolve()), label))
    return rows


def books_of(csvs: list[Path], pattern: str | None, delimiter: str) -> dict[str, list[tuple[str, str]]]:
    """Book name -> its rows, in CSV order."""
    books: dict[str, list] = defaultdict(list)
    for csv in csvs:
        for image, label in read_rows(csv, delimiter):
            if pattern is None:
                books[csv.stem].append((image, label))
                continue
            found = re.search(pattern, image)
            if not found:
                sys.exit(f"error: {image} (in {csv}) does not match --book-pattern {pattern!r}")
            books["/".join(found.groups())].append((image, label))
    return dict(books)


def split_book(rows: list, pool_size: int, seed: int) -> tuple[list, list]:
    """(pool, held-out): the book's rows shuffled once; the first ``pool_size`` are the pool."""
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    return shuffled[:pool_size], shuffled[pool_size:]


def write_csv(path: Path, rows: list, delimiter: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{image}{delimiter}{label}\n" for image, label in rows), encoding="utf-8")
    return path


def evaluate(model: str, csv: Path, out: Path) -> dict:
    """``tf-crnn evaluate`` of ``model`` on ``csv``: the exact metrics and the summary's counts."""
    command = [sys.executable, "-m", "tf_crnn.cli", "evaluate", "--model", model, "--csv", str(csv),
               "--out", str(out), "--quiet"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"evaluate failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    summary = json.loads((out / f"{csv.stem}.greedy.summary.json").read_text(encoding="utf-8"))
    return {"cer": summary["metrics"]["exact"]["cer"], "wer": summary["metrics"]["exact"]["wer"],
            "lines": summary["num_samples"], "outside_alphabet": summary["outside_alphabet"]["occurrences"]}


def train(args, train_csv: Path, out: Path, init_from: str | None, seed: int) -> float:
    """One fixed-length training on ``train_csv``; returns its wall time in seconds."""
    epochs = max(1, math.ceil(args.steps / args.steps_per_epoch))
    updates = [f"csv_files_train=['{train_csv}']", f"csv_files_eval=['{train_csv}']", f"output_model_dir={out}",
               f"n_epochs={epochs}", f"steps_per_epoch={args.steps_per_epoch}", f"train_batch_size={args.batch}",
               f"learning_rate={args.learning_rate}", "learning_rate_schedule=cosine", "warmup_steps=10",
               f"seed={seed}", "restore_model=False", *args.update]
    if init_from:
        updates.append(f"init_from={init_from}")
    command = [sys.executable, str(ROOT / "train.py"), "-u", "with", str(args.config), *updates]
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(out / "train.log", "w", encoding="utf-8") as log:
        done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"training failed ({done.returncode}), see {out / 'train.log'}")
    return time.perf_counter() - start


def cells(args, books: dict) -> list[dict]:
    """Every (book, N, draw, start) to measure, in the order they run.

    N = 0 first; then draw by draw, the trainings from ``--model`` before those from random weights, so that a
    run stopped early has whole rows of the table (every book) rather than every cell of a few books.
    """
    todo = [{"book": book, "n": 0, "draw": 0, "start": "model"} for book in sorted(books) if 0 in args.n]
    starts = ["model", *(["random"] if not args.no_random else [])]
    for draw in range(args.draws):
        for start in starts:
            for n in sorted(n for n in args.n if n > 0):
                todo += [{"book": book, "n": n, "draw": draw, "start": start} for book in sorted(books)]
    return todo


def measure(args, cell: dict, pool: list, heldout_csv: Path) -> dict:
    key = f"{cell['book'].replace('/', '_')}/n{cell['n']}_d{cell['draw']}_{cell['start']}"
    folder = args.work / "cells" / key
    seconds = 0.0
    model = args.model
    if cell["n"] > 0:
        chosen = random.Random(cell["draw"]).sample(pool, cell["n"])
        train_csv = write_csv(folder / "train.csv", chosen, args.delimiter)
        seconds = train(args, train_csv, folder / "output", args.model if cell["start"] == "model" else None,
                        seed=cell["draw"])
        model = str(folder / "output" / "export")
    scores = evaluate(model, heldout_csv, folder / "evaluation")
    return {**cell, **scores, "train_seconds": round(seconds, 1)}


def done_cells(results: Path) -> set[tuple]:
    if not results.exists():
        return set()
    seen = set()
    for line in results.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        seen.add((row["book"], row["n"], row["draw"], row["start"]))
    return seen


def table(results: Path) -> str:
    """Mean CER over books (each book: mean over draws) per N and start, then per book."""
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    per_book: dict[tuple, list] = defaultdict(list)
    seconds: dict[tuple, list] = defaultdict(list)
    for row in rows:
        per_book[(row["n"], row["start"], row["book"])].append(row["cer"])
        seconds[(row["n"], row["start"])].append(row["train_seconds"])
    means: dict[tuple, list] = defaultdict(list)
    for (n, start, _), cers in per_book.items():
        means[(n, start)].append(sum(cers) / len(cers))
    lines = ["| N lines | start | books | mean CER | min–max over books | training s (mean) |",
             "|---|---|---|---|---|---|"]
    for (n, start), cers in sorted(means.items()):
        spent = seconds[(n, start)]
        lines.append(f"| {n} | {start} | {len(cers)} | {100 * sum(cers) / len(cers):.2f} % | "
                     f"{100 * min(cers):.2f}–{100 * max(cers):.2f} % | {sum(spent) / len(spent):.0f} |")
    lines += ["", "| book | " + " | ".join(f"N={n} {s}" for n, s in sorted(means)) + " |",
              "|---|" + "---|" * len(means)]
    for book in sorted({key[2] for key in per_book}):
        values = []
        for n, start in sorted(means):
            cers = per_book.get((n, start, book))
            values.append(f"{100 * sum(cers) / len(cers):.2f} %" if cers else "–")
        lines.append(f"| {book} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the pretrained model: an export folder or pretrained:NAME")
    parser.add_argument("--csv", type=Path, nargs="+", required=True, help="CSVs of the books' lines")
    parser.add_argument("--config", type=Path, required=True,
                        help="training config of the network (the model's own recipe)")
    parser.add_argument("--work", type=Path, required=True, help="folder for the cells and results.jsonl")
    parser.add_argument("-n", type=int, nargs="+", default=[0, 10, 25], help="lines of the book to train on")
    parser.add_argument("--draws", type=int, default=2, help="random draws of the N lines (default 2)")
    parser.add_argument("--min-heldout", type=int, default=20, help="held-out lines a book needs at least")
    parser.add_argument("--book-pattern", default=ARCHISCRIBE_BOOK,
                        help="regular expression on the image path whose groups name the book")
    parser.add_argument("--book-per-csv", action="store_true", help="each CSV is one book")
    parser.add_argument("--only", nargs="+", help="measure only these books (names as the table prints them)")
    parser.add_argument("--steps", type=int, default=120, help="training steps of every fine-tuning (default 120)")
    parser.add_argument("--steps-per-epoch", type=int, default=60)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=0.0005)
    parser.add_argument("--seed", type=int, default=0, help="seed of each book's shuffle")
    parser.add_argument("--no-random", action="store_true", help="skip the trainings from random weights")
    parser.add_argument("--delimiter", default=";")
    parser.add_argument("--update", nargs="*", default=[], help="more train.py config updates, key=value")
    parser.add_argument("--table", action="store_true", help="only print the table of WORK/results.jsonl")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    results = args.work / "results.jsonl"
    if args.table:
        print(table(results))
        return
    header("few lines of a new book: CER on its other lines against N")
    pool_size = max(args.n)
    all_books = books_of(args.csv, None if args.book_per_csv else args.book_pattern, args.delimiter)
    unknown = sorted(set(args.only or []) - set(all_books))
    if unknown:
        sys.exit(f"error: --only names no book of the CSVs: {', '.join(unknown)}")
    books = {name: rows for name, rows in all_books.items() if len(rows) >= pool_size + args.min_heldout
             and (not args.only or name in args.only)}
    print(f"{len(books)} of {len(all_books)} books have at least {pool_size} + {args.min_heldout} lines")
    if not books:
        sys.exit("error: no book has enough lines; lower -n or --min-heldout")
    split = {name: split_book(rows, pool_size, args.seed) for name, rows in books.items()}
    seen = done_cells(results)
    todo = [c for c in cells(args, books) if (c["book"], c["n"], c["draw"], c["start"]) not in seen]
    print(f"{len(todo)} cell(s) to measure, {len(seen)} already in {results}")
    args.work.mkdir(parents=True, exist_ok=True)
    for index, cell in enumerate(todo, 1):
        pool, heldout = split[cell["book"]]
        heldout_csv = write_csv(args.work / "heldout" / f"{cell['book'].replace('/', '_')}.csv", heldout,
                                args.delimiter)
        row = measure(args, cell, pool, heldout_csv)
        with open(results, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"[{index}/{len(todo)}] {cell['book']} N={cell['n']} draw {cell['draw']} {cell['start']}: "
              f"CER {100 * row['cer']:.2f} % on {row['lines']} held-out lines, trained {row['train_seconds']:.0f} s",
              flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
