"""``tf-crnn validate``: check annotation CSVs before a training run.

Checks, in order:

1. every label symbol is in the alphabet (file, line, symbol);
2. every image decodes as training will decode it (for the config's
   ``input_channels``), and every label fits the CTC sequence length
   its image allows: :func:`tf_crnn.data.scan_samples`, the very check the
   trainer runs (image resized to the model height keeping the aspect ratio,
   width clipped to ``[min_width, max_width]``; a label of L symbols with R
   adjacent repeats needs ``L + R`` time steps);
3. degenerate images: one colour after conversion, or squeezed to ``max_width``
   (training keeps them and counts them);
4. duplicates: an image path listed twice (with different labels: an error, the ground truth is ambiguous;
   with the same label: a warning, training keeps the row once), identical image bytes under different
   paths, and with ``eval_csv_files`` the images both splits list (a train/eval leak: a warning, as training
   gives).

It also reports symbol frequencies and saves two histograms (PNG, matplotlib
Agg backend) into the report folder: resized image widths and label lengths.
Problems of kind 1 and 2 and images with different labels are errors (non-zero exit); degenerate images and
other duplicates are warnings.

``tf_crnn.data`` imports TensorFlow, so this module pays its import time (a
few seconds) on first use.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .. import compiled
from ..alphabet import Alphabet
from ..annotations import Sample, find_duplicate_rows, shared_images
from .alphabet_tools import describe_symbol, format_counts


@dataclass
class ValidationReport:
    """Findings of :func:`validate`.

    Attributes:
        rows: rows read.
        unknown: unknown symbol -> ``file:line`` list.
        bad_images: ``file:line: path: reason`` for images that do not decode.
        too_long: ``file:line`` lines for labels too long for their image.
        degenerate: ``file:line: path: kind: details`` for usable images that are one colour
            (``blank``) or ``squeezed`` to ``max_width`` (:func:`tf_crnn.data.degeneracy`).
        duplicate_paths: image path -> ``file:line`` list (listed more than once).
        duplicate_images: groups of ``file:line: path (label)`` with identical bytes.
        conflicting_labels: ``path: file:line 'label', ...`` for images listed with different labels (errors).
        shared_with_eval: image paths the eval CSVs list too (given ``eval_csv_files``).
        damaged_shards: one line per shard (or index) of a compiled folder whose size or SHA-256 differs
            from its manifest (:func:`tf_crnn.compiled.verify`; errors).
        symbol_counts: frequency of every label symbol.
        widths: resized widths of the usable images.
        label_lengths: label lengths (symbols) of all rows.
        plots: paths of the saved histograms.
    """

    rows: int = 0
    unknown: dict[str, list[str]] = field(default_factory=dict)
    bad_images: list[str] = field(default_factory=list)
    too_long: list[str] = field(default_factory=list)
    degenerate: list[str] = field(default_factory=list)
    duplicate_paths: dict[str, list[str]] = field(default_factory=dict)
    duplicate_images: list[list[str]] = field(default_factory=list)
    conflicting_labels: list[str] = field(default_factory=list)
    shared_with_eval: list[str] = field(default_factory=list)
    damaged_shards: list[str] = field(default_factory=list)
    symbol_counts: Counter = field(default_factory=Counter)
    widths: list[int] = field(default_factory=list)
    label_lengths: list[int] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        """Number of rows (images, for conflicting labels) that would stop (or be skipped by) a training run."""
        return (sum(map(len, self.unknown.values())) + len(self.bad_images) + len(self.too_long)
                + len(self.conflicting_labels) + len(self.damaged_shards))

    @property
    def ok(self) -> bool:
        """True when there are rows and no error (duplicates are only warnings)."""
        return self.rows > 0 and self.errors == 0

    def format(self, max_listed: int = 50, top_symbols: int = 30) -> str:
        """Human-readable report; lists are cut at ``max_listed`` lines."""
        out = [f"rows: {self.rows}, distinct symbols: {len(self.symbol_counts)}"]
        if self.widths:
            out.append(f"resized width: min {min(self.widths)}, median {sorted(self.widths)[len(self.widths) // 2]}, "
                       f"max {max(self.widths)} px")
        if self.label_lengths:
            out.append(f"label length: min {min(self.label_lengths)}, max {max(self.label_lengths)} symbols")
        out.append(f"most frequent symbols:\n{format_counts(self.symbol_counts, top_symbols)}")
        if self.damaged_shards:
            out.append(f"ERROR {len(self.damaged_shards)} damaged file(s) of compiled data sets:")
            out += _cut([f"  {d}" for d in self.damaged_shards], max_listed)
        for symbol, where in sorted(self.unknown.items(), key=lambda kv: -len(kv[1])):
            out.append(f"ERROR symbol {describe_symbol(symbol)} not in the alphabet, {len(where)} time(s):")
            out += _cut([f"  {w}" + (f" ({n} times)" if n > 1 else "") for w, n in Counter(where).items()], max_listed)
        if self.bad_images:
            out.append(f"ERROR {len(self.bad_images)} image(s) missing or not decodable:")
            out += _cut([f"  {b}" for b in self.bad_images], max_listed)
        if self.too_long:
            out.append(f"ERROR {len(self.too_long)} label(s) too long for the CTC sequence of their image:")
            out += _cut([f"  {t}" for t in self.too_long], max_listed)
        if self.conflicting_labels:
            out.append(f"ERROR {len(self.conflicting_labels)} image(s) listed with different labels (ambiguous "
                       "ground truth: keep the right row of each):")
            out += _cut([f"  {c}" for c in self.conflicting_labels], max_listed)
        if self.degenerate:
            out.append(f"WARNING {len(self.degenerate)} degenerate image(s) (kept by training):")
            out += _cut([f"  {d}" for d in self.degenerate], max_listed)
        if self.duplicate_paths:
            out.append(f"WARNING {len(self.duplicate_paths)} image path(s) listed more than once:")
            out += _cut([f"  {p}: {', '.join(w)}" for p, w in self.duplicate_paths.items()], max_listed)
        if self.duplicate_images:
            out.append(f"WARNING {len(self.duplicate_images)} group(s) of identical images under different paths:")
            out += _cut(["  " + " == ".join(g) for g in self.duplicate_images], max_listed)
        if self.shared_with_eval:
            out.append(f"WARNING {len(self.shared_with_eval)} image(s) are in the eval CSVs too (the eval CER would "
                       "not be measured on unseen lines):")
            out += _cut([f"  {p}" for p in self.shared_with_eval], max_listed)
        out += [f"histogram: {p}" for p in self.plots]
        out.append("OK" if self.ok else f"FAILED: {self.errors} error(s)" if self.rows else "FAILED: no rows")
        return "\n".join(out)


def _cut(lines: list[str], limit: int) -> list[str]:
    return lines if len(lines) <= limit else lines[:limit] + [f"  ... and {len(lines) - limit} more"]


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.blake2b(f.read(), digest_size=16).hexdigest()
    except OSError:
        return None


def find_duplicates(samples: Sequence[Sample], progress: bool = False):
    """Image paths listed twice, and identical image bytes under different paths.

    Returns:
        ``(duplicate_paths, duplicate_images)`` as in :class:`ValidationReport`.
    """
    from tqdm import tqdm

    by_path: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_path[s.image_path].append(s)
    duplicate_paths = {p: [s.where() for s in group] for p, group in by_path.items() if len(group) > 1}
    paths = list(by_path)
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        digests = list(tqdm(pool.map(_digest, paths), total=len(paths), desc="hashing images", unit="img",
                            disable=not progress, mininterval=1.0))
    by_digest: dict[str, list[str]] = defaultdict(list)
    for path, digest in zip(paths, digests):
        if digest is not None:
            by_digest[digest].append(path)
    duplicate_images = [
        [f"{by_path[p][0].where()}: {p} ({by_path[p][0].text!r})" for p in group]
        for group in by_digest.values() if len(group) > 1
    ]
    return duplicate_paths, duplicate_images


def save_histograms(report: ValidationReport, folder: str | os.PathLike) -> list[str]:
    """Save ``widths.png`` and ``label_lengths.png`` histograms into ``folder``; returns their paths."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plots = []
    for name, values, xlabel in (("widths", report.widths, "resized image width (px)"),
                                 ("label_lengths", report.label_lengths, "label length (symbols)")):
        if not values:
            continue
        figure = Figure(figsize=(6, 3.5), dpi=100)
        axes = figure.add_subplot()
        axes.hist(values, bins=min(50, max(1, len(set(values)))), color="#4477aa")
        axes.set_xlabel(xlabel)
        axes.set_ylabel("rows")
        axes.set_title(f"{name.replace('_', ' ')} (n={len(values)})")
        figure.tight_layout()
        path = folder / f"{name}.png"
        figure.savefig(path)
        plots.append(str(path))
    return plots


