"""CTC decoding: greedy (best path), beam search and lexicon search; the CTC feasibility rule; the
probability of a given label (all paths, or the best one).

Class 0 is the CTC blank (see :mod:`tf_crnn.alphabet`). Both decoders collapse
repeated labels and then drop blanks (Graves et al. 2006). TensorFlow's beam
search expects the blank as the *last* class, so :func:`ctc_decode` rotates
the classes for it and maps the indices back.
"""
from __future__ import annotations

import math
import operator
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import tensorflow as tf

from .alphabet import BLANK
from .config import DECODING_NAMES, one_of

GREEDY, BEAM_SEARCH = DECODING_NAMES


def ctc_steps_needed(symbols) -> int:
    """Minimum CTC time steps to emit ``symbols``: one per symbol plus a blank between equal neighbours.

    The rule of Graves et al. 2006: a label of L symbols with R adjacent repeats
    can only be aligned to at least ``L + R`` time steps. Used by the data checks
    before training and by :func:`ctc_log_likelihood`.
    """
    return len(symbols) + sum(map(operator.eq, symbols, symbols[1:]))  # map, not a generator: 1 M labels 2 s faster


def ctc_decode(logits: tf.Tensor, lengths: tf.Tensor, method: str = GREEDY,
               beam_width: int = 10, top_paths: int = 1) -> tuple[tf.Tensor, tf.Tensor]:
    """Decode a batch of CTC logits.

    Args:
        logits: float ``[batch, time, num_classes]``, class 0 = blank.
        lengths: int32 ``[batch]``, valid time steps per sample.
        method: ``"greedy"`` or ``"beam_search"``.
        beam_width: beams kept by beam search.
        top_paths: hypotheses returned per sample (1 for greedy).

    Returns:
        codes: int32 ``[batch, top_paths, max_len]``, alphabet codes padded with 0 (blank).
        scores: float32 ``[batch, top_paths]``, probability of each hypothesis:
            the best path's probability for greedy, the beam's (prefix) probability
            for beam search, both in [0, 1].

    Raises:
        ValueError: unknown ``method``.
    """
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32))
    time_major = tf.transpose(log_probs, [1, 0, 2])
    lengths = tf.cast(lengths, tf.int32)
    if method == GREEDY:
        decoded, neg_sum = tf.nn.ctc_greedy_decoder(time_major, lengths, merge_repeated=True, blank_index=BLANK)
        log_p = -neg_sum  # [B, 1]: sum over time of the best class's log-probability
        offset = 0
    elif method == BEAM_SEARCH:
        # Move the blank from index 0 to the last index, as TF's decoder requires.
        rotated = tf.concat([time_major[:, :, 1:], time_major[:, :, :1]], axis=-1)
        decoded, log_p = tf.nn.ctc_beam_search_decoder(rotated, lengths, beam_width=beam_width, top_paths=top_paths)
        offset = 1  # rotated index j is code j + 1
    else:
        raise ValueError(f"unknown decoding method {method!r}; use {one_of(DECODING_NAMES)}")
    batch = tf.shape(logits)[0]
    paths = []
    for sparse in decoded:
        dense = tf.sparse.to_dense(tf.SparseTensor(sparse.indices, sparse.values + offset,
                                                   [batch, sparse.dense_shape[1]]), default_value=BLANK)
        paths.append(dense)
    max_len = tf.reduce_max([tf.shape(p)[1] for p in paths])
    codes = tf.stack([tf.pad(p, [[0, 0], [0, max_len - tf.shape(p)[1]]]) for p in paths], axis=1)
    return tf.cast(codes, tf.int32), tf.exp(tf.cast(log_p, tf.float32))


def codes_to_strings(codes: tf.Tensor, symbols_by_code: list[str]) -> tf.Tensor:
    """Join decoded codes into strings in-graph.

    Args:
        codes: int ``[..., max_len]`` padded with 0.
        symbols_by_code: ``list[code] -> symbol`` with ``""`` at index 0 (the blank),
            from :attr:`Alphabet.symbols_by_code`.

    Returns:
        tf.string ``[...]``, UTF-8.
    """
    table = tf.constant(symbols_by_code, dtype=tf.string)
    return tf.strings.reduce_join(tf.gather(table, codes), axis=-1)


def codes_to_symbols(codes: np.ndarray, symbols_by_code: list[str]) -> list[tuple[str, ...]]:
    """Decoded codes ``[batch, max_len]`` (numpy) to symbol tuples, dropping the blank padding."""
    return [tuple(symbols_by_code[c] for c in row if c != BLANK) for row in np.asarray(codes)]


# ---- decoding to symbols, CTC likelihood of given labels, lexicon search -------------------

