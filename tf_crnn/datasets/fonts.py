"""Which fonts can draw which symbols: the check behind ``tf-crnn fonts check`` and the generators.

A synthetic image is only as good as its label: a font that lacks a glyph makes
Pillow draw its .notdef box (or nothing) where the label says ``ſ``, and the
model learns a box for ``ſ``. So every font is checked against the symbols of
the text source before it is used, code point by code point
(:func:`tf_crnn.datasets.render.missing_code_points`: ``aͤ`` needs both ``a``
and U+0364 COMBINING LATIN SMALL LETTER E), and :func:`check_fonts` reports, per
font, the symbols it lacks and, over all fonts, the symbols none can draw.

Fonts that map the letters to other glyphs pass a glyph check and still draw
the wrong thing: symbol and dingbat fonts (URW's ``StandardSymbolsPS`` draws
``a`` as α, ``D050000L`` as a dingbat). :func:`symbol_font` recognises them by
the names of the glyphs the letters map to, and they are not used.

Example::

    report = check_fonts(find_fonts("data/fonts/fraktur"), symbols=Alphabet.from_file(
        "data/alphabets/fraktur.json").lookup, texts=[s.text for s in read_csv("train.csv")])
    print(report.format())
"""
from __future__ import annotations

import os
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..annotations import graphemes
from . import render

#: A letter of a text font maps to a glyph named as the letter, ``uniXXXX`` / ``uXXXX`` of its own code
#: point, a variant of the letter (``a.ss01``, ``a_alt``) or an unnamed glyph (``glyph00068``, ``gid68``).
_UNNAMED_GLYPH = re.compile(r"(?:glyph|gid|cid)\d+", re.IGNORECASE)


def symbol_font(path: str | os.PathLike) -> str | None:
    """Why ``path`` is a symbol or dingbat font (its letters draw other things), or None for a text font.

    The letters A-Z and a-z must map to glyphs named as those letters (or
    unnamed); a font where most of them map to glyphs named otherwise (``alpha``,
    ``a60``) draws symbols for letters. Needs fontTools (a dependency of
    matplotlib); fonts it cannot parse are given the benefit of the doubt.
    """
    try:
        from fontTools.ttLib import TTFont
    except ImportError:  # pragma: no cover - fontTools comes with matplotlib
        return None
    try:
        with TTFont(os.fspath(path), lazy=True, fontNumber=0) as font:
            cmap = font.getBestCmap() or {}
    except Exception:  # fontTools cannot parse it; FreeType's check still applies
        return None
    renamed = {}
    for letter in string.ascii_letters:
        name = cmap.get(ord(letter))
        if name is None:
            continue
        base = re.split(r"[._]", name, maxsplit=1)[0]
        own = {f"uni{ord(letter):04X}", f"u{ord(letter):04X}"}
        if base != letter and base not in own and not _UNNAMED_GLYPH.fullmatch(name):
            renamed[letter] = name
    if len(renamed) >= len(string.ascii_letters) // 2:
        examples = ", ".join(f"{k} -> {v}" for k, v in list(renamed.items())[:3])
        return f"symbol font: {len(renamed)} letters map to other glyphs ({examples})"
    return None


def code_points(symbol: str) -> str:
    """``U+0061 U+0364`` for ``'aͤ'``."""
    return " ".join(f"U+{ord(c):04X}" for c in symbol)


@dataclass
class FontCoverage:
    """One font checked against the symbols.

    Attributes:
        path: the font file.
        missing: ``{symbol: code points of it the font lacks}``.
        error: why the font is not used at all (unreadable, symbol font), else None.
        texts_drawable: how many of the checked texts the font draws whole (None: no texts given).
    """

    path: str
    missing: dict[str, tuple[str, ...]] = field(default_factory=dict)
    error: str | None = None
    texts_drawable: int | None = None

    @property
    def name(self) -> str:
        return Path(self.path).name

    def draws(self, symbols: Iterable[str]) -> bool:
        """Whether the font is usable and draws every one of ``symbols``."""
        return self.error is None and not any(s in self.missing for s in symbols)


