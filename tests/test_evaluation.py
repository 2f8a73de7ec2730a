"""tf-crnn evaluate: metrics on hand-computed pairs, lexicon decoding on hand-made logits, end to end
(train, export, evaluate through the CLI, and as a Sacred run in a real SecantusDB)."""
import json
import math
from pathlib import Path

import gridfs
import numpy as np
import pandas as pd
import pymongo
import pytest
from conftest import ROOT, tiny_params, train_tiny_export

from tf_crnn import metrics
from tf_crnn.cli import main as cli_main
from tf_crnn.decoding import Lexicon, ctc_log_likelihood, decode_to_symbols, lexicon_decode

# ---- metrics -------------------------------------------------------------------------

def test_one_minus_ned_hand_computed():
    labels = [tuple("abc"), tuple("abcd"), (), tuple("ab")]
    preds = [tuple("abc"), tuple("ab"), (), tuple("xyz")]
    # 1 - 0/3, 1 - 2/4, two empty sequences count 1, 1 - 3/3
    assert metrics.one_minus_ned(labels, preds) == pytest.approx((1 + 0.5 + 1 + 0) / 4)
    # a multi-code-point symbol counts once: distance 1 over max(2, 2)
    assert metrics.one_minus_ned([("a\u0364", "b")], [("a", "b")]) == pytest.approx(0.5)


def test_case_insensitive_and_alphanumeric():
    labels = [tuple("St. Peter's"), tuple("Hello World")]
    preds = [tuple("ST PETERS"), tuple("hello world")]
    exact = metrics.recognition_metrics(labels, preds, "exact")
    # "St. Peter's" -> "ST PETERS": 'T' 'P' 'E' 'T' 'E' 'R' 'S' differ from 't' 'P'... count by hand:
    # S=S, t->T, '.' deleted, ' ', P=P, e->E, t->T, e->E, r->R, "'" deleted, s->S: 6 subs + 2 deletions = 8
    # "Hello World" -> "hello world": 2 substitutions
    assert metrics.edit_distances(labels, preds) == [8, 2]
    assert exact["cer"] == pytest.approx(10 / 22)
    assert exact["sequence_accuracy"] == 0.0
    assert exact["wer"] == pytest.approx(4 / 4)

    ci = metrics.recognition_metrics(labels, preds, "case_insensitive")
    assert ci["cer"] == pytest.approx(2 / 22)  # only '.' and "'" remain wrong
    assert ci["sequence_accuracy"] == pytest.approx(0.5)
    assert ci["wer"] == pytest.approx(2 / 4)  # "st." != "st", "peter's" != "peters"
    assert ci["one_minus_ned"] == pytest.approx(((1 - 2 / 11) + 1) / 2)

    alnum = metrics.recognition_metrics(labels, preds, "alphanumeric")
    assert metrics.normalize(labels[0], "alphanumeric") == tuple("stpeters")
    assert alnum == {"char_accuracy": 1.0, "sequence_accuracy": 1.0, "cer": 0.0, "wer": 0.0, "one_minus_ned": 1.0}


def test_alphanumeric_uses_nfkc():
    # fi ligature -> "fi", long s -> "s", full-width letters -> ASCII, a + combining e -> "a"
    assert metrics.normalize(("\ufb01", "x"), "alphanumeric") == tuple("fix")
    assert metrics.normalize(tuple("\uff33tra\u017f\u017fe"), "alphanumeric") == tuple("strasse")
    assert metrics.normalize(("a\u0364", "b", "!"), "alphanumeric") == ("a", "b")
    assert metrics.normalize(("A\u0364",), "case_insensitive") == ("a\u0364",)
    with pytest.raises(ValueError, match="unknown normalization"):
        metrics.normalize(("a",), "ascii")
    per_norm = metrics.normalized_metrics([tuple("Ab1")], [tuple("ab1")])
    assert set(per_norm) == set(metrics.NORMALIZATIONS) == {"exact", "case_insensitive", "alphanumeric"}
    assert per_norm["exact"]["char_accuracy"] == pytest.approx(2 / 3)
    assert per_norm["case_insensitive"]["char_accuracy"] == 1.0


