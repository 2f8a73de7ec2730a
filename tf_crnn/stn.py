"""An optional spatial transformer in front of the CRNN's conv blocks (``use_stn: true``).

Jaderberg et al. 2015, "Spatial Transformer Networks" (arXiv 1506.02025), as Shi et al. 2016
(RARE, arXiv 1603.03915) use one to rectify text before recognition, here with an affine
transform: a small localisation network looks at the image and predicts the 6 parameters
``theta`` of an affine map; a bilinear sampler then reads, for every output pixel, the input at
``theta @ [x, y, 1]``. Both are trained end to end by the CTC loss. The localisation network
starts at the identity (its last layer's weights are zero, its bias the identity map), so a new
model begins as the plain CRNN.

Variable width: coordinates are normalized to [-1, 1] over each image's own width (``widths``),
not the padded batch, so an image is transformed the same alone or in a batch; the
localisation network averages its features over valid columns only, and the output's padded
columns stay 0, as the pipeline pads. Source points outside the image take the nearest edge
pixel (usually background). Keras' own affine op (``keras.ops.image.affine_transform``, TensorFlow's
``ImageProjectiveTransformV3``) has no gradient with respect to the transform, so the sampler is
written with TensorFlow ops (gather and arithmetic, which TFLite and ONNX convert as builtins).
"""
from __future__ import annotations

import keras
import tensorflow as tf

#: Localisation network: (filters, 3x3 conv + ReLU + 2x2 max pool) per block, then a dense layer.
LOCALISATION_FILTERS = (8, 16)
LOCALISATION_UNITS = 32
#: Name scope of the sampler's ops (see :func:`sample`).
SAMPLER_SCOPE = "sampler"


def parameter_count(input_channels: int) -> int:
    """Weights of :class:`SpatialTransformer` for images of ``input_channels`` channels (any size)."""
    count, channels = 0, input_channels
    for filters in LOCALISATION_FILTERS:
        count += 9 * channels * filters + filters
        channels = filters
    return count + (channels + 1) * LOCALISATION_UNITS + (LOCALISATION_UNITS + 1) * 6


class SpatialTransformer(keras.layers.Layer):
    """Affine spatial transformer: ``(images, widths)`` -> images of the same shape, resampled.

    Call with:
        images: float32 ``[batch, height, width, channels]`` in [-1, 1], right-padded with 0.
        widths: int32 ``[batch]``, each image's width before padding (>= 1).

    Returns:
        float32 ``[batch, height, width, channels]``: each image resampled at ``theta @ [x, y, 1]``
        (bilinear; ``x``, ``y`` in [-1, 1] over its own width and the height), padded columns 0.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Attributes, not a list: tf.train.Checkpoint follows attributes (see tf_crnn.model.CRNN).
        self.convs = []
        for i, filters in enumerate(LOCALISATION_FILTERS):
            conv = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"stn_conv{i + 1}")
            setattr(self, conv.name, conv)
            self.convs.append(conv)
        self.pool = keras.layers.MaxPooling2D(2, padding="same", name="stn_pool")
        self.hidden = keras.layers.Dense(LOCALISATION_UNITS, activation="relu", name="stn_hidden")
        self.theta = keras.layers.Dense(6, kernel_initializer="zeros", name="stn_theta",
                                        bias_initializer=keras.initializers.Constant([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def build(self, images_shape):
        shape = [None, None, None, images_shape[-1]]
        for conv in self.convs:
            conv.build(shape)
            shape = [None, None, None, conv.filters]
        self.hidden.build([None, shape[-1]])
        self.theta.build([None, LOCALISATION_UNITS])
        self.built = True

    def call(self, images, widths):
        widths = tf.cast(widths, tf.int32)
        theta = tf.reshape(self.theta(self.hidden(self.features(images, widths))), [-1, 2, 3])
        return sample(images, widths, theta)

    def features(self, images, widths):
        """``[batch, filters]``: the localisation network's conv features averaged over valid positions."""
        x = images
        valid = widths
        for conv in self.convs:
            x = self.pool(conv(x))
            valid = (valid + 1) // 2  # 'same' pooling rounds up
        mask = tf.sequence_mask(valid, tf.shape(x)[2], dtype=x.dtype)[:, None, :, None]
        return tf.reduce_sum(x * mask, axis=[1, 2]) / tf.reduce_sum(mask * tf.ones_like(x[..., :1]), axis=[1, 2])


