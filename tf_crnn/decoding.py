"""CTC decoding: greedy (best path) and beam search, from logits to codes and strings.

Class 0 is the CTC blank (see :mod:`tf_crnn.alphabet`). Both decoders collapse
repeated labels and then drop blanks (Graves et al. 2006). TensorFlow's beam
search expects the blank as the *last* class, so :func:`ctc_decode` rotates
the classes for it and maps the indices back.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from .alphabet import BLANK

GREEDY = "greedy"
BEAM_SEARCH = "beam_search"


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
        raise ValueError(f"unknown decoding method {method!r}; use 'greedy' or 'beam_search'")
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
