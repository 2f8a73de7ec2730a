"""Synthetic training data: rendered digit strings, words and handwritten digits.

Each generator writes ``out_dir/images/NNNNNN.png``, ``out_dir/labels.csv``
(the tf-crnn annotation format of :mod:`tf_crnn.annotations`, image paths
relative to the CSV) and ``out_dir/alphabet.json`` (an
:class:`~tf_crnn.alphabet.Alphabet` lookup table).

Determinism: image ``i`` is a pure function of ``(seed, i)`` and the option
values (its random generator is seeded with ``SeedSequence([seed, i])``), so
the number of worker processes never changes the output, and two data sets
generated with seeds 0 and 1 share no image (a plain ``seed + i`` would make
them overlap almost entirely). The same fonts and library versions give
byte-identical PNGs.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tqdm import tqdm

from ..alphabet import Alphabet
from ..annotations import graphemes, write_csv
from . import render

DIGITS = "0123456789"
STYLES = ("printed", "handwritten")

# Symbols that the CSV format cannot hold inside a label (csv_delimiter and
# string_split_delimiter); corpus tokens containing them are dropped.
_UNWRITABLE = (";", "|")

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
class _Spec:
    """Everything a worker needs to render sample ``i`` (pickled once per worker)."""

    out_dir: str
    kind: str  # "digits", "handwritten" or "text"
    seed: int
    height: int
    min_length: int = 3
    max_length: int = 8
    fonts: tuple[str, ...] = ()
    font_missing: tuple[frozenset, ...] = ()  # per font: symbols it cannot draw
    words: tuple[str, ...] = ()
    max_words: int = 1
    color: bool = False
    elastic: float = 0.0
    max_rotation: float = 3.0  # degrees (numbers; text uses 1.5x the defaults)
    max_perspective: float = 0.05  # corner displacement as a fraction of the height
    digit_bitmaps: tuple = field(default=(), repr=False)  # per digit: array (k, 8, 8)
    name_width: int = 6


_SPEC: _Spec | None = None  # the worker's spec, set by _init_worker


def _init_worker(spec: _Spec) -> None:
    global _SPEC
    _SPEC = spec


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def _digit_text(spec: _Spec, rng: np.random.Generator) -> str:
    length = int(rng.integers(spec.min_length, spec.max_length + 1))
    return "".join(rng.choice(list(DIGITS), length))


def _word_text(spec: _Spec, rng: np.random.Generator) -> str:
    count = int(rng.integers(1, spec.max_words + 1))
    words = [spec.words[int(rng.integers(len(spec.words)))] for _ in range(count)]
    case = rng.random()
    text = " ".join(words)
    if case < 0.15:
        cased = text.upper()
    elif case < 0.3:
        cased = text.capitalize()
    else:
        cased = text
    # Keep the variant only if some font draws it all (else fall back, deterministically).
    for candidate in (cased, text, words[0]):
        if _fonts_for(spec, candidate):
            return candidate
    return words[0]  # unreachable: every vocabulary word has a font (see _font_coverage)


def _fonts_for(spec: _Spec, text: str) -> list[int]:
    """Indices of the fonts that can draw every grapheme of ``text``."""
    needed = set(graphemes(text))
    return [i for i, missing in enumerate(spec.font_missing) if not needed & missing]


def _printed(text: str, spec: _Spec, rng: np.random.Generator):
    choices = _fonts_for(spec, text)
    font_path = spec.fonts[choices[int(rng.integers(len(choices)))]]
    font = render.load_font(font_path, int(rng.integers(24, 49)))
    spacing = rng.uniform(-0.04, 0.25) * font.size
    mask = render.text_mask(text, font, spacing, rng, baseline_jitter=rng.uniform(0, 0.04) * font.size)
    if spec.elastic and rng.random() < 0.5:
        mask = render.elastic(mask, rng, alpha=spec.elastic * mask.shape[0], sigma=mask.shape[0] / 6)
    return mask


def _handwritten(text: str, spec: _Spec, rng: np.random.Generator):
    bitmaps = []
    for digit in text:
        pool = spec.digit_bitmaps[int(digit)]
        bitmaps.append(pool[int(rng.integers(len(pool)))])
    return render.bitmap_mask(bitmaps, 40, rng)


def _make_sample(index: int) -> tuple[str, tuple[str, ...]]:
    """Render sample ``index`` of the worker's spec; returns (image path, symbols)."""
    spec = _SPEC
    rng = _rng(spec.seed, index)
    out_height = int(rng.integers(spec.height, int(spec.height * 1.5) + 1))
    if spec.kind == "text":
        text = _word_text(spec, rng)
    else:
        text = _digit_text(spec, rng)
    if spec.kind == "handwritten":
        mask = _handwritten(text, spec, rng)
    else:
        mask = _printed(text, spec, rng)
    if spec.kind == "text":
        mask = render.warp(mask, rng, max_angle=4.5, max_perspective=0.075)
    else:
        mask = render.warp(mask, rng, max_angle=spec.max_rotation, max_perspective=spec.max_perspective)
    mask = render.resize_to_height(mask, out_height)
    image = render.compose(mask, rng, color=spec.color)
    path = os.path.join(spec.out_dir, "images", f"{index:0{spec.name_width}d}.png")
    image.save(path, optimize=False)
    return path, tuple(graphemes(text))


