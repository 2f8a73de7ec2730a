"""Images as the model sees them: open any file Pillow reads, turn it into the model's channels, and tell
which files TensorFlow's decoder reads exactly as they are.

One rule for every consumer: the check before training (:func:`tf_crnn.data.check_images`), the
training pipeline (:func:`tf_crnn.data.make_dataset`), ``tf-crnn validate``, ``tf-crnn evaluate``
and :class:`tf_crnn.loader.PredictionModel`. The exported model decodes encoded bytes in-graph with
``tf.io.decode_image`` (:func:`tf_crnn.data.preprocess_image`). A file is handed to it as it is only
when that decoder gives the pixels Pillow gives (:func:`decodes_directly`: plain PNG and JPEG);
everything else is first converted here (:func:`to_model_mode`) and handed over as a PNG of the
model's mode, so training and prediction see the same pixels.

The conversion (:func:`to_model_mode`), in order:

- the current frame only (the first one of a file just opened: animated GIF / PNG / WebP, multi-page TIFF);
- 16-bit and 32-bit integer samples (``I;16``, ``I``) keep their high byte (``v >> 8``, clipped to
  0..65535 first), as TensorFlow reduces 16-bit PNGs; float samples (``F``) are read as 0..1;
- anything with transparency (alpha band, palette or colour-key transparency) is composited on white;
- palette, bilevel, CMYK (no colour profile applied), YCbCr, LAB, HSV become RGB;
- then ``L`` (Pillow's ITU-R 601-2 luma) for a 1-channel model, ``RGB`` for a 3-channel one.

EXIF orientation is ignored, as TensorFlow's decoder ignores it. No TensorFlow here.
"""
from __future__ import annotations

import contextlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

#: Pillow mode the model's channel count (``Params.input_channels``) stands for.
MODEL_MODES = {1: "L", 3: "RGB"}
#: Modes TensorFlow's PNG decoder reads as Pillow does: without alpha, or with an opaque one.
PNG_DIRECT_MODES = ("1", "L", "RGB")
PNG_ALPHA_MODES = ("LA", "RGBA")
JPEG_DIRECT_MODES = ("L", "RGB")
MISSING = "missing image file"
#: File suffixes taken as images when a folder is read (``tf-crnn predict FOLDER``; compared in lower case):
#: the raster formats Pillow reads that scans and line images come in.
IMAGE_SUFFIXES = (".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".bmp", ".dib", ".gif",
                  ".webp", ".jp2", ".j2k", ".jpx", ".pbm", ".pgm", ".ppm", ".pnm", ".tga", ".avif")
#: The version of this module's rule (:func:`decodes_directly`, :func:`to_model_mode`, :func:`is_blank`). Raise it
#: with any change of what they give: the check cache (:mod:`tf_crnn.check_cache`) keys its facts on it.
RULE_VERSION = 1

#: What :func:`model_input` accepts as one image.
ImageInput = str | os.PathLike | bytes | bytearray | np.ndarray | Image.Image
IMAGE_TYPES = (str, os.PathLike, bytes, bytearray, np.ndarray, Image.Image)
ACCEPTED = ("a path (str or os.PathLike), encoded image bytes, a NumPy array (H x W or H x W x C with "
            "C in 1, 3, 4; uint8, or float in [0, 1]) or a PIL image")


class ImageError(ValueError):
    """An image that cannot be used; the message says why (the caller says which image)."""


class ImageInfo(NamedTuple):  # a tuple: a million are made each run, in half the time of a frozen dataclass
    """What the check found out about one usable image.

    Attributes:
        width, height: size in pixels (of the first frame).
        direct: TensorFlow's decoder reads the file's own bytes as Pillow does (:func:`decodes_directly`);
            False: the pipeline feeds it :func:`normalized_png` instead.
        blank: one colour after conversion to the model's channels; None when not decoded here
            (direct files are decoded by TensorFlow in :func:`tf_crnn.data.check_images`).
    """

    width: int
    height: int
    direct: bool
    blank: bool | None = None


def model_mode(channels: int) -> str:
    """``"L"`` for 1 channel, ``"RGB"`` for 3.

    Raises:
        ValueError: another channel count.
    """
    try:
        return MODEL_MODES[channels]
    except KeyError:
        raise ValueError(f"input_channels must be 1 or 3, got {channels!r}") from None


