"""Image rendering primitives for the synthetic generators.

Everything here works on one image and takes an explicit
``numpy.random.Generator`` so that a sample is a pure function of its seed
(see :mod:`tf_crnn.datasets.synthetic`). The pipeline is

1. an *ink mask* (float32, 0 = paper, 1 = ink) drawn from a font
   (:func:`text_mask`) or from glyph bitmaps (:func:`bitmap_mask`);
2. optional elastic distortion of the mask (:func:`elastic`);
3. a slight rotation plus perspective, cropped with random margins
   (:func:`warp`), then a resize to the output height;
4. composition onto a paper-like background with ink colour, blur and
   Gaussian noise (:func:`compose`), optionally with the marks of printing and
   scanning: ink bleed or erosion (:func:`bleed`), specks of dirt and holes in
   the ink (:func:`speckle`), and binarisation (:func:`binarize`).

Only Pillow, numpy and (for the elastic distortion) scipy are used.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ..annotations import graphemes

#: Font files Pillow (FreeType) reads; WOFF2 needs a FreeType built with brotli (Pillow's wheels are).
FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".woff", ".woff2")

# A code point no font maps; its rendering is the font's .notdef glyph, used to
# detect symbols a font lacks (Pillow would silently draw a box instead).
_MISSING = "\U0010fffd"


def matplotlib_fonts() -> list[str]:
    """The DejaVu TrueType fonts that matplotlib ships (same on every machine).

    ``DejaVu*Display`` is left out: it holds only a few glyphs (no digits).

    Raises:
        FileNotFoundError: matplotlib's font folder has no DejaVu font.
    """
    import matplotlib  # imported here: only needed to locate the fonts

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    fonts = sorted(str(p) for p in folder.glob("DejaVu*.ttf") if "Display" not in p.name)
    if not fonts:
        raise FileNotFoundError(f"no DejaVu*.ttf fonts found in {folder}")
    return fonts


def find_fonts(folder: str | os.PathLike) -> list[str]:
    """All font files (``.ttf``, ``.otf``, ``.ttc``) under ``folder``, recursively, sorted.

    Raises:
        FileNotFoundError: the folder does not exist or holds no font.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"font folder not found: {folder}")
    fonts = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in FONT_SUFFIXES and p.is_file())
    if not fonts:
        raise FileNotFoundError(f"no font files ({', '.join(FONT_SUFFIXES)}) under {folder}")
    return fonts


@functools.lru_cache(maxsize=256)
def load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    """A cached Pillow font (loading a TrueType file costs more than drawing a word)."""
    return ImageFont.truetype(path, size)


