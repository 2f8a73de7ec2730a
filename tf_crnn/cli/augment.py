"""``tf-crnn augment --preview CSV -o sheet.png``: what training images look like after augmentation.

Rows of the CSV, spread evenly over it, each shown as the model gets it without
augmentation (eval) and as a few augmented versions, through the training pipeline
itself (:func:`tf_crnn.data.make_dataset`: decoding, resizing to the model height,
:func:`tf_crnn.augmentation.augment`), drawn by :func:`tf_crnn.reports.contact_sheet`.
The augmentation is the ``--config`` file's (``augmentation`` / ``data_augmentation``),
or ``--preset``, or the ``--op NAME=STRENGTH`` list; the image height, channels and
width limits are the config's too.

Examples::

    tf-crnn augment --preview data/prepared/fraktur.train.csv -o sheet.png --config experiments/fraktur.json \\
        --preset strong
    tf-crnn augment --preview words.csv -o sheet.png --op rotation=1 --op blur=0.5 --rows 6 --versions 6
"""
from __future__ import annotations

import argparse
import os
import sys

from ..config import AUGMENTATION_OPERATION_NAMES, AUGMENTATION_PRESET_NAMES
from .errors import EXIT_OK, handles


def _augmentation(args: argparse.Namespace) -> str | list[dict] | None:
    """The ``augmentation`` value ``--preset`` / ``--op`` ask for; None: the config's."""
    if args.preset:
        return args.preset
    if not args.op:
        return None
    operations = []
    for text in args.op:
        name, _, strength = text.partition("=")
        try:
            operations.append({"name": name.strip(), "strength": float(strength)})
        except ValueError:
            raise ValueError(f"--op takes NAME=STRENGTH (strength a number from 0 to 1), got {text!r}") from None
    return operations


def _check_output(path: str) -> None:
    """Raise OSError unless a PNG can be written at ``path`` (before any image is read)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"-o {path} is a folder; give a file name such as {os.path.join(path, 'sheet.png')}")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise PermissionError(f"cannot write {path}: no write permission")


@handles("augment")
def _preview(args: argparse.Namespace) -> int:
    if args.rows < 1 or args.versions < 1:
        raise ValueError(f"--rows and --versions must be >= 1, got {args.rows} and {args.versions}")
    if not os.path.isfile(args.preview):
        raise FileNotFoundError(f"annotation CSV not found: {args.preview}")
    _check_output(args.output)
    from ..config import ConfigError, Params, load_config_file

    values = load_config_file(args.config) if args.config else {}
    values = {k: v for k, v in values.items() if k != "generate_data"}
    augmentation = _augmentation(args)
    if augmentation is not None:
        values.update(augmentation=augmentation, data_augmentation=True)
    try:
        params = Params.from_dict(values)
    except ConfigError as e:
        source = "--op" if args.op else "--preset" if args.preset else None
        source = f"{source} (with {args.config})" if source and args.config else source or args.config
        raise ConfigError(f"{source}: {e}" if source else str(e)) from None

    import numpy as np
    import tensorflow as tf

    from .. import data, reports
    from ..alphabet import Alphabet
    from ..annotations import listing, read_csv

    samples = read_csv(args.preview, params.csv_delimiter, params.string_split_delimiter,
                       params.unicode_normalization)
    if not samples:
        raise ValueError(f"{args.preview} has no rows")
    picked = [samples[i] for i in sorted(set(np.linspace(0, len(samples) - 1, args.rows).round().astype(int)))]
    report = data.scan_samples(picked, params, Alphabet.build(picked)[0], progress=False)
    if report.problems:
        print(f"tf-crnn augment: left out:\n{listing(report.problems)}", file=sys.stderr)
    if not report.entries:
        raise ValueError(f"none of the {len(picked)} rows picked from {args.preview} can be used (see above)")
    entries = report.entries

    versions: list[list] = [[] for _ in entries]
    for version in range(1 + args.versions):
        # With a global seed, each new pipeline draws its own sequence of per-image seeds (one pass repeats it).
        tf.random.set_seed(args.seed + version)
        dataset = data.make_dataset(entries, params, len(entries), training=version > 0, seed=args.seed + version)
        for batch in dataset:
            for image, width, index in zip(batch["images"].numpy(), batch["widths"].numpy(), batch["index"].numpy()):
                versions[index].append(np.clip((image[:, :width] + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8))
    ops = ", ".join(f"{name} {strength:g}" for name, strength in params.augmentation_ops) or "none"
    reports.contact_sheet(
        [(f"{os.path.basename(e.sample.image_path)} ({e.sample.where()})", images)
         for e, images in zip(entries, versions)],
        args.output, title=f"augmentation: {ops}  (height {params.height} px, {params.input_channels} channel(s))",
        labels=["original", *(f"augmented {k + 1}" for k in range(args.versions))])
    print(f"{args.output}: {len(entries)} image(s), original + {args.versions} augmented version(s) each ({ops})")
    return EXIT_OK


def register(sub) -> None:
    """Add ``tf-crnn augment`` to the ``tf-crnn`` subparsers ``sub``."""
    p = sub.add_parser(
        "augment", help="preview the training augmentation on images of a CSV",
        description="Write a contact sheet of CSV rows as the model sees them: the original (eval) and a few "
                    "augmented versions (training), through the training pipeline. Operations (strength 0 = off, "
                    f"1 = strongest): {', '.join(AUGMENTATION_OPERATION_NAMES)}; presets: "
                    f"{', '.join(AUGMENTATION_PRESET_NAMES)} (see tf_crnn/config.py, tf_crnn/augmentation.py).")
    p.add_argument("--preview", metavar="CSV", required=True, help="annotation CSV whose images to show")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    p.add_argument("--rows", type=int, default=8, help="images from the CSV, spread over it (default 8)")
    p.add_argument("--versions", type=int, default=4, help="augmented versions of each (default 4)")
    p.add_argument("--config", help="training config JSON: height, channels, width limits, augmentation")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--preset", choices=AUGMENTATION_PRESET_NAMES, help="this augmentation preset")
    which.add_argument("--op", action="append", metavar="NAME=STRENGTH",
                       help="an operation and its strength (repeat, in order), instead of the config's")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_preview)