# ---- lexicon decoding ------------------------------------------------------------------

LOOKUP = {"a": 1, "b": 2, "c": 3}
# classes [blank, a, b, c] over 3 time steps; best path a b _ -> "ab" (p = .7 * .6 * .5 = .21)
PROBS = np.array([[[.1, .7, .1, .1], [.05, .05, .6, .3], [.5, .05, .05, .4]]], np.float32)
LOGITS, LENGTHS = np.log(PROBS), np.array([3], np.int32)
# p("ab") over all alignments: aab, abb, ab_, _ab, a_b
P_AB = .7 * .05 * .05 + .7 * .6 * .05 + .7 * .6 * .5 + .1 * .05 * .05 + .7 * .05 * .05
P_ABC = .7 * .6 * .4  # the only alignment in 3 steps


def test_ctc_log_likelihood_hand_computed():
    log_p = ctc_log_likelihood(np.repeat(LOGITS, 3, axis=0), np.repeat(LENGTHS, 3), [[1, 2], [1, 2, 3], [3, 3, 3, 3]])
    assert np.exp(log_p[:2]) == pytest.approx([P_AB, P_ABC], rel=1e-4)
    assert log_p[2] == -np.inf  # 4 symbols (plus blanks between repeats) cannot fit in 3 steps


def test_lexicon_picks_most_probable_word_near_the_hypotheses():
    [[(best, score)]] = decode_to_symbols(LOGITS, LENGTHS, ["", "a", "b", "c"])
    assert best == ("a", "b") and score == pytest.approx(.21, rel=1e-4)
    # "bb" and "abc" are both 1 edit from "ab": CTC probability decides, not the lexicon order.
    lexicon = Lexicon(["bb", "abc", "ba", "xyz"], LOOKUP)
    assert lexicon.skipped == 1 and len(lexicon) == 3  # "xyz" cannot be emitted
    assert lexicon.candidates([("a", "b")], max_distance=1) == {0: 1, 1: 1}
    [(word, p)] = lexicon_decode(LOGITS, LENGTHS, [[best]], lexicon, max_distance=1)
    assert word == tuple("abc") and p == pytest.approx(P_ABC, rel=1e-4)
    # The exact word, when listed, has the highest probability.
    [(word, p)] = lexicon_decode(LOGITS, LENGTHS, [[best]], Lexicon(["bb", "abc", "ab"], LOOKUP))
    assert word == tuple("ab") and p == pytest.approx(P_AB, rel=1e-4)


def test_lexicon_uses_all_beam_hypotheses_and_falls_back_to_nearest():
    [hyps] = decode_to_symbols(LOGITS, LENGTHS, ["", "a", "b", "c"], "beam_search", beam_width=8, top_paths=3)
    texts = ["".join(h) for h, _ in hyps]
    assert texts == ["ab", "ac", "abc"]  # p = .23475, .219, .168
    # "cac" is 2 edits from "ab" but 1 from "ac", and more probable than "bb" (.002 > .00025)
    lexicon = Lexicon(["bb", "cac"], LOOKUP)
    [(word, _)] = lexicon_decode(LOGITS, LENGTHS, [[("a", "b")]], lexicon, max_distance=1)
    assert word == tuple("bb")
    [(word, p)] = lexicon_decode(LOGITS, LENGTHS, [[h for h, _ in hyps]], lexicon, max_distance=1)
    assert word == tuple("cac") and p == pytest.approx(.1 * .05 * .4, rel=1e-4)
    # Nothing within the radius: the nearest word, even if the model cannot emit it in 3 steps.
    [(word, p)] = lexicon_decode(LOGITS, LENGTHS, [[("a", "b")]], Lexicon(["bbbbbbbb", "ccccc"], LOOKUP), 1)
    assert word == tuple("ccccc") and p == 0.0


