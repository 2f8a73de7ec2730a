"""Synthetic training data: rendered digit strings, words, text lines and handwritten digits.

Each generator writes ``out_dir/images/NNNNNN.png``, ``out_dir/labels.csv``
(the tf-crnn annotation format of :mod:`tf_crnn.annotations`, image paths
relative to the CSV) and ``out_dir/alphabet.json`` (an
:class:`~tf_crnn.alphabet.Alphabet` lookup table).

What :func:`generate_text` renders (text source, fonts, look) is one value, a
:class:`~tf_crnn.datasets.text_spec.TextSpec`.

Determinism: image ``i`` is a pure function of ``(seed, i)`` and the options
(for text, the ``TextSpec``): its random generator is seeded with
``SeedSequence([seed, i])``, so the number of worker processes never changes the output, and two data sets
generated with seeds 0 and 1 share no image (a plain ``seed + i`` would make
them overlap almost entirely). The same fonts and library versions give
byte-identical PNGs.

Fonts: every font is checked against the symbols of the text source first
(:mod:`tf_crnn.datasets.fonts`); a font draws only the texts whose every symbol
it has, a symbol or dingbat font is not used, and :func:`generate_text` writes
``out_dir/fonts.json`` saying, per font, what it lacks and how many images it drew.
"""
from __future__ import annotations

import multiprocessing
import os
import re
import signal
import sys
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tqdm import tqdm

from .._util import write_json
from ..alphabet import Alphabet
from ..annotations import graphemes, read_csvs, write_csv
from . import fonts as font_check
from . import render
from .text_spec import TextSpec

DIGITS = "0123456789"
STYLES = ("printed", "handwritten")

# The symbol the CSV format cannot hold inside a label (string_split_delimiter);
# texts containing it are dropped. (A ';' is fine: a row is split at its first ';'.)
_UNWRITABLE = ("|",)

# Default vocabulary of generate_text: common English words (written here, not
# copied from a corpus); samples also vary case and add numbers/punctuation.
BUILTIN_WORDS = tuple("""
the of and to in is you that it he was for on are as with his they at be this have from or one
had by word but not what all were we when your can said there use an each which she do how their
if will up other about out many then them these so some her would make like him into time has
look two more write go see number no way could people my than first water been call who oil its
now find long down day did get come made may part over new sound take only little work know place
year live me back give most very after thing our just name good sentence man think say great where
help through much before line right too mean old any same tell boy follow came want show also around
form three small set put end does another well large must big even such because turn here why ask
went men read need land different home us move try kind hand picture again change off play spell
air away animal house point page letter mother answer found study still learn should America world
London Paris Berlin Monday Friday January October Street Road Station Hotel Museum Coffee Pizza
Exit Open Closed Sale Police Taxi Bank Market Garden River Bridge North South East West
""".split())


@dataclass(frozen=True)
class _WorkerSpec:
    """Everything a worker needs to render sample ``i`` (pickled once per worker)."""

    out_dir: str
    kind: str  # "digits", "handwritten" or "text"
    seed: int
    height: int
    min_length: int = 3
    max_length: int = 8
    fonts: tuple[str, ...] = ()
    font_missing: tuple[frozenset, ...] = ()  # per font: symbols it cannot draw
    words: tuple[str, ...] = ()  # text: the words (or whole lines) samples are made of
    font_words: tuple = field(default=(), repr=False)  # text: per font, indices of the words it draws
    allowed: frozenset | None = None  # text: the symbols a label may have (None: any)
    min_words: int = 1
    max_words: int = 1
    case: str = "mixed"
    color: bool = False
    elastic: float = 0.0
    blur: float = 1.0  # largest Gaussian blur radius, pixels
    ink_bleed: float = 0.0  # strengths 0..1 of render.compose's degradations
    speckles: float = 0.0
    binarize: float = 0.0  # share of images made black and white
    max_spacing: float = 0.25  # largest extra space between letters, fraction of the font size
    invert: float = 0.0  # share of images with light text on a dark ground
    max_rotation: float = 3.0  # degrees either way (generate_text passes its TextSpec's)
    max_perspective: float = 0.05  # corner displacement as a fraction of the height
    digit_bitmaps: tuple = field(default=(), repr=False)  # per digit: array (k, 8, 8)
    name_width: int = 6


_SPEC: _WorkerSpec | None = None  # the worker's spec, set by _init_worker


