"""Confidence voting of several text recognizers: align their transcriptions, vote symbol by symbol.

The method of Reul, Springmann, Wick & Puppe 2018, "Improving OCR accuracy on early printed books
by utilizing cross fold training and voting" (DAS 2018, arXiv 1711.09670), as Calamari implements it
(``ConfidenceVoter``): several models (for instance trained on different folds of the same data,
``tf-crnn train-folds``) transcribe the same line; their transcriptions are aligned, and at each
aligned position the candidate symbol whose confidences, summed over the models, are highest wins.

Here, symbol by symbol (a symbol can be several code points, as in the CSV labels):

1. Each model's transcription is a :class:`Hypothesis`: its symbols under greedy CTC decoding and a
   confidence per symbol (:func:`greedy_hypotheses`: the highest softmax probability of the symbol's
   class over the frames that emitted it).
2. :func:`align` builds a confusion network (ROVER, Fiscus 1997): a list of slots, each holding every
   hypothesis's symbol there or nothing. It starts from the hypothesis with the smallest summed edit
   distance to the others and adds the others one by one, nearest first, each aligned to the slots so
   far by Levenshtein edit operations (rapidfuzz), a slot standing for its symbol of highest summed
   confidence. A substitution puts the new symbol into the slot, a deletion gives the hypothesis nothing
   there, an insertion opens a new slot where the others have nothing.
3. :func:`vote`: in each slot every hypothesis that has a symbol there gives each candidate symbol of
   the slot its probability for it (its own symbol: the symbol's confidence; another candidate: that
   symbol's probability among its :attr:`Hypothesis.alternatives`, 0 if not among them), and every
   hypothesis that has nothing there votes for "nothing" with :meth:`Hypothesis.nothing_confidence`
   (the mean confidence of its own symbols beside the gap). The candidate with the highest sum wins;
   ties go to the candidate more hypotheses read, then to the one of the earliest hypothesis in the
   given order. A slot that "nothing" wins adds no symbol.

As in the paper and Calamari, a model votes with the alternatives of each position too, not only its
best symbol: where three models read three different symbols, the symbol the others rank second can win.

:class:`VotingModel` applies this to loaded models (:class:`tf_crnn.loader.PredictionModel`):
``tf-crnn evaluate`` and ``tf-crnn predict`` with several ``--model``. The algorithm itself
(:func:`greedy_hypotheses`, :func:`align`, :func:`vote`) runs without TensorFlow: it needs NumPy,
rapidfuzz and :mod:`tf_crnn.alphabet` (for :data:`~tf_crnn.alphabet.BLANK`), which imports
:mod:`tf_crnn.annotations` and with it pandas and regex. :func:`voting_decoding` and
:class:`VotingModel` load TensorFlow.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np
from rapidfuzz.distance import Levenshtein

from .alphabet import BLANK

if TYPE_CHECKING:  # these load TensorFlow: imported where they are used
    from .decoding import Decoding, Lexicon
    from .loader import Prediction, PredictionModel

#: What a vote is called in summaries and messages.
METHOD = "confidence voting (Reul et al. 2018)"


class VotingError(ValueError):
    """Models that cannot vote together (other alphabets, no alphabet) or a decoding a vote does not support."""


@dataclass(frozen=True)
class Hypothesis:
    """One model's transcription of one image, symbol by symbol, with a confidence per symbol.

    Attributes:
        symbols: the transcription, one item per symbol.
        confidences: one float in [0, 1] per symbol, how sure the model is of it
            (:func:`greedy_hypotheses`: the highest softmax probability of the symbol's class over the
            frames that emitted it).
        blank_confidence: how sure the model is that the image holds no text at all; used only when
            ``symbols`` is empty (:func:`greedy_hypotheses`: the mean blank probability over the frames).
        alternatives: per symbol, other symbols the model gives a probability there, as
            ``((symbol, probability), ...)`` (:func:`greedy_hypotheses`: the most probable other classes
            of the frame where the symbol's probability peaks); empty (the default): none known, the
            model votes with its best symbols only.

    Raises:
        ValueError: ``symbols`` and ``confidences`` (or non-empty ``alternatives``) differ in length, or a
            confidence or probability is not in [0, 1].
    """

    symbols: tuple[str, ...]
    confidences: tuple[float, ...]
    blank_confidence: float = 1.0
    alternatives: tuple[tuple[tuple[str, float], ...], ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "symbols", tuple(self.symbols))
        object.__setattr__(self, "confidences", tuple(float(c) for c in self.confidences))
        object.__setattr__(self, "alternatives",
                           tuple(tuple((str(a), float(p)) for a, p in others) for others in self.alternatives))
        if len(self.symbols) != len(self.confidences):
            raise ValueError(f"{len(self.symbols)} symbols but {len(self.confidences)} confidences")
        if self.alternatives and len(self.alternatives) != len(self.symbols):
            raise ValueError(f"{len(self.symbols)} symbols but alternatives for {len(self.alternatives)}")
        probabilities = (p for others in self.alternatives for _, p in others)
        for value in (*self.confidences, self.blank_confidence, *probabilities):
            if not 0.0 <= value <= 1.0:  # also refuses NaN
                raise ValueError(f"confidences must be in [0, 1], got {value!r}")

    def probability(self, position: int, candidate: str) -> float:
        """The model's probability for ``candidate`` at its symbol ``position``: the symbol's confidence if
        it is that symbol, its probability among the :attr:`alternatives` there, else 0."""
        if candidate == self.symbols[position]:
            return self.confidences[position]
        if self.alternatives:
            for symbol, probability in self.alternatives[position]:
                if symbol == candidate:
                    return probability
        return 0.0

    def nothing_confidence(self, gap: int) -> float:
        """How sure the model is that nothing stands in gap ``gap`` (0: before its first symbol, ``k``:
        between symbols ``k - 1`` and ``k``, ``len(symbols)``: after the last).

        The mean confidence of its symbols beside the gap (the one there is at either end of the
        line): a model is as sure of the nothing between two symbols as of the symbols themselves.
        :attr:`blank_confidence` for an empty transcription.
        """
        beside = self.confidences[max(gap - 1, 0):gap + 1]
        return sum(beside) / len(beside) if beside else self.blank_confidence


@dataclass(frozen=True)
class Vote:
    """The outcome of :func:`vote`.

    Attributes:
        symbols: the voted transcription.
        confidences: per voted symbol, its summed probability (:func:`vote`) divided by the number of
            hypotheses, in [0, 1].
        slots: the confusion network of :func:`align`: per slot, each hypothesis's symbol there (in the
            order the hypotheses were given) or None where it has nothing.
    """

    symbols: tuple[str, ...]
    confidences: tuple[float, ...]
    slots: tuple[tuple[str | None, ...], ...]


def greedy_hypotheses(log_probs, lengths, symbols_by_code: Sequence[str]) -> list[Hypothesis]:
    """Greedy (best path) CTC transcriptions of a batch, with a confidence per symbol.

    The best path takes the most probable class of each frame; runs of the same class collapse into
    one symbol and blanks are dropped (Graves et al. 2006; what :func:`tf_crnn.decoding.ctc_decode`
    does with ``greedy``). A symbol's confidence is the highest probability of its class over the
    frames of its run. Codes without a symbol (``""`` in ``symbols_by_code``) emit nothing. Its
    alternatives are the :data:`ALTERNATIVES` most probable other symbol classes (blank excluded) of the
    frame where that peak is, those of probability at least :data:`MIN_ALTERNATIVE`.

    Args:
        log_probs: float ``[batch, time, num_classes]``, log-softmax of the logits, class 0 = blank.
        lengths: int ``[batch]``, valid frames per image.
        symbols_by_code: :attr:`tf_crnn.alphabet.Alphabet.symbols_by_code`.

    Returns:
        one :class:`Hypothesis` per image; an empty one's ``blank_confidence`` is the mean blank
        probability over its frames.

    Raises:
        ValueError: ``log_probs`` is not 3-D, or ``lengths`` has another batch size.
    """
    log_probs = np.asarray(log_probs)
    lengths = np.asarray(lengths).reshape(-1)
    if log_probs.ndim != 3 or len(lengths) != len(log_probs):
        raise ValueError(f"expected log_probs [batch, time, classes] and lengths [batch], got shapes "
                         f"{log_probs.shape} and {lengths.shape}")
    out = []
    for frames, length in zip(log_probs, lengths):
        frames = frames[:int(length)]
        path = frames.argmax(axis=-1)
        starts = np.flatnonzero(np.diff(path, prepend=-1))  # first frame of each run of one class
        ends = np.append(starts[1:], len(path))
        symbols, confidences, alternatives = [], [], []
        for start, end in zip(starts, ends):
            code = int(path[start])
            if code != BLANK and symbols_by_code[code]:
                peak = start + int(frames[start:end, code].argmax())
                symbols.append(symbols_by_code[code])
                confidences.append(min(1.0, math.exp(float(frames[peak, code]))))
                alternatives.append(_alternatives(frames[peak], code, symbols_by_code))
        blank = float(np.exp(frames[:, BLANK]).mean()) if len(frames) else 1.0
        out.append(Hypothesis(tuple(symbols), tuple(confidences), min(1.0, blank), tuple(alternatives)))
    return out


#: Per symbol read, at most this many other classes vote too (:func:`greedy_hypotheses`), those of
#: probability at least MIN_ALTERNATIVE: rarer ones keep the hypotheses small and change almost no vote.
ALTERNATIVES, MIN_ALTERNATIVE = 4, 0.01


def _alternatives(frame_log_probs: np.ndarray, code: int, symbols_by_code: Sequence[str]) -> tuple:
    """The most probable other symbol classes of one frame, ``((symbol, probability), ...)``."""
    ranked = np.argsort(frame_log_probs)[::-1][:ALTERNATIVES + 2]  # + the symbol itself and the blank
    out = []
    for other in ranked:
        other = int(other)
        probability = min(1.0, math.exp(float(frame_log_probs[other])))
        if other in (code, BLANK) or not symbols_by_code[other] or probability < MIN_ALTERNATIVE:
            continue
        out.append((symbols_by_code[other], probability))
    return tuple(out[:ALTERNATIVES])


def _order(hypotheses: Sequence[Hypothesis]) -> list[int]:
    """The backbone (smallest summed edit distance to the others, then the earliest) first, then the
    others by their distance to it, then by their position."""
    n = len(hypotheses)
    distance = [[Levenshtein.distance(a.symbols, b.symbols) for b in hypotheses] for a in hypotheses]
    backbone = min(range(n), key=lambda i: (sum(distance[i]), i))
    return [backbone] + sorted((i for i in range(n) if i != backbone), key=lambda i: (distance[backbone][i], i))


def _representative(slot: list[int | None], hypotheses: Sequence[Hypothesis], added: list[int]) -> str:
    """The symbol of a slot with the highest summed confidence among the hypotheses added so far."""
    totals: dict[str, float] = {}
    for k in added:
        if slot[k] is not None:
            symbol = hypotheses[k].symbols[slot[k]]
            totals[symbol] = totals.get(symbol, 0.0) + hypotheses[k].confidences[slot[k]]
    return max(totals, key=totals.__getitem__)  # the first of equal ones (dicts keep insertion order)


def align(hypotheses: Sequence[Hypothesis]) -> list[tuple[int | None, ...]]:
    """Align hypotheses into a confusion network (see the module docstring).

    Args:
        hypotheses: at least one :class:`Hypothesis`.

    Returns:
        the slots in reading order; each a tuple with, per hypothesis (in the given order), the index
        of its symbol in that slot or None. Every symbol of every hypothesis is in exactly one slot,
        in its order, and every slot holds at least one symbol.

    Raises:
        ValueError: no hypothesis.
    """
    if not hypotheses:
        raise ValueError("nothing to align: no hypothesis")
    n = len(hypotheses)
    order = _order(hypotheses)
    first = order[0]
    slots: list[list[int | None]] = [[None] * n for _ in hypotheses[first].symbols]
    for position, slot in enumerate(slots):
        slot[first] = position
    added = [first]
    for k in order[1:]:
        representatives = [_representative(slot, hypotheses, added) for slot in slots]
        merged: list[list[int | None]] = []
        i = j = 0  # next slot, next symbol of hypothesis k

        def match(count: int) -> None:
            nonlocal i, j
            for _ in range(count):
                slots[i][k] = j
                merged.append(slots[i])
                i, j = i + 1, j + 1

        for op in Levenshtein.editops(representatives, hypotheses[k].symbols):
            match(op.src_pos - i)  # equal symbols up to the operation
            if op.tag == "replace":
                match(1)
            elif op.tag == "delete":  # k has nothing in this slot
                merged.append(slots[i])
                i += 1
            else:  # insert: a new slot where the others have nothing
                slot = [None] * n
                slot[k] = j
                merged.append(slot)
                j += 1
        match(len(slots) - i)
        slots = merged
        added.append(k)
    return [tuple(slot) for slot in slots]


def vote(hypotheses: Sequence[Hypothesis]) -> Vote:
    """Vote several transcriptions of one image into one (see the module docstring).

    Args:
        hypotheses: one :class:`Hypothesis` per model, at least one; the order only breaks ties.

    Returns:
        :class:`Vote`: the voted symbols, their confidences and the aligned slots. Voting identical
        hypotheses returns that transcription.

    Raises:
        ValueError: no hypothesis.
    """
    slots = align(hypotheses)
    n = len(hypotheses)
    seen = [0] * n  # symbols of each hypothesis in the slots so far: the gap it is in
    symbols, confidences = [], []
    for slot in slots:
        totals: dict[str | None, list] = {}  # candidate -> [summed probability, votes, first hypothesis]
        for k, position in enumerate(slot):
            candidate = None if position is None else hypotheses[k].symbols[position]
            total = totals.setdefault(candidate, [0.0, 0, k])
            total[1] += 1
            if position is None:
                total[0] += hypotheses[k].nothing_confidence(seen[k])
            else:
                seen[k] += 1
        for k, position in enumerate(slot):
            if position is not None:  # its probability for each symbol read in this slot, its own included
                for candidate, total in totals.items():
                    if candidate is not None:
                        total[0] += hypotheses[k].probability(position, candidate)
        winner = max(totals, key=lambda c: (totals[c][0], totals[c][1], -totals[c][2]))
        if winner is not None:
            symbols.append(winner)
            confidences.append(min(1.0, totals[winner][0] / n))
    shown = tuple(tuple(None if p is None else hypotheses[k].symbols[p] for k, p in enumerate(slot)) for slot in slots)
    return Vote(tuple(symbols), tuple(confidences), shown)


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean; exactly the value when all are equal (a vote of identical models scores as one)."""
    if all(v == values[0] for v in values):
        return values[0]
    return math.fsum(values) / len(values)