def open_image(source: str | os.PathLike | bytes | bytearray) -> Image.Image:
    """Open an image file (path) or encoded bytes with Pillow, lazily (header only; use it in a ``with``).

    Raises:
        FileNotFoundError: the path is not a file (message: :data:`MISSING`).
        ImageError: not an image Pillow can read.
    """
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    elif not os.path.isfile(source):
        raise FileNotFoundError(MISSING)
    try:
        with pillow_errors():
            return Image.open(source)
    except UnidentifiedImageError:
        raise ImageError("cannot decode image (not a format Pillow can read)") from None


@contextlib.contextmanager
def pillow_errors():
    """Turn any error Pillow raises for a broken file into an :class:`ImageError` giving its type and text.

    Pillow raises many types (OSError, SyntaxError, EOFError, struct.error, ...), also
    while reading later frames; ImageError, FileNotFoundError and UnidentifiedImageError pass.
    """
    try:
        yield
    except (ImageError, FileNotFoundError, UnidentifiedImageError):
        raise
    except Exception as e:
        raise ImageError(f"cannot decode image ({type(e).__name__}: {e})") from None


def load_pixels(im: Image.Image) -> Image.Image:
    """Decode the pixels of an opened image completely (truncated or corrupt data fails here).

    Raises:
        ImageError: the data cannot be decoded (Pillow's reason in the message).
    """
    with pillow_errors():
        im.load()
    return im


def _opaque(im: Image.Image) -> bool:
    return load_pixels(im).getchannel("A").getextrema()[0] == 255


def _png_reads_directly(im: Image.Image) -> bool:
    """Whether a PNG of this mode and content decodes in TensorFlow as in Pillow (may decode the pixels)."""
    if getattr(im, "is_animated", False) or "transparency" in im.info:
        return False
    return im.mode in PNG_DIRECT_MODES or (im.mode in PNG_ALPHA_MODES and _opaque(im))


def decodes_directly(im: Image.Image) -> bool:
    """Whether ``tf.io.decode_image`` reads this opened file's bytes into the pixels Pillow gives.

    True for PNG whose Pillow mode is ``1`` / ``L`` / ``RGB`` without transparency (a 16-bit grey PNG
    opens as ``I;16`` and is converted; 16-bit RGB keeps its high byte in both), PNG in ``LA`` /
    ``RGBA`` whose alpha is opaque everywhere (then the pixels are decoded to look), and JPEG in
    ``L`` / ``RGB``; not for animations. TensorFlow would drop the alpha of a transparent PNG (the text
    may vanish), cannot give one channel from BMP, GIF or WebP, misreads CMYK JPEG and cannot read TIFF.

    Raises:
        ImageError: the pixels had to be decoded and could not be.
    """
    if im.format == "PNG":
        return _png_reads_directly(im)
    return im.format == "JPEG" and im.mode in JPEG_DIRECT_MODES and not getattr(im, "is_animated", False)


def _to_8bit(im: Image.Image) -> Image.Image:
    """``I;16*`` / ``I`` -> ``L`` by the high byte of 16 bits; ``F`` (0..1) -> ``L``."""
    values = np.asarray(im)
    if im.mode == "F":
        values = np.rint(np.nan_to_num(values) * 255.0)
    else:
        values = np.clip(values.astype(np.int64), 0, 65535) >> 8
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))


def to_model_mode(im: Image.Image, channels: int) -> Image.Image:
    """The image in the model's mode (``L`` or ``RGB``), converted as the module docstring lists.

    Args:
        im: an opened (or in-memory) PIL image; its current frame is converted.
        channels: the model's input channels, 1 or 3.

    Returns:
        A new PIL image, mode ``L`` (channels 1) or ``RGB`` (channels 3), same size.

    Raises:
        ValueError: ``channels`` is not 1 or 3.
        ImageError: the pixels cannot be decoded or converted.
    """
    target = model_mode(channels)
    load_pixels(im)
    try:
        if im.mode == "F" or im.mode.startswith("I"):
            im = _to_8bit(im)
        elif im.has_transparency_data:
            im = Image.alpha_composite(Image.new("RGBA", im.size, "white"), im.convert("RGBA"))
        if im.mode not in MODEL_MODES.values():
            im = im.convert("RGB")
        return im.convert(target)
    except (ValueError, OSError) as e:  # a mode Pillow cannot convert
        raise ImageError(f"cannot convert image of mode {im.mode} ({e})") from None


def is_blank(im: Image.Image) -> bool:
    """Whether every pixel has the same value in every band."""
    extrema = im.getextrema()
    bands = extrema if isinstance(extrema[0], tuple) else (extrema,)
    return all(low == high for low, high in bands)


