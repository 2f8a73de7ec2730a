"""Package a training's export as a model shipped with tf-crnn (``tf_crnn/pretrained/NAME/``), and check it.

    python scripts/package_pretrained.py output/fraktur/export fraktur-19c \\
        --card experiments/pretrained/fraktur-19c.md --card-info experiments/pretrained/fraktur-19c.json \\
        [--check IMAGE_OR_CSV ...] [--out-dir tf_crnn/pretrained] [--force]

Run it from the folder the card's commands run in (the repository root: the CSVs of the evaluation sets and the
image paths in them are read from there). It

1. writes ``weights.npz`` (every float variable of the export's network, by the variable path ``model.json``
   names it, stored as float16), ``params.json`` and ``alphabet.json`` (the export's), ``model.json`` (the
   stored variables, the dtype each is loaded back to, the training's dtype policy);
2. loads the packaged folder as tf-crnn will (:class:`tf_crnn.loader.PredictionModel`: the CRNN rebuilt from
   ``params.json``, float32 compute) and compares its greedy transcriptions with the export's on every line of
   each evaluation set of the card info and on the ``--check`` images: how many lines are transcribed the same
   and the edit distance between the two transcriptions (float16 rounding, and float32 compute where the
   export computes in its training's 16-bit policy, may change a character now and then);
3. measures the packaged model's figures on each evaluation set (CER, WER, line accuracy; greedy decoding) and
   writes ``card.json`` (the card info, those figures with the command that reproduces them, the agreement,
   input height, alphabet size, size on disk) and ``MODEL_CARD.md`` (a generated table of these, then the text
   of ``--card``).

The card info (``--card-info``, JSON) gives what cannot be measured: ``summary`` (one line), ``trained_on``,
``data_licence``, ``attribution``, ``initialised_from``, ``rebuild`` (``{"commands": [...], "config": ...}``) and
``evaluations`` (``[{"set": description, "csv": path}, ...]``), and may give ``sample``: a few real lines the
tests read again (``{"format": "gt-pairs", "folders": [folders under --shared-data]}``, with ``"part": "test"``
for a data set's own test part: :func:`tf_crnn.pretrained.sample_csv`; the script measures the
packaged model's CER on them, tests/test_pretrained.py checks that it reads them so). The folder is written next
to its final place and moved there only when complete (``--force`` replaces an existing one). Exit code 1 when
the packaged model's transcriptions differ from the export's on more than ``--max-disagreement`` of the lines.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

INFO_KEYS = ("summary", "trained_on", "data_licence", "attribution", "initialised_from", "rebuild", "evaluations")


def load_info(path: str) -> dict:
    """The card info file, checked: every key of :data:`INFO_KEYS`, each evaluation with ``set`` and ``csv``."""
    from tf_crnn.pretrained import SAMPLE_FORMATS

    with open(path, encoding="utf-8") as f:
        info = json.load(f)
    missing = [k for k in INFO_KEYS if k not in info]
    if missing:
        raise SystemExit(f"{path}: missing key(s) {', '.join(missing)} (see {__file__})")
    bad = [e for e in info["evaluations"] if not {"set", "csv"} <= set(e)]
    if bad:
        raise SystemExit(f"{path}: each evaluation needs 'set' and 'csv', got {bad[0]}")
    sample = info.get("sample")
    if sample is not None and (sample.get("format") not in SAMPLE_FORMATS or not sample.get("folders")):
        raise SystemExit(f"{path}: sample must be {{\"format\": one of {', '.join(SAMPLE_FORMATS)}, "
                         f"\"folders\": [...], optional \"part\"}}, got {sample}")
    return info


def measure_sample(packaged, sample: dict, shared_data: str) -> dict:
    """The packaged model's greedy CER on the sample lines (:func:`tf_crnn.pretrained.sample_csv`)."""
    from tf_crnn import evaluation
    from tf_crnn.decoding import default_decoding
    from tf_crnn.pretrained import sample_csv

    with tempfile.TemporaryDirectory() as tmp:
        csv = sample_csv(sample, shared_data, tmp)
        prepared = evaluation.prepare(packaged.export_dir, [csv], progress=False)
        result = evaluation.evaluate(prepared, default_decoding(packaged.params, "greedy"), progress=False)
    return {**sample, "lines": len(result.rows), "cer": round(result.metrics["exact"]["cer"], 6)}


def write_folder(export, target: str) -> None:
    """Weights (float16), settings, alphabet and ``model.json`` of the export ``export`` into ``target``."""
    import numpy as np

    from tf_crnn._util import write_json
    from tf_crnn.model_files import MODEL_INFO, STORED_DTYPE, read_model_info, write_weights

    info = read_model_info(export.export_dir)
    if info is None:
        raise SystemExit(f"{export.export_dir} has no {MODEL_INFO}: re-export it with tf-crnn 0.5")
    weights = {path: np.asarray(variable.numpy()) for path, variable in export.saved_weights().items()}
    recorded = {v["path"]: v for v in info["variables"]}
    write_weights(target, weights)
    write_json(os.path.join(target, MODEL_INFO), {
        "dtype_policy": info.get("dtype_policy", "float32"), "stored_dtype": STORED_DTYPE,
        "variables": [{"path": p, "shape": list(w.shape), "dtype": recorded[p].get("dtype", "float32")}
                      for p, w in weights.items()]})
    shutil.copyfile(os.path.join(export.export_dir, "alphabet.json"), os.path.join(target, "alphabet.json"))
    write_json(os.path.join(target, "params.json"), shipped_params(export.export_dir))


