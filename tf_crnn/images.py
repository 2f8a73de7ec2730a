"""Image files checked with Pillow: does each one exist and decode completely, and how large is it.

Used before training (:func:`tf_crnn.data.scan_samples`), by ``tf-crnn
evaluate`` and by ``tf-crnn validate``, so a missing or broken image is
reported with its CSV line before any model work starts. No TensorFlow here.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from PIL import Image
from tqdm import tqdm


def image_size(path: str) -> tuple[int, int] | str:
    """``(width, height)`` in pixels of a fully decoded image, or the reason it cannot be used (a str)."""
    if not os.path.isfile(path):
        return "missing image file"
    try:
        with Image.open(path) as im:
            im.load()  # full decode: truncated / corrupt data fails here, not mid-training
            return im.size
    except Exception as e:  # PIL raises many types for corrupt files
        return f"cannot decode image ({type(e).__name__}: {e})"


def image_sizes(paths: list[str], progress: bool = True, desc: str = "checking images") -> list:
    """:func:`image_size` of every path, decoded in threads behind a tqdm bar, in the order of ``paths``."""
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        return list(tqdm(pool.map(image_size, paths), total=len(paths), desc=desc, disable=not progress,
                         unit="img", mininterval=1.0))
