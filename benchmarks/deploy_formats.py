"""SavedModel vs TFLite (fp32 / fp16 / dynamic / int8) vs ONNX: file size, CER and speed of one export.

    python benchmarks/deploy_formats.py --model output/fraktur/export --csv data/prepared/fraktur.eval.csv
    python benchmarks/deploy_formats.py --model /tmp/qs/out/export --csv data/generated/digits/eval/labels.csv \\
        --limit 100 --representative data/generated/digits/train/labels.csv --json figures.json

The export is converted with ``tf_crnn.convert`` (what ``tf-crnn convert`` does) into ``--out``; int8
calibrates on ``--samples`` images of ``--representative`` (default: the export's training CSV, else
``--csv``). Every model is then loaded with ``tf_crnn.loader.PredictionModel`` and

- scored with ``tf_crnn.evaluation`` on the first ``--limit`` rows of ``--csv`` (greedy decoding,
  exact CER; batches of 64 by aspect ratio, as ``tf-crnn evaluate``);
- timed with ``PredictionModel.predict_bytes`` (preprocessing, model, CTC decoding: what a user gets)
  at batch 1 and batch 64 on the same images, sorted by aspect ratio for batch 64; TFLite runs a batch
  one image at a time (its batch is fixed at 1). The first call of each batch size is left out
  (tracing, interpreter set-up), then the best of ``--rounds`` passes counts.

Prints a Markdown table (format, file size, CER, CER change vs SavedModel in points, img/s at batch 1 and 64)
and whether each aim of issue 13 is met (CER change <= 0.1 point for fp32 / fp16 / ONNX, <= 0.5 for int8;
int8 file <= 30 % of fp32).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from _common import header

#: (row label, format, quantize) of the converted models, in table order.
CONVERSIONS = [("TFLite fp32", "tflite", "none"), ("TFLite fp16", "tflite", "float16"),
               ("TFLite dynamic", "tflite", "dynamic"), ("TFLite int8", "tflite", "int8"), ("ONNX", "onnx", "none")]
#: Largest CER change vs the SavedModel (in points) each row may show, and the int8 / fp32 size aim.
CER_AIMS = {"TFLite fp32": 0.1, "TFLite fp16": 0.1, "ONNX": 0.1, "TFLite int8": 0.5}
INT8_SIZE_AIM = 0.30


def folder_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def limited_csv(csv: Path, limit: int | None, out: Path) -> Path:
    """The first ``limit`` rows of ``csv`` as a CSV in ``out`` (image paths made absolute), or ``csv`` itself."""
    if not limit:
        return csv
    from tf_crnn.annotations import read_csv, write_csv

    rows = read_csv(csv)[:limit]
    target = out / f"{csv.stem}.first{len(rows)}.csv"
    write_csv([(r.image_path, r.symbols) for r in rows], target, relative=False)
    return target


def throughput(model, encoded: list[bytes], batch: int, rounds: int) -> float:
    """Images per second of ``model.predict_bytes`` at ``batch``: best of ``rounds`` passes after a warm-up."""
    model.predict_bytes(encoded[:batch], batch_size=batch)
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        model.predict_bytes(encoded, batch_size=batch)
        best = min(best, time.perf_counter() - started)
    return len(encoded) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a tf-crnn SavedModel export folder")
    parser.add_argument("--csv", type=Path, required=True, help="annotated eval CSV")
    parser.add_argument("--limit", type=int, help="only the first N rows of --csv")
    parser.add_argument("--representative", type=Path, help="CSV whose images calibrate int8 "
                                                            "(default: the export's training CSV, else --csv)")
    parser.add_argument("--samples", type=int, default=200, help="int8 calibration images (default 200)")
    parser.add_argument("--batch1-images", type=int, default=64,
                        help="images timed at batch 1 (default 64; the first N of the scored ones)")
    parser.add_argument("--rounds", type=int, default=2, help="timed passes per batch size, best counts")
    parser.add_argument("--out", type=Path, help="folder for the converted models (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    header(f"deploy formats: {args.model}")
    from tf_crnn import evaluation
    from tf_crnn.convert import convert
    from tf_crnn.decoding import default_decoding

    out = args.out or Path(tempfile.mkdtemp(prefix="tf_crnn_deploy_"))
    out.mkdir(parents=True, exist_ok=True)
    params = json.loads((args.model / "params.json").read_text(encoding="utf-8"))
    representative = args.representative
    if representative is None:
        trained_on = [Path(p) for p in params.get("csv_files_train") or [] if Path(p).is_file()]
        representative = trained_on[0] if trained_on else args.csv
    csv = limited_csv(args.csv, args.limit, out)
    print(f"data: {csv}; int8 calibrated on {args.samples} images of {representative}; models in {out}")

    models: list[tuple[str, Path]] = [("SavedModel", args.model)]
    for label, fmt, quantize in CONVERSIONS:
        path = out / f"model_{quantize}.{fmt}" if fmt == "tflite" else out / "model.onnx"
        done = convert(args.model, path, fmt, quantize, [str(representative)] if quantize == "int8" else None,
                       args.samples, progress=False)
        print(f"converted {label}: {done.path} in {done.seconds:.0f} s")
        if done.int8_change is not None:
            print(f"  int8 against float32 on {done.int8_checked} calibration images: "
                  f"CER {100 * done.int8_change:.2f} %")
        models.append((label, Path(done.path)))

    rows = []
    for label, path in models:
        prepared = evaluation.prepare(str(path), [str(csv)], progress=False)
        decoding = default_decoding(prepared.model.params, "greedy")
        scored = evaluation.evaluate(prepared, decoding, batch_size=64, progress=False)
        model = prepared.model
        order = sorted(range(len(prepared.samples)),
                       key=lambda i: prepared.sizes[i][0] / max(1, prepared.sizes[i][1]))
        encoded = [model.encode(prepared.samples[i].image_path) for i in order]
        by_csv_order = [model.encode(s.image_path) for s in prepared.samples[:args.batch1_images]]
        rows.append({"format": label, "path": str(path), "bytes": folder_size(path),
                     "cer": scored.metrics["exact"]["cer"], "images": len(prepared.samples),
                     "images_per_second_batch_1": throughput(model, by_csv_order, 1, args.rounds),
                     "images_per_second_batch_64": throughput(model, encoded, 64, args.rounds)})
        print(f"scored and timed {label}", flush=True)

    reference = rows[0]
    fp32 = next(r for r in rows if r["format"] == "TFLite fp32")
    print(f"\n{reference['images']} images; CER exact, greedy; img/s with preprocessing and CTC decoding\n")
    print("| format | file size | CER | CER change vs SavedModel | img/s batch 1 | img/s batch 64 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        r["cer_change_points"] = 100 * (r["cer"] - reference["cer"])
        change = "" if r is reference else f"{r['cer_change_points']:+.2f} pt"
        print(f"| {r['format']} | {r['bytes'] / 1e6:.2f} MB | {100 * r['cer']:.2f} % | {change} | "
              f"{r['images_per_second_batch_1']:.1f} | {r['images_per_second_batch_64']:.1f} |")
    print()
    for r in rows:
        if r["format"] in CER_AIMS:
            aim = CER_AIMS[r["format"]]
            met = abs(r["cer_change_points"]) <= aim
            print(f"aim CER change <= {aim} point, {r['format']}: {r['cer_change_points']:+.2f}: "
                  f"{'met' if met else 'MISSED'}")
    int8 = next(r for r in rows if r["format"] == "TFLite int8")
    share = int8["bytes"] / fp32["bytes"]
    print(f"aim int8 file <= {INT8_SIZE_AIM:.0%} of fp32: {share:.1%}: {'met' if share <= INT8_SIZE_AIM else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps({"command": sys.argv, "rows": rows}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