def shipped_params(export_dir: str) -> dict:
    """The export's settings without the paths of the machine that trained it (they mean nothing elsewhere).

    ``output_model_dir`` becomes ``output/<its last folder name>``: a fine-tuning sets its own anyway.
    """
    with open(os.path.join(export_dir, "params.json"), encoding="utf-8") as handle:
        params = json.load(handle)
    if os.path.isabs(str(params.get("output_model_dir", ""))):
        params["output_model_dir"] = "output/" + os.path.basename(os.path.normpath(params["output_model_dir"]))
    return params


def check_paths(sources: list[str], params: dict) -> list[str]:
    """Image paths of ``--check``: images as given, CSV files' images (``path;label`` rows)."""
    from tf_crnn.annotations import read_csvs

    paths = []
    for source in sources:
        if source.lower().endswith(".csv"):
            paths += [s.image_path for s in read_csvs([source], params.get("csv_delimiter", ";"),
                                                      params.get("string_split_delimiter", "|"))]
        else:
            paths.append(source)
    return paths


def agreement(first: list[str], second: list[str]) -> dict:
    """How far two lists of transcriptions agree: equal lines, and symbol edits from the first to the second."""
    from tf_crnn.metrics import edit_distances

    edits = sum(edit_distances(first, second))
    return {"lines": len(first), "equal_lines": sum(a == b for a, b in zip(first, second)),
            "symbol_edits": edits, "symbols": sum(len(a) for a in first)}


def evaluate_both(export, packaged, csv: str) -> tuple[dict, dict]:
    """Greedy evaluation of the export and the packaged model on ``csv``: the packaged model's figures, and the
    agreement of the two models' transcriptions line by line."""
    from tf_crnn import evaluation
    from tf_crnn.decoding import default_decoding

    results = []
    for model in (export, packaged):
        prepared = evaluation.prepare(model.export_dir, [csv], progress=False)
        prepared.model = model  # the model loaded once, not again per set
        results.append(evaluation.evaluate(prepared, default_decoding(model.params, "greedy"), progress=False))
    exact = results[1].metrics["exact"]
    figures = {"lines": len(results[1].rows), "cer": round(exact["cer"], 6), "wer": round(exact["wer"], 6),
               "line_accuracy": round(exact["sequence_accuracy"], 6), "export_cer": round(
                   results[0].metrics["exact"]["cer"], 6)}
    return figures, agreement(list(results[0].rows["prediction"]), list(results[1].rows["prediction"]))


def combined(parts: list[dict]) -> dict:
    """Several :func:`agreement` results as one."""
    total = {k: sum(p[k] for p in parts) for k in ("lines", "equal_lines", "symbol_edits", "symbols")}
    total["equal_fraction"] = round(total["equal_lines"] / max(1, total["lines"]), 5)
    total["symbol_edit_rate"] = round(total["symbol_edits"] / max(1, total["symbols"]), 6)
    return total


