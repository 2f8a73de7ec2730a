"""Confidence voting (tf_crnn.voting; Reul et al. 2018) and cross-fold training (tf-crnn train-folds).

The algorithm on hand-made hypotheses; then evaluate / predict with several --model of one tiny trained
model (a vote of identical models is that model), a vote of real logits that one model gets wrong,
the refusals (other alphabets, beam search); then train-folds with 2 folds recorded in SecantusDB.
"""
from __future__ import annotations

import itertools
import json
import random
import shlex
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pymongo
import pytest
from conftest import tiny_params

from tf_crnn.cli import main as cli_main
from tf_crnn.voting import Hypothesis, VotingError, align, vote, voting_decoding


def hyp(symbols, confidence: float = 0.9) -> Hypothesis:
    return Hypothesis(tuple(symbols), (confidence,) * len(symbols))


# ---- the algorithm ---------------------------------------------------------------------

@pytest.mark.parametrize("symbols", [("ſ", "aͤ", "special_char", "n", "n"), ("7",), ()])
def test_voting_identical_hypotheses_gives_that_hypothesis(symbols):
    single = Hypothesis(symbols, tuple(0.5 + 0.1 * i for i in range(len(symbols))), blank_confidence=0.7)
    voted = vote([single] * 3)
    assert voted.symbols == symbols
    assert voted.confidences == pytest.approx(single.confidences)
    assert voted.slots == tuple((s, s, s) for s in symbols)
    assert vote([single]).symbols == symbols


@pytest.mark.parametrize("wrong", [
    ("h", "a", "l", "l", "o"),        # substitution
    ("h", "e", "l", "x", "l", "o"),   # insertion
    ("h", "e", "l", "o"),             # deletion
    ("x", "h", "e", "l", "l", "o"),   # insertion at the start
    ("h", "e", "l", "l"),             # deletion at the end
    ("h", "e", "y", "l", "o"),        # substitution next to a deletion
])
def test_two_agreeing_hypotheses_correct_the_third(wrong):
    right = ("h", "e", "l", "l", "o")
    # The odd one out is surer of every symbol than either of the others, but not than both together;
    # wherever it stands in the order.
    for position in range(3):
        hypotheses = [hyp(right, 0.6), hyp(right, 0.6)]
        hypotheses.insert(position, hyp(wrong, 0.95))
        assert vote(hypotheses).symbols == right, position


def test_confidence_decides_when_all_three_disagree():
    assert vote([hyp("a1c", 0.5), hyp("a2c", 0.9), hyp("a3c", 0.6)]).symbols == tuple("a2c")
    # "nothing" is a candidate too: one model sure there is nothing between 'a' and 'c' against two others
    assert vote([hyp("ac", 0.95), hyp("a2c", 0.4), hyp("a3c", 0.45)]).symbols == tuple("ac")
    assert vote([hyp("ac", 0.95), hyp("a2c", 0.4), hyp("a2c", 0.6)]).symbols == tuple("a2c")
    # equal sums: more votes win, then the earliest hypothesis
    assert vote([hyp("x", 0.8), hyp("y", 0.4), hyp("y", 0.4)]).symbols == ("y",)
    assert vote([hyp("x", 0.5), hyp("y", 0.5)]).symbols == ("x",)
    assert vote([hyp("y", 0.5), hyp("x", 0.5)]).symbols == ("y",)


def test_alternatives_let_the_symbol_the_others_rank_second_win():
    # Three models read three different symbols between 'a' and 'c'; two of them rank "z" second.
    def reading(middle, confidence, alternatives):
        return Hypothesis(("a", middle, "c"), (0.9, confidence, 0.9), alternatives=((), alternatives, ()))

    readers = [reading("z", 0.5, (("k", 0.3),)), reading("k", 0.55, (("z", 0.4),)), reading("l", 0.6, (("z", 0.35),))]
    assert vote(readers).symbols == tuple("azc")  # z: 0.5 + 0.4 + 0.35 against k 0.85, l 0.6
    # Without alternatives (best symbols only) the surest reader wins that slot.
    assert vote([Hypothesis(h.symbols, h.confidences) for h in readers]).symbols == tuple("alc")
    # An alternative counts only for symbols some model reads there: "q" ranked second by all cannot win.
    assert vote([reading(m, 0.5, (("q", 0.45),)) for m in "xyx"]).symbols == tuple("axc")
    assert readers[1].probability(1, "z") == 0.4 and readers[1].probability(1, "k") == 0.55
    assert readers[1].probability(1, "l") == 0.0 and readers[1].probability(0, "z") == 0.0


