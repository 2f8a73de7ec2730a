"""Model size and input height against eval CER at a fixed wall-clock budget (issue 14, point 6).

    python benchmarks/recipe_budget.py --budget-minutes 22 \\
        --variant recipe= --variant h48=input_shape=[48,64] --variant rnn256=rnn_units=[256,256]
    python benchmarks/recipe_budget.py --budget-minutes 3 --variant recipe= --set max_width=400   # a smoke run

Each ``--variant NAME=KEY=VALUE[,KEY=VALUE...]`` is ``--config`` (default ``experiments/fraktur.json``)
with those Sacred updates. The cosine schedule needs its length up front, so a variant's number of
epochs is chosen before it trains:

1. calibration: ``train.py with CONFIG UPDATES n_epochs=2`` (a real run on the real data): its process
   wall time W and its second epoch's time E (training and evaluation; the first epoch also traces the
   compiled step, which a full run pays once as well);
2. training: ``n_epochs = 2 + floor((budget - W) / E)``, then the full run (W already holds the start-up,
   the data checks, the tracing, two epochs and the export).

Every figure is that run's own: its last epoch's eval CER / WER / line accuracy (tf_crnn.metrics, exact
normalization), its best epoch, its weight count and its process wall time. Variants run one after the
other (a training takes both cores); the machine should be otherwise idle, which the header reports.
Every run is a Sacred run in the configured database (``-m`` / ``mongo_url`` as for ``train.py``).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, header


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``NAME=K=V,K2=V2`` -> (NAME, ["K=V", "K2=V2"]); a comma inside brackets belongs to the value."""
    name, _, rest = text.partition("=")
    if not name:
        raise SystemExit(f"--variant {text!r}: write NAME=KEY=VALUE[,KEY=VALUE...] (NAME= for the config as it is)")
    updates, depth, current = [], 0, ""
    for char in rest:
        depth += (char in "[{(") - (char in "]})")
        if char == "," and depth == 0:
            updates.append(current)
            current = ""
        else:
            current += char
    if current:
        updates.append(current)
    return name, updates


def epoch_lines(log: Path) -> list[dict]:
    """The training's ``epoch K/N: name value, ..., X training images/s, S s`` lines as dicts (``seconds`` = S)."""
    rows = []
    for line in log.read_text(errors="replace").replace("\r", "\n").splitlines():
        if not (line.startswith("epoch ") and line.rstrip().endswith(" s")):
            continue
        parts = [part.strip() for part in line.split(":", 1)[1].split(",")]
        row = {name: float(value) for name, value in (part.rsplit(" ", 1) for part in parts[:-2])}
        row["seconds"] = float(parts[-1].split()[0])
        rows.append(row)
    return rows


def train(config: Path, updates: list[str], out: Path, log: Path) -> dict:
    """One ``train.py`` process; returns its wall time, its epoch lines and its run id."""
    command = [sys.executable, str(ROOT / "train.py"), "with", str(config), *updates,
               f"output_model_dir={out}", "overwrite_output=True"]
    start = time.monotonic()
    with log.open("w") as handle:
        handle.write(" ".join(command) + "\n")
        handle.flush()
        done = subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, check=False)
    wall = time.monotonic() - start
    epochs = epoch_lines(log)
    if done.returncode != 0 or not epochs:
        raise SystemExit(f"training failed (exit {done.returncode}, {len(epochs)} epochs); see {log}")
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    return {"wall_s": wall, "epochs": epochs, "run_id": run.get("run_id")}


def weight_count(export: Path) -> int:
    """The exported model's weights (tf_crnn.model.parameter_count of its params and alphabet)."""
    from tf_crnn.alphabet import Alphabet
    from tf_crnn.config import Params
    from tf_crnn.model import parameter_count

    return parameter_count(Params.from_file(export / "params.json"),
                           Alphabet.from_file(export / "alphabet.json").num_classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-minutes", type=float, required=True, help="wall time of each full run")
    parser.add_argument("--config", type=Path, default=ROOT / "experiments" / "fraktur.json")
    parser.add_argument("--variant", action="append", required=True, metavar="NAME=KEY=VALUE[,...]")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an update for every variant (e.g. seed=749482056)")
    parser.add_argument("--work", type=Path, default=ROOT / "output" / "recipe_budget")
    parser.add_argument("--epochs", action="append", default=[], metavar="NAME=N",
                        help="skip NAME's calibration and train N epochs")
    parser.add_argument("--calibrate-only", action="store_true",
                        help="print each variant's number of epochs for the budget and stop")
    args = parser.parse_args()
    variants = [parse_variant(text) for text in args.variant]
    fixed_epochs = dict(item.split("=", 1) for item in args.epochs)
    header(f"recipe at a fixed budget: {args.budget_minutes:g} min per run, {args.config.name}")
    args.work.mkdir(parents=True, exist_ok=True)
    budget_s = args.budget_minutes * 60
    rows = []
    for name, updates in variants:
        updates = [*args.set, *updates]
        if name in fixed_epochs:
            n_epochs, calibration = int(fixed_epochs[name]), None
        else:
            calibration = train(args.config, [*updates, "n_epochs=2"], args.work / f"{name}_calibration",
                                args.work / f"{name}_calibration.log")
            epoch_s = max(1.0, calibration["epochs"][1]["seconds"])  # the log's whole seconds (tiny runs: 0)
            n_epochs = max(1, 2 + math.floor((budget_s - calibration["wall_s"]) / epoch_s))
            print(f"{name}: calibration run {calibration['run_id']}: {calibration['wall_s']:.0f} s wall, "
                  f"second epoch {epoch_s:.0f} s -> {n_epochs} epochs", flush=True)
        if args.calibrate_only:
            continue
        result = train(args.config, [*updates, f"n_epochs={n_epochs}"], args.work / name, args.work / f"{name}.log")
        epochs = result["epochs"]
        best = min(epochs, key=lambda epoch: epoch["eval.cer"])
        row = {"variant": name, "updates": updates, "n_epochs": n_epochs, "run_id": result["run_id"],
               "weights": weight_count(args.work / name / "export"), "wall_min": result["wall_s"] / 60,
               "epoch_s_median": statistics.median_high(epoch["seconds"] for epoch in epochs),
               "cer": epochs[-1]["eval.cer"], "wer": epochs[-1]["eval.wer"],
               "line_accuracy": epochs[-1]["eval.sequence_accuracy"],
               "best_cer": best["eval.cer"], "best_epoch": epochs.index(best) + 1,
               "cer_per_epoch": [epoch["eval.cer"] for epoch in epochs],
               "calibration": calibration and {"run_id": calibration["run_id"], "wall_s": calibration["wall_s"],
                                               "epoch_s": epoch_s}}
        rows.append(row)
        print(json.dumps(row), flush=True)
        (args.work / "summary.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print(f"\n{'variant':<12}{'weights':>10}{'epochs':>8}{'s/epoch':>9}{'wall min':>10}{'CER %':>8}{'WER %':>8}"
          f"{'best CER %':>12}  run")
    for row in rows:
        print(f"{row['variant']:<12}{row['weights']:>10,}{row['n_epochs']:>8}{row['epoch_s_median']:>9.0f}"
              f"{row['wall_min']:>10.1f}{100 * row['cer']:>8.2f}{100 * row['wer']:>8.2f}"
              f"{100 * row['best_cer']:>12.2f}  {row['run_id']}")


if __name__ == "__main__":
    main()
