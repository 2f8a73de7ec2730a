"""Recognition metrics over symbol sequences.

Definitions (as OCR papers and CRNN_Tensorflow use them; the CER is the one ICDAR and most OCR papers report):

- per-character accuracy: mean over samples of (number of positions ``i`` where
  ``prediction[i] == label[i]``) / ``len(label)``, as in CRNN_Tensorflow;
- full-sequence accuracy: fraction of exact matches;
- CER: total Levenshtein distance / total label length (symbols);
- WER: the same on whitespace-separated words;
- 1 - NED: mean over samples of 1 - distance / max(len(label), len(prediction))
  (PaddleOCR's ``norm_edit_dis``, MMOCR's ``1-N.E.D``; ICDAR 2019 ReCTS / LSVT).

Sequences are compared symbol by symbol (a multi-code-point symbol counts once).
Edit distances come from rapidfuzz.

Each metric can be taken after a normalization of both label and prediction
(:data:`NORMALIZATIONS`): ``exact`` (none), ``case_insensitive`` and
``alphanumeric``, the protocol of the scene-text word benchmarks (IIIT5K, SVT,
IC03/13/15, CUTE: lowercase, only digits and Latin letters, as in
Baek et al. 2019, "What is wrong with scene text recognition model
comparisons?", and MMOCR's ``ignore_case_symbol``).
"""
from __future__ import annotations

import re
import unicodedata
from typing import Callable, Sequence

from rapidfuzz.distance import Levenshtein

Seq = Sequence[str]


def per_char_accuracy(labels: Sequence[Seq], predictions: Sequence[Seq]) -> float:
    """Mean positional match rate per label (CRNN_Tensorflow). Empty labels are skipped."""
    rates = [sum(a == b for a, b in zip(gt, pred)) / len(gt) for gt, pred in zip(labels, predictions) if len(gt)]
    return sum(rates) / len(rates) if rates else 0.0


def sequence_accuracy(labels: Sequence[Seq], predictions: Sequence[Seq]) -> float:
    """Fraction of predictions equal to their label."""
    return sum(tuple(gt) == tuple(pred) for gt, pred in zip(labels, predictions)) / max(1, len(labels))


def edit_distances(labels: Sequence[Seq], predictions: Sequence[Seq]) -> list[int]:
    """Levenshtein distance of each pair (insert, delete, substitute cost 1)."""
    return [Levenshtein.distance(list(gt), list(pred)) for gt, pred in zip(labels, predictions)]


def cer(labels: Sequence[Seq], predictions: Sequence[Seq]) -> float:
    """Character error rate: sum of edit distances / sum of label lengths."""
    total = sum(len(gt) for gt in labels)
    return sum(edit_distances(labels, predictions)) / max(1, total)


def wer(labels: Sequence[str], predictions: Sequence[str]) -> float:
    """Word error rate on whitespace-separated words of plain-text labels."""
    return cer([gt.split() for gt in labels], [pred.split() for pred in predictions])


def all_metrics(labels: Sequence[Seq], predictions: Sequence[Seq]) -> dict[str, float]:
    """``char_accuracy``, ``sequence_accuracy``, ``cer`` and ``wer`` of a set of predictions (no normalization).

    The metrics logged each epoch: :func:`recognition_metrics` with ``exact`` less ``one_minus_ned``,
    taken as :func:`metrics_from_sums` of :func:`metric_sums`.
    """
    return metrics_from_sums(metric_sums(labels, predictions))


#: What :func:`metric_sums` adds up, in this order: sequences, exact matches, the per-label positional match
#: rates and the labels rated (non-empty), edit distances and label lengths in symbols, the same in words.
SUMS = ("sequences", "exact", "char_rates", "rated", "edits", "symbols", "word_edits", "words")


def metric_sums(labels: Sequence[Seq], predictions: Sequence[Seq]) -> dict[str, float]:
    """The sums :func:`all_metrics` divides, over one share of an eval set (no normalization).

    Sums of several shares (the workers of a training, each scoring its share) give, through
    :func:`metrics_from_sums`, the metrics of the whole set: the counts exactly, ``char_rates``
    up to the order floats are added in.

    Returns:
        ``{name: sum}`` for each of :data:`SUMS` (counts as floats).
    """
    rates = [sum(a == b for a, b in zip(gt, pred)) / len(gt) for gt, pred in zip(labels, predictions) if len(gt)]
    words = ["".join(gt).split() for gt in labels], ["".join(pred).split() for pred in predictions]
    return {"sequences": float(len(labels)),
            "exact": float(sum(tuple(gt) == tuple(pred) for gt, pred in zip(labels, predictions))),
            "char_rates": sum(rates), "rated": float(len(rates)),
            "edits": float(sum(edit_distances(labels, predictions))), "symbols": float(sum(len(gt) for gt in labels)),
            "word_edits": float(sum(edit_distances(*words))), "words": float(sum(len(w) for w in words[0]))}