def _init_worker(spec: _WorkerSpec) -> None:
    global _SPEC
    _SPEC = spec


def _init_pool_worker(spec: _WorkerSpec) -> None:
    # A forked worker inherits the training's stop handlers (tf_crnn.interrupts), so the pool's terminate()
    # at the end of every generation printed a traceback per worker ("stopped by SIGTERM"). A worker dies
    # quietly on SIGTERM, and ignores Ctrl-C: the parent gets it too, stops and terminates the pool.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init_worker(spec)


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def _digit_text(spec: _WorkerSpec, rng: np.random.Generator) -> str:
    length = int(rng.integers(spec.min_length, spec.max_length + 1))
    return "".join(rng.choice(list(DIGITS), length))


def _text(spec: _WorkerSpec, rng: np.random.Generator) -> tuple[int, str]:
    """A font, then ``min_words``..``max_words`` words it draws, joined by spaces; maybe re-cased."""
    font = int(rng.integers(len(spec.fonts)))
    pool = spec.font_words[font]
    count = int(rng.integers(spec.min_words, spec.max_words + 1))
    text = " ".join(spec.words[pool[int(rng.integers(len(pool)))]] for _ in range(count))
    if spec.case == "mixed":
        case = rng.random()
        if case < 0.15:
            cased = text.upper()
        elif case < 0.3:
            cased = text[:1].upper() + text[1:]
        else:
            cased = text
        # Keep the variant only if the font draws it and the alphabet has it (ß -> SS, ſ -> S are fine).
        if cased != text and _drawable(spec, font, cased):
            text = cased
    return font, text


def _drawable(spec: _WorkerSpec, font: int, text: str) -> bool:
    symbols = set(graphemes(text)) - {" "}
    return not symbols & spec.font_missing[font] and (spec.allowed is None or symbols <= spec.allowed)


def _printed(text: str, spec: _WorkerSpec, rng: np.random.Generator, font_index: int | None = None):
    if font_index is None:
        choices = [i for i, missing in enumerate(spec.font_missing) if not set(graphemes(text)) & missing]
        font_index = choices[int(rng.integers(len(choices)))]
    font = render.load_font(spec.fonts[font_index], int(rng.integers(24, 49)))
    spacing = rng.uniform(-0.04, spec.max_spacing) * font.size
    mask = render.text_mask(text, font, spacing, rng, baseline_jitter=rng.uniform(0, 0.04) * font.size)
    if spec.elastic and rng.random() < 0.5:
        mask = render.elastic(mask, rng, alpha=spec.elastic * mask.shape[0], sigma=mask.shape[0] / 6)
    return mask


def _handwritten(text: str, spec: _WorkerSpec, rng: np.random.Generator):
    bitmaps = []
    for digit in text:
        pool = spec.digit_bitmaps[int(digit)]
        bitmaps.append(pool[int(rng.integers(len(pool)))])
    return render.bitmap_mask(bitmaps, 40, rng)


def _make_sample(index: int) -> tuple[str, tuple[str, ...], int]:
    """Render sample ``index`` of the worker's spec; returns (image path, symbols, font index or -1)."""
    spec = _SPEC
    rng = _rng(spec.seed, index)
    out_height = int(rng.integers(spec.height, int(spec.height * 1.5) + 1))
    font = -1
    if spec.kind == "text":
        font, text = _text(spec, rng)
    else:
        text = _digit_text(spec, rng)
    if spec.kind == "handwritten":
        mask = _handwritten(text, spec, rng)
    else:
        mask = _printed(text, spec, rng, None if font < 0 else font)
    mask = render.warp(mask, rng, max_angle=spec.max_rotation, max_perspective=spec.max_perspective)
    mask = render.resize_to_height(mask, out_height)
    image = render.compose(mask, rng, color=spec.color, max_blur=spec.blur, ink_bleed=spec.ink_bleed,
                           speckles=spec.speckles, binarize_probability=spec.binarize,
                           invert_probability=spec.invert)
    path = os.path.join(spec.out_dir, "images", f"{index:0{spec.name_width}d}.png")
    image.save(path, optimize=False)
    return path, tuple(graphemes(text)), font


