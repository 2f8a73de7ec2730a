"""Recognition metrics over symbol sequences.

Definitions (DESIGN.md, as OCR papers and CRNN_Tensorflow use them):

- per-character accuracy: mean over samples of (number of positions ``i`` where
  ``prediction[i] == label[i]``) / ``len(label)``, as in CRNN_Tensorflow;
- full-sequence accuracy: fraction of exact matches;
- CER: total Levenshtein distance / total label length (symbols);
- WER: the same on whitespace-separated words;
- NED: 1 - mean of distance / max(len(label), len(prediction)) (PaddleOCR / MMOCR).

Sequences are compared symbol by symbol (a multi-code-point symbol counts once).
Edit distances come from rapidfuzz.
"""
from __future__ import annotations

from typing import Sequence

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
    """``char_accuracy``, ``sequence_accuracy``, ``cer`` and ``wer`` of a set of predictions."""
    return {
        "char_accuracy": per_char_accuracy(labels, predictions),
        "sequence_accuracy": sequence_accuracy(labels, predictions),
        "cer": cer(labels, predictions),
        "wer": wer(["".join(gt) for gt in labels], ["".join(p) for p in predictions]),
    }