def test_lexicon_file(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("abc\n\n|a|b|\nba\u0364\n", encoding="utf-8")
    lexicon = Lexicon.from_file(str(path), {**LOOKUP, "a\u0364": 4})
    assert lexicon.words == [tuple("abc"), ("a", "b"), ("b", "a\u0364")]
    with pytest.raises(ValueError, match="no word made only of alphabet symbols"):
        Lexicon(["xyz"], LOOKUP)
    with pytest.raises(FileNotFoundError, match="lexicon not found"):
        Lexicon.from_file(str(tmp_path / "nope.txt"), LOOKUP)


# ---- end to end ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_export(digits_data, tmp_path_factory):
    """A tiny CRNN trained one epoch on the digits and exported."""
    return (train_tiny_export(digits_data, tmp_path_factory.mktemp("evaluation")),
            tiny_params(digits_data).csv_files_eval[0])


def _outputs(summary_dir, stem):
    summary = json.loads((summary_dir / f"{stem}.summary.json").read_text(encoding="utf-8"))
    rows = pd.read_csv(summary_dir / f"{stem}.predictions.csv", dtype={"ground_truth": str, "prediction": str},
                       keep_default_na=False)
    return summary, rows


def test_evaluate_cli_writes_consistent_csv_and_summary(trained_export, tmp_path, capsys):
    from tf_crnn.loader import PredictionModel

    export_dir, eval_csv = trained_export
    assert cli_main(["evaluate", "--model", export_dir, "--csv", eval_csv, "--quiet",
                     "--alphabet", str(ROOT / "data" / "alphabets" / "digits.json")]) == 0
    printed = capsys.readouterr().out
    assert "sequence_accuracy" in printed and "alphanumeric" in printed and "NFKC" in printed
    out_dir = Path(export_dir).parent / "evaluation"  # the default: <model>/../evaluation
    summary, rows = _outputs(out_dir, "labels.greedy")

    assert summary["num_samples"] == len(rows) == 16
    assert summary["logits_from"] == "logits signature" and summary["decoding"]["method"] == "greedy"
    assert summary["train_run"] is None and summary["evaluation_run"] is None
    exact = summary["metrics"]["exact"]
    assert exact["cer"] == pytest.approx(rows.edit_distance.sum() / rows.gt_length.sum())
    assert exact["sequence_accuracy"] == pytest.approx((rows.prediction == rows.ground_truth).mean())
    assert exact["one_minus_ned"] == pytest.approx(
        (1 - rows.edit_distance / np.maximum(rows.gt_length, rows.pred_length).clip(lower=1)).mean())
    alnum = summary["metrics"]["alphanumeric"]
    assert alnum["cer"] == pytest.approx(rows.edit_distance_alphanumeric.sum() / rows.gt_length_alphanumeric.sum())
    assert rows.line.tolist() == list(range(1, 17)) and rows.score.between(0, 1).all()
    # Digits: normalization changes nothing.
    assert summary["metrics"]["case_insensitive"] == exact == alnum
    # Decoding the logits outside the graph gives what serving_default (greedy in-graph) gives.
    served = PredictionModel(export_dir).predict(rows.path.tolist())
    assert [p.text for p in served] == rows.prediction.tolist()
    assert [p.score for p in served] == pytest.approx(rows.score.tolist(), rel=1e-4, abs=1e-12)

    # Beam search with a lexicon of the eval labels, on two CSVs: every prediction is a lexicon word.
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("\n".join(sorted(set(rows.ground_truth))), encoding="utf-8")
    train_csv = str(Path(eval_csv).parents[1] / "train" / "labels.csv")
    assert cli_main(["evaluate", "--model", export_dir, "--csv", eval_csv, "--csv", train_csv, "--quiet",
                     "--out", str(tmp_path / "out"), "--decoding", "beam_search", "--beam-width", "4",
                     "--top-paths", "2", "--lexicon", str(lexicon)]) == 0
    summary, rows = _outputs(tmp_path / "out", "labels+labels.beam_search-lexicon")
    assert summary["decoding"] == {"method": "beam_search", "beam_width": 4, "top_paths": 2,
                                   "lexicon": str(lexicon), "lexicon_max_distance": 3, "lexicon_words": 16}
    assert len(rows) == 80 and set(rows.prediction) <= set(rows.ground_truth[:16])
    assert all(len(json.loads(h)) == 2 for h in rows.hypotheses)
    assert {k: v["num_samples"] for k, v in summary["per_csv"].items()} == {eval_csv: 16, train_csv: 64}
    ev = rows[rows.csv_file == eval_csv]
    assert summary["per_csv"][eval_csv]["metrics"]["exact"]["cer"] == pytest.approx(
        ev.edit_distance.sum() / ev.gt_length.sum())


def test_evaluate_errors_name_the_problem(trained_export, tmp_path, capsys):
    export_dir, eval_csv = trained_export
    assert cli_main(["evaluate", "--model", str(tmp_path / "nope"), "--csv", eval_csv]) == 2
    assert "no exported model at" in capsys.readouterr().err

    bad = tmp_path / "bad.csv"
    image = Path(eval_csv).parent / open(eval_csv, encoding="utf-8").readline().split(";")[0]
    bad.write_text(f"{tmp_path / 'gone.png'};|1|2|\n{image};|1|x|\n", encoding="utf-8")
    assert cli_main(["evaluate", "--model", export_dir, "--csv", str(bad), "--quiet", "--strict"]) == 2
    assert f"{bad}:2: symbol 'x'" in capsys.readouterr().err  # labels are checked first
    bad.write_text(str(tmp_path / "gone.png") + ";|1|2|\n", encoding="utf-8")
    assert cli_main(["evaluate", "--model", export_dir, "--csv", str(bad), "--quiet"]) == 2
    assert f"{bad}:1: {tmp_path / 'gone.png'}: missing image file" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"0": 1, "1": 2}))
    assert cli_main(["evaluate", "--model", export_dir, "--csv", eval_csv, "--alphabet", str(other)]) == 2
    assert "is not the one" in capsys.readouterr().err


