"""Cut text-line images out of a page image, the way line recognisers of the field do it.

For a line with polygon ``P`` and optional baseline ``B`` (page pixels, see
:class:`~tf_crnn.datasets.layout.Line`):

1. the skew: the angle of the straight line from ``B``'s first to its last point, used when it exceeds
   :data:`MIN_SKEW_DEGREES` (else 0: no resampling of straight lines);
2. the box: ``P`` rotated by minus the skew about its centre, its bounding box grown by a margin of
   :data:`MARGIN` times its height (at least 2 pixels) on every side;
3. the crop: the page resampled (bilinear) into that box, so the line comes out horizontal;
4. the mask: pixels outside ``P`` (and outside the page) set to the page's background, the
   :data:`BACKGROUND_PERCENTILE` th percentile of the page's grey values (paper is the bright majority).

Crops are greyscale (``L``); colour and bitonal pages are converted first, 16-bit pages stretched to 8 bits.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

#: Baselines skewed by less than this are treated as horizontal.
MIN_SKEW_DEGREES = 0.5
#: Margin around the line's box, as a fraction of its height.
MARGIN = 0.1
#: The page's background grey value: this percentile of its pixels.
BACKGROUND_PERCENTILE = 90


def load_page(image: str | Path):
    """The page image as a greyscale Pillow image (``L``), loaded.

    Raises:
        OSError: Pillow cannot decode it (the message names the file).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(image) as im:
            if im.mode.startswith(("I", "F")):  # 16-bit / float scans: Pillow's convert("L") would clip them
                values = np.asarray(im, dtype=np.float64)
                span = max(float(values.max() - values.min()), 1e-9)
                return Image.fromarray(np.round(255 * (values - values.min()) / span).astype(np.uint8), "L")
            return im.convert("L")
    except (UnidentifiedImageError, OSError) as e:
        raise OSError(f"{image}: cannot decode the page image ({e})") from None


def page_background(page) -> int:
    """The background grey value of a greyscale page (0-255): :data:`BACKGROUND_PERCENTILE` of a pixel sample."""
    pixels = np.asarray(page)[::4, ::4]
    return int(np.percentile(pixels, BACKGROUND_PERCENTILE))


def polygon_problem(polygon: np.ndarray, size: tuple[int, int]) -> str | None:
    """Why ``polygon`` (N, 2) cannot be cut from a page of ``size`` (width, height), or None when it can.

    Degenerate: fewer than 3 points, zero area (all points on one line), or no overlap with the page.
    """
    if len(polygon) < 3:
        return f"degenerate polygon: {len(polygon)} point(s), at least 3 needed"
    x, y = polygon[:, 0], polygon[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    if area < 1:
        return f"degenerate polygon: zero area ({polygon.tolist()[:4]}...)"
    if x.max() <= 0 or y.max() <= 0 or x.min() >= size[0] or y.min() >= size[1]:
        return f"polygon outside the page image ({size[0]} x {size[1]} pixels): x {x.min():g}..{x.max():g}, " \
               f"y {y.min():g}..{y.max():g}"
    return None


def skew_degrees(baseline: np.ndarray | None) -> float:
    """The baseline's angle in degrees, in (-90, 90] (positive: falling to the right in image coordinates), 0
    when below :data:`MIN_SKEW_DEGREES` or without a baseline of 2 distinct points.

    A baseline drawn right to left (as some tools do for right-to-left scripts) gives the same angle as drawn
    left to right, so the line is never turned upside down.
    """
    if baseline is None or len(baseline) < 2:
        return 0.0
    dx, dy = baseline[-1] - baseline[0]
    if dx == 0 and dy == 0:
        return 0.0
    angle = math.degrees(math.atan2(dy, dx))
    if angle > 90:
        angle -= 180
    elif angle <= -90:
        angle += 180
    return angle if abs(angle) > MIN_SKEW_DEGREES else 0.0


def cut_line(page, polygon: np.ndarray, baseline: np.ndarray | None = None, background: int | None = None):
    """The upright, masked image of one line (see the module doc).

    Args:
        page: the greyscale page (Pillow ``L``, as :func:`load_page` gives).
        polygon: (N, 2) float, the line's outline in page pixels, N >= 3 (check with :func:`polygon_problem`).
        baseline: (M, 2) float or None.
        background: the fill grey value; None: :func:`page_background` of ``page``.

    Returns:
        A Pillow ``L`` image, about the line's height (plus 2 margins) high.
    """
    from PIL import Image, ImageDraw

    if background is None:
        background = page_background(page)
    angle = math.radians(skew_degrees(baseline))
    cos, sin = math.cos(angle), math.sin(angle)
    centre = polygon.mean(axis=0)
    # The polygon in the line's own frame: rotated by -angle about its centre.
    shifted = polygon - centre
    upright = np.stack([cos * shifted[:, 0] + sin * shifted[:, 1], -sin * shifted[:, 0] + cos * shifted[:, 1]], 1)
    low, high = upright.min(axis=0), upright.max(axis=0)
    margin = max(2.0, MARGIN * (high[1] - low[1]))
    origin = low - margin
    if angle == 0:  # a whole-pixel start: a straight line is copied, not interpolated
        origin = np.floor(centre + origin) - centre
    width, height = (int(math.ceil(v)) for v in (high + margin - origin))
    # Output pixel (u, v) is the point origin + (u, v) of the line's frame, i.e. centre + R(angle) (origin + (u, v))
    # on the page: Pillow's AFFINE maps output to input coordinates.
    coefficients = (cos, -sin, centre[0] + cos * origin[0] - sin * origin[1],
                    sin, cos, centre[1] + sin * origin[0] + cos * origin[1])
    crop = page.transform((width, height), Image.Transform.AFFINE, coefficients,
                          resample=Image.Resampling.BILINEAR, fillcolor=background)
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).polygon([tuple(p) for p in (upright - origin)], fill=255, outline=255)
    return Image.composite(crop, Image.new("L", (width, height), background), mask)