def default_report_dir(csv_files: Sequence[str | os.PathLike]) -> str:
    """``data/x.csv`` -> ``data/x.validate`` (beside the first CSV)."""
    first = Path(csv_files[0])
    return str(first.with_name(f"{first.stem}.validate"))


def validate(csv_files: Sequence[str | os.PathLike], alphabet: str | os.PathLike | Alphabet,
             params=None, report_dir: str | os.PathLike | None = None, progress: bool = True,
             eval_csv_files: Sequence[str | os.PathLike] = ()) -> ValidationReport:
    """Validate annotation CSVs against an alphabet and a model configuration.

    Args:
        csv_files: annotation CSVs, or compiled folders (:mod:`tf_crnn.compiled`; every shard is hashed
            against the manifest).
        alphabet: lookup table path or :class:`Alphabet`.
        params: a :class:`tf_crnn.config.Params`, a config JSON path, or None
            for the defaults (height, width bounds, pooling, delimiters).
        report_dir: where the histograms go (default :func:`default_report_dir`).
        progress: tqdm progress bars.
        eval_csv_files: the eval split's CSVs, if ``csv_files`` are the training split's: images both list are
            reported (:attr:`ValidationReport.shared_with_eval`).

    Returns:
        A :class:`ValidationReport`.

    Raises:
        FileNotFoundError, AnnotationError, AlphabetError, ConfigError:
            unreadable CSV, table or config.
    """
    from ..config import Params
    from ..data import scan_samples  # imports TensorFlow

    if params is None:
        params = Params()
    elif not isinstance(params, Params):
        params = Params.from_file(params)
    table = alphabet if isinstance(alphabet, Alphabet) else Alphabet.from_file(alphabet, params.unicode_normalization)
    indexes = compiled.Indexes()  # each compiled folder's index read once, for its rows and its images' facts
    samples = compiled.read_rows(csv_files, params.csv_delimiter, params.string_split_delimiter,
                                 params.unicode_normalization, indexes)
    report = ValidationReport(rows=len(samples))
    # Compiled folders: every shard hashed against its manifest (a training only checks sizes), and their
    # images' facts from the index (checked when compiled; the source files need not exist).
    folders = compiled.compiled_sources(csv_files)
    known = {}
    for folder in folders:
        report.damaged_shards += compiled.verify(folder, progress)
        known.update({e.sample.image_path: e for e in indexes.examples(folder, channels=params.input_channels)})
    report.symbol_counts = Counter(s for sample in samples for s in sample.symbols)
    report.label_lengths = [len(s.symbols) for s in samples]
    unknown: dict[str, list[str]] = defaultdict(list)
    for u in table.unknown_symbols(samples):
        unknown[u.symbol].append(f"{u.csv_file}:{u.line}")
    report.unknown = dict(unknown)
    # scan_samples encodes labels, so rows with unknown symbols are left to check 1.
    usable = [s for s in samples if all(sym in table for sym in s.symbols)]
    scan = scan_samples(usable, params, table, progress=progress, known=known)
    report.bad_images = [f"{s.where()}: {s.image_path}: {reason}" for s, reason in scan.bad_images]
    report.too_long = [
        f"{s.where()}: {len(s.symbols)} symbols need more than the {steps} time steps of {s.image_path} "
        f"(resized width >= {need} px needed)" for s, steps, need in scan.too_long
    ]
    report.degenerate = scan.warnings
    report.widths = [e.width for e in scan.entries]
    report.duplicate_paths, report.duplicate_images = find_duplicates(samples, progress)
    report.conflicting_labels = find_duplicate_rows(samples).conflicting_lines()
    if eval_csv_files:
        evaluation = compiled.read_rows(eval_csv_files, params.csv_delimiter, params.string_split_delimiter,
                                        params.unicode_normalization)
        report.shared_with_eval = shared_images(samples, evaluation)
    if samples:
        report.plots = save_histograms(report, report_dir or default_report_dir(csv_files))
    return report