def card_markdown(card: dict, text: str) -> str:
    """``MODEL_CARD.md``: a table of the card's facts (generated from ``card.json``), then the card's own text."""
    size_mb = card["size_bytes"] / 1e6
    agree = card["float16_agreement"]
    lines = [f"# {card['name']}", "", card["summary"], "", "| | |", "|---|---|",
             f"| trained on | {card['trained_on']} |",
             f"| initialised from | {card['initialised_from']} |",
             f"| training data licence | {card['data_licence']} |",
             f"| attribution | {card['attribution']} |",
             f"| input | height {card['input_height']} px, {card['input_channels']} channel(s) |",
             f"| alphabet | {card['alphabet_size']} symbols |",
             f"| size on disk | {size_mb:.1f} MB (weights stored as {card['stored_dtype']}) |",
             f"| float16 agreement | {agree['equal_lines']} of {agree['lines']} lines transcribed as the export "
             f"does; {agree['symbol_edits']} symbol edit(s) in {agree['symbols']} |", "",
             "## Figures (greedy decoding, the packaged float16 weights)", "",
             "| set | lines | CER | CER of the export | WER | line accuracy | command |",
             "|---|---|---|---|---|---|---|"]
    for e in card["evaluations"]:
        lines.append(f"| {e['set']} | {e['lines']} | {100 * e['cer']:.3f} % | {100 * e['export_cer']:.3f} % | "
                     f"{100 * e['wer']:.2f} % | "
                     f"{100 * e['line_accuracy']:.2f} % | `{e['command']}` |")
    if card.get("sample"):
        sample = card["sample"]
        lines += ["", f"Test sample (tests/test_pretrained.py reads it again): the {sample['lines']} lines of "
                      f"{', '.join(sample['folders'])} ({sample['format']}"
                      f"{', its ' + sample['part'] + ' part' if sample.get('part') else ''}, in the shared data "
                      "folder), "
                      f"CER {100 * sample['cer']:.3f} %."]
    lines += ["", "## Rebuild", "", f"Config: `{card['rebuild']['config']}`", "", "```"]
    lines += card["rebuild"]["commands"] + ["```", "", text.strip(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dir", help="the training's SavedModel export (output_model_dir/export)")
    parser.add_argument("name", help="the model's name (pretrained:NAME), e.g. fraktur-19c")
    parser.add_argument("--card", required=True, help="Markdown: the model card's text")
    parser.add_argument("--card-info", required=True, help="JSON: summary, trained_on, licence, ... (see above)")
    parser.add_argument("--check", action="append", default=[], metavar="IMAGE_OR_CSV",
                        help="more images (or CSVs of images) to compare the packaged model with the export on")
    parser.add_argument("--out-dir", help="where the model folder goes (default: the tf_crnn/pretrained/ imported)")
    parser.add_argument("--force", action="store_true", help="replace an existing folder of that name")
    parser.add_argument("--shared-data", default=os.path.join("..", "shared", "data"),
                        help="the folder the card info's sample folders are in (default ../shared/data)")
    parser.add_argument("--max-disagreement", type=float, default=0.02,
                        help="fraction of lines the two may transcribe differently before exit code 1 (0.02)")
    args = parser.parse_args(argv)

    from tf_crnn.decoding import default_decoding
    from tf_crnn.loader import PredictionModel
    from tf_crnn.model_files import CARD_INFO, CARD_TEXT, SAVED_MODEL, STORED_DTYPE
    from tf_crnn.pretrained import MODELS_DIR, PREFIX, folder_bytes

    info = load_info(args.card_info)
    with open(args.card, encoding="utf-8") as f:
        text = f.read()
    export = PredictionModel(args.export_dir)
    if export.format != SAVED_MODEL:
        raise SystemExit(f"{args.export_dir} is not a SavedModel export")
    out_dir = args.out_dir or str(MODELS_DIR)
    final = os.path.join(out_dir, args.name)
    if os.path.exists(final) and not args.force:
        raise SystemExit(f"{final} exists: --force replaces it")
    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{args.name}.", dir=out_dir)  # hidden: tf-crnn lists no folder starting with "."
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would stay with the model folder
    write_folder(export, tmp)
    packaged = PredictionModel(tmp)

    evaluations, agreements = [], []
    for entry in info["evaluations"]:
        figures, agreed = evaluate_both(export, packaged, entry["csv"])
        evaluations.append({**entry, **figures,
                            "command": f"tf-crnn evaluate --model {PREFIX}{args.name} --csv {entry['csv']}"})
        agreements.append(agreed)
        print(f"{entry['set']}: CER {100 * figures['cer']:.3f} % packaged, {100 * figures['export_cer']:.3f} % "
              f"export; {agreed['equal_lines']} of {agreed['lines']} lines transcribed the same")
    images = check_paths(args.check, export.params)
    if images:
        greedy = default_decoding(export.params, "greedy")
        texts = [[p.text for p in m.predict(images, decoding=greedy, strict=True)] for m in (export, packaged)]
        agreements.append(agreement(*texts))
        print(f"--check: {agreements[-1]['equal_lines']} of {len(images)} images transcribed the same")
    agreed = combined(agreements)
    sample = measure_sample(packaged, info["sample"], args.shared_data) if info.get("sample") else None
    if sample:
        print(f"sample {', '.join(sample['folders'])}: CER {100 * sample['cer']:.3f} % on {sample['lines']} lines")

    params = export.params
    card = {"name": args.name, **{k: info[k] for k in INFO_KEYS}, "evaluations": evaluations,
            "float16_agreement": agreed, "stored_dtype": STORED_DTYPE,
            "input_height": int(params["input_shape"][0]), "input_channels": int(params.get("input_channels", 1)),
            "alphabet_size": len(export.alphabet), "size_bytes": 0, **({"sample": sample} if sample else {})}
    for _ in range(2):  # the size includes the card, which states the size
        card["size_bytes"] = folder_bytes(tmp)
        with open(os.path.join(tmp, CARD_INFO), "w", encoding="utf-8") as f:
            json.dump(card, f, ensure_ascii=False, indent=1)
        with open(os.path.join(tmp, CARD_TEXT), "w", encoding="utf-8") as f:
            f.write(card_markdown(card, text))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    print(f"{final}: {folder_bytes(final) / 1e6:.2f} MB; float16 agreement: {agreed['equal_lines']} of "
          f"{agreed['lines']} lines equal ({100 * agreed['equal_fraction']:.2f} %), {agreed['symbol_edits']} symbol "
          f"edit(s) in {agreed['symbols']} ({100 * agreed['symbol_edit_rate']:.3f} %)")
    return 1 if 1 - agreed["equal_fraction"] > args.max_disagreement else 0


if __name__ == "__main__":
    sys.exit(main())
