"""What each augmentation operation costs the tf.data pipeline, against no augmentation, in ABBA order.

    python benchmarks/augmentation_cost.py          # Fraktur lines and IIIT5K words, every operation and preset
    python benchmarks/augmentation_cost.py --setups words --images 512 --ops rotation elastic --rounds 2
    python benchmarks/augmentation_cost.py --lines CSV --words CSV --images 16 --passes 1 --ops blur   # tiny

The pipeline is ``tf_crnn.data.make_dataset`` as training runs it (training order, width buckets,
``--cache on``: decoded images kept in memory after the first pass, as training does when they fit
``cache_images_mb``), iterated alone, without a model. Setups: ``lines`` are the first ``--images``
rows of ``data/prepared/fraktur.train.csv`` with ``experiments/fraktur.json``'s height, channels and
widths; ``words`` those of ``data/prepared/iiit5k.train.csv`` with ``experiments/iiit5k.json``'s
(docs/guide/data.md, "Bring your own data", says how to prepare both CSVs from ``../shared/data``).

For each operation (at ``--strength``) and preset: A = no augmentation, B = that operation alone,
measured A B B A (``--rounds`` times), each measurement a fresh pipeline, one pass to fill the
cache and warm up, then ``--passes`` timed passes. Figures: images/s of A and B, and the cost per
image, ``mean(1 / B) - mean(1 / A)`` in milliseconds of wall time (both cores work on the pipeline).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from _common import ROOT, header

SETUPS = {  # name: (what, CSV, the experiment config its image size comes from)
    "lines": ("Fraktur lines", "data/prepared/fraktur.train.csv", "experiments/fraktur.json"),
    "words": ("IIIT5K words", "data/prepared/iiit5k.train.csv", "experiments/iiit5k.json"),
}


def setup_entries(setup: str, csv: str, images: int):
    """Params of the setup's experiment (image size only) and the checked entries of the CSV's first rows."""
    from tf_crnn import data
    from tf_crnn.alphabet import Alphabet
    from tf_crnn.annotations import read_csv
    from tf_crnn.config import Params, load_config_file

    config = load_config_file(ROOT / SETUPS[setup][2])
    keep = ("input_shape", "max_width", "input_channels", "cnn_pool_size", "cnn_features_list", "cnn_kernel_size",
            "cnn_batch_norm", "train_batch_size")
    params = Params(**{k: config[k] for k in keep if k in config})
    samples = read_csv(csv, params.csv_delimiter, params.string_split_delimiter)[:images]
    report = data.scan_samples(samples, params, Alphabet.build(samples)[0], progress=False)
    return params, report.entries


def images_per_second(entries, params, batch: int, passes: int, cache: bool) -> float:
    """Images/s of ``passes`` passes over a fresh training pipeline, after one pass that fills the cache."""
    from tf_crnn import data

    dataset = data.make_dataset(entries, params, batch, training=True, seed=0, cache=cache)
    for _ in dataset:
        pass
    start, seen = time.perf_counter(), 0
    for _ in range(passes):
        seen += sum(int(b["widths"].shape[0]) for b in dataset)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--lines", help=f"CSV of the lines setup (default {SETUPS['lines'][1]})")
    parser.add_argument("--words", help=f"CSV of the words setup (default {SETUPS['words'][1]})")
    parser.add_argument("--images", type=int, default=512, help="first rows of each CSV (default 512)")
    parser.add_argument("--batch", type=int, help="batch size (default: the experiment's train_batch_size)")
    parser.add_argument("--ops", nargs="+", help="operations and presets to measure (default: all of both)")
    parser.add_argument("--strength", type=float, default=1.0, help="of each single operation (default 1)")
    parser.add_argument("--passes", type=int, default=2, help="timed passes per measurement (default 2)")
    parser.add_argument("--rounds", type=int, default=1, help="A B B A rounds per operation (default 1)")
    parser.add_argument("--cache", choices=("on", "off"), default="on", help="decoded-image cache (default on)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    header("augmentation cost: tf.data pipeline alone, each operation against none (ABBA)")
    from tf_crnn.config import AUGMENTATION_OPERATION_NAMES, AUGMENTATION_PRESET_NAMES

    chosen = args.ops or [*AUGMENTATION_OPERATION_NAMES, *(p for p in AUGMENTATION_PRESET_NAMES if p != "none")]
    unknown = [op for op in chosen if op not in AUGMENTATION_OPERATION_NAMES + AUGMENTATION_PRESET_NAMES]
    if unknown:
        parser.error(f"unknown operation or preset {', '.join(unknown)}; choose from "
                     f"{', '.join(AUGMENTATION_OPERATION_NAMES + AUGMENTATION_PRESET_NAMES)}")
    figures: dict = {}
    for setup in args.setups:
        what, default_csv, config = SETUPS[setup]
        csv = getattr(args, setup) or str(ROOT / default_csv)
        params, entries = setup_entries(setup, csv, args.images)
        batch = args.batch or params.train_batch_size
        widths = sorted(e.width for e in entries)
        print(f"\n{setup}: {len(entries)} {what} ({csv}), {params.height} px high, {params.input_channels} "
              f"channel(s), widths median {widths[len(widths) // 2]} px (max {widths[-1]}); image size from "
              f"{config}; batch {batch}; cache {args.cache}; {args.passes} timed pass(es) per measurement")
        print(f"{'augmentation':<14}{'none (A) images/s':>24}{'with (B) images/s':>24}{'cost ms/image':>15}"
              f"{'B / A':>8}")
        figures[setup] = {}
        for op in chosen:
            spec = op if op in AUGMENTATION_PRESET_NAMES else [{"name": op, "strength": args.strength}]
            variants = {"A": params.__class__(**{**params.to_dict(), "augmentation": "none"}),
                        "B": params.__class__(**{**params.to_dict(), "augmentation": spec})}
            rates: dict[str, list[float]] = {"A": [], "B": []}
            for _ in range(args.rounds):
                for variant in "ABBA":
                    rates[variant].append(images_per_second(entries, variants[variant], batch, args.passes,
                                                            args.cache == "on"))
            cost = 1000 * (statistics.mean(1 / r for r in rates["B"]) - statistics.mean(1 / r for r in rates["A"]))
            ratio = statistics.mean(rates["B"]) / statistics.mean(rates["A"])
            label = op if op in AUGMENTATION_PRESET_NAMES else f"{op} {args.strength:g}"
            print(f"{label:<14}{', '.join(f'{r:.0f}' for r in rates['A']):>24}"
                  f"{', '.join(f'{r:.0f}' for r in rates['B']):>24}{cost:>15.3f}{ratio:>8.2f}")
            figures[setup][op] = {"none": rates["A"], "with": rates["B"], "cost_ms_per_image": cost}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
