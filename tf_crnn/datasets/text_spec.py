"""What :func:`tf_crnn.datasets.synthetic.generate_text` renders and how, as one value: :class:`TextSpec`.

A module of its own, importing nothing heavy, so that ``tf-crnn generate text``
can take its option defaults from :class:`TextSpec` while building its parser
without loading NumPy, pandas and Pillow (:mod:`~tf_crnn.datasets.synthetic` does).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

#: How :func:`~tf_crnn.datasets.synthetic.generate_text` varies the case: ``mixed`` (15 % upper case,
#: 15 % first letter upper) or ``keep``.
CASES = ("mixed", "keep")

#: The fields that are shares or strengths, each in 0..1.
_UNIT_FIELDS = ("ink_bleed", "speckles", "binarize", "invert")


@dataclass(frozen=True)
class TextSpec:
    """The text source, the fonts and the look of the images :func:`~tf_crnn.datasets.synthetic.generate_text`
    renders; everything but where they go, how many, the seed and the processes.

    The defaults are those of ``tf-crnn generate text``, whose options are built from
    these fields (:mod:`tf_crnn.cli.datasets`). The values are checked when the spec is
    made; the files and fonts it names are read by ``generate_text``.

    Attributes:
        words: the text source: None (the built-in English words unless ``csv`` is
            given), a sequence of words (lines with ``lines=True``), or the path of a
            UTF-8 word list / text corpus (see :func:`~tf_crnn.datasets.synthetic.read_words`,
            :func:`~tf_crnn.datasets.synthetic.read_lines`).
        csv: annotation CSV(s) (a path or a sequence of paths) whose labels are (also)
            the text source: their words, as often as they occur, or with ``lines=True``
            the labels themselves. None: none.
        lines: each image shows one whole line of the source (a line of the text file,
            a CSV label) instead of words put together; needs ``words`` or ``csv``.
        min_words: shortest text, in words; 1 or more.
        max_words: longest text, in words; ``min_words`` or more, and 1 with ``lines=True``.
        case: ``"mixed"`` (15 % of the texts upper-cased, 15 % with the first letter
            upper-cased, where the font and alphabet have the letters) or ``"keep"``
            (the source's case only); see :data:`CASES`.
        historic_s: spell the source's s as ``ſ`` where historic German print does,
            roughly (:func:`~tf_crnn.datasets.synthetic.long_s`); texts with a ``ſ`` are kept as they are.
        alphabet: a lookup table (path or :class:`~tf_crnn.alphabet.Alphabet`): texts with
            a symbol it lacks are left out, so the labels fit a training's alphabet. None: no filter.
        fonts: None (matplotlib's DejaVu fonts), ``"system"`` (``/usr/share/fonts``), a
            font folder (searched recursively), a font file, or a sequence of these.
        height: minimum image height in pixels, 1 or more; each image is ``height`` to
            ``1.5 * height`` pixels high (random per image), as wide as the text.
        color: RGB images with coloured ink and paper instead of greyscale.
        max_rotation: the text is rotated by up to this many degrees either way, >= 0
            (long lines: keep it small, 0.5).
        max_perspective: each corner of the text box moves by up to this times its
            height, >= 0 (perspective, shear and scale together; 0.2 is strong).
        elastic: elastic distortion amplitude (on half of the images) as a fraction of
            the mask's height, >= 0 (0 = off).
        max_spacing: largest extra space between letters as a fraction of the font
            size, >= -0.04 (each image's is drawn from -0.04 up to it; printed lines: 0.08).
        blur: largest Gaussian blur radius in pixels, >= 0.
        ink_bleed: strength 0..1 of ink bleed / erosion (:func:`~tf_crnn.datasets.render.bleed`),
            on half of the images.
        speckles: strength 0..1 of specks on the paper and holes in the ink
            (:func:`~tf_crnn.datasets.render.speckle`).
        binarize: share 0..1 of the images made black and white
            (:func:`~tf_crnn.datasets.render.binarize`), as bitonal scans.
        invert: share 0..1 of the images with light text on a dark ground (scene text).
        csv_delimiter: in ``csv``, between the image path and the label.
        string_split_delimiter: in ``csv``, between a label's symbols.

    Raises:
        ValueError: on creation: word counts out of order or ``max_words`` > 1 with
            ``lines=True``, an unknown ``case``, ``height`` < 1, a share or strength
            outside 0..1, a negative rotation, perspective, blur or elastic amplitude,
            or ``max_spacing`` < -0.04.
    """

    words: str | os.PathLike | Sequence[str] | None = None
    csv: str | os.PathLike | Sequence[str | os.PathLike] | None = None
    lines: bool = False
    min_words: int = 1
    max_words: int = 1
    case: str = "mixed"
    historic_s: bool = False
    alphabet: Any = None  # a path or an Alphabet (not imported here: it loads pandas)
    fonts: str | os.PathLike | Sequence[str | os.PathLike] | None = None
    height: int = 32
    color: bool = False
    max_rotation: float = 4.5
    max_perspective: float = 0.075
    elastic: float = 0.02
    max_spacing: float = 0.25
    blur: float = 1.0
    ink_bleed: float = 0.0
    speckles: float = 0.0
    binarize: float = 0.0
    invert: float = 0.0
    csv_delimiter: str = ";"
    string_split_delimiter: str = "|"

    def __post_init__(self) -> None:
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {self.min_words}, {self.max_words}")
        if self.lines and self.max_words > 1:
            raise ValueError("lines=True draws one whole line per image: leave max_words (and min_words) at 1")
        if self.case not in CASES:
            raise ValueError(f"case must be one of {CASES}, got {self.case!r}")
        for name in _UNIT_FIELDS:
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in 0..1, got {value}")
        if min(self.max_rotation, self.max_perspective, self.blur, self.elastic) < 0 or self.max_spacing < -0.04:
            raise ValueError("max_rotation, max_perspective, blur and elastic must be >= 0, max_spacing >= -0.04")
        if self.height < 1:
            raise ValueError(f"height must be >= 1 pixel, got {self.height}")
