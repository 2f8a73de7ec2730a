"""tf-crnn against Calamari on the Fraktur split, at equal training wall time (issue 14).

    python benchmarks/vs_calamari.py --budget-minutes 45 --tf-crnn-export output/fraktur/export_best
    python benchmarks/vs_calamari.py --budget-minutes 90 --tf-crnn-export output/fraktur_90/export_best \\
        --work output/vs_calamari/90min
    python benchmarks/vs_calamari.py --limit 200 --eval-limit 100 --budget-minutes 2 \\
        --tf-crnn-export output/fraktur/export --work output/vs_calamari/smoke        # smoke check of the chain

What it does:

1. Calamari in its own virtual environment (``--venv``, default ``output/calamari-venv``, gitignored):
   created with ``python -m venv`` and ``pip install calamari-ocr==2.3.1`` on first use (it pins TensorFlow
   2.15, which has wheels up to Python 3.11: give ``--python`` another interpreter if this one is newer),
   reused when that version is there. About 1 min 10 s and 2.2 GB on the development machine.
2. The split of ``tf-crnn prepare gt-pairs ../shared/data/archiscribe ... --split-by-group "train=0,1 eval=2
   mod=5"`` (``data/prepared/fraktur.{train,eval}.csv``, prepared when missing), read with
   ``tf_crnn.annotations``: each row becomes a symlink ``WORK/data/SPLIT/NNNNN.png`` to its image with a
   ``NNNNN.gt.txt`` beside it holding the row's label (its symbols joined), so Calamari learns exactly
   tf-crnn's labels and no image is copied.
3. ``calamari-train`` with Calamari's defaults (network ``cnn=40:3x3,pool=2x2,cnn=60:3x3,pool=2x2,lstm=200,
   dropout=0.5``, Adam 1e-3, batch 16, EMA weights, no augmentation, early stopping after 5 epochs without
   a better validation CER), training on the train split and validating on the eval split after every epoch,
   as tf-crnn does; only the progress bar is set to print every 60 s. Calamari has no wall-clock limit:
   at ``--budget-minutes`` after its start the benchmark sends SIGINT to its process group (SIGTERM 60 s
   later, SIGKILL 30 s after that if it still runs). Calamari writes its best model by validation CER
   (``best.ckpt`` + ``best.ckpt.json``, EMA weights) at each epoch that improves it and no final model
   when interrupted; the benchmark copies each complete best model to ``best_snapshot/`` as it appears, so
   a stop in the middle of an export cannot leave a broken one. That best model, chosen on the eval split,
   is the counterpart of tf-crnn's ``export_best``.
4. ``calamari-predict`` of that model on the eval split (``.pred.txt`` files in ``WORK/predictions``).
5. The tf-crnn export (``--tf-crnn-export``, optional) transcribed with ``tf_crnn.evaluation`` (what
   ``tf-crnn evaluate`` runs; its own decoding, greedy for the Fraktur recipe).
6. Both scored by ``tf_crnn.metrics.recognition_metrics`` (CER = total edit distance / total label length,
   in symbols; WER; full-line accuracy), the same way: each prediction is NFC-normalized and split into
   extended grapheme clusters, which is how ``tf-crnn prepare`` made the labels (checked here: every eval
   label equals the graphemes of its NFC text), so ``aͤ`` (a + U+0364) is one symbol for both systems and
   tf-crnn gets no edge from predicting alphabet symbols. No case folding, nothing removed. An image a
   system could not transcribe counts as an empty prediction.

Prints the machine and the command (``_common.header``), then a table: system, training wall time, epochs,
eval lines, eval CER, WER, line accuracy, CER ratio to tf-crnn (> 1: tf-crnn better). tf-crnn's wall time
and epochs: ``--tf-crnn-minutes`` if given, else read from the training's run in MongoDB (``run.json``
beside the export names it) and ``reports/history.json``.

The training's budget is wall time on whatever else the machine runs: run it on an otherwise idle machine,
as tf-crnn's training was. Calamari's own validation CER (its metric, on the same eval split) is printed
from its log for comparison; it regularizes spaces (two spaces become one) and strips the ends of lines
before scoring, this benchmark does not (one eval label has a double space).

Not part of the CI tests: installing Calamari with TensorFlow 2.15 (2.2 GB) and training it take far longer
than CI may. The smoke command above checks the whole chain in about 5 minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

from _common import ROOT, header

CALAMARI_VERSION = "2.3.1"
PREPARE = ["gt-pairs", str(ROOT.parent / "shared" / "data" / "archiscribe"), "data/prepared/fraktur.csv",
           "--group-by", "parent", "--split-by-group", "train=0,1 eval=2 mod=5"]
#: Seconds between SIGINT, SIGTERM and SIGKILL of a Calamari training past its budget.
STOP_GRACE = (60, 30)


# ---- 1. the virtual environment ---------------------------------------------------------

def venv_versions(venv: Path) -> dict[str, str] | None:
    """``{"calamari-ocr": ..., "tensorflow": ...}`` installed in ``venv``, or None when there is none."""
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    code = ("import importlib.metadata as m, json\n"
            "print(json.dumps({n: m.version(n) for n in ('calamari-ocr', 'tensorflow')}))")
    done = subprocess.run([str(python), "-c", code], check=False, capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else None


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def ensure_venv(venv: Path, version: str, python: str) -> dict[str, str]:
    """Calamari ``version`` in ``venv``: reused when there, else created (the pip log in ``venv/install.log``)."""
    versions = venv_versions(venv)
    if versions and versions["calamari-ocr"] == version:
        print(f"calamari: reusing {venv} (calamari-ocr {versions['calamari-ocr']}, "
              f"TensorFlow {versions['tensorflow']})")
        return versions
    started = time.perf_counter()
    if not (venv / "bin" / "python").exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    log = venv / "install.log"
    with open(log, "w", encoding="utf-8") as out:
        done = subprocess.run([str(venv / "bin" / "pip"), "install", f"calamari-ocr=={version}"],
                              check=False, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"pip install calamari-ocr=={version} into {venv} failed (exit {done.returncode}); see {log}")
    versions = venv_versions(venv)
    print(f"calamari: installed calamari-ocr {versions['calamari-ocr']} with TensorFlow {versions['tensorflow']} "
          f"into {venv} in {time.perf_counter() - started:.0f} s, {folder_bytes(venv) / 1e9:.1f} GB")
    return versions


# ---- 2. the data --------------------------------------------------------------------------

def ensure_split() -> tuple[Path, Path]:
    train, evaluation = ROOT / "data/prepared/fraktur.train.csv", ROOT / "data/prepared/fraktur.eval.csv"
    if not (train.exists() and evaluation.exists()):
        subprocess.run([sys.executable, "-m", "tf_crnn.cli", "prepare", *PREPARE, "--no-progress"],
                       cwd=ROOT, check=True)
    return train, evaluation


def as_symbols(text: str) -> tuple[str, ...]:
    """A transcription as symbols, as ``tf-crnn prepare`` makes labels: NFC, then grapheme clusters."""
    from tf_crnn.annotations import graphemes

    return tuple(graphemes(unicodedata.normalize("NFC", text)))


def link_split(samples, folder: Path) -> None:
    """``folder/NNNNN.<ext>`` -> each sample's image, ``folder/NNNNN.gt.txt`` its label (folder made anew)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for i, sample in enumerate(samples):
        (folder / f"{i:05d}{Path(sample.image_path).suffix}").symlink_to(sample.image_path)
        (folder / f"{i:05d}.gt.txt").write_text(sample.text, encoding="utf-8")