def test_empty_transcriptions_vote_with_their_blank_confidence():
    empty = Hypothesis((), (), blank_confidence=0.99)
    assert vote([empty, hyp("7", 0.4), hyp("", 0.5)]).symbols == ()
    assert vote([empty, hyp("7", 0.6), hyp("7", 0.6)]).symbols == ("7",)
    assert vote([empty, empty]).symbols == () and vote([empty, empty]).slots == ()


def test_align_keeps_every_symbol_once_in_order():
    rng = random.Random(3)
    for _ in range(200):
        base = [rng.choice("abcdé") for _ in range(rng.randint(0, 8))]
        hypotheses = []
        for _ in range(rng.randint(1, 5)):
            symbols = [s for s in base if rng.random() > 0.2]
            for _ in range(rng.randint(0, 2)):
                symbols.insert(rng.randint(0, len(symbols)), rng.choice("xyz"))
            hypotheses.append(Hypothesis(tuple(symbols), tuple(rng.random() for _ in symbols)))
        slots = align(hypotheses)
        assert all(any(p is not None for p in slot) for slot in slots)
        for k, h in enumerate(hypotheses):
            assert [slot[k] for slot in slots if slot[k] is not None] == list(range(len(h.symbols)))
        assert set(vote(hypotheses).symbols) <= {s for h in hypotheses for s in h.symbols}


def test_hypothesis_and_decoding_checks():
    with pytest.raises(ValueError, match="2 symbols but 1 confidences"):
        Hypothesis(("a", "b"), (0.5,))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        Hypothesis(("a",), (1.5,))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        Hypothesis(("a",), (0.5,), alternatives=((("b", float("nan")),),))
    with pytest.raises(ValueError, match="2 symbols but alternatives for 1"):
        Hypothesis(("a", "b"), (0.5, 0.5), alternatives=((),))
    with pytest.raises(ValueError, match="no hypothesis"):
        vote([])
    assert voting_decoding().method == voting_decoding("greedy").method == "greedy"
    with pytest.raises(VotingError, match="--decoding beam_search works with one --model only"):
        voting_decoding("beam_search")
    with pytest.raises(VotingError, match="--lexicon"):
        voting_decoding(None, "words.txt")


def test_greedy_hypotheses_and_best_path_probability():
    from tf_crnn.decoding import ctc_best_path_log_probability
    from tf_crnn.voting import greedy_hypotheses

    # frames: a a _ b b _ _ a (then padding); classes: blank, a, b
    p = np.array([[.1, .8, .1], [.3, .6, .1], [.7, .2, .1], [.1, .1, .8], [.2, .1, .7], [.9, .05, .05],
                  [.6, .3, .1], [.2, .5, .3], [1, 0, 0]])
    log_probs = np.log(np.clip(p, 1e-12, 1))[None]
    (h,) = greedy_hypotheses(log_probs, [8], ["", "a", "b"])
    assert h.symbols == ("a", "b", "a") and h.confidences == pytest.approx((0.8, 0.8, 0.5))
    # alternatives from each symbol's peak frame (0, 3, 7), blank left out, below 0.01 left out
    assert [dict(a) for a in h.alternatives] == [{"b": pytest.approx(.1)}, {"a": pytest.approx(.1)},
                                                 {"b": pytest.approx(.3)}]
    best = np.log(p[np.arange(8), p[:8].argmax(1)]).sum()
    assert ctc_best_path_log_probability(log_probs[0], 8, [1, 2, 1]) == pytest.approx(best)
    assert ctc_best_path_log_probability(log_probs[0], 8, [1, 2]) < best  # another label: a worse path
    assert ctc_best_path_log_probability(log_probs[0], 2, [1, 1]) == -np.inf  # 'aa' needs 3 frames
    assert ctc_best_path_log_probability(log_probs[0], 3, [1, 1]) == pytest.approx(np.log(.8 * .3 * .2))  # a _ a
    (empty,) = greedy_hypotheses(np.log(np.full([1, 4, 3], [0.8, 0.1, 0.1])), [4], ["", "a", "b"])
    assert empty.symbols == () and empty.blank_confidence == pytest.approx(0.8)


# ---- evaluate and predict with several models -------------------------------------------

@pytest.fixture(scope="module")
def noisy_export(digits_data, tmp_path_factory):
    """A tiny CRNN trained one epoch at learning rate 1e-9, exported: it keeps the untrained network's noise,
    so it transcribes every image with several symbols of varied confidence (a trained 1-epoch model collapses
    to the all-blank output, which votes trivially)."""
    from tf_crnn.alphabet import Alphabet
    from tf_crnn.data import load_split
    from tf_crnn.trainer import Trainer, deterministic

    out = tmp_path_factory.mktemp("voting")
    params = tiny_params(digits_data, output_model_dir=str(out / "model"), n_epochs=1, learning_rate=1e-9,
                         mixed_precision="off")
    alphabet = Alphabet.from_file(params.lookup_alphabet_file)
    with deterministic(1):
        trainer = Trainer(params, alphabet)
        trainer.fit(load_split(params.csv_files_train, params, alphabet, "train", progress=False),
                    load_split(params.csv_files_eval, params, alphabet, "eval", progress=False), seed=0)
    return Path(trainer.export(str(out / "model" / "export"))), Path(params.csv_files_eval[0])


