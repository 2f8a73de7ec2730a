"""Training-time augmentation: named operations with a strength each, applied per image inside tf.data.

Every operation takes one image as :func:`tf_crnn.data.preprocess_image` makes it,
float32 ``[height, width, channels]`` in [-1, 1], a strength from 0 (off) to 1 (the
strongest this module applies) and a seed, and returns an image of the same shape,
dtype and range: the width is kept, so the width bucketing, the CTC sequence length
and the check of label lengths (:func:`tf_crnn.data.scan_samples`) still hold.
Randomness is stateless (``tf.random.stateless_*`` on an int32 ``[2]`` seed), so the
same image, strength and seed always give the same result; :func:`augment` draws one
seed per image and splits it between the operations.

The affine operations (rotation, shear, scale, baseline) are matrices; :func:`warp`
resamples the image with Keras' ``keras.ops.image.affine_transform`` (bilinear), once
for consecutive ones. Pixels that come from outside the image take its background value
(:func:`background`: the median of its border pixels, per channel: the paper, or a scene
word's surroundings), not a constant and not the edge pixels (``fill_mode="nearest"``
smears strokes that touch the border into streaks). Their limits are chosen for text:
rotation is bounded by the image's aspect ratio so a long line's ends stay inside it,
shear and scale pivot on the centre, and nothing widens the text past the image.

Keras' preprocessing layers were the first choice and are not used as they are, as
checked in Keras 3.15.1: ``RandomElasticTransform`` (and ``keras.ops.image.elastic_transform``
and ``map_coordinates``, which it uses) need the static width that variable-width
text images do not have, and draw the x and y displacements from the same seed;
``RandomShear`` shears about the top-left corner; ``RandomRotation`` draws the same
angle range for a 100 px word and a 1,600 px line, whose ends a 2-degree rotation
moves 28 px, out of a 32 px high image; and all of them keep their random state in a
Keras variable rather than taking a seed per image. Their building blocks are used:
``keras.ops.image.affine_transform``, ``keras.ops.image.gaussian_blur``,
``tf.image.adjust_brightness`` / ``adjust_contrast``; the elastic resampling and the
noise operations are written here.

Sources: Simard, Steinkraus & Platt 2003 ("Best practices for convolutional neural
networks applied to visual document analysis": elastic distortion as a smoothed random
displacement field); ocrodeg (Breuel, github.com/NVlabs/ocrodeg: line distortion,
blur, binarisation noise for OCR training); Wick, Reul & Puppe 2018 (Calamari,
arXiv 1807.02004: augmented line images for OCR training).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import keras
import tensorflow as tf

#: ``operation(image, strength, seed) -> image``: float32 ``[height, width, channels]`` in [-1, 1],
#: a Python float in [0, 1], an int32 ``[2]`` seed.
OperationFunction = Callable[[tf.Tensor, float, tf.Tensor], tf.Tensor]
#: ``matrix(image, strength, seed) -> float32 [3, 3]``: an affine map from output to input pixel
#: coordinates ``(x, y, 1)`` (x the column, y the row, pixel centres at integers).
MatrixFunction = Callable[[tf.Tensor, float, tf.Tensor], tf.Tensor]


@dataclass(frozen=True)
class Operation:
    """One augmentation operation: its name (a config value), kind, function and what strength 1 does.

    ``matrix`` is set for the affine operations: :func:`augment` multiplies the matrices of
    consecutive ones and resamples the image once (one bilinear interpolation, not one per operation).
    """

    name: str
    kind: str  # "geometric" or "degradation"
    apply: OperationFunction
    at_full_strength: str
    matrix: MatrixFunction | None = None


# ---- helpers -----------------------------------------------------------------

def _uniform(seed: tf.Tensor, low, high, shape=()) -> tf.Tensor:
    return tf.random.stateless_uniform(shape, seed, minval=low, maxval=high)


def _size(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Height and width of ``image`` as float32 scalars."""
    shape = tf.cast(tf.shape(image), tf.float32)
    return shape[0], shape[1]


def _matrix(row_x: list, row_y: list) -> tf.Tensor:
    """float32 ``[3, 3]`` with rows ``row_x``, ``row_y``, ``(0, 0, 1)``."""
    return tf.reshape(tf.stack([tf.cast(v, tf.float32) for v in (*row_x, *row_y, 0.0, 0.0, 1.0)]), [3, 3])