def decode_to_symbols(logits, lengths, symbols_by_code: list[str], method: str = GREEDY, beam_width: int = 10,
                      top_paths: int = 1) -> list[list[tuple[tuple[str, ...], float]]]:
    """Decode a batch of logits to symbol tuples with scores (numpy or tensors in, Python out).

    Args:
        logits: ``[batch, time, num_classes]``, class 0 = blank.
        lengths: ``[batch]`` valid time steps.
        symbols_by_code: from :attr:`Alphabet.symbols_by_code`.
        method, beam_width, top_paths: as :func:`ctc_decode` (greedy always gives one path).

    Returns:
        per sample, its hypotheses ``(symbols, probability)``, best first.
    """
    top_paths = 1 if method == GREEDY else max(1, min(top_paths, beam_width))
    if method not in DECODING_NAMES:
        raise ValueError(f"unknown decoding method {method!r}; use {one_of(DECODING_NAMES)}")
    codes, scores = _compiled_decoder(method, int(beam_width), top_paths)(
        tf.cast(tf.convert_to_tensor(logits), tf.float32), tf.cast(tf.convert_to_tensor(lengths), tf.int32))
    codes, scores = codes.numpy(), scores.numpy()
    out = []
    for sample_codes, sample_scores in zip(codes, scores):
        out.append(list(zip(codes_to_symbols(sample_codes, symbols_by_code), (float(s) for s in sample_scores))))
    return out


_DECODERS: dict[tuple[str, int, int], tf.types.experimental.PolymorphicFunction] = {}


def _compiled_decoder(method: str, beam_width: int, top_paths: int):
    """:func:`ctc_decode` with these settings as a tf.function (one trace; eager decoding costs ~1 ms a call)."""
    key = (method, beam_width, top_paths)
    if key not in _DECODERS:
        _DECODERS[key] = tf.function(
            lambda logits, lengths: ctc_decode(logits, lengths, method, beam_width, top_paths),
            input_signature=[tf.TensorSpec([None, None, None], tf.float32), tf.TensorSpec([None], tf.int32)])
    return _DECODERS[key]


def ctc_log_likelihood(logits, lengths, labels: list[list[int]]) -> np.ndarray:
    """``log p(label | logits)`` under CTC (sum over all alignments, Graves et al. 2006).

    Args:
        logits: float ``[n, time, num_classes]`` (class 0 = blank), one row per label.
        lengths: int ``[n]`` valid time steps.
        labels: ``n`` code sequences (codes >= 1). An empty label is allowed (all blanks).

    Returns:
        float64 ``[n]``; ``-inf`` where the label cannot be aligned in ``lengths`` steps.
    """
    n = len(labels)
    if n == 0:
        return np.zeros([0])
    max_len = max(1, max(len(label) for label in labels))
    dense = np.zeros([n, max_len], np.int32)
    for i, label in enumerate(labels):
        dense[i, :len(label)] = label
    loss = tf.nn.ctc_loss(labels=tf.constant(dense), logits=tf.cast(tf.convert_to_tensor(logits), tf.float32),
                          label_length=tf.constant([len(label) for label in labels], tf.int32),
                          logit_length=tf.cast(tf.convert_to_tensor(lengths), tf.int32),
                          logits_time_major=False, blank_index=BLANK).numpy().astype(np.float64)
    # TF reports an unalignable label as a large finite loss: mark it -inf from the CTC length rule.
    needed = np.array([ctc_steps_needed(label) for label in labels])
    feasible = np.isfinite(loss) & (needed <= np.asarray(lengths).reshape(-1))
    return np.where(feasible, -loss, -np.inf)


def ctc_best_path_log_probability(log_probs, length: int, label: Sequence[int]) -> float:
    """``log`` of the probability of the most probable CTC path that spells ``label`` (Viterbi).

    The maximum, over the frame-by-frame labellings that collapse to ``label`` (Graves et al. 2006),
    of their probability; :func:`ctc_log_likelihood` sums over them instead. For the greedy
    transcription this is the greedy (best path) score. NumPy, one image.

    Args:
        log_probs: float ``[time, num_classes]``, log-softmax of the logits, class 0 = blank.
        length: valid frames (the first ``length`` rows).
        label: codes (>= 1); may be empty.

    Returns:
        a float <= 0; ``-inf`` when ``label`` cannot be spelled in ``length`` frames.
    """
    frames = np.asarray(log_probs, np.float64)[:int(length)]
    label = [int(c) for c in label]
    if len(frames) < ctc_steps_needed(label):
        return -math.inf
    if len(frames) == 0:
        return 0.0
    states = np.full(2 * len(label) + 1, BLANK)  # blank, label[0], blank, label[1], ..., blank
    states[1::2] = label
    skip = np.zeros(len(states), bool)  # a path may jump over the blank between two different symbols
    skip[2:] = (states[2:] != BLANK) & (states[2:] != states[:-2])
    best = np.full(len(states), -np.inf)
    best[:2] = frames[0, states[:2]]
    for t in range(1, len(frames)):
        previous = best.copy()
        previous[1:] = np.maximum(previous[1:], best[:-1])
        previous[2:] = np.where(skip[2:], np.maximum(previous[2:], best[:-2]), previous[2:])
        best = previous + frames[t, states]
    return float(best[-2:].max())