def _run(spec: _WorkerSpec, n: int, workers: int | None, progress: bool,
         symbols: Iterable[str]) -> tuple[str, Counter]:
    """Render ``n`` samples in parallel and write labels.csv + alphabet.json.

    Returns:
        The CSV's path and how many images each font index drew.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    os.makedirs(os.path.join(spec.out_dir, "images"), exist_ok=True)
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    workers = min(workers, n)
    bar = tqdm(total=n, desc=f"generate {spec.kind}", unit="img", disable=not progress)
    rows: list = [None] * n
    if workers == 1:
        _init_worker(spec)
        for i in range(n):
            rows[i] = _make_sample(i)
            bar.update()
    else:
        with _pool_context().Pool(workers, initializer=_init_pool_worker, initargs=(spec,)) as pool:
            chunk = max(1, min(64, n // (workers * 8)))
            for i, row in zip(range(n), pool.imap(_make_sample, range(n), chunksize=chunk)):
                rows[i] = row
                bar.update()
    bar.close()
    csv_path = os.path.join(spec.out_dir, "labels.csv")
    write_csv([(path, symbols) for path, symbols, _ in rows], csv_path, relative=True)
    Alphabet.from_symbols(sorted(set(symbols))).save(os.path.join(spec.out_dir, "alphabet.json"))
    return csv_path, Counter(font for _, _, font in rows)


def _pool_context():
    # fork starts workers instantly and needs no re-import; the workers only use
    # Pillow/numpy, so forking a parent that imported TensorFlow is safe here.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _check_lengths(min_length: int, max_length: int) -> None:
    if not 1 <= min_length <= max_length:
        raise ValueError(f"need 1 <= min_length <= max_length, got {min_length}, {max_length}")


def _load_sklearn_digits() -> tuple:
    """The 1,797 8x8 handwritten digits of scikit-learn, grouped by class, scaled to [0, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError(
            "style='handwritten' needs scikit-learn (its bundled 8x8 digits, no download): "
            "pip install scikit-learn"
        ) from e
    data = load_digits()
    images = data.images.astype(np.float32) / 16.0
    return tuple(images[data.target == d] for d in range(10))


def generate_numbers(out_dir: str | os.PathLike, n: int, seed: int = 0, min_length: int = 3,
                     max_length: int = 8, height: int = 32, workers: int | None = None,
                     progress: bool = True, style: str = "printed",
                     fonts: str | os.PathLike | Sequence[str] | None = None,
                     max_rotation: float = 3.0, max_perspective: float = 0.05) -> str:
    """Generate ``n`` images of random digit strings.

    ``style="printed"`` renders with matplotlib's DejaVu fonts (or ``fonts``):
    light paper with a random tint, gradient and texture, dark ink, random font
    and size, letter spacing, a few degrees of rotation, mild perspective,
    slight blur and Gaussian noise. ``style="handwritten"`` joins upscaled 8x8
    digits from scikit-learn's ``load_digits`` (optional dependency).

    Images are greyscale PNGs, ``height`` to ``1.5 * height`` pixels high
    (random per image), as wide as the text.

    Args:
        out_dir: output folder (created); ``images/``, ``labels.csv`` and
            ``alphabet.json`` (the digits 0-9, codes 1-10) are written in it.
        n: number of images.
        seed: base seed; image ``i`` depends only on ``(seed, i)``.
        min_length: shortest digit string.
        max_length: longest digit string.
        height: minimum image height in pixels.
        workers: processes (default ``os.cpu_count()``; 1 runs in-process).
        progress: show a tqdm progress bar.
        style: ``"printed"`` or ``"handwritten"``.
        fonts: font folder or list of font files for ``printed``
            (default: matplotlib's DejaVu fonts).
        max_rotation: the text is rotated by up to this many degrees either way.
        max_perspective: each corner of the text box moves by up to this times its
            height (perspective, shear and scale together; 0.05 mild, 0.2 strong).

    Returns:
        The path of ``out_dir/labels.csv``.

    Raises:
        ValueError: bad lengths, ``n`` or style.
        ImportError: ``style="handwritten"`` without scikit-learn.
        FileNotFoundError: no usable font.
    """
    _check_lengths(min_length, max_length)
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    out_dir = os.path.abspath(os.fspath(out_dir))
    if max_rotation < 0 or max_perspective < 0:
        raise ValueError(f"max_rotation and max_perspective must be >= 0, got {max_rotation}, {max_perspective}")
    common = dict(out_dir=out_dir, seed=seed, height=height, min_length=min_length,
                  max_length=max_length, name_width=max(6, len(str(n - 1))),
                  max_rotation=float(max_rotation), max_perspective=float(max_perspective))
    if style == "handwritten":
        spec = _WorkerSpec(kind="handwritten", digit_bitmaps=_load_sklearn_digits(), **common)
    else:
        usable = _usable_fonts(fonts, DIGITS)
        spec = _WorkerSpec(kind="digits", fonts=tuple(usable), font_missing=(frozenset(),) * len(usable), **common)
    return _run(spec, n, workers, progress, DIGITS)[0]


def _font_list(fonts) -> list[str]:
    if fonts is None:
        return render.matplotlib_fonts()
    if isinstance(fonts, (str, os.PathLike)):
        if fonts == "system":
            return render.find_fonts("/usr/share/fonts")
        return render.find_fonts(fonts)
    return [os.fspath(f) for f in fonts]


def font_files(fonts) -> list[str]:
    """The font files ``fonts`` names: None (matplotlib's DejaVu), ``"system"`` (``/usr/share/fonts``),
    a folder (searched recursively), a font file, or a list of any of these."""
    if fonts is None or isinstance(fonts, (str, os.PathLike)):
        fonts = [fonts]
    files: list[str] = []
    for entry in fonts:
        if entry is not None and os.path.isfile(entry):
            files.append(os.fspath(entry))
        else:
            files.extend(_font_list(entry))
    return list(dict.fromkeys(files))


def _usable_fonts(fonts, symbols: Iterable[str]) -> list[str]:
    """The fonts that can draw every symbol (fonts lacking glyphs would teach wrong labels)."""
    candidates = font_files(fonts)
    symbols = sorted(set(symbols))
    report = font_check.check_fonts(candidates, symbols)
    usable = [f.path for f in report.fonts if f.error is None and not f.missing]
    if not usable:
        raise FileNotFoundError(
            f"none of the {len(candidates)} font(s) can draw all symbols {''.join(symbols)!r}"
        )
    return usable


def _split_words(texts: Iterable[str]) -> list[str]:
    return [w for t in texts for w in t.split()]


def read_words(source: str | os.PathLike | Sequence[str] | None) -> list[str]:
    """The vocabulary for :func:`generate_text`.

    Args:
        source: None for :data:`BUILTIN_WORDS`; a sequence of words; or the
            path of a UTF-8 word list or any text corpus (split on whitespace,
            duplicates removed, first occurrence order kept).

    Returns:
        The words, without those containing ``|`` (the CSV format cannot hold
        it in a label).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: no usable word.
    """
    if source is None:
        words = list(BUILTIN_WORDS)
    elif isinstance(source, (str, os.PathLike)):
        words = _read_text_file(source).split()
    else:
        words = [w for w in source]
    words = [w for w in dict.fromkeys(words) if w and not any(c in w for c in _UNWRITABLE)]
    if not words:
        raise ValueError(f"no usable words in {source!r}")
    return words


def _read_text_file(path: str | os.PathLike) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"word list not found: {path}")
    return path.read_text(encoding="utf-8-sig")