def metrics_from_sums(sums: dict[str, float]) -> dict[str, float]:
    """``char_accuracy``, ``sequence_accuracy``, ``cer`` and ``wer`` from :func:`metric_sums` (or their sum over
    shares); definitions as :func:`per_char_accuracy`, :func:`sequence_accuracy`, :func:`cer`, :func:`wer`."""
    return {"char_accuracy": sums["char_rates"] / sums["rated"] if sums["rated"] else 0.0,
            "sequence_accuracy": sums["exact"] / max(1.0, sums["sequences"]),
            "cer": sums["edits"] / max(1.0, sums["symbols"]),
            "wer": sums["word_edits"] / max(1.0, sums["words"])}


def one_minus_ned(labels: Sequence[Seq], predictions: Sequence[Seq]) -> float:
    """1 - normalized edit distance (PaddleOCR ``norm_edit_dis``, MMOCR ``1-N.E.D``).

    ``mean over samples of 1 - Levenshtein(label, prediction) / max(len(label), len(prediction))``;
    a pair of two empty sequences counts 1. Higher is better, 1 is perfect.
    """
    scores = [1.0 - d / max(len(gt), len(pred)) if max(len(gt), len(pred)) else 1.0
              for gt, pred, d in zip(labels, predictions, edit_distances(labels, predictions))]
    return sum(scores) / len(scores) if scores else 0.0


# ---- normalizations -------------------------------------------------------------

_NOT_ALNUM = re.compile(r"[^0-9a-z]")

#: How each normalization transforms a label or prediction before scoring
#: (applied to both alike). Written into evaluation summaries verbatim.
NORMALIZATIONS: dict[str, str] = {
    "exact": "none: symbols as in the alphabet (a multi-code-point symbol counts once)",
    "case_insensitive": "each symbol lowercased with Python str.lower() (Unicode default case mapping); "
                        "nothing removed",
    "alphanumeric": "text NFKC-normalized, lowercased with str.lower(), then every character outside "
                    "[0-9a-z] removed (spaces included; WER splits words at whitespace before the removal "
                    "and drops words left empty); each remaining character is one symbol. "
                    "The IIIT5K / SVT / IC13 word-recognition protocol",
}


def _case_insensitive(symbols: Seq) -> tuple[str, ...]:
    return tuple(s.lower() for s in symbols)


def _alphanumeric_text(symbols: Seq) -> str:
    """NFKC + lowercase, keeping whitespace (word boundaries) and [0-9a-z]."""
    text = unicodedata.normalize("NFKC", "".join(symbols)).lower()
    return " ".join(w for w in (_NOT_ALNUM.sub("", word) for word in text.split()) if w)


def _alphanumeric(symbols: Seq) -> tuple[str, ...]:
    return tuple(_alphanumeric_text(symbols).replace(" ", ""))


#: ``name -> function(symbols) -> symbols`` for the character-level metrics.
NORMALIZERS: dict[str, Callable[[Seq], tuple[str, ...]]] = {
    "exact": tuple,
    "case_insensitive": _case_insensitive,
    "alphanumeric": _alphanumeric,
}

#: ``name -> function(symbols) -> text`` whose whitespace-separated words WER compares.
_WORD_TEXT: dict[str, Callable[[Seq], str]] = {
    "exact": "".join,
    "case_insensitive": lambda symbols: "".join(_case_insensitive(symbols)),
    "alphanumeric": _alphanumeric_text,
}


def normalize(symbols: Seq, normalization: str = "exact") -> tuple[str, ...]:
    """``symbols`` after one of :data:`NORMALIZATIONS` (``exact``, ``case_insensitive``, ``alphanumeric``).

    Raises:
        ValueError: unknown normalization.
    """
    if normalization not in NORMALIZERS:
        raise ValueError(f"unknown normalization {normalization!r}; use one of {sorted(NORMALIZERS)}")
    return NORMALIZERS[normalization](symbols)


def recognition_metrics(labels: Sequence[Seq], predictions: Sequence[Seq],
                        normalization: str = "exact") -> dict[str, float]:
    """Every metric of this module after one normalization (see :data:`NORMALIZATIONS`).

    Returns:
        ``char_accuracy``, ``sequence_accuracy``, ``cer``, ``wer`` (as :func:`all_metrics`)
        and ``one_minus_ned`` (:func:`one_minus_ned`).
    """
    norm_labels = [normalize(gt, normalization) for gt in labels]
    norm_preds = [normalize(pred, normalization) for pred in predictions]
    words = _WORD_TEXT[normalization]
    return {
        "char_accuracy": per_char_accuracy(norm_labels, norm_preds),
        "sequence_accuracy": sequence_accuracy(norm_labels, norm_preds),
        "cer": cer(norm_labels, norm_preds),
        "wer": wer([words(gt) for gt in labels], [words(pred) for pred in predictions]),
        "one_minus_ned": one_minus_ned(norm_labels, norm_preds),
    }


def normalized_metrics(labels: Sequence[Seq], predictions: Sequence[Seq]) -> dict[str, dict[str, float]]:
    """:func:`recognition_metrics` under every normalization: ``{normalization: {metric: value}}``."""
    return {name: recognition_metrics(labels, predictions, name) for name in NORMALIZATIONS}