def missing_code_points(font_path: str, symbols: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """For each symbol ``font_path`` cannot draw, the code points of it that the font lacks.

    Every code point of a symbol is checked on its own, a base letter and each of
    its combining marks (``'aͤ'`` needs ``a`` and U+0364), since a font may have
    one and not the other; whitespace is not checked. A code point is missing
    when it draws nothing or the font's .notdef glyph (the box Pillow would
    silently draw instead).

    Returns:
        ``{symbol: (missing code points, ...)}`` for the symbols the font lacks, in
        the order given.
    """
    # BASIC layout maps one code point to one glyph; raqm would add a dotted
    # circle under a lone combining mark and hide that the mark is missing.
    font = ImageFont.truetype(font_path, 24, layout_engine=ImageFont.Layout.BASIC)
    notdef = font.getmask(_MISSING)
    notdef_key = (notdef.size, bytes(notdef))
    lacking: dict[str, bool] = {}

    def lacks(char: str) -> bool:
        if char not in lacking:
            mask = font.getmask(char)
            lacking[char] = mask.size == (0, 0) or (mask.size, bytes(mask)) == notdef_key
        return lacking[char]

    missing = {}
    for symbol in symbols:
        absent = tuple(c for c in dict.fromkeys(symbol) if not c.isspace() and lacks(c))
        if absent:
            missing[symbol] = absent
    return missing


def missing_symbols(font_path: str, symbols: Sequence[str]) -> list[str]:
    """The symbols that ``font_path`` cannot draw (see :func:`missing_code_points`)."""
    return list(missing_code_points(font_path, symbols))


def text_mask(text: str, font: ImageFont.FreeTypeFont, spacing: float, rng: np.random.Generator,
              baseline_jitter: float = 0.0) -> np.ndarray:
    """Draw ``text`` grapheme by grapheme into an ink mask.

    Args:
        text: the text; each grapheme cluster is drawn as one unit so combining
            marks stay on their base letter.
        font: the Pillow font (its size sets the scale).
        spacing: extra pixels between graphemes (may be slightly negative).
        rng: random generator for the baseline jitter.
        baseline_jitter: maximum vertical offset per grapheme, in pixels.

    Returns:
        float32 array ``(h, w)`` in [0, 1], cropped to the ink.
    """
    glyphs = graphemes(text)
    advances = [font.getlength(g) for g in glyphs]
    ascent, descent = font.getmetrics()
    pad = int(font.size * 0.5) + int(baseline_jitter) + 2
    width = int(sum(advances) + max(spacing, 0) * len(glyphs)) + 2 * pad
    canvas = Image.new("L", (max(width, 1), ascent + descent + 2 * pad), 0)
    draw = ImageDraw.Draw(canvas)
    x = float(pad)
    for glyph, advance in zip(glyphs, advances):
        dy = rng.uniform(-baseline_jitter, baseline_jitter) if baseline_jitter else 0.0
        draw.text((x, pad + dy), glyph, font=font, fill=255)
        x += advance + spacing
    return _crop_to_ink(np.asarray(canvas, dtype=np.float32) / 255.0)


def bitmap_mask(bitmaps: Sequence[np.ndarray], height: int, rng: np.random.Generator) -> np.ndarray:
    """Join small glyph bitmaps (e.g. 8x8 handwritten digits) into one ink mask.

    Each bitmap (values in [0, 1]) is upscaled to about ``height`` pixels with
    a random width scale, vertical offset and spacing (overlap allowed, ink
    combined with ``max`` like pen strokes).

    Returns:
        float32 array ``(h, w)`` in [0, 1], cropped to the ink.
    """
    pieces = []
    for bitmap in bitmaps:
        h = int(height * rng.uniform(0.8, 1.0))
        w = max(2, int(h * bitmap.shape[1] / bitmap.shape[0] * rng.uniform(0.7, 1.05)))
        img = Image.fromarray((np.clip(bitmap, 0, 1) * 255).astype(np.uint8), "L")
        pieces.append(np.asarray(img.resize((w, h), Image.BICUBIC), dtype=np.float32) / 255.0)
    gaps = [int(height * rng.uniform(-0.12, 0.12)) for _ in pieces]
    pad = height
    total = sum(p.shape[1] for p in pieces) + sum(max(g, 0) for g in gaps) + 2 * pad
    canvas = np.zeros((2 * height, total), np.float32)
    x = pad
    for piece, gap in zip(pieces, gaps):
        y = int((2 * height - piece.shape[0]) / 2 + rng.uniform(-0.08, 0.08) * height)
        region = canvas[y:y + piece.shape[0], x:x + piece.shape[1]]
        np.maximum(region, piece, out=region)
        x += piece.shape[1] + gap
    return _crop_to_ink(canvas)


def _crop_to_ink(mask: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    rows = np.flatnonzero(mask.max(axis=1) > threshold)
    cols = np.flatnonzero(mask.max(axis=0) > threshold)
    if rows.size == 0:
        return mask[:1, :1] * 0
    return mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def elastic(mask: np.ndarray, rng: np.random.Generator, alpha: float, sigma: float) -> np.ndarray:
    """Elastic distortion (Simard et al. 2003): a smooth random displacement field.

    Args:
        mask: ink mask.
        rng: random generator.
        alpha: displacement amplitude in pixels.
        sigma: smoothness (Gaussian sigma of the field) in pixels.
    """
    from scipy import ndimage  # only this optional effect needs scipy

    h, w = mask.shape
    dx = ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma, mode="constant")
    dy = ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma, mode="constant")
    # Normalize so alpha is the real peak displacement, whatever sigma is.
    scale = alpha / max(np.abs(dx).max(), np.abs(dy).max(), 1e-6)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    coords = np.array([ys + dy * scale, xs + dx * scale])
    return ndimage.map_coordinates(mask, coords, order=1, mode="constant").astype(np.float32)