def read_lines(source: str | os.PathLike | Sequence[str]) -> list[str]:
    """Whole lines of text for :func:`generate_text` with ``lines=True``.

    Args:
        source: the path of a UTF-8 text file (one line a sample) or a sequence of lines.

    Returns:
        The non-empty lines, whitespace runs made one space, without those
        containing ``|``; duplicates kept (a line appears as often as in the source).
    """
    raw = _read_text_file(source).splitlines() if isinstance(source, (str, os.PathLike)) else list(source)
    lines = [" ".join(line.split()) for line in raw]
    return [line for line in lines if line and not any(c in line for c in _UNWRITABLE)]


def csv_texts(csv_files: str | os.PathLike | Sequence[str | os.PathLike], csv_delimiter: str = ";",
              string_split_delimiter: str = "|") -> list[str]:
    """The labels of annotation CSVs as texts (each label's symbols joined), in file order.

    Read with :func:`tf_crnn.annotations.read_csvs`, so the CSVs training reads
    are read the same way here (the images are not opened).
    """
    if isinstance(csv_files, (str, os.PathLike)):
        csv_files = [csv_files]
    return [s.text for s in read_csvs(csv_files, csv_delimiter, string_split_delimiter)]


_LONG_S = re.compile(r"s(?=[^\W\d_])")