class Lexicon:
    """A word list for lexicon-constrained decoding (Shi et al. 2015, section 2.3.2).

    CRNN's lexicon-based transcription picks, among the lexicon words within
    edit distance ``max_distance`` of the lexicon-free prediction (their
    BK-tree search with delta = 3), the word of highest CTC probability
    ``p(word | logits)``. Here the neighbourhood is taken around each of the
    top-k beam hypotheses (rapidfuzz Levenshtein on symbol sequences); when no
    word is that close, the word nearest to the hypotheses wins (ties broken by
    CTC probability). Words with a symbol outside the alphabet cannot be
    emitted by the model and are left out.

    Args:
        words: the words, each a sequence of symbols.
        lookup: the alphabet's ``{symbol: code}``.
    """

    def __init__(self, words, lookup: dict[str, int]):
        words = [tuple(w) for w in dict.fromkeys(tuple(w) for w in words) if len(w)]
        self.words = [w for w in words if all(s in lookup for s in w)]
        self.skipped = len(words) - len(self.words)
        if not self.words:
            raise ValueError("the lexicon has no word made only of alphabet symbols")
        self.codes = [[lookup[s] for s in w] for w in self.words]
        self._lists = [list(w) for w in self.words]

    @classmethod
    def from_file(cls, path: str, lookup: dict[str, int], string_split_delimiter: str = "|",
                  normalization: str | None = "NFC") -> "Lexicon":
        """Read one word per line (UTF-8). A line like ``|a|ͤ|b|`` is split at the delimiter,
        any other line into grapheme clusters (UAX #29), so ``aͤ`` is one symbol.

        Args:
            path: the word list.
            lookup: the alphabet's ``{symbol: code}`` (its symbols in the ``normalization`` form).
            string_split_delimiter: the symbol separator of ``|a|b|`` lines.
            normalization: the model's ``unicode_normalization`` (``NFC``, ``NFD``, ``none``): each word's
                symbols are put in that form, so an NFD word list matches an NFC model.

        Raises:
            FileNotFoundError: no such file.
            TextFileError: not UTF-8 (a ``ValueError``).
            ValueError: no usable word in it.
        """
        from .annotations import graphemes, normalize_symbols, split_label
        from .textfiles import read_text

        words = []
        for line in read_text(path, "lexicon").splitlines():
            if not line.strip():
                continue
            d = string_split_delimiter
            symbols = (split_label(line, d) if len(line) > 1 and line.startswith(d) and line.endswith(d)
                       else graphemes(line.strip()))
            words.append(normalize_symbols(symbols, normalization))
        try:
            return cls(words, lookup)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def __len__(self) -> int:
        return len(self.words)

    def candidates(self, hypotheses, max_distance: int = 3) -> dict[int, int]:
        """The words within ``max_distance`` of any hypothesis, else the ones nearest to a hypothesis.

        Returns:
            ``{word index: smallest distance to a hypothesis}``.
        """
        from rapidfuzz import process
        from rapidfuzz.distance import Levenshtein

        queries = [list(h) for h in hypotheses]
        found: dict[int, int] = {}

        def collect(cutoff: int) -> None:
            for query in queries:
                for _, dist, index in process.extract(query, self._lists, scorer=Levenshtein.distance,
                                                      score_cutoff=cutoff, limit=None):
                    found[index] = min(dist, found.get(index, dist))

        collect(max_distance)
        if not found:
            collect(min(process.extractOne(q, self._lists, scorer=Levenshtein.distance)[1] for q in queries))
        return found