def _perspective_coefficients(output_quad: np.ndarray, input_quad: np.ndarray) -> np.ndarray:
    """Pillow's 8 PERSPECTIVE coefficients mapping output points to input points."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(output_quad, input_quad):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return np.linalg.solve(np.array(rows, float), np.array(rhs, float))


def warp(mask: np.ndarray, rng: np.random.Generator, max_angle: float = 3.0,
         max_perspective: float = 0.06, margin: tuple[float, float] = (0.05, 0.3)) -> np.ndarray:
    """Rotate slightly, apply a mild perspective and add random margins.

    The ink box's corners are rotated by up to ``max_angle`` degrees and each
    moved by up to ``max_perspective`` x its height; margins are drawn
    in ``margin`` x height on every side.

    Returns:
        The warped mask (float32, [0, 1]).
    """
    h, w = mask.shape
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
    angle = np.deg2rad(rng.uniform(-max_angle, max_angle))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = (src - [w / 2, h / 2]) @ rot.T + rng.uniform(-max_perspective, max_perspective, (4, 2)) * h
    left, top, right, bottom = (rng.uniform(*margin, 4) * h)
    dst -= dst.min(axis=0) - [left, top]
    size = (int(np.ceil(dst[:, 0].max() + right)), int(np.ceil(dst[:, 1].max() + bottom)))
    coeffs = _perspective_coefficients(dst, src)
    image = Image.fromarray(mask, "F").transform(size, Image.PERSPECTIVE, tuple(coeffs), Image.BILINEAR)
    return np.asarray(image, dtype=np.float32)


def resize_to_height(mask: np.ndarray, height: int) -> np.ndarray:
    """Resize a mask to ``height`` pixels keeping its aspect ratio."""
    h, w = mask.shape
    width = max(1, int(round(w * height / h)))
    return np.asarray(Image.fromarray(mask, "F").resize((width, height), Image.BILINEAR), dtype=np.float32)


def background(shape: tuple[int, int], rng: np.random.Generator, color: bool) -> np.ndarray:
    """Paper-like background: a light tint, a soft gradient and low-frequency texture.

    Returns:
        float32 ``(h, w)`` or ``(h, w, 3)`` array of grey levels 0..255.
    """
    h, w = shape
    base = rng.uniform(175, 250)
    tint = base + (rng.uniform(-15, 8, 3) if color else np.zeros(1))
    direction = rng.uniform(-1, 1, 2)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    gradient = (xs / max(w, 1) * direction[0] + ys / max(h, 1) * direction[1]) * rng.uniform(0, 25)
    # Texture: coarse noise upsampled, like paper fibres and stains.
    coarse = rng.normal(0, 1, (max(2, h // 6), max(2, w // 6))).astype(np.float32)
    texture = np.asarray(Image.fromarray(coarse, "F").resize((w, h), Image.BICUBIC)) * rng.uniform(0, 8)
    paper = (gradient + texture)[..., None] + tint
    return paper if color else paper[..., 0]


def bleed(mask: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Ink bleed or erosion: blur the ink mask, then threshold it again, softly.

    A threshold below one half thickens the strokes and rounds them (ink spread
    into the paper), above one half thins them (worn type, faint impression);
    the draw favours bleeding. Blur and threshold range grow with ``strength``
    (0..1) and the blur with the mask's height (as at 32 px, scaled), so the
    effect looks the same at any resolution.

    Returns:
        A float32 mask of the same shape, in [0, 1].
    """
    from scipy import ndimage  # scipy is a dependency; imported here as in elastic()

    scale = mask.shape[0] / 32
    sigma = rng.uniform(0.3, 0.3 + 0.9 * strength) * scale
    level = rng.uniform(0.5 - 0.3 * strength, 0.5 + 0.12 * strength)
    blurred = ndimage.gaussian_filter(mask.astype(np.float32), sigma)
    return np.clip((blurred - level) / 0.2 + 0.5, 0, 1).astype(np.float32)