def long_s(text: str) -> str:
    """Historic German spelling of s: long ``ſ`` inside and at the start of a word, round ``s`` at its end.

    ``s`` followed by a letter becomes ``ſ`` (``Reisender`` -> ``Reiſender``,
    ``das`` stays). A text that has a ``ſ`` already is returned unchanged: it is
    spelt historically. The rule misses the round s at the end of a syllable inside
    a compound (``Ausgabe``, historically ``Ausgabe``, becomes ``Auſgabe``): on the
    Fraktur training labels (archiscribe, 3,864 s/ſ) it gives the printed letter in
    91.7 % of the cases.
    """
    return text if "ſ" in text else _LONG_S.sub("ſ", text)


def _source_texts(spec: TextSpec) -> list[str]:
    """The texts ``spec`` draws from, as often as they occur in its source (CSV labels first, then ``words``)."""
    texts: list[str] = []
    if spec.csv is not None:
        labels = csv_texts(spec.csv, spec.csv_delimiter, spec.string_split_delimiter)
        texts += labels if spec.lines else _split_words(labels)  # words as often as they occur
    if spec.words is not None:
        texts += read_lines(spec.words) if spec.lines else read_words(spec.words)
    elif spec.csv is None:
        if spec.lines:
            raise ValueError("lines=True needs a text file (words) or CSV labels (csv) to take the lines from")
        texts = read_words(None)
    texts = [t for t in texts if not any(c in t for c in _UNWRITABLE)]
    if spec.historic_s:
        texts = [long_s(t) for t in texts]
    if not texts:
        raise ValueError("the text source holds no usable text")
    return texts