def _outputs(folder: Path, stem: str):
    summary = json.loads((folder / f"{stem}.summary.json").read_text(encoding="utf-8"))
    rows = pd.read_csv(folder / f"{stem}.predictions.csv", dtype={"ground_truth": str, "prediction": str},
                       keep_default_na=False)
    return summary, rows


@pytest.mark.slow
def test_vote_of_three_identical_models_is_the_model(noisy_export, mongo_url, tmp_path, capsys):
    export, eval_csv = noisy_export
    assert cli_main(["evaluate", "--model", str(export), "--csv", str(eval_csv), "--quiet",
                     "--out", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    single, single_rows = _outputs(tmp_path / "one", "labels.greedy")
    assert single_rows.prediction.str.len().min() >= 1, "precondition: the model writes something on each line"

    assert cli_main(["evaluate", "--model", str(export), "--model", str(export), "--model", str(export),
                     "--csv", str(eval_csv), "--quiet", "--log", "--mongo-url", mongo_url,
                     "--mongo-db-name", "tf_crnn_vote"]) == 0
    printed = capsys.readouterr().out
    assert f"vote of 3 models, confidence voting (Reul et al. 2018):\n  1. {export}\n  2. {export}" in printed
    # default folder: evaluation/ in the folder that holds the models; the file names say it is a vote
    voted, voted_rows = _outputs(export.parent / "evaluation", "labels.greedy.vote3")
    assert voted["metrics"] == single["metrics"]
    assert voted_rows.prediction.tolist() == single_rows.prediction.tolist()
    assert voted_rows.score.tolist() == single_rows.score.tolist()
    assert voted["vote"] == {"num_models": 3, "models": [str(export)] * 3,
                             "method": "confidence voting (Reul et al. 2018)"}
    assert voted["model"] == [str(export)] * 3 and "vote" not in single and single["model"] == str(export)
    run = pymongo.MongoClient(mongo_url)["tf_crnn_vote"].runs.find_one({"_id": voted["evaluation_run"]})
    assert run["config"]["model"] == run["info"]["model"] == [str(export)] * 3
    assert run["result"] == voted["metrics"]
    assert [json.loads(m) for m in voted_rows.model_predictions] == [
        [[p, round(s, 6)]] * 3 for p, s in zip(single_rows.prediction, single_rows.score)]

    paths = single_rows.path.tolist()[:5]
    assert cli_main(["predict", "--model", str(export), *paths]) == 0
    one = capsys.readouterr().out
    assert cli_main(["predict", "--model", str(export), "--model", str(export), "--model", str(export), *paths]) == 0
    assert capsys.readouterr().out == one


@pytest.mark.slow
def test_vote_of_real_logits_corrects_the_model_that_misreads_a_symbol(noisy_export, tmp_path):
    from tf_crnn.loader import PredictionModel
    from tf_crnn.voting import VotingModel

    export, eval_csv = noisy_export
    model = PredictionModel(export)
    paths = [str(eval_csv.parent / line.split(";")[0]) for line in eval_csv.read_text().splitlines()[:4]]
    (_, logits, lengths), = model.iter_logits(paths, batch_size=4)
    own = [p.text for p in model.predict(paths)]
    # Model 2 misreads the first symbol of line 0: over the frames that emit it, its logit and another
    # symbol's trade places (the same confidence for the wrong symbol, which differs from the next one).
    damaged = logits.copy()
    path = damaged[0, :lengths[0]].argmax(-1)
    first = np.flatnonzero(path != 0)[0]
    end = first + np.flatnonzero(np.append(path[first:] != path[first], True))[0]
    right = path[first]
    wrong = next(c for c in range(1, logits.shape[-1]) if c != right and c not in path[end:end + 1])
    swapped = logits[0, first:end, wrong], logits[0, first:end, right]
    damaged[0, first:end, right], damaged[0, first:end, wrong] = swapped
    voter = VotingModel([model, model, model])
    lines = voter.vote_logits([(logits, lengths), (damaged, lengths), (logits, lengths)])
    assert ["".join(s) for (s, _), _ in lines] == own
    (symbols, score), models = lines[0]
    assert "".join(models[1][0]) == voter.alphabet.symbols_by_code[wrong] + own[0][1:]  # model 2 alone is wrong
    assert models[0][1] == models[2][1] and 0 < score < models[0][1]  # model 2 gives the voted text less
    predictions = voter.predict(paths + [str(tmp_path / "missing.png")])
    assert [p.text for p in predictions[:4]] == own and predictions[4].error == "missing image file"
    assert [a for a, _ in predictions[0].alternatives] == [own[0]] * 3


def test_models_with_other_alphabets_or_beam_search_are_refused(noisy_export, tmp_path, capsys):
    export, eval_csv = noisy_export
    other = tmp_path / "other_export"
    shutil.copytree(export, other)
    table = json.loads((other / "alphabet.json").read_text())
    (other / "alphabet.json").write_text(json.dumps({**table, "x": max(table.values()) + 1}))
    for command in (["evaluate", "--csv", str(eval_csv)], ["predict", str(eval_csv)]):
        assert cli_main([command[0], "--model", str(export), "--model", str(other), *command[1:]]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"tf-crnn {command[0]}: error: {export} and {other} do not have the same alphabet (1 symbols "
                       f"only in {other} ['x']): only models trained with one lookup table can vote"), err
    assert cli_main(["evaluate", "--model", str(export), "--model", str(export), "--csv", str(eval_csv),
                     "--decoding", "beam_search"]) == 2
    assert "a vote of several models decodes greedily: --decoding beam_search works with one --model only" in \
        capsys.readouterr().err


# ---- train-folds ----------------------------------------------------------------------------

@pytest.mark.slow
def test_train_folds_records_k_runs_of_one_group_and_prints_the_vote(digits_data, mongo_url, tmp_path, capsys):
    out = tmp_path / "out"
    base = tmp_path / "base.json"
    base.write_text(json.dumps({**tiny_params(digits_data, output_model_dir=str(out), n_epochs=1).to_dict(),
                                "mongo_url": mongo_url, "mongo_db_name": "tf_crnn_folds"}))
    args = ["train-folds", "--folds", "2", "--config", str(base), "--set", "seed=1", "--group", "g1"]
    assert cli_main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out

    db = pymongo.MongoClient(mongo_url)["tf_crnn_folds"]
    runs = {r["info"]["folds"]["fold"]: r for r in db.runs.find({"info.folds.group": "g1"})}
    assert sorted(runs) == [1, 2]
    parts = [str(out / "folds" / f"part_{i}.csv") for i in (1, 2)]
    for fold, run in runs.items():
        assert run["status"] == "COMPLETED" and run["experiment"]["name"] == "crnn"
        assert run["info"]["folds"] == {"group": "g1", "fold": fold, "k": 2, "split_seed": 0,
                                        "train_parts": [parts[2 - fold]], "held_out_part": parts[fold - 1]}
        assert run["config"]["csv_files_train"] == [parts[2 - fold]]
        assert run["config"]["output_model_dir"] == str(out / f"fold_{fold}")
        assert (out / f"fold_{fold}" / "export" / "saved_model.pb").is_file()
    rows = [Path(p).read_text(encoding="utf-8").splitlines() for p in parts]
    source = Path(tiny_params(digits_data).csv_files_train[0])
    assert sorted(len(r) for r in rows) == [32, 32] and not set(rows[0]) & set(rows[1])
    assert {line.split(";")[1] for line in rows[0] + rows[1]} == \
        {line.split(";")[1] for line in source.read_text().splitlines()}
    record = json.loads((out / "folds" / "folds.json").read_text())
    assert record["group"] == "g1" and [f["run"] for f in record["folds"]] == [runs[1]["_id"], runs[2]["_id"]]

    command = printed.strip().splitlines()[-1].strip()
    exports = [str(out / f"fold_{i}" / "export") for i in (1, 2)]
    assert command == (f"tf-crnn evaluate --model {exports[0]} --model {exports[1]} "
                       f"--csv {tiny_params(digits_data).csv_files_eval[0]}")
    assert cli_main(shlex.split(command)[1:] + ["--quiet"]) == 0  # the printed command votes the two folds
    assert (out / "evaluation" / "labels.greedy.vote2.summary.json").is_file()

    # The same output folder again: refused before anything is written or trained.
    assert cli_main(args) == 2
    assert f"output_model_dir {out / 'fold_1'} holds the" in capsys.readouterr().err


def test_assign_folds_is_a_seeded_partition():
    from tf_crnn.experiment.folds import FoldsError, assign_folds

    parts = assign_folds(10, 3, seed=4)
    assert sorted(itertools.chain(*parts)) == list(range(10)) and sorted(map(len, parts)) == [3, 3, 4]
    assert parts == assign_folds(10, 3, seed=4) and parts != assign_folds(10, 3, seed=5)
    assert all(p == sorted(p) for p in parts)
    with pytest.raises(FoldsError, match="at least 2 folds"):
        assign_folds(10, 1, 0)
    with pytest.raises(FoldsError, match="3 training rows cannot be dealt into 4 folds"):
        assign_folds(3, 4, 0)