def speckle(mask: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Specks of dirt on the paper and small holes in the ink, as on old prints.

    About ``strength`` x (pixels / 400) of each, round, 0.4-1.3 px in radius at a
    32 px height (scaled with the height), of random darkness.

    Returns:
        The ink mask with the specks added and the holes taken out, float32 in [0, 1].
    """
    h, w = mask.shape
    scale = h / 32
    layers = []
    for _ in range(2):  # specks, then holes
        layer = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(layer)
        count = int(rng.poisson(strength * h * w / 400))
        xs, ys = rng.uniform(0, w, count), rng.uniform(0, h, count)
        radii = rng.uniform(0.4, 1.3, count) * scale
        shades = rng.integers(120, 256, count)
        for x, y, r, shade in zip(xs, ys, radii, shades):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=int(shade))
        layers.append(np.asarray(layer, dtype=np.float32) / 255.0)
    specks, holes = layers
    return (np.maximum(mask, specks) * (1 - holes)).astype(np.float32)


def binarize(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Black and white, as a bitonal scan: threshold at Otsu's level, moved a little at random.

    The noise already on the image makes ragged stroke edges and isolated pixels
    (binarisation noise). An RGB image is thresholded on its grey level and stays RGB.
    """
    grey = np.asarray(image.convert("L"), dtype=np.uint8)
    level = otsu_level(grey) + rng.uniform(-12, 12)
    bits = np.where(grey > level, 255, 0).astype(np.uint8)
    out = Image.fromarray(bits, "L")
    return out.convert("RGB") if image.mode == "RGB" else out


def otsu_level(grey: np.ndarray) -> float:
    """Otsu's threshold of a uint8 image: the level that best separates two classes of grey."""
    hist = np.bincount(grey.ravel(), minlength=256).astype(np.float64)
    weight = np.cumsum(hist)
    total = weight[-1]
    means = np.cumsum(hist * np.arange(256))
    w0, w1 = weight[:-1], total - weight[:-1]
    valid = (w0 > 0) & (w1 > 0)
    if not valid.any():
        return 127.5
    m0 = means[:-1] / np.where(w0 > 0, w0, 1)
    m1 = (means[-1] - means[:-1]) / np.where(w1 > 0, w1, 1)
    between = np.where(valid, w0 * w1 * (m0 - m1) ** 2, -1)
    return float(np.argmax(between)) + 0.5


def compose(mask: np.ndarray, rng: np.random.Generator, color: bool = False,
            max_blur: float = 1.0, noise: tuple[float, float] = (1.0, 8.0), ink_bleed: float = 0.0,
            speckles: float = 0.0, binarize_probability: float = 0.0, invert_probability: float = 0.0
            ) -> Image.Image:
    """Put an ink mask on paper: dark ink, slight blur, Gaussian noise, and the optional degradations.

    Args:
        mask: ink mask (float32 [0, 1]) at the final size.
        rng: random generator.
        color: RGB output with tinted paper and coloured dark ink; else greyscale.
        max_blur: largest Gaussian blur radius in pixels.
        noise: range of the Gaussian noise standard deviation (grey levels).
        ink_bleed: strength 0..1 of :func:`bleed` (0: off), applied to half of the images.
        speckles: strength 0..1 of :func:`speckle` (0: off).
        binarize_probability: share of images made black and white (:func:`binarize`), 0..1.
        invert_probability: share of images inverted (light text on a dark ground, as on
            many signs), 0..1.

    An option at 0 draws no random number, so the images of the other options
    stay as they were without it.

    Returns:
        A Pillow image, mode ``L`` or ``RGB``, the mask's size.
    """
    if ink_bleed > 0 and rng.random() < 0.5:
        mask = bleed(mask, rng, ink_bleed)
    if speckles > 0:
        mask = speckle(mask, rng, speckles)
    paper = background(mask.shape, rng, color)
    ink = rng.uniform(0, 80, 3 if color else 1)
    opacity = rng.uniform(0.75, 1.0)  # faded print
    alpha = (np.clip(mask, 0, 1) * opacity)
    if color:
        alpha = alpha[..., None]
        pixels = paper * (1 - alpha) + ink * alpha
    else:
        pixels = paper * (1 - alpha) + ink[0] * alpha
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB" if color else "L")
    radius = rng.uniform(0, max_blur)
    if radius > 0.2:
        image = image.filter(ImageFilter.GaussianBlur(radius))
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels + rng.normal(0, rng.uniform(*noise), pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), image.mode)
    if binarize_probability > 0 and rng.random() < binarize_probability:
        image = binarize(image, rng)
    if invert_probability > 0 and rng.random() < invert_probability:
        image = Image.fromarray(255 - np.asarray(image), image.mode)
    return image
