"""Alphabet: the lookup table ``{symbol: code}`` and the CTC blank.

The one convention used everywhere in tf-crnn: **class index = alphabet code,
and index 0 is the CTC blank** (:data:`BLANK`). A lookup table therefore holds
codes 1..N and the model emits ``N + 1`` logits per time step (more precisely
``max(code) + 1``, so gaps in a hand-made table are allowed).
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from ._util import write_json
from .annotations import Sample, listing, normalize
from .textfiles import TextFileError, load_json

#: Class index of the CTC blank label (Graves et al. 2006). Codes start at 1.
BLANK = 0


class AlphabetError(ValueError):
    """A malformed lookup table, or a label symbol missing from the alphabet."""


@dataclass(frozen=True)
class UnknownSymbol:
    """A label symbol that is not in the alphabet, with where it occurs."""

    symbol: str
    csv_file: str
    line: int

    def __str__(self) -> str:
        where = f"{self.csv_file}:{self.line}"
        return f"{where}: symbol {self.symbol!r} ({code_points(self.symbol)}) is not in the alphabet"


def code_points(symbol: str) -> str:
    """``U+0075 U+0308``: the code points of ``symbol``, for a message."""
    return " ".join(f"U+{ord(c):04X}" for c in symbol)


def normalized_table(table: Mapping[str, int], form: str | None) -> dict[str, int]:
    """``table`` with every (string) symbol in Unicode ``form`` (:func:`tf_crnn.annotations.normalize`).

    Raises:
        AlphabetError: two keys become the same symbol: the table is ambiguous (which code does ``ü`` get?),
            so they are named, never merged silently.
    """
    out: dict[str, int] = {}
    original: dict[str, str] = {}
    for symbol, code in table.items():
        key = normalize(symbol, form) if isinstance(symbol, str) else symbol
        if key in out:
            first = original[key]
            raise AlphabetError(
                f"keys {first!r} ({code_points(first)}, code {out[key]}) and {symbol!r} ({code_points(symbol)}, "
                f"code {code}) are the same symbol {key!r} in Unicode {form} (unicode_normalization), so the table "
                f"is ambiguous: keep one of them, or set unicode_normalization: none to tell them apart")
        out[key], original[key] = code, symbol
    return out


class Alphabet:
    """A lookup table mapping symbols to integer codes 1..N (0 is the blank).

    Args:
        lookup: ``{symbol: code}``; codes are distinct integers >= 1.

    Raises:
        AlphabetError: a code is not a positive integer, codes repeat, or a
            symbol is empty.
    """

    def __init__(self, lookup: Mapping[str, int]):
        if not lookup:
            raise AlphabetError("the alphabet lookup table is empty")
        seen: dict[int, str] = {}
        for symbol, code in lookup.items():
            if not isinstance(symbol, str) or symbol == "":
                raise AlphabetError(f"invalid symbol {symbol!r} in the lookup table")
            if isinstance(code, bool) or not isinstance(code, int) or code <= BLANK:
                raise AlphabetError(
                    f"symbol {symbol!r} has code {code!r}; codes must be integers >= 1 ({BLANK} is the CTC blank)"
                )
            if code in seen:
                raise AlphabetError(f"symbols {seen[code]!r} and {symbol!r} share code {code}")
            seen[code] = symbol
        self.lookup: dict[str, int] = dict(lookup)
        self._symbols_by_code = seen

    @classmethod
    def from_file(cls, path: str | os.PathLike, normalization: str | None = "NFC") -> "Alphabet":
        """Load a JSON lookup table ``{"symbol": code}``, its symbols in one Unicode form.

        Args:
            path: the table (UTF-8, optional byte-order mark).
            normalization: ``NFC``, ``NFD`` (each symbol put in that form, :func:`tf_crnn.annotations.normalize`)
                or ``none`` / None (symbols as written): the ``unicode_normalization`` of the training or model.

        Raises:
            FileNotFoundError: no such file.
            AlphabetError: not UTF-8, not valid JSON, a symbol given twice, two keys that are one symbol in the
                ``normalization`` form (``"ü"`` and ``"u\u0308"`` under NFC or NFD), or not a valid table (names
                the file).
        """
        path = os.fspath(path)
        try:
            table = load_json(path, "alphabet lookup table")
        except TextFileError as e:
            raise AlphabetError(str(e)) from None
        if not isinstance(table, dict):
            raise AlphabetError(f"{path}: expected a JSON object {{\"symbol\": code}}")
        try:
            return cls(normalized_table(table, normalization))
        except AlphabetError as e:
            raise AlphabetError(f"{path}: {e}") from e

    @classmethod
    def from_symbols(cls, symbols: Iterable[str]) -> "Alphabet":
        """Number distinct symbols 1..N in order of first appearance."""
        return cls({s: i for i, s in enumerate(dict.fromkeys(symbols), start=1)})

    @classmethod
    def build(cls, samples: Iterable[Sample], min_count: int = 1) -> tuple["Alphabet", Counter]:
        """Build a table from labelled samples.

        Symbols are sorted by code point so the same data always gives the
        same table.

        Args:
            samples: annotated samples (see :mod:`tf_crnn.annotations`).
            min_count: drop symbols seen fewer times than this.

        Returns:
            The alphabet and the count of every symbol seen (before filtering).
        """
        counts = Counter(s for sample in samples for s in sample.symbols)
        kept = sorted(s for s, n in counts.items() if n >= min_count)
        return cls.from_symbols(kept), counts

    def extended(self, symbols: Iterable[str]) -> tuple["Alphabet", list[str]]:
        """This table plus the ``symbols`` it lacks, numbered after its largest code in code-point order.

        Every symbol of this table keeps its code (a fine-tuning's ``init_alphabet=union``).

        Returns:
            The extended table and the symbols added (in code-point order; empty if none).
        """
        added = sorted(set(symbols) - set(self.lookup))
        start = max(self._symbols_by_code) + 1
        return Alphabet({**self.lookup, **{s: start + i for i, s in enumerate(added)}}), added

    def save(self, path: str | os.PathLike) -> None:
        """Write the table as JSON (UTF-8, codes in order), atomically."""
        write_json(path, dict(sorted(self.lookup.items(), key=lambda kv: kv[1])))

    @property
    def num_classes(self) -> int:
        """Number of model outputs per time step: the largest code + 1 (for the blank)."""
        return max(self._symbols_by_code) + 1

    @property
    def symbols_by_code(self) -> list[str]:
        """``list[code] -> symbol``, with ``""`` for the blank and unused codes."""
        table = [""] * self.num_classes
        for code, symbol in self._symbols_by_code.items():
            table[code] = symbol
        return table

    def __len__(self) -> int:
        return len(self.lookup)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self.lookup

    def difference(self, other: "Alphabet", names: tuple[str, str] = ("the first", "the second")) -> str:
        """What differs between two lookup tables, for a message ("" when they are the same).

        ``names`` name the two tables: ``2 symbols only in NAME ['x', 'y']; 1 symbols with other codes ['z']``
        (at most 10 symbols of each kind are listed).
        """
        only_self = sorted(set(self.lookup) - set(other.lookup))
        only_other = sorted(set(other.lookup) - set(self.lookup))
        recoded = sorted(s for s in set(self.lookup) & set(other.lookup) if self.lookup[s] != other.lookup[s])
        parts = [f"{len(x)} {what} {x[:10]}" for x, what in ((only_self, f"symbols only in {names[0]}"),
                                                              (only_other, f"symbols only in {names[1]}"),
                                                              (recoded, "symbols with other codes")) if x]
        return "; ".join(parts)

    def unknown_symbols(self, samples: Iterable[Sample]) -> list[UnknownSymbol]:
        """Every label symbol that is not in the alphabet, with file and line."""
        return [
            UnknownSymbol(s, sample.csv_file, sample.line)
            for sample in samples
            for s in sample.symbols
            if s not in self.lookup
        ]

    def check(self, samples: Sequence[Sample], max_listed: int = 20) -> None:
        """Raise if any label uses a symbol outside the alphabet.

        Raises:
            AlphabetError: lists the first ``max_listed`` offending file:line
                and symbol, and the total.
        """
        unknown = self.unknown_symbols(samples)
        if unknown:
            distinct = sorted({u.symbol for u in unknown})
            raise AlphabetError(
                f"{len(unknown)} label symbol(s) not in the alphabet (distinct: {distinct}):\n"
                f"{listing(unknown, max_listed)}\n"
                "Add them to the lookup table (tf-crnn alphabet build CSV... -o table.json) or fix the labels."
                + self._form_hint(distinct)
            )

    def _form_hint(self, symbols: Sequence[str]) -> str:
        """A sentence for symbols that are in the table in another Unicode form ("" if none is)."""
        other = [s for s in symbols if any(normalize(s, f) in self.lookup for f in ("NFC", "NFD"))]
        return (f" {other[:10]} are in the table in another Unicode normalisation form: compare them in one form "
                "with unicode_normalization: NFC (the default) or NFD." if other else "")

    def encode(self, symbols: Sequence[str]) -> list[int]:
        """Symbols to codes.

        Raises:
            AlphabetError: a symbol is not in the alphabet.
        """
        try:
            return [self.lookup[s] for s in symbols]
        except KeyError as e:
            raise AlphabetError(f"symbol {e.args[0]!r} is not in the alphabet") from None

    def decode(self, codes: Iterable[int]) -> str:
        """Codes to text; the blank and unused codes are dropped."""
        table = self.symbols_by_code
        return "".join(table[c] for c in codes if 0 <= c < len(table))