def _run(spec: _Spec, n: int, workers: int | None, progress: bool, symbols: Iterable[str]) -> str:
    """Render ``n`` samples in parallel and write labels.csv + alphabet.json; returns the CSV path."""
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
        with _pool_context().Pool(workers, initializer=_init_worker, initargs=(spec,)) as pool:
            chunk = max(1, min(64, n // (workers * 8)))
            for i, row in zip(range(n), pool.imap(_make_sample, range(n), chunksize=chunk)):
                rows[i] = row
                bar.update()
    bar.close()
    csv_path = os.path.join(spec.out_dir, "labels.csv")
    write_csv(rows, csv_path, relative=True)
    Alphabet.from_symbols(sorted(set(symbols))).save(os.path.join(spec.out_dir, "alphabet.json"))
    return csv_path


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
        spec = _Spec(kind="handwritten", digit_bitmaps=_load_sklearn_digits(), **common)
    else:
        usable = _usable_fonts(fonts, DIGITS)
        spec = _Spec(kind="digits", fonts=tuple(usable), font_missing=(frozenset(),) * len(usable), **common)
    return _run(spec, n, workers, progress, DIGITS)


def _font_list(fonts) -> list[str]:
    if fonts is None:
        return render.matplotlib_fonts()
    if isinstance(fonts, (str, os.PathLike)):
        if fonts == "system":
            return render.find_fonts("/usr/share/fonts")
        return render.find_fonts(fonts)
    return [os.fspath(f) for f in fonts]


def _usable_fonts(fonts, symbols: Iterable[str]) -> list[str]:
    """The fonts that can draw every symbol (fonts lacking glyphs would teach wrong labels)."""
    candidates = _font_list(fonts)
    symbols = sorted(set(symbols))
    usable = []
    for path in candidates:
        try:
            if not render.missing_symbols(path, symbols):
                usable.append(path)
        except OSError:
            continue  # unreadable or unsupported font file
    if not usable:
        raise FileNotFoundError(
            f"none of the {len(candidates)} font(s) can draw all symbols {''.join(symbols)!r}"
        )
    return usable


def _font_coverage(fonts, symbols: Iterable[str]) -> tuple[list[str], list[frozenset]]:
    """Readable fonts and, for each, the symbols it lacks (checked once, used per sample)."""
    symbols = sorted(set(symbols))
    paths, missing = [], []
    for path in _font_list(fonts):
        try:
            lacking = frozenset(render.missing_symbols(path, symbols))
        except OSError:
            continue  # unreadable or unsupported font file
        if len(lacking) < len(symbols):
            paths.append(path)
            missing.append(lacking)
    return paths, missing


def read_words(source: str | os.PathLike | Sequence[str] | None) -> list[str]:
    """The vocabulary for :func:`generate_text`.

    Args:
        source: None for :data:`BUILTIN_WORDS`; a sequence of words; or the
            path of a UTF-8 word list or any text corpus (split on whitespace,
            duplicates removed, first occurrence order kept).

    Returns:
        The words, without those containing ``;`` or ``|`` (the CSV format
        cannot hold them in a label).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: no usable word.
    """
    if source is None:
        words = list(BUILTIN_WORDS)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"word list not found: {path}")
        words = path.read_text(encoding="utf-8-sig").split()
    else:
        words = [w for w in source]
    words = [w for w in dict.fromkeys(words) if w and not any(c in w for c in _UNWRITABLE)]
    if not words:
        raise ValueError(f"no usable words in {source!r}")
    return words


def generate_text(out_dir: str | os.PathLike, n: int, words=None, fonts=None, seed: int = 0,
                  height: int = 32, max_words: int = 1, color: bool = False,
                  elastic: float = 0.02, workers: int | None = None, progress: bool = True) -> str:
    """Generate ``n`` images of words or short lines of text.

    Each sample is 1..``max_words`` random words from the vocabulary (joined by
    spaces; 15 % upper-cased, 15 % capitalized), rendered with a random font,
    size and letter spacing, on textured paper with random tint, with blur,
    noise, rotation, perspective and (on half of the images) an elastic
    distortion. Labels are split into grapheme clusters.

    Args:
        out_dir: output folder; ``images/``, ``labels.csv``, ``alphabet.json``.
        n: number of images.
        words: None (built-in English words), a list of words, or a path to a
            word list / text corpus (see :func:`read_words`).
        fonts: None (matplotlib's DejaVu fonts), ``"system"``
            (``/usr/share/fonts``), a font folder, or a list of font files.
            Each image uses a font that draws all its symbols; words that
            no font draws are left out (with a warning).
        seed: base seed; image ``i`` depends only on ``(seed, i)``.
        height: minimum image height in pixels (up to 1.5x).
        max_words: longest line, in words.
        color: RGB images with coloured ink and paper instead of greyscale.
        elastic: elastic distortion amplitude as a fraction of the height (0 = off).
        workers: processes (default ``os.cpu_count()``).
        progress: show a tqdm progress bar.

    Returns:
        The path of ``out_dir/labels.csv``. ``alphabet.json`` holds every
        symbol of the vocabulary (and its upper-case forms), so it does not
        depend on which words were drawn.

    Raises:
        FileNotFoundError: word list or fonts not found, or no font covers the vocabulary.
        ValueError: ``n`` < 1, ``max_words`` < 1 or an empty vocabulary.
    """
    if max_words < 1:
        raise ValueError(f"max_words must be >= 1, got {max_words}")
    vocabulary = read_words(words)
    all_symbols = {g for w in vocabulary for g in graphemes(w) + graphemes(w.upper())}
    font_paths, font_missing = _font_coverage(fonts, all_symbols)
    drawable = [w for w in vocabulary if any(not set(graphemes(w)) & m for m in font_missing)]
    if not drawable:
        raise FileNotFoundError(f"none of the fonts ({fonts or 'matplotlib DejaVu'}) can draw any word of the vocabulary")
    if len(drawable) < len(vocabulary):
        kept = set(drawable)
        dropped = [w for w in vocabulary if w not in kept]
        warnings.warn(f"{len(dropped)} of {len(vocabulary)} words left out: no font draws all their symbols "
                      f"(e.g. {dropped[:5]}); give more fonts (--fonts) to keep them", stacklevel=2)
    spec = _Spec(out_dir=os.path.abspath(os.fspath(out_dir)), kind="text", seed=seed, height=height,
                 fonts=tuple(font_paths), font_missing=tuple(font_missing), words=tuple(drawable),
                 max_words=max_words, color=color, elastic=elastic,
                 name_width=max(6, len(str(n - 1))))
    # The table covers every symbol the kept words can produce (as written or upper-cased).
    symbols = set()
    for w in drawable:
        symbols.update(graphemes(w))
        if any(not set(graphemes(w.upper())) & m for m in font_missing):
            symbols.update(graphemes(w.upper()))
    if max_words > 1:
        symbols.add(" ")
    return _run(spec, n, workers, progress, symbols)