def test_evaluate_log_stores_a_sacred_run(trained_export, mongo_url, tmp_path):
    export_dir, eval_csv = trained_export
    out = tmp_path / "out"
    run_file = Path(export_dir).parent / "run.json"  # what training leaves in output_model_dir
    run_file.write_text(json.dumps({"run_id": 7}))
    try:
        args = ["evaluate", "--model", export_dir, "--csv", eval_csv, "--out", str(out), "--quiet",
                "--log", "--mongo-url", mongo_url, "--mongo-db-name", "tf_crnn_eval"]
        assert cli_main(args) == 0
        assert json.loads((out / "labels.greedy.summary.json").read_text())["train_run"] == 7
        assert cli_main(args + ["--train-run", "42"]) == 0  # the option wins over run.json
    finally:
        run_file.unlink()
    summary, rows = _outputs(out, "labels.greedy")
    db = pymongo.MongoClient(mongo_url)["tf_crnn_eval"]
    doc = db.runs.find_one({"_id": summary["evaluation_run"]})
    assert db.runs.find_one({"_id": summary["evaluation_run"] - 1})["config"]["train_run"] == 7
    assert doc["experiment"]["name"] == "crnn-evaluate" and doc["status"] == "COMPLETED"
    assert doc["config"]["train_run"] == 42 and doc["info"]["train_run"] == 42 and summary["train_run"] == 42
    assert doc["config"]["model"] == export_dir and doc["config"]["csv_files"] == [eval_csv]
    assert doc["config"]["decoding"]["method"] == "greedy"
    assert doc["result"] == summary["metrics"]
    assert doc["result"]["exact"]["cer"] == pytest.approx(rows.edit_distance.sum() / rows.gt_length.sum())
    series = {m["name"]: m["values"] for m in db.metrics.find({"run_id": doc["_id"]})}
    assert series["exact.cer"] == [summary["metrics"]["exact"]["cer"]]
    assert series["alphanumeric.one_minus_ned"] == [summary["metrics"]["alphanumeric"]["one_minus_ned"]]
    fs = gridfs.GridFS(db)
    artifacts = {a["name"]: a["file_id"] for a in doc["artifacts"]}
    assert set(artifacts) == {"labels.greedy.predictions.csv", "labels.greedy.summary.json"}
    assert json.loads(fs.get(artifacts["labels.greedy.summary.json"]).read()) == summary
    stored_csv = fs.get(artifacts["labels.greedy.predictions.csv"]).read()
    assert stored_csv == (out / "labels.greedy.predictions.csv").read_bytes()
    assert not math.isnan(summary["images_per_second"])