def png_bytes(im: Image.Image) -> bytes:
    """``im`` encoded as PNG (fast compression: these bytes are decoded again right away)."""
    buffer = io.BytesIO()
    im.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def normalized_png(source: str | os.PathLike | bytes, channels: int) -> bytes:
    """The image converted to the model's mode (:func:`to_model_mode`), as PNG bytes.

    What the training pipeline decodes instead of a file that :func:`decodes_directly` rejects.

    Raises:
        FileNotFoundError / ImageError: as :func:`open_image` and :func:`to_model_mode`.
    """
    with open_image(source) as im, pillow_errors():
        return png_bytes(to_model_mode(im, channels))


def inspect_image(path: str, channels: int) -> ImageInfo | str:
    """Check one image file for a model of ``channels`` channels.

    A file that :func:`decodes_directly` is only opened (its pixels are left to TensorFlow, see
    :func:`tf_crnn.data.check_images`); any other one is decoded and converted completely, as the
    pipeline will do.

    Returns:
        An :class:`ImageInfo`, or the reason the image cannot be used (a str).
    """
    try:
        with open_image(path) as im, pillow_errors():
            if decodes_directly(im):
                return ImageInfo(im.width, im.height, direct=True)
            converted = to_model_mode(im, channels)
            return ImageInfo(im.width, im.height, direct=False, blank=is_blank(converted))
    except (FileNotFoundError, ImageError) as e:
        return str(e)


def inspect_images(paths: list[str], channels: int, progress: bool = True,
                   desc: str = "checking images") -> list[ImageInfo | str]:
    """:func:`inspect_image` of every path, in threads behind a tqdm bar, in the order of ``paths``."""
    def one(path: str) -> ImageInfo | str:
        return inspect_image(path, channels)

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        return list(tqdm(pool.map(one, paths), total=len(paths), desc=desc, disable=not progress,
                         unit="img", mininterval=1.0))


def from_array(array: np.ndarray) -> Image.Image:
    """A PIL image of a NumPy array.

    Args:
        array: ``[H, W]`` or ``[H, W, C]`` with C = 1 (grey), 3 (RGB) or 4 (RGBA); uint8 (0..255)
            or float (0..1, rounded to 0..255).

    Raises:
        TypeError: another dtype.
        ValueError: another shape, or float values outside [0, 1] or not finite.
    """
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or 0 in array.shape:
        raise ValueError(f"an image array must be H x W or H x W x C with C in 1, 3, 4, got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        if not (np.isfinite(array).all() and array.min() >= 0.0 and array.max() <= 1.0):
            raise ValueError("a float image array must hold values in [0, 1]")
        array = np.rint(array * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise TypeError(f"an image array must be uint8 or float in [0, 1], got {array.dtype}")
    return Image.fromarray(np.ascontiguousarray(array))


def model_input(image: ImageInput, channels: int) -> bytes:
    """Encoded bytes that the exported model decodes into the pixels training would have seen.

    Args:
        image: a path or encoded bytes (sent as they are when :func:`decodes_directly`, else
            :func:`normalized_png`), a NumPy array (:func:`from_array`) or a PIL image (its current
            frame; sent as PNG in its own mode when a PNG of that mode decodes directly, else converted).
        channels: the model's input channels, 1 or 3.

    Raises:
        TypeError: ``image`` is none of these (the message lists what is accepted), or an array of another dtype.
        FileNotFoundError: a path that is not a file.
        ImageError: an image Pillow cannot read or convert.
        ValueError: an array of another shape or range.
    """
    if not isinstance(image, IMAGE_TYPES):
        raise TypeError(f"an image must be {ACCEPTED}; got {type(image).__name__}")
    model_mode(channels)
    if isinstance(image, np.ndarray):
        image = from_array(image)
    if isinstance(image, Image.Image):
        with pillow_errors():
            return png_bytes(image if _png_reads_directly(image) else to_model_mode(image, channels))
    with open_image(image) as im, pillow_errors():
        if not decodes_directly(im):
            return png_bytes(to_model_mode(im, channels))
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    with open(image, "rb") as f:
        return f.read()


def describe(image: ImageInput) -> str:
    """A short name for an image in messages: the path, or what kind of object it is."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    if isinstance(image, (bytes, bytearray)):
        return f"<{len(image)} bytes>"
    if isinstance(image, np.ndarray):
        return f"<array {'x'.join(map(str, image.shape))} {image.dtype}>"
    if isinstance(image, Image.Image):
        return f"<PIL image {image.mode} {image.width}x{image.height}>"
    return f"<{type(image).__name__}>"
