"""Build and check alphabet lookup tables from annotation CSVs.

The table format and its conventions (codes 1..N, 0 = CTC blank, symbols
sorted by code point) belong to :class:`tf_crnn.alphabet.Alphabet`; this
module only adds the file-level tooling behind ``tf-crnn alphabet build`` and
``tf-crnn alphabet check``:

- ``build`` writes ``table.json`` and ``table.counts.json`` (``{symbol: count}``
  of every symbol seen, most frequent first, including those dropped by
  ``min_count``);
- ``check`` reports every label symbol missing from a table with file, line
  and per-symbol count.
"""
from __future__ import annotations

import os
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .._util import write_json
from ..alphabet import Alphabet
from ..compiled import read_rows


def counts_path_for(table: str | os.PathLike) -> str:
    """``table.json`` -> ``table.counts.json`` (beside the table)."""
    table = Path(table)
    return str(table.with_name(f"{table.stem}.counts.json"))


def save_counts(counts: Counter, path: str | os.PathLike) -> None:
    """Write ``{symbol: count}`` as JSON, most frequent first (ties by code point), atomically."""
    write_json(path, dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))))


def describe_symbol(symbol: str) -> str:
    """``'aͤ' U+0061 U+0364 (LATIN SMALL LETTER A + COMBINING LATIN SMALL LETTER E)``."""
    codes = " ".join(f"U+{ord(c):04X}" for c in symbol)
    names = " + ".join(unicodedata.name(c, "?") for c in symbol)
    return f"{symbol!r} {codes} ({names})"


def format_counts(counts: Counter, limit: int | None = None) -> str:
    """One line per symbol, most frequent first: count, symbol, code points."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if limit is not None:
        ordered = ordered[:limit]
    return "\n".join(f"{n:>9}  {describe_symbol(s)}" for s, n in ordered)


def build_table(csv_files: Sequence[str | os.PathLike], out: str | os.PathLike, min_count: int = 1,
                csv_delimiter: str = ";", string_split_delimiter: str = "|",
                normalization: str = "NFC") -> tuple[Alphabet, Counter]:
    """Build a lookup table from CSVs and save it with its symbol counts.

    Args:
        csv_files: annotation CSVs (see :mod:`tf_crnn.annotations`) or compiled folders (:mod:`tf_crnn.compiled`).
        out: the table JSON to write; counts go to :func:`counts_path_for`.
        min_count: leave out symbols seen fewer times.
        csv_delimiter: CSV field separator.
        string_split_delimiter: symbol separator.
        normalization: the training's ``unicode_normalization`` (``NFC``, ``NFD``, ``none``): labels are
            read in that form, so the table holds the symbols the training will compare.

    Returns:
        The alphabet and the counts of every symbol seen.

    Raises:
        FileNotFoundError: a CSV is missing.
        AnnotationError: a malformed CSV row (file and line named).
        ValueError: ``min_count`` leaves no symbol.
    """
    samples = read_rows(csv_files, csv_delimiter, string_split_delimiter, normalization)
    counts = Counter(s for sample in samples for s in sample.symbols)
    if not any(n >= min_count for n in counts.values()):
        raise ValueError(f"no symbol occurs {min_count} times or more in {len(samples)} rows")
    alphabet, counts = Alphabet.build(samples, min_count)
    alphabet.save(out)
    save_counts(counts, counts_path_for(out))
    return alphabet, counts


@dataclass
class CheckReport:
    """Unknown symbols of a table check.

    Attributes:
        rows: number of rows read.
        occurrences: unknown symbol -> list of ``file:line`` where it occurs.
    """

    rows: int = 0
    occurrences: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every symbol is in the table."""
        return not self.occurrences

    def __str__(self) -> str:
        if self.ok:
            return f"all symbols of {self.rows} rows are in the alphabet"
        lines = [f"{sum(map(len, self.occurrences.values()))} occurrence(s) of "
                 f"{len(self.occurrences)} symbol(s) not in the alphabet ({self.rows} rows):"]
        for symbol, where in sorted(self.occurrences.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            lines.append(f"  {describe_symbol(symbol)}: {len(where)} time(s)")
            lines += [f"    {w}" + (f" ({n} times)" if n > 1 else "") for w, n in Counter(where).items()]
        return "\n".join(lines)


def check_table(table: str | os.PathLike | Alphabet, csv_files: Iterable[str | os.PathLike],
                csv_delimiter: str = ";", string_split_delimiter: str = "|", normalization: str = "NFC") -> CheckReport:
    """Find every label symbol of the CSVs that is not in the table.

    Args:
        table: a lookup table JSON path, or an :class:`Alphabet`.
        csv_files: annotation CSVs or compiled folders.
        normalization: the training's ``unicode_normalization``: table (from a path) and labels are compared
            in that form.

    Returns:
        A :class:`CheckReport` (``ok`` when nothing is missing).

    Raises:
        FileNotFoundError, AlphabetError, AnnotationError: unreadable table or CSV.
    """
    alphabet = table if isinstance(table, Alphabet) else Alphabet.from_file(table, normalization)
    samples = read_rows(csv_files, csv_delimiter, string_split_delimiter, normalization)
    occurrences: dict[str, list[str]] = defaultdict(list)
    for unknown in alphabet.unknown_symbols(samples):
        occurrences[unknown.symbol].append(f"{unknown.csv_file}:{unknown.line}")
    return CheckReport(len(samples), dict(occurrences))