def test_evaluate_leaves_out_unreadable_images_and_reads_every_format(trained_export, tmp_path, capsys):
    from PIL import Image

    export_dir, eval_csv = trained_export
    first = Path(eval_csv).read_text(encoding="utf-8").splitlines()[0].split(";")
    image, label = Path(eval_csv).parent / first[0], first[1]
    with Image.open(image) as im:
        im.convert("P").save(tmp_path / "same.gif")  # the same pixels as a palette GIF
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    csv = tmp_path / "mixed.csv"
    csv.write_text(f"{image};{label}\n{tmp_path / 'corrupt.png'};{label}\n{tmp_path / 'same.gif'};{label}\n",
                   encoding="utf-8")
    args = ["evaluate", "--model", export_dir, "--csv", str(csv), "--quiet", "--out", str(tmp_path / "out")]
    assert cli_main(args) == 0
    captured = capsys.readouterr()
    assert "leaving out 1 image(s)" in captured.err
    assert f"{csv}:2: {tmp_path / 'corrupt.png'}: cannot decode image" in captured.err
    assert "1 unreadable image(s) left out" in captured.out
    summary, rows = _outputs(tmp_path / "out", "mixed.greedy")
    assert summary["num_samples"] == 2 and summary["num_unreadable"] == 1
    assert summary["unreadable"] == [
        f"{csv}:2: {tmp_path / 'corrupt.png'}: cannot decode image (OSError: Truncated File Read)"]
    assert rows.line.tolist() == [1, 3]
    assert rows.prediction[0] == rows.prediction[1] and rows.score[0] == pytest.approx(rows.score[1], rel=1e-5)

    assert cli_main(args + ["--strict"]) == 1
    assert f"{csv}:2: {tmp_path / 'corrupt.png'}" in capsys.readouterr().err


def test_symbols_outside_the_alphabet_are_scored_as_errors_and_listed(trained_export, tmp_path, capsys):
    export_dir, eval_csv = trained_export
    rows = [line.split(";", 1) for line in open(eval_csv, encoding="utf-8").read().splitlines()[:4]]
    base = Path(eval_csv).parent
    mixed = tmp_path / "new_book.csv"
    # line 2 gains a symbol the digits model lacks, line 4 two of them
    labels = [rows[0][1], rows[1][1] + "β|", rows[2][1], "|ã|" + rows[3][1] + "ã|"]
    mixed.write_text("".join(f"{base / r[0]};{label}\n" for r, label in zip(rows, labels)), encoding="utf-8")
    out = tmp_path / "out"
    assert cli_main(["evaluate", "--model", export_dir, "--csv", str(mixed), "--quiet", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "2 line(s) have 3 label symbol(s) the model's alphabet lacks (ã β)" in captured.err
    assert f"{mixed}:2: symbol 'β' (U+03B2) is not in the alphabet" in captured.err
    assert "2 line(s) with 3 symbol(s) outside the model's alphabet, scored as errors: ã β" in captured.out
    summary, scored = _outputs(out, "new_book.greedy")
    assert summary["num_samples"] == 4
    assert summary["outside_alphabet"]["symbols"] == {"ã": 2, "β": 1}
    assert summary["outside_alphabet"]["lines"] == 2 and summary["outside_alphabet"]["occurrences"] == 3
    # the model can only produce digits: each foreign symbol is at least one edit
    assert scored.prediction.str.fullmatch(r"[0-9]*").all()
    assert (scored.edit_distance[[1, 3]].to_numpy() >= [1, 2]).all()
    assert summary["metrics"]["exact"]["cer"] == pytest.approx(scored.edit_distance.sum() / scored.gt_length.sum())
    assert cli_main(["evaluate", "--model", export_dir, "--csv", str(mixed), "--quiet", "--strict",
                     "--out", str(tmp_path / "strict")]) == 2
    assert "3 label symbol(s) not in the alphabet" in capsys.readouterr().err
    assert not (tmp_path / "strict").exists()