def lexicon_decode(logits, lengths, hypotheses: list[list[tuple[str, ...]]], lexicon: Lexicon,
                   max_distance: int = 3) -> list[tuple[tuple[str, ...], float]]:
    """Lexicon-constrained transcription of a batch (see :class:`Lexicon`).

    Args:
        logits: ``[batch, time, num_classes]``; lengths: ``[batch]``.
        hypotheses: per sample, its lexicon-free hypotheses (e.g. the top-k beams), best first.
        lexicon: the word list.
        max_distance: the neighbourhood radius delta (CRNN uses 3).

    Returns:
        per sample, the chosen word and its CTC probability ``p(word | logits)`` in [0, 1].
    """
    logits = np.asarray(logits)
    lengths = np.asarray(lengths)
    owners, words, distances = [], [], []
    for i, hyps in enumerate(hypotheses):
        found = lexicon.candidates(hyps, max_distance)
        owners += [i] * len(found)
        words += list(found)
        distances += list(found.values())
    owners_arr = np.array(owners, np.int64)
    log_p = ctc_log_likelihood(logits[owners_arr], lengths[owners_arr], [lexicon.codes[j] for j in words])
    out = []
    for i in range(len(hypotheses)):
        mine = np.flatnonzero(owners_arr == i)
        # highest CTC probability; among equals (e.g. all unalignable) the nearest, then lexicon order
        best = min(mine, key=lambda k: (-log_p[k], distances[k], words[k]))
        out.append((lexicon.words[words[best]], float(np.exp(log_p[best]))))
    return out


# ---- decoding settings and one batch of logits to transcriptions ---------------------------

@dataclass
class Decoding:
    """How CTC logits become text: :func:`decode_batch`'s settings.

    Attributes:
        method: ``"greedy"`` or ``"beam_search"``.
        beam_width: beams kept by beam search.
        top_paths: hypotheses kept per image (1 for greedy).
        lexicon: a word list file (:meth:`Lexicon.from_file`), or None for lexicon-free decoding.
        lexicon_max_distance: the lexicon search radius (CRNN's delta).
    """

    method: str = GREEDY
    beam_width: int = 10
    top_paths: int = 1
    lexicon: str | None = None
    lexicon_max_distance: int = 3

    def as_dict(self) -> dict:
        return {"method": self.method, "beam_width": self.beam_width, "top_paths": self.top_paths,
                "lexicon": self.lexicon, "lexicon_max_distance": self.lexicon_max_distance}


def default_decoding(params: dict, method: str | None = None, beam_width: int | None = None,
                     top_paths: int | None = None, lexicon: str | None = None,
                     lexicon_max_distance: int = 3) -> Decoding:
    """The decoding to use: what is asked, else the training-time setting of the export's params.json.

    ``params``: the export's ``params.json`` (``decoding``, ``beam_width``, ``num_beam_paths``).
    With a lexicon and beam search, 5 hypotheses (at most ``beam_width``) seed the
    lexicon search unless ``top_paths`` says otherwise.

    Raises:
        ValueError: an unknown method, a beam width below 1.
    """
    method = method or params.get("decoding") or GREEDY
    if method not in DECODING_NAMES:
        raise ValueError(f"unknown decoding {method!r}; use {one_of(DECODING_NAMES)}")
    beam_width = int(beam_width or params.get("beam_width") or 10)
    if beam_width < 1:
        raise ValueError(f"--beam-width must be >= 1, got {beam_width}")
    if method == GREEDY:
        top_paths = 1
    elif top_paths is None:
        top_paths = 5 if lexicon else int(params.get("num_beam_paths") or 1)
    top_paths = max(1, min(int(top_paths), beam_width))
    return Decoding(method, beam_width, top_paths, os.path.abspath(lexicon) if lexicon else None,
                    lexicon_max_distance)


def decode_batch(logits, lengths, symbols_by_code: list[str], decoding: Decoding,
                 lexicon: Lexicon | None = None) -> list[tuple[tuple[tuple[str, ...], float], list]]:
    """Transcribe a batch of CTC logits with ``decoding``: the one decoding path of evaluate and predict.

    Args:
        logits: float ``[batch, time, num_classes]``, class 0 = blank (numpy or tensor).
        lengths: int ``[batch]`` valid time steps.
        symbols_by_code: from :attr:`Alphabet.symbols_by_code`.
        decoding: method, beam width, hypotheses kept, lexicon radius.
        lexicon: the loaded word list when ``decoding.lexicon`` is set (load it once with
            :meth:`Lexicon.from_file`), else None.

    Returns:
        Per sample ``(chosen, hypotheses)``: ``chosen`` is ``(symbols, probability)``, the best
        hypothesis or, with a lexicon, the lexicon word (:func:`lexicon_decode`);
        ``hypotheses`` the lexicon-free ``(symbols, probability)`` pairs, best first.
    """
    decoded = decode_to_symbols(logits, lengths, symbols_by_code, decoding.method, decoding.beam_width,
                                decoding.top_paths)
    if lexicon is None:
        return [(hyps[0], hyps) for hyps in decoded]
    chosen = lexicon_decode(logits, lengths, [[h for h, _ in hyps] for hyps in decoded], lexicon,
                            decoding.lexicon_max_distance)
    return list(zip(chosen, decoded))