def sample(images: tf.Tensor, widths: tf.Tensor, theta: tf.Tensor) -> tf.Tensor:
    """Bilinear sampling of each image at an affine grid (the spatial transformer's sampler).

    Args:
        images: float ``[batch, height, width, channels]``, right-padded.
        widths: int32 ``[batch]``, valid width of each image.
        theta: float ``[batch, 2, 3]``: output point ``(x, y, 1)`` -> input point, both in coordinates
            normalized to [-1, 1] over the image's height and its own width.

    Returns:
        ``images``' shape and dtype; columns at or past ``widths`` are 0. Differentiable with respect
        to ``images`` and ``theta``.

    Its ops are named ``.../sampler/...`` (:data:`SAMPLER_SCOPE`): TFLite's int8 conversion keeps
    them in float32, since pixel coordinates up to ``max_width`` need more than 8 bits.
    """
    with tf.name_scope(SAMPLER_SCOPE):
        return _sample(images, widths, theta)


def _sample(images: tf.Tensor, widths: tf.Tensor, theta: tf.Tensor) -> tf.Tensor:
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    w = tf.cast(widths, images.dtype)[:, None, None]  # [B, 1, 1]
    h = tf.cast(height, images.dtype)
    # Output grid: normalized x over each image's own width, y over the height.
    cols = tf.cast(tf.range(width), images.dtype)[None, None, :]  # [1, 1, W]
    rows = tf.cast(tf.range(height), images.dtype)[None, :, None]  # [1, H, 1]
    x = 2.0 * cols / tf.maximum(w - 1.0, 1.0) - 1.0  # [B, 1, W]
    y = 2.0 * rows / tf.maximum(h - 1.0, 1.0) - 1.0  # [1, H, 1]
    x, y = tf.broadcast_to(x, [batch, height, width]), tf.broadcast_to(y, [batch, height, width])
    theta = tf.cast(theta, images.dtype)
    sx = theta[:, 0, 0, None, None] * x + theta[:, 0, 1, None, None] * y + theta[:, 0, 2, None, None]
    sy = theta[:, 1, 0, None, None] * x + theta[:, 1, 1, None, None] * y + theta[:, 1, 2, None, None]
    # Back to pixels, clamped to the image (the nearest edge pixel outside).
    px = tf.clip_by_value((sx + 1.0) * (w - 1.0) / 2.0, 0.0, w - 1.0)
    py = tf.clip_by_value((sy + 1.0) * (h - 1.0) / 2.0, 0.0, h - 1.0)
    x0, y0 = tf.floor(px), tf.floor(py)
    fx, fy = px - x0, py - y0  # the bilinear weights carry the gradient to theta
    x0 = tf.cast(x0, tf.int32)
    y0 = tf.cast(y0, tf.int32)
    x1 = tf.minimum(x0 + 1, widths[:, None, None] - 1)
    y1 = tf.minimum(y0 + 1, height - 1)
    flat = tf.reshape(images, [-1, shape[3]])
    base = (tf.range(batch) * height * width)[:, None, None]

    def at(yy, xx):
        return tf.gather(flat, base + yy * width + xx)  # [B, H, W, C]

    top = at(y0, x0) * (1.0 - fx)[..., None] + at(y0, x1) * fx[..., None]
    bottom = at(y1, x0) * (1.0 - fx)[..., None] + at(y1, x1) * fx[..., None]
    out = top * (1.0 - fy)[..., None] + bottom * fy[..., None]
    valid = tf.sequence_mask(widths, width, dtype=images.dtype)[:, None, :, None]
    return out * valid