def voting_decoding(method: str | None = None, lexicon: str | None = None) -> "Decoding":
    """The decoding of a vote: greedy (the per-symbol confidences come from the greedy best path).

    Args:
        method, lexicon: what was asked (``--decoding``, ``--lexicon``); None for the default.

    Raises:
        VotingError: beam search or a lexicon was asked for.
    """
    from .decoding import GREEDY, Decoding

    if (method or GREEDY) != GREEDY or lexicon:
        asked = " and ".join(filter(None, [f"--decoding {method}" if (method or GREEDY) != GREEDY else "",
                                           "--lexicon" if lexicon else ""]))
        raise VotingError(f"a vote of several models decodes greedily: {asked} works with one --model only")
    return Decoding(GREEDY)


#: One image's outcome of :meth:`VotingModel.vote_logits`: ``((voted symbols, score), [(model's symbols, score)])``.
VotedLine = tuple[tuple[tuple[str, ...], float], list[tuple[tuple[str, ...], float]]]


class VotingModel:
    """Several models that transcribe together by confidence voting (see the module docstring).

    It takes what :class:`tf_crnn.loader.PredictionModel` takes (images of any kind, batches,
    ``strict``) and decodes greedily. Each model reads the images for its own input channels.

    Args:
        models: :class:`tf_crnn.loader.PredictionModel` objects, or what it loads (export folders,
            ``.tflite`` / ``.onnx`` files), at least one. They must have the same alphabet (lookup table).

    Raises:
        ValueError: no model.
        VotingError: a model without alphabet, or two models with different alphabets (the message names
            both and the symbols that differ).
        FileNotFoundError, tf_crnn.runtimes.ModelFileError, ImportError: as :class:`PredictionModel`.

    Attributes:
        models: the loaded models, in the given order (it breaks ties of the vote).
        alphabet, alphabet_file, params: the first model's (the alphabets are the same).
    """

    def __init__(self, models: Iterable["PredictionModel | str | os.PathLike"]):
        from .loader import PredictionModel

        self.models = [m if isinstance(m, PredictionModel) else PredictionModel(m) for m in models]
        if not self.models:
            raise ValueError("a vote needs at least one model")
        check_same_alphabet(self.models)
        first = self.models[0]
        self.alphabet, self.alphabet_file, self.params = first.alphabet, first.alphabet_file, first.params

    def __len__(self) -> int:
        return len(self.models)

    @property
    def export_dirs(self) -> list[str]:
        """Where each model was loaded from."""
        return [m.export_dir for m in self.models]

    @property
    def train_run(self) -> list:
        """Each model's training run (:attr:`PredictionModel.train_run`; None where not recorded)."""
        return [m.train_run for m in self.models]

    @property
    def logits_source(self) -> list[str]:
        """Each model's :attr:`PredictionModel.logits_source`."""
        return [m.logits_source for m in self.models]

    @property
    def input_channels(self) -> list[int]:
        """Each model's input channels."""
        return [m.input_channels for m in self.models]

    def encode(self, image) -> tuple[bytes, ...]:
        """Per model, the bytes :meth:`PredictionModel.encode` makes of ``image`` (converted once per
        distinct input channels). Raises: as :func:`tf_crnn.images.model_input`."""
        by_channels: dict[int, bytes] = {}
        for model in self.models:
            if model.input_channels not in by_channels:
                by_channels[model.input_channels] = model.encode(image)
        return tuple(by_channels[m.input_channels] for m in self.models)

    def vote_logits(self, outputs: Sequence[tuple[Any, Any]]) -> list[VotedLine]:
        """Vote one batch, given each model's CTC output for it.

        Args:
            outputs: per model (in :attr:`models` order), ``(logits, lengths)`` of the same images:
                float32 ``[batch, time, num_classes]`` and int ``[batch]``, as
                :meth:`PredictionModel.iter_logits` yields them.

        Returns:
            per image ``((symbols, score), models)``: the voted symbols (:func:`vote` of
            :func:`greedy_hypotheses`), and as score the mean over the models of the probability each
            gives to the best CTC path that spells them (for a model whose own greedy transcription they
            are, its own greedy score; :func:`tf_crnn.decoding.ctc_best_path_log_probability` otherwise),
            in [0, 1]; ``models`` holds each model's own greedy ``(symbols, score)``.
        """
        import tensorflow as tf

        from .decoding import GREEDY, Decoding, ctc_best_path_log_probability, decode_batch

        symbols_by_code = self.alphabet.symbols_by_code
        own, hypotheses, log_probs, lengths = [], [], [], []
        for logits, length in outputs:
            own.append([pick for pick, _ in decode_batch(logits, length, symbols_by_code, Decoding(GREEDY))])
            # the log-softmax ctc_decode computes, so the best path is the one TensorFlow's decoder takes
            log_probs.append(tf.nn.log_softmax(tf.cast(logits, tf.float32)).numpy())
            lengths.append(np.asarray(length).reshape(-1))
            hypotheses.append(greedy_hypotheses(log_probs[-1], lengths[-1], symbols_by_code))
        out: list[VotedLine] = []
        for i in range(len(own[0])):
            voted = vote([h[i] for h in hypotheses]).symbols
            scores = []
            for m, picks in enumerate(own):
                symbols, score = picks[i]
                if symbols != voted:
                    codes = self.alphabet.encode(voted)
                    score = math.exp(ctc_best_path_log_probability(log_probs[m][i], lengths[m][i], codes))
                scores.append(score)
            out.append(((voted, mean(scores)), [picks[i] for picks in own]))
        return out

    def iter_decoded(self, images, batch_size: int = 32, decoding: "Decoding | None" = None,
                     lexicon: "Lexicon | None" = None) -> Iterator[tuple[int, list[VotedLine]]]:
        """:meth:`vote_logits` batch by batch, as :meth:`PredictionModel.iter_decoded`.

        Yields:
            ``(start, lines)``: the batch covers ``images[start:start + len(lines)]``.

        Raises:
            VotingError: a decoding other than greedy, or a lexicon.
            as :meth:`PredictionModel.iter_logits`.
        """
        voting_decoding(decoding.method if decoding else None, (decoding and decoding.lexicon) or lexicon)
        for batches in zip(*(m.iter_logits(images, batch_size) for m in self.models)):
            yield batches[0][0], self.vote_logits([(logits, lengths) for _, logits, lengths in batches])

    def predict(self, images, batch_size: int = 32, strict: bool = False,
                decoding: "Decoding | None" = None) -> list["Prediction"]:
        """Transcribe images by the models' vote, as :meth:`PredictionModel.predict` does with one model.

        An image any model cannot read is reported in its :class:`Prediction` (or raised with
        ``strict``). A :class:`Prediction`'s ``score`` is the vote's (:meth:`vote_logits`) and its
        ``alternatives`` are each model's own greedy transcription and score, in model order.

        Raises:
            VotingError: ``decoding`` is not greedy or has a lexicon.
            as :meth:`PredictionModel.predict`.
        """
        from .loader import Prediction, predict_images

        voting_decoding(decoding.method if decoding else None, decoding.lexicon if decoding else None)

        def transcribe(encoded: list[tuple[bytes, ...]]) -> list[Prediction]:
            outputs = [m.logits_of([e[k] for e in encoded]) for k, m in enumerate(self.models)]
            return [Prediction("".join(symbols), score, tuple(("".join(s), p) for s, p in models))
                    for (symbols, score), models in self.vote_logits(outputs)]

        return predict_images(images, self.encode, transcribe, batch_size, strict)


def check_same_alphabet(models: Sequence["PredictionModel"]) -> None:
    """Raise :class:`VotingError` unless every model has an alphabet and all are the same lookup table.

    The message names the first model that differs from the first one, and the symbols that differ.
    """
    for model in models:
        if model.alphabet is None:
            raise VotingError(f"{model.export_dir} has no alphabet.json ({model.alphabet_file}): a vote needs "
                              "each model's alphabet")
    first = models[0]
    for model in models[1:]:
        if model.alphabet.lookup != first.alphabet.lookup:
            difference = first.alphabet.difference(model.alphabet, (first.export_dir, model.export_dir))
            raise VotingError(f"{first.export_dir} and {model.export_dir} do not have the same alphabet "
                              f"({difference}): only models trained with one lookup table can vote")