# ---- 3. training Calamari under a wall-clock budget ---------------------------------------

def snapshot_best(model_dir: Path, snapshot: Path, copied_mtime: float) -> float:
    """Copy a complete best model (``best.ckpt`` written no later than ``best.ckpt.json``) to ``snapshot``.

    Returns the ``best.ckpt.json`` modification time of what ``snapshot`` now holds.
    """
    json_file, serve = model_dir / "best.ckpt.json", model_dir / "best.ckpt"
    try:
        mtime = json_file.stat().st_mtime
        if mtime <= copied_mtime or max(p.stat().st_mtime for p in serve.rglob("*")) > mtime:
            return copied_mtime
        partial = snapshot.with_name(snapshot.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(serve, partial / "best.ckpt")
        shutil.copy2(json_file, partial / "best.ckpt.json")
        if json_file.stat().st_mtime != mtime or max(p.stat().st_mtime for p in serve.rglob("*")) > mtime:
            return copied_mtime  # a new export started while copying: next time
        shutil.rmtree(snapshot, ignore_errors=True)
        partial.rename(snapshot)
        return mtime
    except (FileNotFoundError, ValueError):  # not written yet, or an export under way
        return copied_mtime


def stop_group(process: subprocess.Popen) -> str:
    """SIGINT to the training's process group, then SIGTERM, then SIGKILL; the last signal it needed."""
    for sig, grace in ((signal.SIGINT, STOP_GRACE[0]), (signal.SIGTERM, STOP_GRACE[1]), (signal.SIGKILL, 30)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return sig.name
        try:
            process.wait(grace)
            return sig.name
        except subprocess.TimeoutExpired:
            continue
    return "SIGKILL"


def train_calamari(venv: Path, work: Path, budget_s: float, extra: list[str]) -> dict:
    """Run ``calamari-train`` for at most ``budget_s`` seconds of wall time; what happened, as a dict."""
    model_dir, snapshot = work / "calamari", work / "best_snapshot"
    shutil.rmtree(model_dir, ignore_errors=True)
    shutil.rmtree(snapshot, ignore_errors=True)
    command = [str(venv / "bin" / "calamari-train"),
               "--train.images", str(work / "data" / "train" / "*.png"),
               "--val.images", str(work / "data" / "eval" / "*.png"),
               "--trainer.output_dir", str(model_dir),
               "--trainer.progress_bar_mode", "2", "--trainer.progbar_delta_time", "60", *extra]
    print("calamari: " + " ".join(command), flush=True)
    log_path = work / "calamari_train.log"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    copied = 0.0
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work,
                                   start_new_session=True)
        try:
            while process.poll() is None and time.perf_counter() - started < budget_s:
                time.sleep(2)
                copied = snapshot_best(model_dir, snapshot, copied)
            stopped_by = None
            if process.poll() is None:
                stopped_at = time.perf_counter() - started
                stopped_by = stop_group(process)
                print(f"calamari: budget reached after {stopped_at / 60:.1f} min, stopped ({stopped_by})")
        finally:
            if process.poll() is None:  # the benchmark itself was interrupted
                stop_group(process)
    ended = time.perf_counter() - started
    copied = snapshot_best(model_dir, snapshot, copied)
    trained = stopped_at if stopped_by else ended
    text = log_path.read_text(encoding="utf-8", errors="replace")
    summary = {"command": command, "log": str(log_path), "exit_code": process.returncode,
               "stopped_by": stopped_by, "training_seconds": trained, "seconds_until_exit": ended,
               **calamari_log_summary(text)}
    summary["model"] = str(snapshot / "best.ckpt.json") if copied else None
    if not copied:
        tail = "\n".join(text.splitlines()[-15:])
        sys.exit(f"calamari wrote no best model in {trained / 60:.1f} min (its validation CER never fell below "
                 f"100 %, or it failed): see {log_path}\n{tail}")
    return summary


def calamari_log_summary(text: str) -> dict:
    """Epochs finished and the validation CERs (Calamari's own metric) from a ``calamari-train`` log."""
    epochs = [int(m) for m in re.findall(r"^Epoch (\d+)/\d+", text, re.MULTILINE)]
    # One "Results of epoch N ... val_CER: x" line per finished epoch (the progress line repeats the figure).
    cers = [float(m) for m in re.findall(r"Results of epoch\s+\d+ .*?val_CER: ([0-9.e+-]+)", text)]
    best = [float(m) for m in re.findall(r"Better value of val_CER\S* found\. Old = \S+, Best = ([0-9.e+-]+)", text)]
    return {"epochs_started": max(epochs, default=0), "epochs_validated": len(cers),
            "val_cer_per_epoch": cers, "best_val_cer": best[-1] if best else None}


# ---- 4. and 5. transcriptions ---------------------------------------------------------------

def predict_calamari(venv: Path, work: Path, model: str, count: int) -> list[str | None]:
    """Calamari's transcription of each eval image, in order (None where it wrote none)."""
    out = work / "predictions"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    command = [str(venv / "bin" / "calamari-predict"), "--checkpoint", model,
               "--data.images", str(work / "data" / "eval" / "*.png"), "--output_dir", str(out),
               "--verbose", "False"]
    print("calamari: " + " ".join(command), flush=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.perf_counter()
    with open(work / "calamari_predict.log", "w", encoding="utf-8") as log:
        done = subprocess.run(command, check=False, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    if done.returncode != 0:
        sys.exit(f"calamari-predict failed (exit {done.returncode}): see {work / 'calamari_predict.log'}")
    print(f"calamari: transcribed {count} eval lines in {time.perf_counter() - started:.0f} s")
    predictions = []
    for i in range(count):
        path = out / f"{i:05d}.pred.txt"
        predictions.append(path.read_text(encoding="utf-8").rstrip("\n") if path.exists() else None)
    return predictions


def predict_tf_crnn(export: Path, eval_csv: Path, samples) -> tuple[list[str | None], float]:
    """tf-crnn's transcription of each eval row (None for an image it could not read), and its own exact CER."""
    from tf_crnn import evaluation
    from tf_crnn.decoding import default_decoding

    prepared = evaluation.prepare(str(export), [str(eval_csv)], progress=False)
    scored = evaluation.evaluate(prepared, default_decoding(prepared.model.params), batch_size=32, progress=False)
    by_line = dict(zip(scored.rows["line"], scored.rows["prediction"]))
    return [by_line.get(s.line) for s in samples], scored.metrics["exact"]["cer"]


def tf_crnn_training(export: Path, minutes: float | None) -> dict:
    """Wall time and epochs of the training that wrote ``export`` (``--tf-crnn-minutes`` wins)."""
    info: dict = {"minutes": minutes, "epochs": None, "best_epoch": None, "source": "--tf-crnn-minutes"}
    history = export.parent / "reports" / "history.json"
    if history.exists():
        cers = json.loads(history.read_text(encoding="utf-8")).get("eval.cer") or []
        info["epochs"] = len(cers)
        if cers:
            info["best_epoch"] = min(cers, key=lambda pair: pair[1])[0]
    run_file = export.parent / "run.json"
    if minutes is None and run_file.exists():
        record = json.loads(run_file.read_text(encoding="utf-8"))
        try:
            import pymongo

            client = pymongo.MongoClient(record["mongo_url"], serverSelectionTimeoutMS=3000)
            doc = client[record["mongo_db_name"]].runs.find_one(
                {"_id": record["run_id"]}, {"start_time": 1, "stop_time": 1, "status": 1})
            if doc and doc.get("stop_time"):
                info["minutes"] = (doc["stop_time"] - doc["start_time"]).total_seconds() / 60
                info["source"] = f"run {record['run_id']} in MongoDB ({doc.get('status')})"
            elif doc:
                info["source"] = f"run {record['run_id']} in MongoDB has not stopped ({doc.get('status')})"
        except Exception as error:  # noqa: BLE001 - the wall time is a note; the CER still counts
            info["source"] = f"run {record.get('run_id')}: database not reachable ({type(error).__name__})"
    return info


# ---- 6. scores ------------------------------------------------------------------------------

def score(labels, predictions: list[str | None]) -> dict:
    from tf_crnn.metrics import recognition_metrics

    symbols = [as_symbols(p or "") for p in predictions]
    result = recognition_metrics(labels, symbols, "exact")
    result["missing"] = sum(p is None for p in predictions)
    return result


def minutes_text(minutes: float | None) -> str:
    return "unknown" if minutes is None else f"{minutes:.1f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-minutes", type=float, default=45.0,
                        help="Calamari's training wall time, from its start (default 45)")
    parser.add_argument("--tf-crnn-export", type=Path,
                        help="a tf-crnn export of the Fraktur recipe to score alongside (e.g. OUT/export_best)")
    parser.add_argument("--tf-crnn-minutes", type=float,
                        help="wall time of that training (default: from its run in MongoDB)")
    parser.add_argument("--venv", type=Path, default=ROOT / "output" / "calamari-venv",
                        help="Calamari's virtual environment, created when missing (default output/calamari-venv)")
    parser.add_argument("--calamari-version", default=CALAMARI_VERSION, help=f"default {CALAMARI_VERSION}")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter the venv is made with (Calamari's TensorFlow 2.15 needs Python <= 3.11)")
    parser.add_argument("--work", type=Path,
                        help="folder for the links, Calamari's model, logs and predictions "
                             "(default output/vs_calamari/<budget>min)")
    parser.add_argument("--train-csv", type=Path, help="default data/prepared/fraktur.train.csv")
    parser.add_argument("--eval-csv", type=Path, help="default data/prepared/fraktur.eval.csv")
    parser.add_argument("--limit", type=int, help="only the first N training rows (smoke runs)")
    parser.add_argument("--eval-limit", type=int, help="only the first N eval rows (smoke runs)")
    parser.add_argument("--calamari-arg", action="append", default=[], metavar="ARG",
                        help="extra argument for calamari-train, repeatable, written --calamari-arg=--n_augmentations "
                             "--calamari-arg=5 (the comparison is of its defaults)")
    parser.add_argument("--score-only", action="store_true",
                        help="do not train: score the best model of an earlier run in --work")
    parser.add_argument("--json", type=Path,
                        help="write the figures here (default WORK/summary.json; --score-only reads Calamari's "
                             "training record from WORK/summary.json either way)")
    args = parser.parse_args()

    header(f"tf-crnn vs Calamari {args.calamari_version}, Fraktur, {args.budget_minutes:g} min budget")
    from tf_crnn.annotations import read_csv, write_csv

    work = (args.work or ROOT / "output" / "vs_calamari" / f"{args.budget_minutes:g}min").resolve()
    work.mkdir(parents=True, exist_ok=True)
    versions = ensure_venv(args.venv.resolve(), args.calamari_version, args.python)
    train_csv, eval_csv = ensure_split()
    train_csv, eval_csv = args.train_csv or train_csv, args.eval_csv or eval_csv
    train = read_csv(train_csv)[:args.limit] if args.limit else read_csv(train_csv)
    evaluation_rows = read_csv(eval_csv)
    if args.eval_limit:
        evaluation_rows = evaluation_rows[:args.eval_limit]
        eval_csv = work / f"eval.first{len(evaluation_rows)}.csv"
        write_csv([(s.image_path, s.symbols) for s in evaluation_rows], eval_csv, relative=False)
        evaluation_rows = read_csv(eval_csv)
    unlike = [s.where() for s in evaluation_rows if as_symbols(s.text) != s.symbols]
    if unlike:
        print(f"warning: {len(unlike)} eval label(s) are not NFC grapheme clusters (e.g. {unlike[:3]}): "
              "predictions are split that way, so those labels cost both systems alike")
    print(f"data: {len(train)} training lines of {train_csv}, {len(evaluation_rows)} eval lines of {eval_csv}; "
          f"work folder {work}")

    summary_path = args.json or work / "summary.json"
    if args.score_only:
        trained = work / "summary.json"  # what the training run recorded, whatever --json names this time
        if not trained.is_file():
            sys.exit(f"error: --score-only: no {trained} (written by an earlier run of this script with the "
                     "same --work): train Calamari first (leave out --score-only)")
        calamari = json.loads(trained.read_text(encoding="utf-8"))["calamari"]
        calamari.update(calamari_log_summary(Path(calamari["log"]).read_text(encoding="utf-8", errors="replace")))
    else:
        link_split(train, work / "data" / "train")
        link_split(evaluation_rows, work / "data" / "eval")
        calamari = train_calamari(args.venv.resolve(), work, 60 * args.budget_minutes, args.calamari_arg)
    calamari["versions"] = versions

    labels = [s.symbols for s in evaluation_rows]
    cal_predictions = predict_calamari(args.venv.resolve(), work, calamari["model"], len(evaluation_rows))
    rows = [{"system": f"Calamari {versions['calamari-ocr']} (defaults, best by val CER)",
             "minutes": calamari["training_seconds"] / 60,
             "epochs": str(calamari["epochs_validated"]),
             **score(labels, cal_predictions)}]
    if args.tf_crnn_export:
        tf_predictions, own_cer = predict_tf_crnn(args.tf_crnn_export, eval_csv, evaluation_rows)
        training = tf_crnn_training(args.tf_crnn_export.resolve(), args.tf_crnn_minutes)
        epochs = "unknown" if training["epochs"] is None else str(training["epochs"])
        if training["epochs"] is not None and args.tf_crnn_export.name == "export_best":
            epochs += f" (best: {training['best_epoch']})"
        tf_row = {"system": f"tf-crnn {args.tf_crnn_export}", "minutes": training["minutes"], "epochs": epochs,
                  **score(labels, tf_predictions), "cer_tf_crnn_evaluate": own_cer,
                  "wall_time_source": training["source"]}
        rows.insert(0, tf_row)
        print(f"tf-crnn: wall time from {training['source']}; its own `tf-crnn evaluate` exact CER "
              f"{100 * own_cer:.2f} % on the same lines")

    reference = rows[0]["cer"] if args.tf_crnn_export else None
    print(f"\n{len(evaluation_rows)} eval lines, {sum(map(len, labels))} symbols; CER exact (NFC, grapheme "
          "clusters), tf_crnn.metrics; ratio = CER / tf-crnn's CER\n")
    print("| system | training wall time | epochs | eval CER | WER | line accuracy | CER ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        row["ratio"] = row["cer"] / reference if reference else None
        ratio = "–" if row["ratio"] is None else f"{row['ratio']:.2f}"
        missing = f" ({row['missing']} not transcribed)" if row["missing"] else ""
        print(f"| {row['system']} | {minutes_text(row['minutes'])} | {row['epochs']} | {100 * row['cer']:.2f} %"
              f"{missing} | {100 * row['wer']:.2f} % | {100 * row['sequence_accuracy']:.1f} % | {ratio} |")
    best = calamari.get("best_val_cer")
    print(f"\ncalamari: {calamari['epochs_validated']} epoch(s) finished and validated, "
          f"{calamari['epochs_started']} started; "
          f"its own best validation CER {'unknown' if best is None else f'{100 * best:.2f} %'}; "
          f"stopped by {calamari['stopped_by'] or 'itself'} (exit code {calamari['exit_code']}); "
          f"log {calamari['log']}")
    minutes = [r["minutes"] for r in rows if r["minutes"] is not None]
    if len(minutes) == 2 and abs(minutes[0] - minutes[1]) > 0.05 * max(minutes):
        # rows[0] is tf-crnn's when there are two: say which system the difference favours.
        favoured = "Calamari" if minutes[0] < minutes[1] else "tf-crnn"
        print(f"note: the training wall times differ by more than 5 % (tf-crnn {minutes_text(minutes[0])}, "
              f"Calamari {minutes_text(minutes[1])}): not an equal-time comparison; the difference favours "
              f"{favoured}")
    summary_path.write_text(json.dumps({"command": sys.argv, "calamari": calamari, "rows": rows},
                                       indent=1, default=str), encoding="utf-8")
    print(f"figures: {summary_path}")


if __name__ == "__main__":
    main()