@dataclass
class CoverageReport:
    """What :func:`check_fonts` found.

    Attributes:
        symbols: the symbols checked, in order.
        fonts: one :class:`FontCoverage` per font, in the order given.
        counts: how often each symbol occurs in the texts (empty without texts).
        texts: the number of texts checked (0: none given).
        texts_drawable: how many texts at least one font draws whole.
    """

    symbols: list[str]
    fonts: list[FontCoverage]
    counts: Counter = field(default_factory=Counter)
    texts: int = 0
    texts_drawable: int = 0

    @property
    def usable(self) -> list[FontCoverage]:
        """The fonts that draw at least one of the symbols and are not rejected."""
        return [f for f in self.fonts if f.error is None and len(f.missing) < len(self.symbols)]

    @property
    def undrawable(self) -> list[str]:
        """The symbols no usable font can draw."""
        return [s for s in self.symbols if all(s in f.missing for f in self.usable)]

    @property
    def ok(self) -> bool:
        """Every symbol is drawn by some font."""
        return bool(self.usable) and not self.undrawable

    def _symbol_list(self, symbols: Sequence[str], missing: dict[str, tuple[str, ...]] | None = None) -> str:
        ordered = sorted(symbols, key=lambda s: (-self.counts.get(s, 0), self.symbols.index(s)))
        parts = []
        for s in ordered:
            shown = s if s.strip() and not all(_is_mark(c) for c in s) else code_points(s)
            lacking = (missing or {}).get(s, ())
            if len(s) > 1 and lacking:
                shown += f" [{code_points(''.join(lacking))}]"
            if self.counts:
                shown += f" ({self.counts.get(s, 0)})"
            parts.append(shown)
        return ", ".join(parts) if parts else "-"

    def format(self) -> str:
        """A table: per font the symbols it lacks, then the symbols no font draws.

        A symbol of several code points shows the ones the font lacks in brackets
        (``aͤ [U+0364]``); with texts, each symbol shows how often it occurs, and each
        font how many texts it draws whole.
        """
        head = f"{len(self.symbols)} symbols"
        if self.texts:
            head += f", {self.texts} texts"
        lines = [f"{head}, {len(self.fonts)} fonts; missing symbols per font"
                 + (" (occurrences in the texts)" if self.counts else "") + ":"]
        width = max([len(f.name) for f in self.fonts] + [4])
        for f in self.fonts:
            if f.error is not None:
                lines.append(f"  {f.name:<{width}}  NOT USED: {f.error}")
                continue
            drawn = ""
            if f.texts_drawable is not None and self.texts:
                drawn = f"draws {f.texts_drawable}/{self.texts} texts ({f.texts_drawable / self.texts:.1%}); "
            lines.append(f"  {f.name:<{width}}  {drawn}lacks {len(f.missing)}: "
                         f"{self._symbol_list(list(f.missing), f.missing)}")
        if not self.usable:
            lines.append("no font draws any of the symbols")
        else:
            lines.append(f"no font draws {len(self.undrawable)} symbol(s): {self._symbol_list(self.undrawable)}")
        if self.texts:
            lines.append(f"texts one font draws whole: {self.texts_drawable}/{self.texts} "
                         f"({self.texts_drawable / self.texts:.1%})")
        return "\n".join(lines)


def _is_mark(char: str) -> bool:
    import unicodedata

    return unicodedata.category(char).startswith("M")


def check_fonts(fonts: Sequence[str | os.PathLike], symbols: Iterable[str] = (),
                texts: Iterable[str] | None = None) -> CoverageReport:
    """Check every font against the symbols (and the symbols of ``texts``).

    Args:
        fonts: font files.
        symbols: symbols to check (e.g. an alphabet's), each one or more code points.
        texts: texts (CSV labels, words, lines), split into grapheme clusters; their
            symbols are checked too, counted, and each font is told how many texts it
            draws whole.

    Returns:
        The :class:`CoverageReport`; unreadable and symbol fonts are in it with their ``error``.
    """
    counts: Counter = Counter()
    text_symbols: list[frozenset] = []
    if texts is not None:
        for text in texts:
            parts = graphemes(text)
            counts.update(parts)
            text_symbols.append(frozenset(p for p in parts if not p.isspace()))
    wanted = list(dict.fromkeys([*symbols, *counts]))
    checked = [s for s in wanted if not s.isspace()]
    report = CoverageReport(symbols=checked, fonts=[], counts=counts, texts=len(text_symbols))
    for path in fonts:
        path = os.fspath(path)
        reason = symbol_font(path)
        if reason is not None:
            report.fonts.append(FontCoverage(path, error=reason))
            continue
        try:
            missing = render.missing_code_points(path, checked)
        except OSError as e:
            report.fonts.append(FontCoverage(path, error=f"cannot be read ({e})"))
            continue
        report.fonts.append(FontCoverage(path, missing))
    if texts is not None:
        per_font = texts_per_font(report.fonts, text_symbols)
        for f, drawn in zip(report.fonts, per_font):
            f.texts_drawable = None if f.error is not None else len(drawn)
        report.texts_drawable = len(set().union(*per_font))
    return report


def texts_per_font(fonts: Sequence[FontCoverage], text_symbols: Sequence[frozenset]) -> list[list[int]]:
    """For each font, the indices of the texts (given as their sets of symbols) it draws whole.

    A rejected font (``error``) draws none. Texts are grouped by the symbols of
    theirs that some font lacks, so the work is per group, not per text and font.
    """
    lacking_somewhere = set().union(*(f.missing for f in fonts if f.error is None))
    groups: dict[frozenset, list[int]] = {}
    for i, needed in enumerate(text_symbols):
        groups.setdefault(needed & lacking_somewhere, []).append(i)
    result = []
    for f in fonts:
        if f.error is not None:
            result.append([])
            continue
        drawn = [i for key, members in groups.items() if key.isdisjoint(f.missing) for i in members]
        result.append(sorted(drawn))
    return result