def background(image: tf.Tensor) -> tf.Tensor:
    """float32 ``[channels]``: the median of the image's border pixels per channel, taken as its background."""
    border = tf.concat([image[0], image[-1], image[:, 0], image[:, -1]], axis=0)
    return tf.sort(border, axis=0)[tf.shape(border)[0] // 2]


def warp(image: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
    """Resample ``image``: output pixel ``(x, y, 1)`` takes the input at ``matrix @ (x, y, 1)``.

    ``keras.ops.image.affine_transform``, bilinear; input coordinates outside the image give its
    :func:`background`. Returns the image clipped to [-1, 1].
    """
    fill = background(image)
    moved = keras.ops.image.affine_transform(image - fill, tf.concat([tf.reshape(matrix[:2], [6]), [0.0, 0.0]], 0),
                                             interpolation="bilinear", fill_mode="constant", fill_value=0.0)
    return tf.clip_by_value(moved + fill, -1.0, 1.0)


def _bilinear(image: tf.Tensor, y: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """``image`` ``[h, w, c]`` sampled at float pixel coordinates ``y``, ``x`` ``[h, w]``; 0 outside it."""
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    y0, x0 = tf.floor(y), tf.floor(x)
    out = tf.zeros_like(image)
    for yi in (y0, y0 + 1.0):
        for xi in (x0, x0 + 1.0):
            weight = (1.0 - tf.abs(y - yi)) * (1.0 - tf.abs(x - xi))
            rows, cols = tf.cast(yi, tf.int32), tf.cast(xi, tf.int32)
            inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
            index = tf.stack([tf.clip_by_value(rows, 0, h - 1), tf.clip_by_value(cols, 0, w - 1)], axis=-1)
            out += tf.gather_nd(image, index) * tf.where(inside, weight, 0.0)[..., None]
    return out


# ---- geometric: affine maps (see warp), then elastic -------------------------------

MAX_ROTATION_DEGREES = 3.0


def rotation_matrix(image: tf.Tensor, strength: float, seed: tf.Tensor) -> tf.Tensor:
    """Rotate about the centre by an angle uniform in ``±strength * min(3°, atan(0.2 * height / width))``.

    The bound keeps the ends of a long line inside the image: they move at most
    ``0.1 * strength * height`` pixels up or down (a 32 x 100 word gets the full ±3°,
    a 32 x 800 line ±0.46°).
    """
    h, w = _size(image)
    limit = strength * tf.minimum(math.radians(MAX_ROTATION_DEGREES), tf.atan(0.2 * h / w))
    angle = _uniform(seed, -limit, limit)
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    return _matrix([cos, -sin, cx - cos * cx + sin * cy], [sin, cos, cy - sin * cx - cos * cy])


def shear_matrix(image: tf.Tensor, strength: float, seed: tf.Tensor) -> tf.Tensor:
    """Slant: shift each row horizontally by ``k * (row - centre row)`` pixels, ``k`` uniform in ``±0.3 * strength``.

    At strength 1 the slant is up to ±16.7° (``atan 0.3``); the middle row stays in place.
    """
    h, _ = _size(image)
    k = _uniform(seed, -0.3 * strength, 0.3 * strength)
    return _matrix([1.0, k, -k * (h - 1.0) / 2.0], [0.0, 1.0, 0.0])


def scale_matrix(image: tf.Tensor, strength: float, seed: tf.Tensor) -> tf.Tensor:
    """Resize the text about the image centre: height by a factor uniform in ``[1 - 0.2 s, 1 + 0.1 s]``,
    width independently by one in ``[1 - 0.2 s, 1]`` (never wider, so a line's ends stay inside).
    """
    h, w = _size(image)
    u = _uniform(seed, 0.0, 1.0, [2])
    zoom_y = 1.0 - 0.2 * strength + 0.3 * strength * u[0]
    zoom_x = 1.0 - 0.2 * strength * u[1]
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    return _matrix([1.0 / zoom_x, 0.0, cx - cx / zoom_x], [0.0, 1.0 / zoom_y, cy - cy / zoom_y])


def baseline_matrix(image: tf.Tensor, strength: float, seed: tf.Tensor) -> tf.Tensor:
    """Move the text up or down by a shift uniform in ``±0.1 * strength * height`` pixels (baseline jitter)."""
    h, _ = _size(image)
    shift = _uniform(seed, -0.1 * strength * h, 0.1 * strength * h)
    return _matrix([1.0, 0.0, 0.0], [0.0, 1.0, -shift])


def elastic(image: tf.Tensor, strength: float, seed: tf.Tensor) -> tf.Tensor:
    """Elastic distortion: each pixel moved by a smooth random field, ``strength * height / 32`` px standard deviation.

    A smooth random displacement field (Simard et al. 2003; ocrodeg's line distortion):
    displacements are drawn on a grid of cells ``height / 2`` pixels wide, normal with a
    standard deviation of ``strength * height / 32`` pixels in x and y independently
    (1 px for a 32 px image at strength 1), interpolated bicubically to every pixel, and
    the image resampled there (bilinear; the :func:`background` beyond its edges).
    """
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    cell = tf.maximum(2, h // 2)
    grid = tf.random.stateless_normal([h // cell + 2, w // cell + 2, 2], seed)
    field = tf.image.resize(grid, [h, w], method="bicubic") * (strength * tf.cast(h, tf.float32) / 32.0)
    ys, xs = tf.meshgrid(tf.range(h, dtype=tf.float32), tf.range(w, dtype=tf.float32), indexing="ij")
    fill = background(image)
    moved = _bilinear(image - fill, ys + field[..., 0], xs + field[..., 1])
    return tf.clip_by_value(moved + fill, -1.0, 1.0)


# ---- degradation ---------------------------------------------------------------

def brightness(image: tf.Tensor, strength: float, seed: tf.Tensor) -> tf.Tensor:
    """Add a brightness offset uniform in ``±0.4 * strength`` (the image spans 2: -1 black .. 1 white)."""
    delta = _uniform(seed, -0.4 * strength, 0.4 * strength)
    return tf.clip_by_value(tf.image.adjust_brightness(image, delta), -1.0, 1.0)


def contrast(image: tf.Tensor, strength: float, seed: tf.Tensor) -> tf.Tensor:
    """Scale each channel's deviation from its mean by a factor uniform in ``[1 - 0.8 s, 1 + 0.8 s]``."""
    factor = _uniform(seed, 1.0 - 0.8 * strength, 1.0 + 0.8 * strength)
    return tf.clip_by_value(tf.image.adjust_contrast(image, factor), -1.0, 1.0)


def stroke_width(image: tf.Tensor, strength: float, seed: tf.Tensor) -> tf.Tensor:
    """Ink bleed or erosion: a 2 x 2 minimum filter (dark strokes thicker) with probability ``0.4 * strength``,
    else a 2 x 2 maximum filter (dark strokes thinner) with probability ``0.4 * strength``, else unchanged.
    """
    draw = _uniform(seed, 0.0, 1.0)
    batched = tf.clip_by_value(image, -1.0, 1.0)[None]
    return tf.case([
        (draw < 0.4 * strength, lambda: -tf.nn.max_pool2d(-batched, 2, 1, "SAME")[0]),
        (draw > 1.0 - 0.4 * strength, lambda: tf.nn.max_pool2d(batched, 2, 1, "SAME")[0]),
    ], default=lambda: batched[0])


MAX_BLUR_SIGMA = 1.5  # pixels


def blur(image: tf.Tensor, strength: float, seed: tf.Tensor) -> tf.Tensor:
    """Gaussian blur (defocus, low resolution) with a standard deviation uniform in ``[0, 1.5 * strength]`` pixels.

    ``keras.ops.image.gaussian_blur`` along the rows, then along the columns (the same result
    as its 2-D kernel, to 1e-6, at a fraction of the cost); the image's :func:`background`
    continues it past its edges.
    """
    sigma = tf.maximum(_uniform(seed, 0.0, MAX_BLUR_SIGMA * strength), 1e-3)
    size = 2 * math.ceil(3 * MAX_BLUR_SIGMA * strength) + 1
    fill = background(image)
    blurred = keras.ops.image.gaussian_blur(image - fill, (1, size), (sigma, sigma))
    blurred = keras.ops.image.gaussian_blur(blurred, (size, 1), (sigma, sigma))
    return tf.clip_by_value(blurred + fill, -1.0, 1.0)


def salt_pepper(image: tf.Tensor, strength: float, seed: tf.Tensor) -> tf.Tensor:
    """Binarisation noise: a share uniform in ``[0, 0.03 * strength]`` of the pixels made black or white (half each)."""
    seeds = tf.random.split(seed, 2)
    share = _uniform(seeds[0], 0.0, 0.03 * strength)
    draw = tf.random.stateless_uniform(tf.concat([tf.shape(image)[:2], [1]], 0), seeds[1])
    image = tf.where(draw < share / 2.0, -1.0, tf.clip_by_value(image, -1.0, 1.0))
    return tf.where(draw > 1.0 - share / 2.0, 1.0, image)


def noise(image: tf.Tensor, strength: float, seed: tf.Tensor) -> tf.Tensor:
    """Add Gaussian noise per pixel and channel, its standard deviation uniform in ``[0, 0.2 * strength]``."""
    seeds = tf.random.split(seed, 2)
    sigma = _uniform(seeds[0], 0.0, 0.2 * strength)
    return tf.clip_by_value(image + sigma * tf.random.stateless_normal(tf.shape(image), seeds[1]), -1.0, 1.0)


def _operation(name: str, kind: str, function: OperationFunction | None = None,
               matrix: MatrixFunction | None = None) -> Operation:
    def warped(image: tf.Tensor, strength: float, seed: tf.Tensor) -> tf.Tensor:
        return warp(image, matrix(image, strength, seed))

    documented = matrix or function
    return Operation(name, kind, warped if matrix else function, " ".join(documented.__doc__.split("\n\n")[0].split()),
                     matrix)


#: Every operation by name, in the order of :data:`tf_crnn.config.AUGMENTATION_OPERATION_NAMES`.
OPERATIONS: dict[str, Operation] = {op.name: op for op in [
    _operation("rotation", "geometric", matrix=rotation_matrix),
    _operation("shear", "geometric", matrix=shear_matrix),
    _operation("scale", "geometric", matrix=scale_matrix),
    _operation("baseline", "geometric", matrix=baseline_matrix),
    _operation("elastic", "geometric", elastic),
    *(_operation(f.__name__, "degradation", f) for f in (brightness, contrast, stroke_width, blur, salt_pepper, noise)),
]}


def augment(image: tf.Tensor, operations: Iterable[tuple[str, float]], seed: tf.Tensor | None = None) -> tf.Tensor:
    """Apply ``operations`` (``(name, strength)`` pairs, e.g. :attr:`tf_crnn.config.Params.augmentation_ops`) in order.

    Consecutive affine operations (rotation, shear, scale, baseline) are composed into one
    map and the image resampled once: the same geometry as one after the other, with one
    bilinear interpolation instead of several (sharper, and cheaper).

    Args:
        image: float32 ``[height, width, channels]`` in [-1, 1].
        operations: names of :data:`OPERATIONS` with strengths in [0, 1]; strength 0 skips the operation.
        seed: int32 ``[2]``; None draws one per call (per image inside a ``tf.data`` map) with
            ``tf.random.uniform``, from TensorFlow's global seed when one is set (``deterministic=True``
            runs repeat it). Then each pass over the dataset draws the same sequence of seeds, and the
            shuffled order gives each image other ones. A legacy random op, not a ``tf.random.Generator``:
            under op determinism only that keeps prefetching and the other maps parallel.

    Returns:
        The image, same shape, dtype and range; ``image`` itself when no operation has a strength > 0.

    Raises:
        ValueError: an unknown operation name or a strength outside [0, 1].
    """
    chosen = [(name, float(strength)) for name, strength in operations]
    for name, strength in chosen:
        if name not in OPERATIONS:
            raise ValueError(f"unknown augmentation operation {name!r}; the operations are {', '.join(OPERATIONS)}")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"augmentation operation {name!r}: strength must be from 0 to 1, got {strength}")
    chosen = [(name, strength) for name, strength in chosen if strength > 0.0]
    if not chosen:
        return image
    if seed is None:
        seed = tf.random.uniform([2], maxval=tf.int32.max, dtype=tf.int32)
    shape, pending = image.shape, None  # pending: the product of consecutive affine operations' matrices
    for (name, strength), op_seed in zip(chosen, tf.unstack(tf.random.split(seed, len(chosen)))):
        op = OPERATIONS[name]
        if op.matrix is not None:
            matrix = op.matrix(image, strength, op_seed)
            pending = matrix if pending is None else pending @ matrix
            continue
        if pending is not None:
            image, pending = warp(image, pending), None
        image = op.apply(image, strength, op_seed)
    if pending is not None:
        image = warp(image, pending)
    return tf.ensure_shape(image, shape)  # the static height and channels the model is built for

