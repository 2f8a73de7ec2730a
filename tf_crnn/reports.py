"""What a run leaves to look at: learning curves, a prediction gallery, character confusions, TensorBoard.

:func:`save_history` / :func:`load_history` keep every epoch's metrics in
``reports/history.json``, so the learning curves of a resumed training span
the runs it took. :class:`TensorBoardLog` writes scalars and a few eval
images with their predictions per epoch.

All figures are PNG files (matplotlib with the Agg backend, or Pillow for the
gallery, which needs per-character colours); tables are CSV (pandas). The
confusions come from the Levenshtein alignment of each prediction with its
label (rapidfuzz ``editops``): a substitution ``a -> b`` counts as the pair
``(a, b)``, a deletion as ``(a, "")``, an insertion as ``("", b)``.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from collections import Counter
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import pandas as pd  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
from rapidfuzz.distance import Levenshtein  # noqa: E402

from ._util import write_json  # noqa: E402
from .images import open_image, to_model_mode  # noqa: E402

Seq = Sequence[str]
OK_COLOUR, ERROR_COLOUR, MUTED_COLOUR = (20, 20, 20), (200, 30, 30), (110, 110, 110)


HISTORY_FILE = "history.json"


def load_history(report_dir: str, names: Sequence[str], up_to_epoch: int) -> dict[str, list[tuple[int, float]]]:
    """The per-epoch metrics an earlier run left in ``report_dir/history.json``, epochs 1..``up_to_epoch``.

    A resumed training continues the curves of the run it resumes (the checkpoint's epoch is
    ``up_to_epoch``; later epochs of that run were not checkpointed and are dropped). Without the
    file (a new training, or an output folder from before tf-crnn wrote it) every series is empty.

    Returns:
        metric name -> ``[(epoch, value), ...]`` for each of ``names``.
    """
    path = os.path.join(report_dir, HISTORY_FILE)
    stored = {}
    if up_to_epoch > 0 and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            stored = json.load(f)
    return {name: [(int(e), float(v)) for e, v in stored.get(name, []) if int(e) <= up_to_epoch] for name in names}


def save_history(report_dir: str, history: Mapping[str, Sequence[tuple[int, float]]]) -> str:
    """Write ``history`` (metric name -> ``[(epoch, value), ...]``) to ``report_dir/history.json`` atomically."""
    return write_json(os.path.join(report_dir, HISTORY_FILE),
                      {name: [list(point) for point in series] for name, series in history.items()}, indent=None)


def learning_curves(history: Mapping[str, Sequence[tuple[int, float]]], path: str) -> str:
    """Plot each metric's ``(epoch, value)`` series; losses on the left, rates on the right.

    Args:
        history: metric name -> ``[(epoch, value), ...]``, e.g. ``{"eval.cer": [(1, 0.9), (2, 0.5)]}``.
        path: PNG file to write.

    Returns:
        ``path``.
    """
    fig, (ax_loss, ax_rate) = plt.subplots(1, 2, figsize=(11, 4))
    for name, series in sorted(history.items()):
        if not series:
            continue
        epochs, values = zip(*series)
        ax = ax_loss if name.split(" ", 1)[0].endswith("loss") else ax_rate  # "eval.loss (run 3)" too
        ax.plot(epochs, values, marker="o", label=name)
    ax_loss.set(title="CTC loss (per sample)", xlabel="epoch", ylabel="loss")
    ax_rate.set(title="eval metrics", xlabel="epoch", ylabel="rate", ylim=(0, 1.02))
    for ax in (ax_loss, ax_rate):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def compare_curves(histories: Mapping, path: str,
                   metrics: Sequence[str] = ("train.loss", "eval.loss", "eval.cer", "eval.sequence_accuracy")) -> str:
    """:func:`learning_curves` of several runs in one PNG: ``histories`` is ``{run id: {metric: [(epoch, value)]}}``."""
    merged = {f"{name} (run {run_id})": series for run_id, history in histories.items()
              for name, series in history.items() if name in metrics}
    return learning_curves(merged, path)


def confusions(labels: Sequence[Seq], predictions: Sequence[Seq]) -> Counter:
    """Count ``(label symbol, predicted symbol)`` pairs of every edit in the alignments.

    ``""`` stands for a missing symbol: ``(a, "")`` is a deletion of ``a``,
    ``("", b)`` an insertion of ``b``.
    """
    counts: Counter = Counter()
    for gt, pred in zip(labels, predictions):
        gt, pred = list(gt), list(pred)
        for op in Levenshtein.editops(gt, pred):
            if op.tag == "replace":
                counts[(gt[op.src_pos], pred[op.dest_pos])] += 1
            elif op.tag == "delete":
                counts[(gt[op.src_pos], "")] += 1
            else:
                counts[("", pred[op.dest_pos])] += 1
    return counts


def confusions_table(counts: Counter, path: str) -> pd.DataFrame:
    """Write the confusions, most frequent first, as CSV (``label,prediction,count``)."""
    frame = pd.DataFrame([(a, b, n) for (a, b), n in counts.most_common()],
                         columns=["label", "prediction", "count"])
    frame.to_csv(path, index=False)
    return frame


def confusions_chart(counts: Counter, path: str, top: int = 25) -> str:
    """Horizontal bar chart of the ``top`` most frequent confusions."""
    common = counts.most_common(top)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * max(4, len(common)) + 1))
    names = [f"{_show(a)} → {_show(b)}" for (a, b), _ in common]
    ax.barh(range(len(common)), [n for _, n in common], color="#c0392b")
    ax.set_yticks(range(len(common)), names, fontsize=9)
    ax.set(title=f"most frequent confusions (label → prediction), top {len(common)}", xlabel="count")
    with warnings.catch_warnings():
        # Symbols DejaVu Sans lacks (⸗, combining e above, ...) are drawn as boxes; matplotlib warns once per
        # glyph and per call, a screenful at the end of every Fraktur training that the user can do nothing about.
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _show(symbol: str) -> str:
    return {"": "∅", " ": "␣"}.get(symbol, symbol)


def _font(size: int) -> ImageFont.FreeTypeFont:
    fonts = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf", "DejaVuSans.ttf")
    return ImageFont.truetype(fonts, size)


def _draw_marked(draw: ImageDraw.ImageDraw, xy, gt: Seq, pred: Seq, font) -> None:
    """Write ``pred`` with symbols that differ from ``gt`` in red; deleted symbols as a red ``·``."""
    x, y = xy
    gt, pred = list(gt), list(pred)
    for tag, g0, g1, p0, p1 in Levenshtein.opcodes(gt, pred).as_list():
        text = "".join(pred[p0:p1]) if tag != "delete" else "·" * (g1 - g0)
        colour = OK_COLOUR if tag == "equal" else ERROR_COLOUR
        draw.text((x, y), text, fill=colour, font=font)
        x += draw.textlength(text, font=font)


def prediction_gallery(image_paths: Sequence[str | bytes], labels: Sequence[Seq], predictions: Sequence[Seq],
                       path: str, max_samples: int = 20, image_height: int = 40, width: int = 1000) -> str:
    """A PNG of eval samples, worst first: image, ground truth, prediction with differences in red.

    Args:
        image_paths: the samples' image files (or encoded images, bytes).
        labels, predictions: symbol sequences aligned with ``image_paths``.
        path: PNG file to write.
        max_samples: rows shown: the highest CER first, then the largest edit distance, then file order.
        image_height: height of each thumbnail in pixels.
        width: width of the gallery in pixels (long lines are scaled down).

    Returns:
        ``path``.
    """
    distances = [Levenshtein.distance(list(g), list(p)) for g, p in zip(labels, predictions)]
    rates = [d / max(1, len(g)) for d, g in zip(distances, labels)]
    order = sorted(range(len(labels)), key=lambda i: (-rates[i], -distances[i], i))[:max_samples]
    font, small = _font(16), _font(12)
    row_height = image_height + 52
    canvas = Image.new("RGB", (width, 8 + row_height * len(order)), "white")
    draw = ImageDraw.Draw(canvas)
    for row, i in enumerate(order):
        top = 8 + row * row_height
        with open_image(image_paths[i]) as im:
            im = to_model_mode(im, 3)  # as the model sees it: transparency on white, first frame
            scale = min(image_height / im.height, (width - 16) / im.width)
            canvas.paste(im.resize((max(1, int(im.width * scale)), max(1, int(im.height * scale)))), (8, top))
        y = top + image_height + 2
        draw.text((8, y), "GT", fill=MUTED_COLOUR, font=small)
        draw.text((48, y), "".join(labels[i]), fill=OK_COLOUR, font=font)
        draw.text((8, y + 20), "OCR", fill=MUTED_COLOUR, font=small)
        _draw_marked(draw, (48, y + 20), labels[i], predictions[i], font)
        cer = distances[i] / max(1, len(labels[i]))
        draw.text((width - 110, y), f"CER {cer:.2f}", fill=MUTED_COLOUR, font=small)
    canvas.save(path)
    return path


def contact_sheet(rows: Sequence[tuple[str, Sequence]], path: str, title: str,
                  labels: Sequence[str], max_width: int = 1800) -> str:
    """A PNG of image variants side by side (or one under the other for wide images), a caption per row.

    Args:
        rows: ``(caption, images)`` per row; each image a uint8 NumPy array ``[height, width,
            channels]`` (1 or 3 channels), ``len(labels)`` images per row.
        path: PNG file to write.
        title: the line on top.
        labels: what each image of a row is (``original``, ``augmented 1``, ...): column
            headings side by side, else written left of each image.
        max_width: the sheet's width in pixels at most when images are placed side by side;
            they are enlarged 2x (nearest neighbour, single pixels stay visible) when that fits.

    Returns:
        ``path``.

    Raises:
        OSError: ``path`` cannot be written.
    """
    gap, font, small = 6, _font(14), _font(11)
    widest = max(im.shape[1] for _, images in rows for im in images)
    height = max(im.shape[0] for _, images in rows for im in images)
    side_by_side = len(labels) * (widest + gap) + gap <= max_width
    across = len(labels) if side_by_side else 1
    zoom = 2 if across * (2 * widest + gap) + gap <= max_width else 1
    cell_w, cell_h = zoom * widest + gap, zoom * height + gap
    left = gap if side_by_side else 90
    top = 30 + 16 * side_by_side
    per_row = 16 + (1 if side_by_side else len(labels)) * cell_h
    canvas = Image.new("RGB", (max(left + across * cell_w, 2 * gap + math.ceil(font.getlength(title))),
                               top + len(rows) * per_row), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((gap, 6), title, fill=OK_COLOUR, font=font)
    if side_by_side:
        for i, label in enumerate(labels):
            draw.text((left + i * cell_w, 30), label, fill=MUTED_COLOUR, font=small)
    for r, (caption, images) in enumerate(rows):
        y0 = top + r * per_row
        draw.text((gap, y0), caption, fill=MUTED_COLOUR, font=small)
        for i, (label, array) in enumerate(zip(labels, images)):
            im = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).convert("RGB")
            im = im.resize((zoom * im.width, zoom * im.height), Image.NEAREST)
            x, y = (left + i * cell_w, y0 + 15) if side_by_side else (left, y0 + 15 + i * cell_h)
            if not side_by_side:
                draw.text((gap, y + im.height // 2 - 6), label, fill=MUTED_COLOUR, font=small)
            canvas.paste(im, (x, y))
            draw.rectangle([x - 1, y - 1, x + im.width, y + im.height], outline=(190, 190, 190))
    canvas.save(path, format="PNG")
    return path


class TensorBoardLog:
    """TensorBoard event files in ``log_dir``: per-epoch scalars and a few eval images with their predictions.

    Args:
        log_dir: folder for the event files (``output_model_dir/tensorboard``).
        sample_paths: eval images to show (a handful): paths, or encoded images (bytes, from a compiled data set).
        sample_labels: their labels as text.
    """

    def __init__(self, log_dir: str, sample_paths: Sequence[str | bytes], sample_labels: Sequence[str]):
        import numpy as np
        import tensorflow as tf

        self._tf = tf
        self.writer = tf.summary.create_file_writer(log_dir)
        self.labels = list(sample_labels)
        thumbs = []
        for p in sample_paths:
            with open_image(p) as im:
                im = to_model_mode(im, 1)
                thumbs.append(np.asarray(im.resize((max(1, im.width * 48 // im.height), 48))))
        width = max((t.shape[1] for t in thumbs), default=1)
        self.images = np.stack([np.pad(t, [(0, 0), (0, width - t.shape[1])], constant_values=255)
                                for t in thumbs])[..., None] if thumbs else None

    def log_epoch(self, epoch: int, scalars: Mapping[str, float], sample_predictions: Sequence[str]) -> None:
        """Write the epoch's scalars and a Markdown table of the sample predictions."""
        tf = self._tf
        with self.writer.as_default(step=epoch):
            for name, value in scalars.items():
                tf.summary.scalar(name, value)
            if self.images is not None:
                tf.summary.image("eval_samples", self.images, max_outputs=len(self.images))
                rows = "\n".join(f"| {i} | {gt} | {pred} |" for i, (gt, pred)
                                 in enumerate(zip(self.labels, sample_predictions)))
                tf.summary.text("eval_predictions", f"| sample | ground truth | prediction |\n|---|---|---|\n{rows}")
        self.writer.flush()
