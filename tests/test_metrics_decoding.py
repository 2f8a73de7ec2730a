"""Metrics on hand-computed pairs; greedy and beam-search CTC decoding on hand-made logits."""
import numpy as np
import pytest
import tensorflow as tf

from tf_crnn import metrics
from tf_crnn.config import Params
from tf_crnn.decoding import codes_to_strings, codes_to_symbols, ctc_decode, ctc_steps_needed

LABELS = [tuple("abc"), tuple("abd"), ("a\u0364", "b")]
PREDS = [tuple("abc"), tuple("ab"), ("a", "b")]


def test_metrics_hand_computed():
    assert metrics.per_char_accuracy(LABELS, PREDS) == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)
    assert metrics.sequence_accuracy(LABELS, PREDS) == pytest.approx(1 / 3)
    # distances 0, 1, 1 over 3 + 3 + 2 symbols: a combining-mark symbol counts once
    assert metrics.edit_distances(LABELS, PREDS) == [0, 1, 1]
    assert metrics.cer(LABELS, PREDS) == pytest.approx(2 / 8)
    assert metrics.wer(["the cat sat", "a b"], ["the bat sat", "a b"]) == pytest.approx(1 / 5)


def test_metrics_empty_prediction():
    assert metrics.cer([tuple("abcd")], [()]) == 1.0
    assert metrics.per_char_accuracy([tuple("abcd")], [()]) == 0.0


def _logits(probabilities):
    return tf.math.log(tf.constant([probabilities], tf.float32))


def test_greedy_collapses_repeats_and_drops_blank():
    # classes: 0 blank, 1 'a', 2 'b'; best path a a _ a b -> "aab"
    p = [[.1, .8, .1], [.1, .8, .1], [.8, .1, .1], [.1, .8, .1], [.1, .1, .8]]
    codes, scores = ctc_decode(_logits(p), tf.constant([5]), "greedy")
    assert codes.numpy().tolist() == [[[1, 1, 2]]]
    assert scores.numpy()[0, 0] == pytest.approx(.8 ** 5, rel=1e-4)
    assert codes_to_strings(codes, ["", "a", "b"]).numpy().tolist() == [[b"aab"]]
    assert codes_to_symbols(codes.numpy()[:, 0], ["", "a", "b"]) == [("a", "a", "b")]


def test_greedy_respects_sequence_length():
    p = [[.1, .8, .1], [.1, .1, .8], [.1, .1, .8]]
    codes, _ = ctc_decode(_logits(p), tf.constant([1]), "greedy")
    assert codes.numpy()[0, 0].tolist() == [1]


def test_beam_search_finds_more_probable_label_than_best_path():
    # Best path is blank-blank (p=.36) but "a" has p = .4*.6 + .6*.4 + .4*.4 = .64.
    p = [[.6, .4], [.6, .4]]
    greedy, g_score = ctc_decode(_logits(p), tf.constant([2]), "greedy")
    beam, b_score = ctc_decode(_logits(p), tf.constant([2]), "beam_search", beam_width=4, top_paths=2)
    assert greedy.numpy()[0, 0].tolist() == [] or set(greedy.numpy()[0, 0].tolist()) == {0}
    assert g_score.numpy()[0, 0] == pytest.approx(.36, rel=1e-4)
    assert beam.numpy()[0, 0].tolist()[:1] == [1]
    assert b_score.numpy()[0].tolist() == pytest.approx([.64, .36], rel=1e-3)
    assert codes_to_strings(beam, ["", "a"]).numpy().tolist() == [[b"a", b""]]


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown decoding method"):
        ctc_decode(_logits([[.5, .5]]), tf.constant([1]), "viterbi")


def test_ctc_feasibility_counts_repeats():
    assert ctc_steps_needed(tuple("abc")) == 3
    assert ctc_steps_needed(tuple("aab")) == 4  # a blank must separate the two a's


def test_sequence_length_matches_model():
    from tf_crnn.model import sequence_lengths

    params = Params()
    widths = np.array([1, 4, 5, 99, 100, 101], np.int32)
    assert sequence_lengths(tf.constant(widths), params.width_downsampling).numpy().tolist() == \
        [params.sequence_length(w) for w in widths]
    assert params.sequence_length(100) == 25