def generate_text(out_dir: str | os.PathLike, n: int, spec: TextSpec | None = None, *, seed: int = 0,
                  workers: int | None = None, progress: bool = True) -> str:
    """Generate ``n`` images of words or lines of text, as ``spec`` says.

    Each sample picks a font, then ``min_words``..``max_words`` random words of
    the vocabulary that this font draws (joined by spaces; with ``case="mixed"``
    15 % upper-cased, 15 % with the first letter upper-cased), or one whole line
    with ``lines=True``, and renders it with a random size and letter spacing,
    rotation, perspective (shear and scale), baseline jitter and (on half of the
    images) an elastic distortion, on textured paper with random tint, blur and
    noise, and the optional ink bleed, specks and binarisation. Labels are split
    into grapheme clusters.

    Fonts: each is checked against the symbols of the text source
    (:func:`tf_crnn.datasets.fonts.check_fonts`, code point by code point). A font
    draws only the texts it has every symbol of; unreadable and symbol fonts, and
    fonts that draw none of the texts, are not used; texts no font draws are left
    out. All three are warned about, and ``out_dir/fonts.json`` records per font
    the symbols it lacks, how many texts it draws and how many images it drew.

    Args:
        out_dir: output folder; ``images/``, ``labels.csv``, ``alphabet.json``, ``fonts.json``.
        n: number of images.
        spec: the text source, fonts and look (:class:`~tf_crnn.datasets.text_spec.TextSpec`);
            None: ``TextSpec()``, the built-in English words in matplotlib's DejaVu fonts.
        seed: base seed; image ``i`` depends only on ``(seed, i)`` (and ``spec``).
        workers: processes (default ``os.cpu_count()``; 1 runs in-process).
        progress: show a tqdm progress bar.

    Returns:
        The path of ``out_dir/labels.csv``. ``alphabet.json`` holds every symbol
        the kept texts can produce (and their upper-case forms with ``case="mixed"``),
        so it does not depend on which texts were drawn.

    Raises:
        FileNotFoundError: a text source or the fonts not found, or no font draws any text.
        ValueError: ``n`` < 1, ``lines=True`` without a source, a source with no usable
            text or none that fits ``alphabet`` (bad values are refused by ``TextSpec`` itself).
    """
    spec = TextSpec() if spec is None else spec
    texts = _source_texts(spec)
    unit = "lines" if spec.lines else "words"  # what a text is, in the warnings
    # Split each distinct text into symbols once (a word list may hold 300,000 of them).
    distinct = list(dict.fromkeys(texts))
    symbol_sets = {t: frozenset(graphemes(t)) - {" "} for t in distinct}
    allowed = None
    outside_alphabet: list[str] = []
    if spec.alphabet is not None:
        table = spec.alphabet if isinstance(spec.alphabet, Alphabet) else Alphabet.from_file(spec.alphabet)
        allowed = frozenset(table.lookup)
        outside_alphabet = [t for t in distinct if not symbol_sets[t] <= allowed]
        if outside_alphabet:
            excluded = set(outside_alphabet)
            texts = [t for t in texts if t not in excluded]
            distinct = [t for t in distinct if t not in excluded]
            if not texts:
                raise ValueError(f"no text of the source fits the alphabet (e.g. {outside_alphabet[:3]})")
            warnings.warn(f"{len(outside_alphabet)} of {len(symbol_sets)} {unit} left out: "
                          f"symbols the alphabet lacks (e.g. {outside_alphabet[:5]})", stacklevel=2)
    word_sets = [symbol_sets[t] for t in distinct]
    symbols = set().union(*word_sets)
    if spec.case == "mixed":
        symbols |= set().union(*(frozenset(graphemes(t.upper())) for t in distinct)) - {" "}
    candidates = font_files(spec.fonts)
    report = font_check.check_fonts(candidates, sorted(symbols))
    per_font = font_check.texts_per_font(report.fonts, word_sets)
    used = [(f, d) for f, d in zip(report.fonts, per_font) if f.error is None and d]
    if not used:
        raise FileNotFoundError(f"none of the {len(candidates)} fonts ({spec.fonts or 'matplotlib DejaVu'}) "
                                "can draw any text of the source")
    drawable_ids = set().union(*(d for _, d in used))
    no_font = [t for i, t in enumerate(distinct) if i not in drawable_ids]
    if no_font:
        warnings.warn(f"{len(no_font)} of {len(distinct)} {unit} left out: no font draws "
                      f"all their symbols (e.g. {no_font[:5]}); give more fonts (--fonts) to keep them", stacklevel=2)
    not_used = [f for f in report.fonts if all(f is not g for g, _ in used)]
    if not_used:
        warnings.warn("fonts not used: " + "; ".join(f"{f.name}: {f.error or 'draws none of the texts'}"
                                                     for f in not_used), stacklevel=2)
    # Samples draw from the texts with their frequency in the source (distinct index per occurrence).
    position = {t: i for i, t in enumerate(distinct)}
    occurrences: dict[int, list[int]] = {}
    for k, t in enumerate(texts):
        occurrences.setdefault(position[t], []).append(k)
    font_words = tuple(np.array([k for i in d for k in occurrences[i]], dtype=np.int64) for _, d in used)
    font_missing = tuple(frozenset(f.missing) for f, _ in used)
    job = _WorkerSpec(out_dir=os.path.abspath(os.fspath(out_dir)), kind="text", seed=seed, height=spec.height,
                      fonts=tuple(f.path for f, _ in used), font_missing=font_missing, words=tuple(texts),
                      font_words=font_words, allowed=allowed, min_words=spec.min_words, max_words=spec.max_words,
                      case=spec.case, color=spec.color, elastic=spec.elastic, max_rotation=float(spec.max_rotation),
                      max_perspective=float(spec.max_perspective), blur=float(spec.blur),
                      ink_bleed=float(spec.ink_bleed), speckles=float(spec.speckles), binarize=float(spec.binarize),
                      invert=float(spec.invert), max_spacing=float(spec.max_spacing),
                      name_width=max(6, len(str(n - 1))))
    # The table covers every symbol the kept texts can produce (as written or upper-cased).
    table_symbols: set[str] = set().union(*(word_sets[i] for i in drawable_ids))
    if spec.case == "mixed":
        for i in drawable_ids:
            upper = distinct[i].upper()
            if upper != distinct[i] and any(_drawable(job, k, upper) for k in range(len(job.fonts))):
                table_symbols.update(graphemes(upper))
    if spec.max_words > 1 or any(" " in distinct[i] for i in drawable_ids):
        table_symbols.add(" ")
    table_symbols.discard("")
    csv_path, images = _run(job, n, workers, progress, table_symbols)
    record = {
        "fonts": [{"font": f.path, "images": images.get(i, 0), "texts_drawable": len(d),
                   "lacks": {sym: [f"U+{ord(c):04X}" for c in cps] for sym, cps in f.missing.items()}}
                  for i, (f, d) in enumerate(used)],
        "not_used": [{"font": f.path, "reason": f.error or "draws none of the texts"} for f in not_used],
        "texts": len(distinct),
        "left_out_no_font": len(no_font), "left_out_no_font_examples": no_font[:20],
        "left_out_alphabet": len(outside_alphabet), "left_out_alphabet_examples": outside_alphabet[:20],
        "symbols_no_font_draws": report.undrawable,
    }
    write_json(os.path.join(job.out_dir, "fonts.json"), record)
    return csv_path
